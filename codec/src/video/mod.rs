//! Video decoders and encoders behind two traits, and the choice between NVENC and software.

use std::{fmt, time::Duration};

use mcu_media::{FrameError, PixelFormat, VideoFrame};

mod av1;
mod avcodec;
mod gate;
mod h264;
mod select;
mod vpx;
mod yuv;

pub use av1::{Av1Decoder, Av1Encoder};
pub use avcodec::{AvH264Decoder, AvVp8Decoder};
pub use h264::{H264Decoder, H264Encoder};
pub use select::{Backend, EncoderPreference, EncoderSelection, EncoderSelector, select_encoder};
pub use vpx::{Vp8Decoder, Vp8Encoder};

/// A video codec.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum VideoCodec {
    /// VP8 (RFC 6386).
    Vp8,
    /// H.264 / AVC, Annex-B byte stream.
    H264,
    /// H.265 / HEVC, Annex-B byte stream (NVENC only).
    Hevc,
    /// AV1, low-overhead OBU format (one temporal unit per access unit).
    Av1,
}

impl fmt::Display for VideoCodec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            VideoCodec::Vp8 => "VP8",
            VideoCodec::H264 => "H.264",
            VideoCodec::Hevc => "HEVC",
            VideoCodec::Av1 => "AV1",
        })
    }
}

/// What a decoder made of one access unit.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum Decoded {
    /// A picture, with the pts of the access unit that produced it.
    Frame(VideoFrame),
    /// Accepted, but no picture came out (parameter sets only, or a frame that is not shown).
    NoPicture,
    /// Dropped without decoding: the decoder has no usable reference (start of stream, after
    /// an error or a reported loss) and waits for a keyframe. Ask the sender for one (PLI/FIR).
    NeedKeyframe,
}

/// Largest picture a decoder accepts (4096×2304, H.264 level 5.2's largest frame): a bitstream
/// announcing more is refused before the codec library allocates it.
pub const MAX_DECODE_PIXELS: u64 = 4096 * 2304;

/// Settings of a decoder.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DecoderOptions {
    /// The layout of the frames it returns.
    pub format: PixelFormat,
    /// Decoder threads (1 = decode on the caller's thread only).
    pub threads: u32,
}

impl Default for DecoderOptions {
    fn default() -> Self {
        DecoderOptions { format: PixelFormat::I420, threads: 1 }
    }
}

/// Why an access unit was not decoded. After any of these except [`DecodeError::Empty`] and
/// [`DecodeError::Duplicate`] the decoder waits for a keyframe ([`VideoDecoder::needs_keyframe`]).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum DecodeError {
    /// The access unit has no bytes.
    #[error("{codec} access unit at pts {pts:?} is empty")]
    Empty {
        /// The decoder's codec.
        codec: VideoCodec,
        /// The unit's pts.
        pts: Duration,
    },
    /// The codec library refused the data (corrupt, truncated, missing reference).
    #[error("{codec} access unit at pts {pts:?} ({len} bytes) is corrupt: {detail}")]
    Corrupt {
        /// The decoder's codec.
        codec: VideoCodec,
        /// The unit's pts.
        pts: Duration,
        /// Its length.
        len: usize,
        /// What the library said.
        detail: String,
    },
    /// The pts is older than one already decoded: the unit arrived too late, and the frames
    /// decoded since lacked it as a reference.
    #[error("{codec} access unit at pts {pts:?} arrived after pts {last:?} was decoded")]
    OutOfOrder {
        /// The decoder's codec.
        codec: VideoCodec,
        /// The unit's pts.
        pts: Duration,
        /// The newest pts decoded.
        last: Duration,
    },
    /// The same pts again (a retransmitted duplicate); ignored.
    #[error("{codec} access unit at pts {pts:?} was already decoded")]
    Duplicate {
        /// The decoder's codec.
        codec: VideoCodec,
        /// The unit's pts.
        pts: Duration,
    },
    /// A valid stream we cannot output (e.g. 10-bit or 4:4:4).
    #[error("{codec} access unit at pts {pts:?} is not supported: {detail}")]
    Unsupported {
        /// The decoder's codec.
        codec: VideoCodec,
        /// The unit's pts.
        pts: Duration,
        /// What is unsupported.
        detail: String,
    },
}

/// A decoder of one video stream.
pub trait VideoDecoder: Send {
    /// The codec it decodes.
    fn codec(&self) -> VideoCodec;
    /// The codec library decoding ("libavcodec", "libvpx", "openh264", "dav1d").
    fn library(&self) -> &'static str;
    /// Decodes one access unit presented at `pts` (which must increase from unit to unit).
    fn decode(&mut self, data: &[u8], pts: Duration) -> Result<Decoded, DecodeError>;
    /// True while the decoder waits for a keyframe (at the start, after an error or a loss):
    /// the caller should ask the sender for one.
    fn needs_keyframe(&self) -> bool;
    /// Tells the decoder that access units were lost before the next one (an RTP sequence
    /// gap the jitter buffer gave up on): it drops delta frames until the next keyframe.
    fn report_loss(&mut self);
}

/// A new software decoder for `codec`: FFmpeg's (libavcodec) for VP8 and H.264 where the
/// system's libavcodec is a version the bindings know, else libvpx and openh264 (said once in
/// the log); dav1d for AV1.
pub fn new_decoder(codec: VideoCodec, options: &DecoderOptions) -> Result<Box<dyn VideoDecoder>, OpenError> {
    static FALLBACK_LOGGED: std::sync::Once = std::sync::Once::new();
    let fallback = |e: OpenError| {
        FALLBACK_LOGGED.call_once(|| tracing::warn!("libavcodec decoders unavailable ({e}); decoding VP8 with libvpx and H.264 with openh264"));
    };
    Ok(match codec {
        VideoCodec::Vp8 => match AvVp8Decoder::new(options) {
            Ok(d) => Box::new(d),
            Err(e) => {
                fallback(e);
                Box::new(Vp8Decoder::new(options)?)
            }
        },
        VideoCodec::H264 => match AvH264Decoder::new(options) {
            Ok(d) => Box::new(d),
            Err(e) => {
                fallback(e);
                Box::new(H264Decoder::new(options)?)
            }
        },
        VideoCodec::Av1 => Box::new(Av1Decoder::new(options)?),
        VideoCodec::Hevc => return Err(OpenError::Unsupported { codec, what: "no HEVC decoder is built in".into() }),
    })
}

/// One encoded access unit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EncodedFrame {
    /// Its codec.
    pub codec: VideoCodec,
    /// The bitstream: a VP8 frame, an H.264/HEVC Annex-B access unit (parameter sets before
    /// every keyframe), an AV1 temporal unit (sequence header before every keyframe).
    pub data: Vec<u8>,
    /// The pts of the frame it encodes.
    pub pts: Duration,
    /// True for a keyframe (VP8 key frame, H.264/HEVC IDR, AV1 key frame): decodable alone.
    pub keyframe: bool,
}

/// Target bitrate and frame rate.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RateControl {
    /// Target bits per second.
    pub bitrate_bps: u32,
    /// Frames per second the encoder should plan for.
    pub frame_rate: f64,
}

/// Settings of an encoder.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct EncoderConfig {
    /// Initial bitrate and frame rate.
    pub rate: RateControl,
    /// A keyframe every this many frames; 0 = only the first frame and on request.
    pub keyframe_interval: u32,
    /// Encoder threads (1 = encode on the caller's thread only).
    pub threads: u32,
    /// H.264: the largest NAL unit in bytes (size-limited slices), for receivers that take only
    /// single NAL unit packets (packetization-mode 0, as many SIP phones). `None`: one slice per
    /// picture. Other codecs ignore it.
    pub max_nal_size: Option<u32>,
}

impl EncoderConfig {
    /// A real-time configuration at `bitrate_bps` and `frame_rate`, keyframes on request.
    pub fn realtime(bitrate_bps: u32, frame_rate: f64) -> EncoderConfig {
        EncoderConfig { rate: RateControl { bitrate_bps, frame_rate }, keyframe_interval: 0, threads: 1, max_nal_size: None }
    }
}

/// Lowest and highest bitrate an encoder accepts (bps).
pub const BITRATE_RANGE: (u32, u32) = (10_000, 200_000_000);
/// Lowest and highest frame rate an encoder accepts.
pub const FRAME_RATE_RANGE: (f64, f64) = (1.0, 240.0);

pub(crate) fn check_rate(codec: VideoCodec, rate: RateControl) -> Result<(), RateError> {
    if !(BITRATE_RANGE.0..=BITRATE_RANGE.1).contains(&rate.bitrate_bps) {
        return Err(RateError::Bitrate { codec, bitrate_bps: rate.bitrate_bps });
    }
    if !(FRAME_RATE_RANGE.0..=FRAME_RATE_RANGE.1).contains(&rate.frame_rate) {
        return Err(RateError::FrameRate { codec, frame_rate: rate.frame_rate });
    }
    Ok(())
}

/// Why an encoder or decoder could not be created.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum OpenError {
    /// This build or this machine has no implementation.
    #[error("{codec}: unsupported: {what}")]
    Unsupported {
        /// The codec asked for.
        codec: VideoCodec,
        /// Why.
        what: String,
    },
    /// The configuration is out of range.
    #[error("{codec}: invalid configuration: {source}")]
    Rate {
        /// The codec asked for.
        codec: VideoCodec,
        /// What is wrong.
        source: RateError,
    },
    /// The codec library failed to initialise.
    #[error("{codec}: {library} failed to initialise: {detail}")]
    Library {
        /// The codec asked for.
        codec: VideoCodec,
        /// Which library.
        library: &'static str,
        /// What it said.
        detail: String,
    },
}

/// Why a frame was not encoded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum EncodeError {
    /// The frame's planes do not hold its stated size.
    #[error("{codec}: frame at pts {pts:?} is invalid: {source}")]
    InvalidFrame {
        /// The encoder's codec.
        codec: VideoCodec,
        /// The frame's pts.
        pts: Duration,
        /// What is wrong.
        source: FrameError,
    },
    /// The codec cannot encode this size.
    #[error("{codec}: cannot encode a {width}x{height} frame (pts {pts:?}): {why}")]
    UnsupportedSize {
        /// The encoder's codec.
        codec: VideoCodec,
        /// The frame's pts.
        pts: Duration,
        /// Its width.
        width: u32,
        /// Its height.
        height: u32,
        /// Why.
        why: &'static str,
    },
    /// The pts did not increase.
    #[error("{codec}: frame at pts {pts:?} does not follow pts {last:?}")]
    NonIncreasingPts {
        /// The encoder's codec.
        codec: VideoCodec,
        /// The frame's pts.
        pts: Duration,
        /// The previous frame's pts.
        last: Duration,
    },
    /// The codec library failed.
    #[error("{codec}: {library} failed on the frame at pts {pts:?}: {detail}")]
    Library {
        /// The encoder's codec.
        codec: VideoCodec,
        /// Which library.
        library: &'static str,
        /// The frame's pts.
        pts: Duration,
        /// What it said.
        detail: String,
    },
}

/// Why a new bitrate or frame rate was refused; the previous one stays in force.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum RateError {
    /// Bitrate outside [`BITRATE_RANGE`].
    #[error("{codec}: bitrate {bitrate_bps} bps is outside {}..={} bps", BITRATE_RANGE.0, BITRATE_RANGE.1)]
    Bitrate {
        /// The encoder's codec.
        codec: VideoCodec,
        /// The refused bitrate.
        bitrate_bps: u32,
    },
    /// Frame rate outside [`FRAME_RATE_RANGE`].
    #[error("{codec}: frame rate {frame_rate} is outside {}..={}", FRAME_RATE_RANGE.0, FRAME_RATE_RANGE.1)]
    FrameRate {
        /// The encoder's codec.
        codec: VideoCodec,
        /// The refused frame rate.
        frame_rate: f64,
    },
    /// The codec library refused the change.
    #[error("{codec}: {library} refused the new rate: {detail}")]
    Library {
        /// The encoder's codec.
        codec: VideoCodec,
        /// Which library.
        library: &'static str,
        /// What it said.
        detail: String,
    },
}

/// An encoder of one video stream.
pub trait VideoEncoder: Send {
    /// The codec it produces.
    fn codec(&self) -> VideoCodec;
    /// What encodes (software library or NVENC).
    fn backend(&self) -> Backend;
    /// Encodes one frame (pts must increase). Returns the units that are ready: the frame just
    /// given (H.264, VP8, NVENC), or one given earlier (rav1e holds four frames).
    /// A frame size change restarts the stream with a keyframe.
    fn encode(&mut self, frame: &VideoFrame) -> Result<Vec<EncodedFrame>, EncodeError>;
    /// The next frame given to [`VideoEncoder::encode`] is encoded as a keyframe.
    fn request_keyframe(&mut self);
    /// Changes the target bitrate and frame rate from the next frame on.
    fn set_rate(&mut self, rate: RateControl) -> Result<(), RateError>;
    /// The rate in force.
    fn rate(&self) -> RateControl;
    /// Returns the units still held back (lookahead); the encoder stays usable.
    fn flush(&mut self) -> Result<Vec<EncodedFrame>, EncodeError>;
}

/// A new software encoder for `codec` (openh264, libvpx or rav1e).
pub fn new_software_encoder(codec: VideoCodec, config: &EncoderConfig) -> Result<Box<dyn VideoEncoder>, OpenError> {
    Ok(match codec {
        VideoCodec::Vp8 => Box::new(Vp8Encoder::new(config)?),
        VideoCodec::H264 => Box::new(H264Encoder::new(config)?),
        VideoCodec::Av1 => Box::new(Av1Encoder::new(config)?),
        VideoCodec::Hevc => return Err(OpenError::Unsupported { codec, what: "HEVC is encoded by NVENC only; no software HEVC encoder is built in".into() }),
    })
}

/// Common checks on an encoder's input: valid planes, increasing pts.
pub(crate) fn check_input(codec: VideoCodec, frame: &VideoFrame, last_pts: Option<Duration>) -> Result<(), EncodeError> {
    frame.validate().map_err(|source| EncodeError::InvalidFrame { codec, pts: frame.pts, source })?;
    match last_pts {
        Some(last) if frame.pts <= last => Err(EncodeError::NonIncreasingPts { codec, pts: frame.pts, last }),
        _ => Ok(()),
    }
}
