//! Audio codecs: Opus (WebRTC), G.711 µ-law and A-law (SIP), and sample-rate conversion
//! between the rates they use (8, 16 and 48 kHz).
//!
//! Samples are interleaved `i16` (what Opus and G.711 carry); the mixer converts to float
//! where it needs headroom.

pub mod g711;
pub mod opus;
pub mod resample;

pub use g711::G711Law;
pub use opus::{OpusApplication, OpusChannels, OpusConfig, OpusDecoder, OpusEncoder, OpusFrameDuration};
pub use resample::Resampler;

/// Why an audio encoder, decoder or resampler could not be created.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum AudioOpenError {
    /// A setting out of range.
    #[error("invalid audio configuration: {0}")]
    InvalidConfig(String),
    /// libopus refused.
    #[error("libopus failed to initialise: {0}")]
    Opus(String),
}

/// Why audio was not encoded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum AudioEncodeError {
    /// The input is not one frame long.
    #[error("Opus frame has {got} samples, expected {expected} ({channels} channel(s) × {per_channel})")]
    FrameLength {
        /// Samples given (all channels).
        got: usize,
        /// Samples needed (all channels).
        expected: usize,
        /// Channels.
        channels: usize,
        /// Samples per channel in one frame.
        per_channel: usize,
    },
    /// libopus failed.
    #[error("libopus failed to encode: {0}")]
    Opus(String),
}

/// Why an audio packet was not decoded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum AudioDecodeError {
    /// libopus refused the packet (corrupt or truncated).
    #[error("Opus packet of {len} bytes is invalid: {detail}")]
    Invalid {
        /// Packet length.
        len: usize,
        /// What libopus said.
        detail: String,
    },
    /// The packet decodes to more audio than one packet may hold (120 ms).
    #[error("Opus packet of {len} bytes is longer than 120 ms")]
    TooLong {
        /// Packet length.
        len: usize,
    },
}

/// Why a new encoder setting was refused; the previous one stays in force.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum AudioConfigureError {
    /// A setting out of range.
    #[error("invalid audio setting: {0}")]
    Invalid(String),
    /// libopus refused.
    #[error("libopus refused the setting: {0}")]
    Opus(String),
}
