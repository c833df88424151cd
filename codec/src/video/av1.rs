//! AV1: decoding with dav1d (Debian's `libdav1d-dev`), encoding with rav1e in its low-latency
//! configuration (no frame reordering, minimal lookahead, speed 10, no scene detection).
//!
//! rav1e fixes its rate control when the encoder is created, so [`Av1Encoder::set_rate`]
//! takes effect by starting a new sequence at the next frame (which is then a keyframe).
//! That suits the recording profiles and AV1 viewers it serves, whose rate rarely changes.

use std::{collections::VecDeque, sync::Arc, time::Duration};

use mcu_media::{PixelFormat, VideoFrame};
use rav1e::prelude::{
    ChromaSampling, Config, Context, EncoderConfig as RaConfig, EncoderStatus, Frame, FrameParameters, FrameType, FrameTypeOverride, Opaque, Rational,
    SceneDetectionSpeed,
};

use super::{
    Backend, DecoderOptions, EncodeError, EncodedFrame, EncoderConfig, OpenError, RateControl, RateError, VideoCodec, VideoEncoder, check_input, check_rate,
    gate::{Gated, RawDecoder, RawError, UnitKind, gated_decoder},
    yuv::{as_i420, frame_from_i420},
};
use crate::bitstream::av1_is_keyframe;

/// The AV1 decoder (dav1d). Input: one temporal unit per call.
pub struct Av1Decoder(Gated<RawAv1>);

struct RawAv1 {
    decoder: dav1d::Decoder,
    format: PixelFormat,
}

impl Av1Decoder {
    /// A decoder returning frames in `options.format`, with `options.threads` threads and a
    /// frame delay of one (a picture comes out for the unit that completes it).
    pub fn new(options: &DecoderOptions) -> Result<Av1Decoder, OpenError> {
        let mut s = dav1d::Settings::new();
        s.set_n_threads(options.threads.max(1));
        s.set_max_frame_delay(1);
        // Hostile headers must not make it allocate more than our largest frame.
        s.set_frame_size_limit(super::MAX_DECODE_PIXELS as u32);
        let decoder = dav1d::Decoder::with_settings(&s).map_err(|e| OpenError::Library { codec: VideoCodec::Av1, library: "dav1d", detail: e.to_string() })?;
        Ok(Av1Decoder(Gated::new(RawAv1 { decoder, format: options.format })))
    }
}

gated_decoder!(Av1Decoder, RawAv1);

impl RawDecoder for RawAv1 {
    const CODEC: VideoCodec = VideoCodec::Av1;
    const LIBRARY: &'static str = "dav1d";

    fn classify(data: &[u8]) -> UnitKind {
        if av1_is_keyframe(data) { UnitKind::Key } else { UnitKind::Delta }
    }

    fn decode_raw(&mut self, data: &[u8], pts: Duration) -> Result<Option<VideoFrame>, RawError> {
        let corrupt = |e: dav1d::Error| RawError::Corrupt(format!("dav1d: {e}"));
        let mut pending = match self.decoder.send_data(data.to_vec(), None, None, None) {
            Ok(()) => false,
            Err(e) if e.is_again() => true,
            Err(e) => return Err(corrupt(e)),
        };
        let mut picture = None;
        loop {
            match self.decoder.get_picture() {
                Ok(p) => picture = Some(p),
                Err(e) if e.is_again() => {}
                Err(e) => return Err(corrupt(e)),
            }
            if !pending {
                break;
            }
            pending = match self.decoder.send_pending_data() {
                Ok(()) => false,
                Err(e) if e.is_again() => true,
                Err(e) => return Err(corrupt(e)),
            };
        }
        let Some(p) = picture else { return Ok(None) };
        if p.pixel_layout() != dav1d::PixelLayout::I420 || p.bit_depth() != 8 {
            return Err(RawError::Unsupported(format!("{:?} at {} bits; only 8-bit 4:2:0 is supported", p.pixel_layout(), p.bit_depth())));
        }
        use dav1d::PlanarImageComponent::{U, V, Y};
        let (y, u, v) = (p.plane(Y), p.plane(U), p.plane(V));
        frame_from_i420((&y, p.stride(Y) as usize), (&u, p.stride(U) as usize), (&v, p.stride(V) as usize), p.width(), p.height(), self.format, pts)
            .map(Some)
            .ok_or_else(|| RawError::Corrupt(format!("dav1d returned an inconsistent {}x{} picture", p.width(), p.height())))
    }

    fn reset(&mut self) {
        self.decoder.flush();
        // Pictures decoded before the flush are stale now.
        while self.decoder.get_picture().is_ok() {}
    }
}

/// The AV1 encoder (rav1e, low latency). Output lags input by four frames even in rav1e's
/// low-latency mode (keyframe lookahead of three frames plus one frame of RDO lookahead; 133 ms
/// at 30 fps, acceptable for recordings, noticeable for live viewers); [`VideoEncoder::flush`]
/// returns the held frames and ends the sequence (the next frame starts a new one with a
/// keyframe).
pub struct Av1Encoder {
    ctx: Option<Context<u8>>,
    config: EncoderConfig,
    size: (u32, u32),
    keyframe_pending: bool,
    last_pts: Option<Duration>,
    /// Units finished by a restart (rate or size change), returned with the next call.
    carry: VecDeque<EncodedFrame>,
}

/// Speed preset: 10 is rav1e's fastest.
const SPEED: u8 = 10;

/// The lowest quantizer index rate control may choose (see [`build`]).
const MIN_QUANTIZER: u8 = 40;

fn build(config: &EncoderConfig, width: u32, height: u32) -> Result<Context<u8>, String> {
    let mut enc = RaConfig::with_speed_preset(SPEED);
    enc.width = width as usize;
    enc.height = height as usize;
    enc.bit_depth = 8;
    enc.chroma_sampling = ChromaSampling::Cs420;
    // Frame rate as a time base with millihertz precision (29.97 → 1000/29970).
    enc.time_base = Rational::new(1000, (config.rate.frame_rate * 1000.0).round() as u64);
    enc.low_latency = true;
    enc.bitrate = config.rate.bitrate_bps as i32;
    // In bitrate mode `quantizer` caps the quantizer; 255 = no cap, or rate control could not
    // get down to the target on hard content.
    enc.quantizer = 255;
    enc.reservoir_frame_delay = Some(12);
    // A floor under rate control's quantizer. On static content with bits to spare rav1e 0.8
    // goes down to base_q_idx 1, where it can write a frame decoders reject ("failed to decode
    // tile data"), and every frame after it up to the next keyframe is lost (found in a
    // recording of a still 2x2 grid; `av1_round_trip.rs` replays it). Index 40 is quantizer 10
    // of 63, the floor libwebrtc's AV1 encoder uses; pictures there are visually lossless.
    enc.min_quantizer = MIN_QUANTIZER;
    enc.set_key_frame_interval(0, config.keyframe_interval as u64); // 0 = never (rav1e maps it to its maximum)
    enc.speed_settings.rdo_lookahead_frames = 1;
    enc.speed_settings.scene_detection_mode = SceneDetectionSpeed::None;
    let threads = config.threads.max(1) as usize;
    if threads > 1 {
        enc.tiles = threads;
    }
    Config::new().with_encoder_config(enc).with_threads(threads).new_context().map_err(|e| e.to_string())
}

impl Av1Encoder {
    /// An encoder with `config`; the size is taken from the first frame.
    pub fn new(config: &EncoderConfig) -> Result<Av1Encoder, OpenError> {
        let codec = VideoCodec::Av1;
        check_rate(codec, config.rate).map_err(|source| OpenError::Rate { codec, source })?;
        build(config, 64, 64).map_err(|detail| OpenError::Library { codec, library: "rav1e", detail })?;
        Ok(Av1Encoder { ctx: None, config: *config, size: (0, 0), keyframe_pending: false, last_pts: None, carry: VecDeque::new() })
    }

    /// Receives every packet rav1e has ready.
    fn receive(ctx: &mut Context<u8>, out: &mut VecDeque<EncodedFrame>) -> Result<(), String> {
        loop {
            match ctx.receive_packet() {
                Ok(packet) => {
                    let pts = packet.opaque.and_then(|o| o.downcast::<Duration>().ok()).map(|b| *b).unwrap_or_default();
                    out.push_back(EncodedFrame { codec: VideoCodec::Av1, keyframe: packet.frame_type == FrameType::KEY, data: packet.data, pts });
                }
                Err(EncoderStatus::Encoded) => {}
                Err(EncoderStatus::NeedMoreData | EncoderStatus::LimitReached) => return Ok(()),
                Err(e) => return Err(e.to_string()),
            }
        }
    }

    /// Ends the current sequence: everything held back goes to `carry`.
    fn finish(&mut self) -> Result<(), String> {
        if let Some(mut ctx) = self.ctx.take() {
            ctx.flush();
            Self::receive(&mut ctx, &mut self.carry)?;
        }
        Ok(())
    }
}

impl VideoEncoder for Av1Encoder {
    fn codec(&self) -> VideoCodec {
        VideoCodec::Av1
    }

    fn backend(&self) -> Backend {
        Backend::Software("rav1e")
    }

    fn encode(&mut self, frame: &VideoFrame) -> Result<Vec<EncodedFrame>, EncodeError> {
        let codec = VideoCodec::Av1;
        check_input(codec, frame, self.last_pts)?;
        let pts = frame.pts;
        let (width, height) = (frame.width, frame.height);
        if width < 16 || height < 16 {
            return Err(EncodeError::UnsupportedSize { codec, pts, width, height, why: "rav1e needs sides of at least 16 pixels" });
        }
        let lib = |detail| EncodeError::Library { codec, library: "rav1e", pts, detail };
        if self.ctx.is_some() && self.size != (width, height) {
            self.finish().map_err(lib)?;
        }
        if self.ctx.is_none() {
            self.ctx = Some(build(&self.config, width, height).map_err(lib)?);
            self.size = (width, height);
        }
        self.last_pts = Some(pts);
        let ctx = self.ctx.as_mut().expect("created just above");
        let mut f: Frame<u8> = ctx.new_frame();
        let mut scratch = Vec::new();
        let planes = as_i420(frame, &mut scratch);
        let (cw, ch) = frame.chroma_size();
        for (i, (src, stride, w, h)) in [
            (planes.y, planes.strides[0], width as usize, height as usize),
            (planes.u, planes.strides[1], cw as usize, ch as usize),
            (planes.v, planes.strides[2], cw as usize, ch as usize),
        ]
        .into_iter()
        .enumerate()
        {
            let dst_stride = f.planes[i].cfg.stride;
            let dst = f.planes[i].data_origin_mut();
            for row in 0..h {
                dst[row * dst_stride..row * dst_stride + w].copy_from_slice(&src[row * stride..row * stride + w]);
            }
        }
        let params = FrameParameters {
            frame_type_override: if std::mem::take(&mut self.keyframe_pending) { FrameTypeOverride::Key } else { FrameTypeOverride::No },
            opaque: Some(Opaque::new(pts)),
            ..Default::default()
        };
        ctx.send_frame((Arc::new(f), params)).map_err(|e| lib(e.to_string()))?;
        let mut out = std::mem::take(&mut self.carry);
        Self::receive(ctx, &mut out).map_err(lib)?;
        Ok(out.into())
    }

    fn request_keyframe(&mut self) {
        self.keyframe_pending = true;
    }

    fn set_rate(&mut self, rate: RateControl) -> Result<(), RateError> {
        let codec = VideoCodec::Av1;
        check_rate(codec, rate)?;
        if rate != self.config.rate {
            self.finish().map_err(|detail| RateError::Library { codec, library: "rav1e", detail })?;
            self.config.rate = rate;
        }
        Ok(())
    }

    fn rate(&self) -> RateControl {
        self.config.rate
    }

    fn flush(&mut self) -> Result<Vec<EncodedFrame>, EncodeError> {
        let pts = self.last_pts.unwrap_or_default();
        self.finish().map_err(|detail| EncodeError::Library { codec: VideoCodec::Av1, library: "rav1e", pts, detail })?;
        Ok(std::mem::take(&mut self.carry).into())
    }
}
