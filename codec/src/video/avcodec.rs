//! VP8 and H.264 decoding with FFmpeg's decoders (the system libavcodec, Debian
//! `libavcodec-dev`): the same decoders `ffmpeg` runs, 1.3–2.4× less CPU per frame here than
//! libvpx and openh264 (`benches/results/codec-*.md`). [`super::new_decoder`] prefers them;
//! libvpx and openh264 remain for a libavcodec it does not know.
//!
//! The bindings are declared here, for the handful of calls used. Structures are reached only
//! through their leading fields (`AVFrame`'s data, linesize, width, height, format; `AVPacket`'s
//! data and size), which are the same in libavcodec 58 to 61 (FFmpeg 4.0 to 7.x); other
//! versions are refused at open ([`supported`]). Options go through `av_opt_set*` by name.
//!
//! FFmpeg conceals damage rather than failing: a frame whose reference is missing decodes to a
//! damaged picture. The shared gate (`super::gate`) supplies the rule libvpx needs too: after a
//! reported loss or an error, delta frames are dropped until a keyframe.
#![allow(unsafe_code)]

use std::{
    ffi::{CStr, c_char, c_int, c_uint, c_void},
    ptr,
    time::Duration,
};

use mcu_media::{PixelFormat, VideoFrame};

use super::{
    DecoderOptions, OpenError, VideoCodec,
    gate::{Gated, RawDecoder, RawError, UnitKind, gated_decoder},
    yuv::frame_from_i420,
};

const LIBRARY: &str = "libavcodec";

/// Zeroed bytes FFmpeg's bitstream readers may read past a packet's end.
const INPUT_PADDING: usize = 64;
/// `AVERROR(EAGAIN)`.
const AVERROR_EAGAIN: c_int = -11;
/// `AV_PIX_FMT_YUV420P` and `AV_PIX_FMT_YUVJ420P` (full range, the same layout).
const PIX_FMT_YUV420P: c_int = 0;
const PIX_FMT_YUVJ420P: c_int = 12;

#[repr(C)]
struct AVCodec {
    _opaque: [u8; 0],
}
#[repr(C)]
struct AVCodecContext {
    _opaque: [u8; 0],
}

/// `AVFrame`'s leading fields.
#[repr(C)]
struct AVFrameHead {
    data: [*mut u8; 8],
    linesize: [c_int; 8],
    extended_data: *mut *mut u8,
    width: c_int,
    height: c_int,
    nb_samples: c_int,
    format: c_int,
}

/// `AVPacket`'s leading fields.
#[repr(C)]
struct AVPacketHead {
    buf: *mut c_void,
    pts: i64,
    dts: i64,
    data: *mut u8,
    size: c_int,
}

#[link(name = "avcodec")]
unsafe extern "C" {
    fn avcodec_version() -> c_uint;
    fn avcodec_find_decoder_by_name(name: *const c_char) -> *const AVCodec;
    fn avcodec_alloc_context3(codec: *const AVCodec) -> *mut AVCodecContext;
    fn avcodec_open2(ctx: *mut AVCodecContext, codec: *const AVCodec, options: *mut *mut c_void) -> c_int;
    fn avcodec_free_context(ctx: *mut *mut AVCodecContext);
    fn avcodec_send_packet(ctx: *mut AVCodecContext, pkt: *const AVPacketHead) -> c_int;
    fn avcodec_receive_frame(ctx: *mut AVCodecContext, frame: *mut AVFrameHead) -> c_int;
    fn avcodec_flush_buffers(ctx: *mut AVCodecContext);
    fn av_packet_alloc() -> *mut AVPacketHead;
    fn av_packet_free(pkt: *mut *mut AVPacketHead);
}

#[link(name = "avutil")]
unsafe extern "C" {
    fn avutil_version() -> c_uint;
    fn av_frame_alloc() -> *mut AVFrameHead;
    fn av_frame_free(frame: *mut *mut AVFrameHead);
    fn av_frame_unref(frame: *mut AVFrameHead);
    fn av_opt_set(obj: *mut c_void, name: *const c_char, val: *const c_char, search_flags: c_int) -> c_int;
    fn av_strerror(errnum: c_int, buf: *mut c_char, size: usize) -> c_int;
    fn av_log_set_level(level: c_int);
}

/// `AV_LOG_FATAL`: FFmpeg's own stderr logging is silenced below this; errors reach the
/// caller as `DecodeError`s and the log through tracing.
const AV_LOG_FATAL: c_int = 8;

/// Whether the loaded libavcodec and libavutil are versions whose leading structure fields
/// match the declarations here (libavcodec 58–61, libavutil 56–59), and their versions.
pub fn supported() -> Result<(), String> {
    // SAFETY: version queries without arguments.
    let (codec, util) = unsafe { (avcodec_version() >> 16, avutil_version() >> 16) };
    if (58..=61).contains(&codec) && (56..=59).contains(&util) {
        Ok(())
    } else {
        Err(format!("libavcodec {codec} / libavutil {util} is not a version these bindings know (58–61 / 56–59)"))
    }
}

fn error_text(err: c_int) -> String {
    let mut buf = [0 as c_char; 128];
    // SAFETY: av_strerror writes at most `buf.len()` bytes, NUL-terminated.
    unsafe {
        av_strerror(err, buf.as_mut_ptr(), buf.len());
        CStr::from_ptr(buf.as_ptr()).to_string_lossy().into_owned()
    }
}

/// A libavcodec decoder context with its packet and frame.
struct Context {
    ctx: *mut AVCodecContext,
    packet: *mut AVPacketHead,
    frame: *mut AVFrameHead,
    /// The unit being decoded, then [`INPUT_PADDING`] zeros.
    input: Vec<u8>,
    format: PixelFormat,
}

// SAFETY: an FFmpeg decoder context has no thread affinity; it is used from one thread at a
// time because every use goes through `&mut self`.
unsafe impl Send for Context {}

impl Context {
    fn open(codec: VideoCodec, name: &CStr, options: &DecoderOptions) -> Result<Context, OpenError> {
        let fail = |detail: String| OpenError::Library { codec, library: LIBRARY, detail };
        supported().map_err(fail)?;
        static QUIET: std::sync::Once = std::sync::Once::new();
        // SAFETY: sets a global integer.
        QUIET.call_once(|| unsafe { av_log_set_level(AV_LOG_FATAL) });
        // SAFETY: a NUL-terminated name; the result is null or a static codec description.
        let decoder = unsafe { avcodec_find_decoder_by_name(name.as_ptr()) };
        if decoder.is_null() {
            return Err(fail(format!("this libavcodec has no {name:?} decoder")));
        }
        // SAFETY: allocation calls; every pointer is checked before use and freed in Drop
        // (a `Context` owns them from here on, so an early return frees them).
        let this = unsafe {
            Context { ctx: avcodec_alloc_context3(decoder), packet: av_packet_alloc(), frame: av_frame_alloc(), input: Vec::new(), format: options.format }
        };
        if this.ctx.is_null() || this.packet.is_null() || this.frame.is_null() {
            return Err(fail("out of memory".into()));
        }
        let threads = std::ffi::CString::new(options.threads.max(1).to_string()).expect("digits have no NUL");
        let set = |ctx: *mut AVCodecContext, key: &CStr, value: &CStr| {
            // SAFETY: the context is an AVClass-enabled object; key and value are C strings.
            let err = unsafe { av_opt_set(ctx.cast(), key.as_ptr(), value.as_ptr(), 0) };
            if err < 0 { Err(fail(format!("option {key:?}: {}", error_text(err)))) } else { Ok(()) }
        };
        // Frames out as soon as decoded (no reordering delay: WebRTC streams have no B-frames),
        // on the caller's thread unless asked.
        set(this.ctx, c"flags", c"+low_delay")?;
        // Damage is an error, not a concealed picture: the gate then waits for a keyframe.
        set(this.ctx, c"err_detect", c"+crccheck+bitstream+buffer+explode")?;
        set(this.ctx, c"ec", c"0")?;
        set(this.ctx, c"threads", &threads)?;
        // SAFETY: the context was allocated for this decoder; no options dictionary.
        let err = unsafe { avcodec_open2(this.ctx, decoder, ptr::null_mut()) };
        if err < 0 {
            return Err(fail(format!("open: {}", error_text(err))));
        }
        Ok(this)
    }

    fn decode(&mut self, data: &[u8], pts: Duration) -> Result<Option<VideoFrame>, RawError> {
        let size = c_int::try_from(data.len()).map_err(|_| RawError::Corrupt("unit larger than 2 GiB".into()))?;
        self.input.clear();
        self.input.extend_from_slice(data);
        self.input.resize(data.len() + INPUT_PADDING, 0);
        // SAFETY: the packet holds no buffer of its own (`buf` stays null: the data is not
        // reference-counted, so libavcodec copies what it keeps); data points at `size` bytes
        // followed by the padding its readers may touch, alive during the call.
        let err = unsafe {
            let p = &mut *self.packet;
            p.data = self.input.as_mut_ptr();
            p.size = size;
            p.pts = pts.as_micros().min(i64::MAX as u128) as i64;
            p.dts = p.pts;
            let err = avcodec_send_packet(self.ctx, self.packet);
            p.data = ptr::null_mut();
            p.size = 0;
            err
        };
        if err < 0 && err != AVERROR_EAGAIN {
            return Err(RawError::Corrupt(error_text(err)));
        }
        let mut out = None;
        loop {
            // SAFETY: the frame is ours; receive_frame unrefs it before filling it.
            let err = unsafe { avcodec_receive_frame(self.ctx, self.frame) };
            if err < 0 {
                if err == AVERROR_EAGAIN || out.is_some() {
                    break;
                }
                // End of stream cannot happen (we never send the flush packet): anything else
                // is a decoding error.
                return Err(RawError::Corrupt(error_text(err)));
            }
            let frame = self.copy_frame(pts);
            // SAFETY: the frame was filled by receive_frame; its buffers are released here.
            unsafe { av_frame_unref(self.frame) };
            out = Some(frame?);
        }
        Ok(out)
    }

    fn copy_frame(&self, pts: Duration) -> Result<VideoFrame, RawError> {
        // SAFETY: receive_frame filled the frame; its leading fields are read only.
        let f = unsafe { &*self.frame };
        if f.format != PIX_FMT_YUV420P && f.format != PIX_FMT_YUVJ420P {
            return Err(RawError::Unsupported(format!("libavcodec returned pixel format {}, not 4:2:0 planar", f.format)));
        }
        let (w, h) = (u32::try_from(f.width).unwrap_or(0), u32::try_from(f.height).unwrap_or(0));
        if w == 0 || h == 0 || w as u64 * h as u64 > super::MAX_DECODE_PIXELS {
            return Err(RawError::Unsupported(format!("a {w}x{h} picture, beyond the largest decoded ({} pixels)", super::MAX_DECODE_PIXELS)));
        }
        let (ys, us, vs) = (f.linesize[0], f.linesize[1], f.linesize[2]);
        if ys <= 0 || us <= 0 || vs <= 0 || f.data[..3].iter().any(|p| p.is_null()) {
            return Err(RawError::Corrupt("libavcodec returned a picture without planes".into()));
        }
        let (ys, us, vs) = (ys as usize, us as usize, vs as usize);
        let (hu, hc, cw) = (h as usize, h.div_ceil(2) as usize, w.div_ceil(2) as usize);
        let len = |stride: usize, rows: usize, row_bytes: usize| (rows - 1) * stride + row_bytes;
        // SAFETY: a 4:2:0 planar AVFrame has `height` rows of `linesize[0]` bytes in plane 0 and
        // ceil(height/2) rows of `linesize[1|2]` bytes in planes 1 and 2 (positive linesizes
        // checked above); the slices end at each plane's last visible byte.
        let (y, u, v) = unsafe {
            (
                std::slice::from_raw_parts(f.data[0], len(ys, hu, w as usize)),
                std::slice::from_raw_parts(f.data[1], len(us, hc, cw)),
                std::slice::from_raw_parts(f.data[2], len(vs, hc, cw)),
            )
        };
        frame_from_i420((y, ys), (u, us), (v, vs), w, h, self.format, pts)
            .ok_or_else(|| RawError::Corrupt(format!("libavcodec returned an inconsistent {w}x{h} picture")))
    }

    fn flush(&mut self) {
        // SAFETY: an open context; drops buffered frames and references.
        unsafe { avcodec_flush_buffers(self.ctx) };
    }
}

impl Drop for Context {
    fn drop(&mut self) {
        // SAFETY: each pointer is null or was allocated in `open`; the free functions take null
        // and set the pointer to null.
        unsafe {
            av_frame_free(&mut self.frame);
            av_packet_free(&mut self.packet);
            avcodec_free_context(&mut self.ctx);
        }
    }
}

/// What differs between the codecs a [`RawAv`] decodes.
trait AvCodec: Send + 'static {
    const CODEC: VideoCodec;
    /// libavcodec's decoder name.
    const NAME: &'static CStr;
    fn classify(data: &[u8]) -> UnitKind;
    /// Refuses a unit announcing a picture beyond [`super::MAX_DECODE_PIXELS`], before
    /// libavcodec allocates it.
    fn check_size(data: &[u8]) -> Result<(), RawError>;
}

struct Vp8;
struct H264;

impl AvCodec for Vp8 {
    const CODEC: VideoCodec = VideoCodec::Vp8;
    const NAME: &'static CStr = c"vp8";
    fn classify(data: &[u8]) -> UnitKind {
        if crate::bitstream::vp8_is_keyframe(data) { UnitKind::Key } else { UnitKind::Delta }
    }
    fn check_size(data: &[u8]) -> Result<(), RawError> {
        match crate::bitstream::vp8_keyframe_size(data) {
            Some((w, h)) if w == 0 || h == 0 || w as u64 * h as u64 > super::MAX_DECODE_PIXELS => {
                Err(RawError::Unsupported(format!("the keyframe announces {w}x{h}, beyond the largest picture decoded")))
            }
            _ => Ok(()),
        }
    }
}

impl AvCodec for H264 {
    const CODEC: VideoCodec = VideoCodec::H264;
    const NAME: &'static CStr = c"h264";
    fn classify(data: &[u8]) -> UnitKind {
        super::h264::classify(data)
    }
    fn check_size(data: &[u8]) -> Result<(), RawError> {
        super::h264::check_sps_size(data)
    }
}

/// A libavcodec decoder of codec `C`, behind the shared gate.
struct RawAv<C>(Context, std::marker::PhantomData<C>);

impl<C: AvCodec> RawAv<C> {
    fn open(options: &DecoderOptions) -> Result<Gated<RawAv<C>>, OpenError> {
        Ok(Gated::new(RawAv(Context::open(C::CODEC, C::NAME, options)?, std::marker::PhantomData)))
    }
}

impl<C: AvCodec> RawDecoder for RawAv<C> {
    const CODEC: VideoCodec = C::CODEC;
    const LIBRARY: &'static str = LIBRARY;

    fn classify(data: &[u8]) -> UnitKind {
        C::classify(data)
    }

    fn decode_raw(&mut self, data: &[u8], pts: Duration) -> Result<Option<VideoFrame>, RawError> {
        C::check_size(data)?;
        self.0.decode(data, pts)
    }

    fn reset(&mut self) {
        self.0.flush();
    }
}

/// The VP8 decoder of libavcodec (FFmpeg's `vp8`).
pub struct AvVp8Decoder(Gated<RawAv<Vp8>>);

impl AvVp8Decoder {
    /// A decoder returning frames in `options.format`, with `options.threads` threads.
    pub fn new(options: &DecoderOptions) -> Result<AvVp8Decoder, OpenError> {
        Ok(AvVp8Decoder(RawAv::open(options)?))
    }
}

gated_decoder!(AvVp8Decoder, RawAv<Vp8>);

/// The H.264 decoder of libavcodec (FFmpeg's `h264`). Input: Annex-B access units.
pub struct AvH264Decoder(Gated<RawAv<H264>>);

impl AvH264Decoder {
    /// A decoder returning frames in `options.format`, with `options.threads` threads.
    pub fn new(options: &DecoderOptions) -> Result<AvH264Decoder, OpenError> {
        Ok(AvH264Decoder(RawAv::open(options)?))
    }
}

gated_decoder!(AvH264Decoder, RawAv<H264>);
