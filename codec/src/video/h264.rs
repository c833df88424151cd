//! H.264 through openh264 (bundled source): decoder, and a constrained-baseline encoder.
//!
//! The encoder's output is what browsers and SIP phones accept for `packetization-mode=1`:
//! profile-level-id `42c0xx` (baseline with constraint_set0 and constraint_set1, i.e.
//! constrained baseline), one slice per picture per thread, SPS and PPS before every IDR,
//! Annex-B start codes (the RTP packetizer splits NAL units and fragments them with FU-A).
//!
//! Unsafe: openh264's safe wrapper has no run-time bitrate or frame-rate setter, so
//! [`H264Encoder::set_rate`] calls `SetOption` through the wrapper's raw API.
#![allow(unsafe_code)]

use std::{os::raw::c_int, time::Duration};

use mcu_media::{PixelFormat, VideoFrame};
use openh264::{
    decoder::{Decoder, DecoderConfig, Flush},
    encoder::{
        BitRate, Complexity, Encoder, EncoderConfig as OhConfig, FrameRate, FrameType, IntraFramePeriod, Profile,
        RateControlMode, UsageType,
    },
    formats::YUVSource,
    OpenH264API, Timestamp,
};

use super::{
    check_input, check_rate,
    gate::{gated_decoder, Gated, RawDecoder, RawError, UnitKind},
    yuv::{as_i420, frame_from_i420, I420},
    Backend, DecoderOptions, EncodeError, EncodedFrame, EncoderConfig, OpenError, RateControl, RateError, VideoCodec,
    VideoEncoder,
};
use crate::bitstream::{h264_nal, h264_nal_types};

const LIBRARY: &str = "openh264";

/// The H.264 decoder (openh264). Input: Annex-B access units.
pub struct H264Decoder(Gated<RawH264>);

struct RawH264 {
    decoder: Decoder,
    format: PixelFormat,
}

impl H264Decoder {
    /// A decoder returning frames in `options.format`. openh264 decodes on the caller's thread
    /// (its own threading is experimental), so `options.threads` is ignored.
    pub fn new(options: &DecoderOptions) -> Result<H264Decoder, OpenError> {
        let decoder = Decoder::with_api_config(OpenH264API::from_source(), DecoderConfig::new().flush_after_decode(Flush::NoFlush))
            .map_err(|e| OpenError::Library { codec: VideoCodec::H264, library: LIBRARY, detail: e.to_string() })?;
        Ok(H264Decoder(Gated::new(RawH264 { decoder, format: options.format })))
    }
}

gated_decoder!(H264Decoder, RawH264);

/// What an Annex-B access unit is, from its NAL unit types.
pub(super) fn classify(data: &[u8]) -> UnitKind {
    let mut kind = UnitKind::ParameterSets;
    for t in h264_nal_types(data) {
        match t {
            h264_nal::IDR => return UnitKind::Key,
            h264_nal::SPS | h264_nal::PPS | h264_nal::SEI | h264_nal::AUD => {}
            _ => kind = UnitKind::Delta,
        }
    }
    kind
}

/// Refuses a parameter set announcing a picture beyond [`super::MAX_DECODE_PIXELS`], before a
/// decoder allocates it.
pub(super) fn check_sps_size(data: &[u8]) -> Result<(), RawError> {
    match crate::bitstream::h264_sps_size(data) {
        Some((w, h)) if w == 0 || h == 0 || w as u64 * h as u64 > super::MAX_DECODE_PIXELS => Err(RawError::Unsupported(format!(
            "the SPS announces {w}x{h}, beyond the largest picture decoded ({} pixels)",
            super::MAX_DECODE_PIXELS
        ))),
        _ => Ok(()),
    }
}

impl RawDecoder for RawH264 {
    const CODEC: VideoCodec = VideoCodec::H264;

    const LIBRARY: &'static str = LIBRARY;

    fn classify(data: &[u8]) -> UnitKind {
        classify(data)
    }

    fn decode_raw(&mut self, data: &[u8], pts: Duration) -> Result<Option<VideoFrame>, RawError> {
        check_sps_size(data)?;
        let format = self.format;
        let decoded = self.decoder.decode(data).map_err(|e| RawError::Corrupt(e.to_string()))?;
        let Some(yuv) = decoded else { return Ok(None) };
        let (w, h) = yuv.dimensions();
        let (ys, us, vs) = yuv.strides();
        let (w, h) = (u32::try_from(w).unwrap_or(0), u32::try_from(h).unwrap_or(0));
        frame_from_i420((yuv.y(), ys), (yuv.u(), us), (yuv.v(), vs), w, h, format, pts)
            .map(Some)
            .ok_or_else(|| RawError::Corrupt(format!("decoder returned an inconsistent {w}x{h} picture")))
    }
}

/// Borrowed I420 planes as openh264 reads them.
struct Source<'a>(I420<'a>);

impl YUVSource for Source<'_> {
    fn dimensions(&self) -> (usize, usize) {
        (self.0.width as usize, self.0.height as usize)
    }
    fn strides(&self) -> (usize, usize, usize) {
        (self.0.strides[0], self.0.strides[1], self.0.strides[2])
    }
    fn y(&self) -> &[u8] {
        self.0.y
    }
    fn u(&self) -> &[u8] {
        self.0.u
    }
    fn v(&self) -> &[u8] {
        self.0.v
    }
}

/// The H.264 encoder (openh264): constrained baseline, real-time camera tuning, bitrate rate
/// control without frame skipping, low complexity.
pub struct H264Encoder {
    /// Created at the first frame and again when the size changes (with the rate in force).
    encoder: Option<Encoder>,
    config: EncoderConfig,
    size: (u32, u32),
    /// Highest bitrate told to the encoder (openh264 clamps the target to its maximum).
    max_bitrate: u32,
    keyframe_pending: bool,
    last_pts: Option<Duration>,
    scratch: Vec<u8>,
}

fn build(config: &EncoderConfig) -> Result<Encoder, openh264::Error> {
    let oh = OhConfig::new()
        .bitrate(BitRate::from_bps(config.rate.bitrate_bps))
        .max_frame_rate(FrameRate::from_hz(config.rate.frame_rate as f32))
        .rate_control_mode(RateControlMode::Bitrate)
        .skip_frames(false)
        .usage_type(UsageType::CameraVideoRealTime)
        .profile(Profile::Baseline)
        .complexity(Complexity::Low)
        .scene_change_detect(false)
        .background_detection(false)
        .num_threads(config.threads.clamp(1, 16) as u16)
        .intra_frame_period(IntraFramePeriod::from_num_frames(config.keyframe_interval));
    let oh = match config.max_nal_size {
        Some(max) => oh.max_slice_len(max),
        None => oh,
    };
    let mut encoder = Encoder::with_api_config(OpenH264API::from_source(), oh)?;
    // openh264 warns on stderr while initialising (e.g. that bitrate control without frame
    // skipping is approximate: measured, it holds the target within a few percent). Quiet it
    // before the first frame initialises the encoder; the wrapper keeps it quiet afterwards.
    let mut quiet: c_int = openh264_sys2::WELS_LOG_QUIET;
    // SAFETY: TRACE_LEVEL takes an int and is the one option openh264 accepts before
    // initialisation (welsEncoderExt.cpp, SetOption); the value is only read during the call.
    unsafe {
        encoder.raw_api().set_option(openh264_sys2::ENCODER_OPTION_TRACE_LEVEL, (&mut quiet as *mut c_int).cast());
    }
    Ok(encoder)
}

impl H264Encoder {
    /// An encoder with `config`; the size is taken from the first frame.
    pub fn new(config: &EncoderConfig) -> Result<H264Encoder, OpenError> {
        let codec = VideoCodec::H264;
        check_rate(codec, config.rate).map_err(|source| OpenError::Rate { codec, source })?;
        // Build once now so that a broken library shows up here rather than at the first frame.
        build(config).map_err(|e| OpenError::Library { codec, library: LIBRARY, detail: e.to_string() })?;
        Ok(H264Encoder {
            encoder: None,
            config: *config,
            size: (0, 0),
            max_bitrate: config.rate.bitrate_bps,
            keyframe_pending: false,
            last_pts: None,
            scratch: Vec::new(),
        })
    }

    fn set_option<T>(encoder: &mut Encoder, option: openh264_sys2::ENCODER_OPTION, value: &mut T) -> Result<(), String> {
        // SAFETY: `value` is the type openh264 documents for `option` (SBitrateInfo for the
        // bitrate options, f32 for the frame rate); the encoder was initialised by encoding a
        // frame (`encoder` exists only after that) and only reads the value during the call.
        let rc = unsafe { encoder.raw_api().set_option(option, (value as *mut T).cast()) };
        if rc == 0 { Ok(()) } else { Err(format!("SetOption({option}) returned {rc}")) }
    }
}

impl VideoEncoder for H264Encoder {
    fn codec(&self) -> VideoCodec {
        VideoCodec::H264
    }

    fn backend(&self) -> Backend {
        Backend::Software(LIBRARY)
    }

    fn encode(&mut self, frame: &VideoFrame) -> Result<Vec<EncodedFrame>, EncodeError> {
        let codec = VideoCodec::H264;
        check_input(codec, frame, self.last_pts)?;
        let pts = frame.pts;
        let (width, height) = (frame.width, frame.height);
        if width % 2 == 1 || height % 2 == 1 || width < 16 || height < 16 {
            let why = "openh264 needs even sides of at least 16 pixels";
            return Err(EncodeError::UnsupportedSize { codec, pts, width, height, why });
        }
        if width.max(height) > 3840 || width.min(height) > 2160 {
            let why = "openh264 encodes up to 3840x2160";
            return Err(EncodeError::UnsupportedSize { codec, pts, width, height, why });
        }
        let lib = |e: openh264::Error| EncodeError::Library { codec, library: LIBRARY, pts, detail: e.to_string() };
        if self.encoder.is_none() || self.size != (width, height) {
            self.encoder = Some(build(&self.config).map_err(lib)?);
            self.size = (width, height);
            self.max_bitrate = self.config.rate.bitrate_bps;
        }
        let encoder = self.encoder.as_mut().expect("created just above");
        self.last_pts = Some(pts);
        if std::mem::take(&mut self.keyframe_pending) {
            encoder.force_intra_frame();
        }
        let source = Source(as_i420(frame, &mut self.scratch));
        let ts = Timestamp::from_millis(pts.as_millis() as u64);
        let bits = encoder.encode_at(&source, ts).map_err(lib)?;
        let keyframe = match bits.frame_type() {
            FrameType::IDR | FrameType::I => true,
            FrameType::P | FrameType::IPMixed => false,
            FrameType::Skip | FrameType::Invalid => return Ok(Vec::new()),
        };
        let data = bits.to_vec();
        if data.is_empty() {
            return Ok(Vec::new());
        }
        // An I frame that is not an IDR cannot start decoding; only IDRs count as keyframes.
        let keyframe = keyframe && h264_nal_types(&data).any(|t| t == h264_nal::IDR);
        Ok(vec![EncodedFrame { codec, data, pts, keyframe }])
    }

    fn request_keyframe(&mut self) {
        self.keyframe_pending = true;
    }

    fn set_rate(&mut self, rate: RateControl) -> Result<(), RateError> {
        let codec = VideoCodec::H264;
        check_rate(codec, rate)?;
        if let Some(encoder) = self.encoder.as_mut() {
            let lib = |detail| RateError::Library { codec, library: LIBRARY, detail };
            let bps = rate.bitrate_bps as i32;
            if rate.bitrate_bps > self.max_bitrate {
                // The layer's maximum bounds its target (WelsBitRateVerification): raise both
                // the stream's and the layer's before raising the target.
                for layer in [openh264_sys2::SPATIAL_LAYER_ALL, openh264_sys2::SPATIAL_LAYER_0] {
                    let mut max = openh264_sys2::SBitrateInfo { iLayer: layer, iBitrate: bps };
                    Self::set_option(encoder, openh264_sys2::ENCODER_OPTION_MAX_BITRATE, &mut max).map_err(lib)?;
                }
                self.max_bitrate = rate.bitrate_bps;
            }
            let mut target = openh264_sys2::SBitrateInfo { iLayer: openh264_sys2::SPATIAL_LAYER_ALL, iBitrate: bps };
            Self::set_option(encoder, openh264_sys2::ENCODER_OPTION_BITRATE, &mut target).map_err(lib)?;
            if rate.frame_rate != self.config.rate.frame_rate {
                let mut fps = rate.frame_rate as f32;
                Self::set_option(encoder, openh264_sys2::ENCODER_OPTION_FRAME_RATE, &mut fps).map_err(lib)?;
            }
        }
        self.config.rate = rate;
        Ok(())
    }

    fn rate(&self) -> RateControl {
        self.config.rate
    }

    fn flush(&mut self) -> Result<Vec<EncodedFrame>, EncodeError> {
        Ok(Vec::new())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{bitstream, new_decoder, new_software_encoder, DecodeError, Decoded, DecoderOptions, EncoderConfig, VideoCodec};
    use mcu_media::{testsrc, PixelFormat, Rgb};

    #[test]
    fn an_sps_announcing_a_huge_picture_is_refused_and_decoding_goes_on() {
        let mut enc = new_software_encoder(VideoCodec::H264, &EncoderConfig::realtime(500_000, 30.0)).unwrap();
        let frame = testsrc::frame(&testsrc::Pattern::Solid(Rgb(200, 40, 40)), PixelFormat::I420, 640, 360, Duration::ZERO);
        let key = enc.encode(&frame).unwrap().remove(0);
        assert_eq!(bitstream::h264_sps_size(&key.data), Some((640, 368)), "the encoder's own SPS: 23 macroblock rows");
        let mut dec = new_decoder(VideoCodec::H264, &DecoderOptions::default()).unwrap();
        let mut forged = bitstream::tests::sps(512, 512);
        forged.extend_from_slice(&[0, 0, 0, 1, 0x68, 0xce, 0x3c, 0x80]);
        match dec.decode(&forged, Duration::from_millis(1)) {
            Err(DecodeError::Unsupported { detail, .. }) => assert!(detail.contains("8192x8192"), "{detail}"),
            other => panic!("a 8192x8192 SPS must be refused, got {other:?}"),
        }
        assert!(matches!(dec.decode(&key.data, Duration::from_millis(40)), Ok(Decoded::Frame(f)) if f.width == 640), "the next real keyframe decodes");
    }

    #[test]
    fn size_limited_slices_keep_every_nal_unit_under_the_limit_and_decode() {
        // packetization-mode 0 receivers (SIP phones) take one NAL unit per packet.
        let config = EncoderConfig { max_nal_size: Some(1100), ..EncoderConfig::realtime(1_500_000, 30.0) };
        let mut enc = new_software_encoder(VideoCodec::H264, &config).unwrap();
        let mut dec = new_decoder(VideoCodec::H264, &DecoderOptions::default()).unwrap();
        let mut worst_psnr = f64::MAX;
        for i in 0..10u32 {
            let pts = Duration::from_millis(i as u64 * 33);
            let frame = testsrc::frame(&testsrc::Pattern::Card { color: Rgb(40, 120, 200), label: i }, PixelFormat::I420, 640, 360, pts);
            for unit in enc.encode(&frame).unwrap() {
                let nals: Vec<&[u8]> = bitstream::annexb_nal_units(&unit.data).collect();
                if i == 0 {
                    assert!(nals.len() > 3, "a 640x360 keyframe at 1.5 Mbit/s needs several slices, got {}", nals.len());
                }
                for n in &nals {
                    assert!(n.len() <= 1100, "NAL unit of {} bytes", n.len());
                }
                if let Ok(Decoded::Frame(f)) = dec.decode(&unit.data, pts) {
                    worst_psnr = worst_psnr.min(crate::quality::psnr_y(&frame, &f).unwrap());
                }
            }
        }
        assert!(worst_psnr > 28.0, "PSNR {worst_psnr:.1} dB");
    }
}
