//! The policy every decoder shares: pts order, waiting for a keyframe, recovery.
//!
//! The codec libraries differ in what they notice. libvpx and dav1d decode a delta frame whose
//! reference was lost without complaint (and show garbage); openh264 notices frame-number gaps.
//! So the gate keeps the rule in one place: at the start, after any error and after a reported
//! loss, delta frames are dropped (`NeedKeyframe`) until a keyframe decodes.

use std::time::Duration;

use super::{DecodeError, Decoded, VideoCodec};
use mcu_media::VideoFrame;

/// What an access unit is, judged from its headers only.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum UnitKind {
    /// Decodable alone.
    Key,
    /// Needs earlier frames.
    Delta,
    /// Configuration only (H.264 SPS/PPS): always fed to the decoder, never a picture.
    ParameterSets,
}

/// A codec library wrapped to decode one unit into at most one frame.
pub(crate) trait RawDecoder: Send {
    const CODEC: VideoCodec;
    /// The codec library, for logs and reports.
    const LIBRARY: &'static str;
    /// Classifies a unit from its headers.
    fn classify(data: &[u8]) -> UnitKind;
    /// Decodes; `Err(detail)` when the library refuses the data or reports corruption.
    fn decode_raw(&mut self, data: &[u8], pts: Duration) -> Result<Option<VideoFrame>, RawError>;
    /// Called after an error, before waiting for a keyframe (drop buffered state).
    fn reset(&mut self) {}
}

/// An error from a codec library.
pub(crate) enum RawError {
    /// Corrupt or undecodable data.
    Corrupt(String),
    /// Valid but not supported by us.
    Unsupported(String),
}

/// A [`RawDecoder`] behind the shared policy.
pub(crate) struct Gated<R> {
    raw: R,
    waiting: bool,
    last_pts: Option<Duration>,
}

impl<R: RawDecoder> Gated<R> {
    pub(crate) fn new(raw: R) -> Self {
        Gated { raw, waiting: true, last_pts: None }
    }

    pub(crate) fn decode(&mut self, data: &[u8], pts: Duration) -> Result<Decoded, DecodeError> {
        let codec = R::CODEC;
        if data.is_empty() {
            return Err(DecodeError::Empty { codec, pts });
        }
        let kind = R::classify(data);
        // Parameter sets carry no picture and may share a pts with a neighbour: no order checks.
        if let (Some(last), true) = (self.last_pts, kind != UnitKind::ParameterSets) {
            if pts == last {
                return Err(DecodeError::Duplicate { codec, pts });
            }
            if pts < last {
                self.enter_waiting(pts, "out-of-order unit");
                return Err(DecodeError::OutOfOrder { codec, pts, last });
            }
        }
        if self.waiting && kind == UnitKind::Delta {
            self.last_pts = Some(pts);
            return Ok(Decoded::NeedKeyframe);
        }
        if kind != UnitKind::ParameterSets {
            self.last_pts = Some(pts);
        }
        match self.raw.decode_raw(data, pts) {
            Ok(frame) => {
                if kind == UnitKind::Key && self.waiting {
                    tracing::debug!(%codec, ?pts, "keyframe decoded, decoder recovered");
                    self.waiting = false;
                }
                Ok(match frame {
                    Some(f) => Decoded::Frame(f),
                    None => Decoded::NoPicture,
                })
            }
            Err(RawError::Corrupt(detail)) => {
                self.enter_waiting(pts, &detail);
                Err(DecodeError::Corrupt { codec, pts, len: data.len(), detail })
            }
            Err(RawError::Unsupported(detail)) => {
                self.enter_waiting(pts, &detail);
                Err(DecodeError::Unsupported { codec, pts, detail })
            }
        }
    }

    pub(crate) fn needs_keyframe(&self) -> bool {
        self.waiting
    }

    pub(crate) fn report_loss(&mut self) {
        self.enter_waiting(self.last_pts.unwrap_or_default(), "loss reported");
    }

    fn enter_waiting(&mut self, pts: Duration, why: &str) {
        if !self.waiting {
            tracing::debug!(codec = %R::CODEC, ?pts, why, "decoder waits for a keyframe");
        }
        self.waiting = true;
        self.raw.reset();
    }
}

/// Implements [`super::VideoDecoder`] for `$ty`, a newtype around `Gated<$raw>`.
macro_rules! gated_decoder {
    ($ty:ty, $raw:ty) => {
        impl $crate::video::VideoDecoder for $ty {
            fn codec(&self) -> $crate::video::VideoCodec {
                <$raw as $crate::video::gate::RawDecoder>::CODEC
            }
            fn library(&self) -> &'static str {
                <$raw as $crate::video::gate::RawDecoder>::LIBRARY
            }
            fn decode(&mut self, data: &[u8], pts: std::time::Duration) -> Result<$crate::video::Decoded, $crate::video::DecodeError> {
                self.0.decode(data, pts)
            }
            fn needs_keyframe(&self) -> bool {
                self.0.needs_keyframe()
            }
            fn report_loss(&mut self) {
                self.0.report_loss()
            }
        }
    };
}
pub(crate) use gated_decoder;
