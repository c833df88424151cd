//! Choosing NVENC or a software encoder, once at start and per stream.

use std::fmt;

use super::{EncoderConfig, OpenError, VideoCodec, VideoEncoder, new_software_encoder};
use crate::nvenc::{self, NvencStatus};

/// What encodes a stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    /// A CPU library (openh264, libvpx, rav1e).
    Software(&'static str),
    /// NVIDIA NVENC.
    Nvenc,
}

impl fmt::Display for Backend {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Backend::Software(lib) => write!(f, "software ({lib})"),
            Backend::Nvenc => f.write_str("NVENC"),
        }
    }
}

/// Which encoders the operator allows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum EncoderPreference {
    /// NVENC where present and able to encode the codec, software otherwise.
    #[default]
    Auto,
    /// Software only (NVENC is not even probed).
    Software,
    /// NVENC only: creating an encoder fails without it.
    Nvenc,
}

/// An encoder and why it was chosen.
pub struct EncoderSelection {
    /// The encoder.
    pub encoder: Box<dyn VideoEncoder>,
    /// What encodes.
    pub backend: Backend,
    /// Why this backend (e.g. "NVENC not available: libnvidia-encode.so.1 could not be loaded").
    pub reason: String,
}

impl fmt::Debug for EncoderSelection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EncoderSelection").field("backend", &self.backend).field("reason", &self.reason).finish_non_exhaustive()
    }
}

/// The result of probing for NVENC once, at start; creates encoders accordingly.
#[derive(Debug, Clone)]
pub struct EncoderSelector {
    preference: EncoderPreference,
    nvenc: NvencStatus,
}

impl EncoderSelector {
    /// Probes for NVENC (unless `preference` is software only) and logs one line saying which
    /// encoders will be used and why.
    pub fn probe(preference: EncoderPreference) -> EncoderSelector {
        let nvenc = match preference {
            EncoderPreference::Software => NvencStatus::Absent { reason: "software encoders were requested".into() },
            _ => nvenc::probe(),
        };
        let selector = EncoderSelector { preference, nvenc };
        match &selector.nvenc {
            NvencStatus::Available(_) => tracing::info!("video encoders: {}", selector.summary()),
            NvencStatus::Absent { .. } if preference == EncoderPreference::Nvenc => tracing::error!("video encoders: {}", selector.summary()),
            NvencStatus::Absent { .. } => tracing::info!("video encoders: {}", selector.summary()),
        }
        selector
    }

    /// A selector from a known probe result (for tests and for servers that probe elsewhere).
    pub fn with_status(preference: EncoderPreference, nvenc: NvencStatus) -> EncoderSelector {
        EncoderSelector { preference, nvenc }
    }

    /// What the probe found.
    pub fn nvenc(&self) -> &NvencStatus {
        &self.nvenc
    }

    /// One sentence: which encoders and why (the text of the start-up log line).
    pub fn summary(&self) -> String {
        match (&self.nvenc, self.preference) {
            (NvencStatus::Available(info), EncoderPreference::Software) => {
                format!("software (openh264, libvpx, rav1e), as requested, although NVENC is present on {}", info.device)
            }
            (NvencStatus::Available(info), _) => {
                let codecs: Vec<String> = info.codecs.iter().map(|c| c.to_string()).collect();
                format!(
                    "NVENC on {} for {} (driver NVENC API {}.{}); software for the rest",
                    info.device,
                    codecs.join(", "),
                    info.driver_api.0,
                    info.driver_api.1
                )
            }
            (NvencStatus::Absent { reason }, EncoderPreference::Nvenc) => format!("none: NVENC was required but is not available: {reason}"),
            (NvencStatus::Absent { reason }, _) => format!("software (openh264, libvpx, rav1e): NVENC not available: {reason}"),
        }
    }

    /// An encoder for `codec`: NVENC when allowed, present and able to encode `codec` (falling
    /// back to software, with a warning, if its session cannot be opened), software otherwise.
    pub fn create(&self, codec: VideoCodec, config: &EncoderConfig) -> Result<EncoderSelection, OpenError> {
        let use_nvenc = self.preference != EncoderPreference::Software && self.nvenc.supports(codec);
        if use_nvenc {
            match nvenc::new_encoder(codec, config) {
                Ok(encoder) => {
                    return Ok(EncoderSelection { encoder, backend: super::Backend::Nvenc, reason: "NVENC is present and encodes this codec".into() });
                }
                Err(e) if self.preference == EncoderPreference::Nvenc => return Err(e),
                Err(e) => {
                    tracing::warn!(%codec, error = %e, "NVENC session failed; encoding this stream in software");
                    let encoder = new_software_encoder(codec, config)?;
                    return Ok(EncoderSelection { backend: encoder.backend(), encoder, reason: format!("NVENC failed for this stream: {e}") });
                }
            }
        }
        let reason = match &self.nvenc {
            _ if self.preference == EncoderPreference::Software => "software encoders were requested".to_string(),
            NvencStatus::Absent { reason } => format!("NVENC not available: {reason}"),
            NvencStatus::Available(info) => format!("NVENC on {} does not encode {codec}", info.device),
        };
        if self.preference == EncoderPreference::Nvenc {
            return Err(OpenError::Unsupported { codec, what: reason });
        }
        let encoder = new_software_encoder(codec, config)?;
        Ok(EncoderSelection { backend: encoder.backend(), encoder, reason })
    }
}

/// Probes for NVENC (logging one line) and creates an encoder for `codec`: NVENC when present,
/// software otherwise, with the reason. A server probes once with [`EncoderSelector::probe`]
/// and calls [`EncoderSelector::create`] per stream instead.
pub fn select_encoder(codec: VideoCodec, config: &EncoderConfig, preference: EncoderPreference) -> Result<EncoderSelection, OpenError> {
    EncoderSelector::probe(preference).create(codec, config)
}
