//! Codec layer: decoders and encoders between RTP payloads and raw frames.
//!
//! Not yet implemented: this crate is filled by the codec issue (VP8/H.264/AV1 decode and
//! encode, NVENC behind the `nvenc` feature with run-time fallback, Opus and G.711). It depends
//! only on `mcu-media`.
