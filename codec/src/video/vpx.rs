//! VP8 through libvpx (Debian's `libvpx-dev`, bound by `env-libvpx-sys`): decoder and a
//! real-time CBR encoder tuned the way WebRTC tunes it.
//!
//! Unsafe: libvpx is a C API. Each context lives in a `Box` (stable address), is created and
//! destroyed here, and is only touched through `&mut self`.
#![allow(unsafe_code)]

use std::{
    collections::VecDeque,
    ffi::CStr,
    os::raw::{c_int, c_long, c_uint, c_ulong},
    ptr,
    time::Duration,
};

use mcu_media::{PixelFormat, VideoFrame};
use vpx_sys::*;

use super::{
    Backend, DecoderOptions, EncodeError, EncodedFrame, EncoderConfig, OpenError, RateControl, RateError, VideoCodec, VideoEncoder, check_input, check_rate,
    gate::{Gated, RawDecoder, RawError, UnitKind, gated_decoder},
    yuv::{as_i420, frame_from_i420},
};
use crate::bitstream::vp8_is_keyframe;

const LIBRARY: &str = "libvpx";
/// libvpx's time base for us: the 90 kHz RTP video clock.
const TICKS_PER_SECOND: u64 = 90_000;

fn ticks(pts: Duration) -> i64 {
    (pts.as_micros() * TICKS_PER_SECOND as u128 / 1_000_000) as i64
}

/// The message libvpx left in a context, or the generic text of `err`.
fn error_text(ctx: &mut vpx_codec_ctx_t, err: vpx_codec_err_t) -> String {
    // SAFETY: both functions return pointers to static or context-owned NUL-terminated
    // strings (or null for the detail), valid until the next call on the context.
    unsafe {
        let generic = CStr::from_ptr(vpx_codec_err_to_string(err)).to_string_lossy().into_owned();
        let detail = vpx_codec_error_detail(ctx);
        if detail.is_null() { generic } else { format!("{generic}: {}", CStr::from_ptr(detail).to_string_lossy()) }
    }
}

/// The VP8 decoder (libvpx).
pub struct Vp8Decoder(Gated<RawVp8>);

struct RawVp8 {
    ctx: Box<vpx_codec_ctx_t>,
    format: PixelFormat,
}

// SAFETY: a libvpx decoder context has no thread affinity; it is used from one thread at a
// time because every use goes through `&mut self`.
unsafe impl Send for RawVp8 {}

impl Vp8Decoder {
    /// A decoder returning frames in `options.format`, with `options.threads` threads.
    pub fn new(options: &DecoderOptions) -> Result<Vp8Decoder, OpenError> {
        let cfg = vpx_codec_dec_cfg_t { threads: options.threads.max(1) as c_uint, w: 0, h: 0 };
        // SAFETY: a zeroed context is the documented "not yet initialised" state; init fills it.
        let mut ctx: Box<vpx_codec_ctx_t> = Box::new(unsafe { std::mem::zeroed() });
        // SAFETY: ctx and cfg are valid for the call; the ABI version is the one the bindings
        // were generated for (checked by libvpx).
        let err = unsafe { vpx_codec_dec_init_ver(&mut *ctx, vpx_codec_vp8_dx(), &cfg, 0, VPX_DECODER_ABI_VERSION as c_int) };
        if err != vpx_codec_err_t::VPX_CODEC_OK {
            return Err(OpenError::Library { codec: VideoCodec::Vp8, library: LIBRARY, detail: error_text(&mut ctx, err) });
        }
        Ok(Vp8Decoder(Gated::new(RawVp8 { ctx, format: options.format })))
    }
}

gated_decoder!(Vp8Decoder, RawVp8);

impl Drop for RawVp8 {
    fn drop(&mut self) {
        // SAFETY: the context was initialised in `new` and is destroyed once.
        unsafe {
            vpx_codec_destroy(&mut *self.ctx);
        }
    }
}

impl RawDecoder for RawVp8 {
    const CODEC: VideoCodec = VideoCodec::Vp8;
    const LIBRARY: &'static str = LIBRARY;

    fn classify(data: &[u8]) -> UnitKind {
        if vp8_is_keyframe(data) { UnitKind::Key } else { UnitKind::Delta }
    }

    fn decode_raw(&mut self, data: &[u8], pts: Duration) -> Result<Option<VideoFrame>, RawError> {
        let len = c_uint::try_from(data.len()).map_err(|_| RawError::Corrupt("unit larger than 4 GiB".into()))?;
        // SAFETY: data is valid for len bytes during the call; libvpx copies what it keeps.
        let err = unsafe { vpx_codec_decode(&mut *self.ctx, data.as_ptr(), len, ptr::null_mut(), 0) };
        if err != vpx_codec_err_t::VPX_CODEC_OK {
            return Err(RawError::Corrupt(error_text(&mut self.ctx, err)));
        }
        let mut corrupted: c_int = 0;
        // SAFETY: VP8D_GET_FRAME_CORRUPTED takes an `int *` it writes once.
        let err = unsafe { vpx_codec_control_(&mut *self.ctx, vp8_dec_control_id::VP8D_GET_FRAME_CORRUPTED as c_int, &mut corrupted as *mut c_int) };
        if err == vpx_codec_err_t::VPX_CODEC_OK && corrupted != 0 {
            return Err(RawError::Corrupt("libvpx marked the frame corrupted (a reference is missing or damaged)".into()));
        }
        let mut iter: vpx_codec_iter_t = ptr::null();
        let mut out = None;
        loop {
            // SAFETY: iter is the iterator state libvpx expects, started at null.
            let img = unsafe { vpx_codec_get_frame(&mut *self.ctx, &mut iter) };
            if img.is_null() {
                break;
            }
            // SAFETY: libvpx returned a valid image that stays valid until the next decode call.
            let img = unsafe { &*img };
            out = Some(self.copy_image(img, pts)?);
        }
        Ok(out)
    }
}

impl RawVp8 {
    fn copy_image(&self, img: &vpx_image_t, pts: Duration) -> Result<VideoFrame, RawError> {
        if img.fmt != vpx_img_fmt::VPX_IMG_FMT_I420 {
            return Err(RawError::Unsupported(format!("libvpx returned {:?}, not I420", img.fmt)));
        }
        let (w, h) = (img.d_w, img.d_h);
        let (ys, us, vs) = (img.stride[0], img.stride[1], img.stride[2]);
        if ys <= 0 || us <= 0 || vs <= 0 || img.planes[..3].iter().any(|p| p.is_null()) {
            return Err(RawError::Corrupt("libvpx returned an image without planes".into()));
        }
        let (ys, us, vs) = (ys as usize, us as usize, vs as usize);
        let (hu, hc) = (h as usize, h.div_ceil(2) as usize);
        // SAFETY: an I420 vpx_image has `d_h` rows of `stride[0]` bytes in plane 0 and
        // ceil(d_h/2) rows of `stride[1|2]` bytes in planes 1 and 2; the last row may be short
        // of a whole stride, so the slices end at the last row's last visible byte.
        let (y, u, v) = unsafe {
            let len = |stride: usize, rows: usize, row_bytes: usize| if rows == 0 { 0 } else { (rows - 1) * stride + row_bytes };
            (
                std::slice::from_raw_parts(img.planes[0], len(ys, hu, w as usize)),
                std::slice::from_raw_parts(img.planes[1], len(us, hc, w.div_ceil(2) as usize)),
                std::slice::from_raw_parts(img.planes[2], len(vs, hc, w.div_ceil(2) as usize)),
            )
        };
        frame_from_i420((y, ys), (u, us), (v, vs), w, h, self.format, pts)
            .ok_or_else(|| RawError::Corrupt(format!("libvpx returned an inconsistent {w}x{h} image")))
    }
}

/// The VP8 encoder (libvpx): one pass CBR, no lag, real-time deadline, speed -6, no frame
/// dropping, quantizer 2..56, error-resilient, as WebRTC configures it.
pub struct Vp8Encoder {
    ctx: Box<vpx_codec_ctx_t>,
    cfg: Box<vpx_codec_enc_cfg_t>,
    initialised: bool,
    size: (u32, u32),
    config: EncoderConfig,
    keyframe_pending: bool,
    last_pts: Option<Duration>,
    /// (libvpx pts, our pts) of frames given but not yet returned.
    in_flight: VecDeque<(i64, Duration)>,
    scratch: Vec<u8>,
}

// SAFETY: as for the decoder: no thread affinity, used through `&mut self` only. The raw
// pointers inside `vpx_codec_enc_cfg_t` are null (no two-pass stats).
unsafe impl Send for Vp8Encoder {}

impl Vp8Encoder {
    /// An encoder with `config`; the size is taken from the first frame.
    pub fn new(config: &EncoderConfig) -> Result<Vp8Encoder, OpenError> {
        let codec = VideoCodec::Vp8;
        check_rate(codec, config.rate).map_err(|source| OpenError::Rate { codec, source })?;
        // SAFETY: all-zero is the documented "not yet initialised" context.
        let ctx: Box<vpx_codec_ctx_t> = Box::new(unsafe { std::mem::zeroed() });
        // The configuration holds Rust enums without a zero value: libvpx fills it.
        let mut cfg: Box<std::mem::MaybeUninit<vpx_codec_enc_cfg_t>> = Box::new(std::mem::MaybeUninit::uninit());
        // SAFETY: cfg is valid for writing; usage 0 is the only usage VP8 has.
        let err = unsafe { vpx_codec_enc_config_default(vpx_codec_vp8_cx(), cfg.as_mut_ptr(), 0) };
        if err != vpx_codec_err_t::VPX_CODEC_OK {
            return Err(OpenError::Library { codec, library: LIBRARY, detail: format!("no default configuration: {err:?}") });
        }
        // SAFETY: vpx_codec_enc_config_default returned OK, so it wrote every field.
        let cfg = unsafe { cfg.assume_init() };
        Ok(Vp8Encoder {
            ctx,
            cfg,
            initialised: false,
            size: (0, 0),
            config: *config,
            keyframe_pending: false,
            last_pts: None,
            in_flight: VecDeque::new(),
            scratch: Vec::new(),
        })
    }

    fn destroy(&mut self) {
        if self.initialised {
            // SAFETY: initialised contexts are destroyed exactly once.
            unsafe {
                vpx_codec_destroy(&mut *self.ctx);
            }
            self.initialised = false;
        }
    }

    fn init(&mut self, width: u32, height: u32) -> Result<(), String> {
        self.destroy();
        let c = &mut *self.cfg;
        c.g_w = width;
        c.g_h = height;
        c.g_threads = self.config.threads.clamp(1, 16);
        c.g_timebase = vpx_rational { num: 1, den: TICKS_PER_SECOND as c_int };
        c.g_lag_in_frames = 0;
        c.g_pass = vpx_enc_pass::VPX_RC_ONE_PASS;
        c.g_error_resilient = VPX_ERROR_RESILIENT_DEFAULT;
        c.rc_end_usage = vpx_rc_mode::VPX_CBR;
        c.rc_target_bitrate = self.config.rate.bitrate_bps.div_ceil(1000);
        c.rc_min_quantizer = 2;
        c.rc_max_quantizer = 56;
        c.rc_undershoot_pct = 100;
        c.rc_overshoot_pct = 15;
        c.rc_buf_initial_sz = 500;
        c.rc_buf_optimal_sz = 600;
        c.rc_buf_sz = 1000;
        c.rc_dropframe_thresh = 0;
        c.rc_resize_allowed = 0;
        if self.config.keyframe_interval > 0 {
            c.kf_mode = vpx_kf_mode::VPX_KF_AUTO;
            c.kf_min_dist = 0;
            c.kf_max_dist = self.config.keyframe_interval;
        } else {
            c.kf_mode = vpx_kf_mode::VPX_KF_DISABLED;
        }
        // SAFETY: ctx is zeroed or destroyed, cfg is a complete configuration, the ABI version
        // is the one the bindings were generated for.
        let err = unsafe { vpx_codec_enc_init_ver(&mut *self.ctx, vpx_codec_vp8_cx(), &*self.cfg, 0, VPX_ENCODER_ABI_VERSION as c_int) };
        if err != vpx_codec_err_t::VPX_CODEC_OK {
            return Err(error_text(&mut self.ctx, err));
        }
        self.initialised = true;
        self.size = (width, height);
        // Real-time speed and the settings WebRTC uses for camera content.
        let max_intra_pct = (600.0 * 0.5 * self.config.rate.frame_rate / 10.0).max(300.0) as c_uint;
        for (id, value) in [
            (vp8e_enc_control_id::VP8E_SET_CPUUSED, -6),
            (vp8e_enc_control_id::VP8E_SET_NOISE_SENSITIVITY, 0),
            (vp8e_enc_control_id::VP8E_SET_STATIC_THRESHOLD, 1),
            (vp8e_enc_control_id::VP8E_SET_TOKEN_PARTITIONS, 0),
            (vp8e_enc_control_id::VP8E_SET_MAX_INTRA_BITRATE_PCT, max_intra_pct as c_int),
        ] {
            // SAFETY: these controls take an int (`unsigned int` for MAX_INTRA_BITRATE_PCT,
            // same size) by value.
            let err = unsafe { vpx_codec_control_(&mut *self.ctx, id as c_int, value as c_int) };
            if err != vpx_codec_err_t::VPX_CODEC_OK {
                return Err(format!("control {id:?}: {}", error_text(&mut self.ctx, err)));
            }
        }
        Ok(())
    }
}

impl Drop for Vp8Encoder {
    fn drop(&mut self) {
        self.destroy();
    }
}

impl VideoEncoder for Vp8Encoder {
    fn codec(&self) -> VideoCodec {
        VideoCodec::Vp8
    }

    fn backend(&self) -> Backend {
        Backend::Software(LIBRARY)
    }

    fn encode(&mut self, frame: &VideoFrame) -> Result<Vec<EncodedFrame>, EncodeError> {
        let codec = VideoCodec::Vp8;
        check_input(codec, frame, self.last_pts)?;
        let pts = frame.pts;
        let (width, height) = (frame.width, frame.height);
        if width > 16383 || height > 16383 {
            return Err(EncodeError::UnsupportedSize { codec, pts, width, height, why: "VP8 sides are at most 16383" });
        }
        let lib = |detail| EncodeError::Library { codec, library: LIBRARY, pts, detail };
        if !self.initialised || self.size != (width, height) {
            self.init(width, height).map_err(lib)?;
            self.in_flight.clear();
        }
        self.last_pts = Some(pts);
        let planes = as_i420(frame, &mut self.scratch);
        // SAFETY: all-zero is a valid empty vpx_image_t; the fields libvpx reads are set below.
        let mut img: vpx_image_t = unsafe { std::mem::zeroed() };
        img.fmt = vpx_img_fmt::VPX_IMG_FMT_I420;
        img.w = width;
        img.h = height;
        img.d_w = width;
        img.d_h = height;
        img.bit_depth = 8;
        img.bps = 12;
        img.x_chroma_shift = 1;
        img.y_chroma_shift = 1;
        // libvpx only reads through these pointers (the encoder copies the source).
        img.planes = [planes.y.as_ptr().cast_mut(), planes.u.as_ptr().cast_mut(), planes.v.as_ptr().cast_mut(), ptr::null_mut()];
        img.stride = [planes.strides[0] as c_int, planes.strides[1] as c_int, planes.strides[2] as c_int, 0];
        let vpx_pts = ticks(pts);
        let duration = (TICKS_PER_SECOND as f64 / self.config.rate.frame_rate).round().max(1.0) as c_ulong;
        let flags: c_long = if std::mem::take(&mut self.keyframe_pending) { VPX_EFLAG_FORCE_KF as c_long } else { 0 };
        self.in_flight.push_back((vpx_pts, pts));
        // SAFETY: img describes planes of the validated frame (strides and sizes checked by
        // `VideoFrame::validate`), alive for the call; libvpx copies the picture.
        let err = unsafe { vpx_codec_encode(&mut *self.ctx, &img, vpx_pts, duration, flags, VPX_DL_REALTIME as c_ulong) };
        if err != vpx_codec_err_t::VPX_CODEC_OK {
            self.in_flight.pop_back();
            return Err(lib(error_text(&mut self.ctx, err)));
        }
        Ok(self.drain())
    }

    fn request_keyframe(&mut self) {
        self.keyframe_pending = true;
    }

    fn set_rate(&mut self, rate: RateControl) -> Result<(), RateError> {
        let codec = VideoCodec::Vp8;
        check_rate(codec, rate)?;
        self.config.rate = rate;
        self.cfg.rc_target_bitrate = rate.bitrate_bps.div_ceil(1000);
        if self.initialised {
            // SAFETY: the context is initialised and cfg is the complete configuration it
            // was created with, with only the bitrate changed.
            let err = unsafe { vpx_codec_enc_config_set(&mut *self.ctx, &*self.cfg) };
            if err != vpx_codec_err_t::VPX_CODEC_OK {
                return Err(RateError::Library { codec, library: LIBRARY, detail: error_text(&mut self.ctx, err) });
            }
        }
        Ok(())
    }

    fn rate(&self) -> RateControl {
        self.config.rate
    }

    fn flush(&mut self) -> Result<Vec<EncodedFrame>, EncodeError> {
        // No lag: nothing is held back. (Draining again would return the last packets twice:
        // libvpx re-iterates them from a fresh iterator until the next encode call.)
        Ok(Vec::new())
    }
}

impl Vp8Encoder {
    /// Collects the packets libvpx has ready.
    fn drain(&mut self) -> Vec<EncodedFrame> {
        let mut out = Vec::new();
        let mut iter: vpx_codec_iter_t = ptr::null();
        loop {
            // SAFETY: iter starts at null, as libvpx expects; packets live until the next
            // encode call and are copied out before it.
            let pkt = unsafe { vpx_codec_get_cx_data(&mut *self.ctx, &mut iter) };
            if pkt.is_null() {
                break;
            }
            // SAFETY: non-null packets are valid; `frame` is the active union member for
            // VPX_CODEC_CX_FRAME_PKT, and buf holds sz bytes.
            unsafe {
                let pkt = &*pkt;
                if pkt.kind != vpx_codec_cx_pkt_kind::VPX_CODEC_CX_FRAME_PKT {
                    continue;
                }
                let f = pkt.data.frame;
                let data = std::slice::from_raw_parts(f.buf as *const u8, f.sz as usize).to_vec();
                // The pts we gave for this packet: libvpx rescales time stamps internally and
                // may return them a tick off, so take the nearest; earlier entries were dropped.
                let nearest = self.in_flight.iter().enumerate().min_by_key(|(_, (t, _))| (t - f.pts).abs()).map(|(i, _)| i);
                let pts = match nearest {
                    Some(i) => {
                        let (_, p) = self.in_flight[i];
                        self.in_flight.drain(..=i);
                        p
                    }
                    None => Duration::from_micros((f.pts.max(0) as u64) * 1_000_000 / TICKS_PER_SECOND),
                };
                out.push(EncodedFrame { codec: VideoCodec::Vp8, keyframe: f.flags & VPX_FRAME_IS_KEY != 0, data, pts });
            }
        }
        out
    }
}
