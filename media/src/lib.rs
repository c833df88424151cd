//! Raw media shared by every stage of the pipeline.
//!
//! * [`VideoFrame`]: planar YUV 4:2:0 frames (I420 or NV12) with a presentation timestamp, the
//!   currency between decoders, the compositor and encoders.
//! * [`color`]: BT.601 limited-range conversion between RGB and Y'CbCr, used for fills, goldens
//!   and PNG output.
//! * [`testsrc`]: deterministic synthetic frames (colours, gradients, digits) for tests,
//!   benchmarks and the demo.
//! * [`image`]: PNG reading and writing of RGBA images, for goldens and the demo.
//!
//! Time: timestamps are [`std::time::Duration`] since the stream's origin; nothing here reads a
//! clock. Panics: constructors return [`FrameError`] for inconsistent input; panics mean a bug.
#![deny(missing_docs)]

pub mod color;
pub mod frame;
pub mod image;
pub mod testsrc;

pub use color::{Rgb, Yuv};
pub use frame::{FrameError, PixelFormat, Plane, VideoFrame};
