//! Codec layer: everything between RTP payloads and raw frames, independent of the network.
//!
//! # Model
//!
//! * **Video** ([`video`]). A [`VideoDecoder`] takes one *access unit* at a time (a VP8 frame,
//!   an H.264 Annex-B access unit, an AV1 temporal unit: what the depacketizer reassembles)
//!   with its pts, and returns [`Decoded::Frame`] (an [`mcu_media::VideoFrame`] in the I420 or
//!   NV12 layout [`DecoderOptions::format`] asks for, which is what the compositor takes),
//!   [`Decoded::NoPicture`], or [`Decoded::NeedKeyframe`]. A [`VideoEncoder`] takes frames and
//!   returns [`EncodedFrame`]s (the same kind of units, with a keyframe flag and the frame's
//!   pts); it accepts a keyframe request and a new bitrate and frame rate at run time
//!   ([`VideoEncoder::request_keyframe`], [`VideoEncoder::set_rate`]).
//!   - Decoders: VP8 (libvpx), H.264 (openh264), AV1 (dav1d).
//!   - Encoders: H.264 (openh264, constrained baseline for `packetization-mode=1`), VP8
//!     (libvpx, real-time CBR), AV1 (rav1e, low latency; it holds four frames back), and NVENC
//!     (H.264, HEVC, AV1) behind the `nvenc` cargo feature, loaded at run time.
//!   - [`EncoderSelector::probe`] decides once, at start, between NVENC and software and logs
//!     one line saying which and why; [`select_encoder`] does the same for one stream.
//! * **Audio** ([`audio`]): Opus at 48 kHz (mono/stereo, 10/20 ms, FEC and DTX settable),
//!   G.711 µ-law and A-law, and sample-rate conversion between 8, 16 and 48 kHz.
//! * [`bitstream`]: just enough header parsing of VP8, H.264 and AV1 to tell keyframes and
//!   parameter sets apart without decoding; [`quality`]: Y-PSNR for tests and benchmarks.
//!
//! Everything is synchronous and `Send`: the server puts decoders and encoders on its threads.
//! Codec libraries run on the caller's thread unless [`DecoderOptions::threads`] or
//! [`EncoderConfig::threads`] ask for more.
//!
//! # Time
//!
//! Nothing here reads a clock. Timestamps enter with the data (the pts of frames and of access
//! units) and leave with the results. Rate control derives frame durations from those pts and
//! the frame rate it is told; decoders use pts to notice units that arrive out of order.
//!
//! # Panics
//!
//! Bad input is an error, never a panic: corrupt, truncated, out-of-order or unsupported data
//! gives a [`DecodeError`] or [`Decoded::NeedKeyframe`], and the decoder recovers at the next
//! keyframe; a frame an encoder cannot take gives an [`EncodeError`] and the encoder carries
//! on. Every decoder and parser has a fuzz target (`codec/fuzz/`). A panic means a bug here.
#![deny(missing_docs)]

pub mod audio;
pub mod bitstream;
pub mod nvenc;
pub mod quality;
pub mod video;

pub use video::{
    Backend, DecodeError, Decoded, DecoderOptions, EncodeError, EncodedFrame, EncoderConfig, EncoderPreference, EncoderSelection, EncoderSelector, OpenError,
    RateControl, RateError, VideoCodec, VideoDecoder, VideoEncoder, new_decoder, new_software_encoder, select_encoder,
};
