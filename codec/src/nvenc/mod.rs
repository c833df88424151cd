//! NVIDIA NVENC: detection at run time, and an encoder (H.264, HEVC, AV1) behind the `nvenc`
//! cargo feature.
//!
//! The feature compiles anywhere: `nvidia-video-codec-sdk` is used for its types only
//! (`ci-check`), and the driver's `libnvidia-encode.so.1` and `libcuda.so.1` are opened at run
//! time with `libloading`. [`probe`] says whether NVENC can be used here and, when not, why
//! (no driver; a driver too old for the SDK's API 12.1; no CUDA device; a GPU without NVENC
//! such as A100/H100/H200). [`crate::EncoderSelector`] turns that into the choice between NVENC
//! and the software encoders, with one log line.

use crate::video::{EncoderConfig, OpenError, VideoCodec, VideoEncoder};

#[cfg(feature = "nvenc")]
mod driver;

/// The driver library NVENC lives in.
pub const ENCODE_LIBRARY: &str = "libnvidia-encode.so.1";
/// The CUDA driver library (NVENC sessions are opened on a CUDA context).
pub const CUDA_LIBRARY: &str = "libcuda.so.1";

/// What [`probe`] found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NvencStatus {
    /// NVENC works on this machine.
    Available(NvencInfo),
    /// NVENC cannot be used; `reason` says why in one sentence.
    Absent {
        /// Why not.
        reason: String,
    },
}

impl NvencStatus {
    /// True when NVENC can encode `codec` here.
    pub fn supports(&self, codec: VideoCodec) -> bool {
        matches!(self, NvencStatus::Available(info) if info.codecs.contains(&codec))
    }
}

/// A GPU with NVENC.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NvencInfo {
    /// The CUDA device's name (e.g. "NVIDIA L4").
    pub device: String,
    /// The highest NVENC API version the driver supports (major, minor).
    pub driver_api: (u32, u32),
    /// Codecs its NVENC encodes (of H.264, HEVC, AV1).
    pub codecs: Vec<VideoCodec>,
}

/// Looks for a usable NVENC: loads the driver libraries, opens a session on CUDA device 0 and
/// lists its codecs. Never panics; takes a few hundred milliseconds when a GPU is present.
pub fn probe() -> NvencStatus {
    #[cfg(feature = "nvenc")]
    {
        driver::probe()
    }
    #[cfg(not(feature = "nvenc"))]
    {
        NvencStatus::Absent { reason: "this build has no NVENC support (cargo feature `nvenc` is off)".into() }
    }
}

/// [`probe`] with other library names or paths (uncached): for tests, and for drivers
/// installed outside the loader's search path.
pub fn probe_libraries(encode_library: &str, cuda_library: &str) -> NvencStatus {
    #[cfg(feature = "nvenc")]
    {
        driver::probe_libraries(encode_library, cuda_library)
    }
    #[cfg(not(feature = "nvenc"))]
    {
        let _ = (encode_library, cuda_library);
        probe()
    }
}

/// A new NVENC encoder for `codec` on CUDA device 0.
pub fn new_encoder(codec: VideoCodec, config: &EncoderConfig) -> Result<Box<dyn VideoEncoder>, OpenError> {
    #[cfg(feature = "nvenc")]
    {
        Ok(Box::new(driver::NvencEncoder::new(codec, config)?))
    }
    #[cfg(not(feature = "nvenc"))]
    {
        let _ = config;
        Err(OpenError::Unsupported { codec, what: "this build has no NVENC support (cargo feature `nvenc` is off)".into() })
    }
}
