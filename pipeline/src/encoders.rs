//! What the video engine draws and codes with, as traits: the GPU media plane hands it a GPU
//! compositor, NVDEC and NVENC through these without touching its policy.

use std::{
    collections::HashSet,
    sync::{Arc, Mutex},
};

use mcu_codec::{
    Backend, DecoderOptions, EncoderConfig, EncoderSelector, OpenError, VideoCodec, VideoDecoder, VideoEncoder, new_decoder, new_software_encoder,
};
use mcu_compositor::{Compositor, FrameSet, InputId, RenderError, RenderOutput, Scene, SceneError};
use mcu_media::VideoFrame;

/// Draws a scene's canvases from the inputs' newest frames (a pure function of scene and
/// frames at a pts): [`Compositor`], on the CPU or a GPU.
pub trait Renderer {
    /// Adds an input; false if it was there.
    fn register_input(&mut self, id: InputId) -> bool;
    /// Removes an input and its picture.
    fn unregister_input(&mut self, id: &InputId);
    /// The input shows its placeholder until its next frame.
    fn set_no_video(&mut self, id: &InputId);
    /// The canvases to draw from now on; a refused scene keeps the previous one.
    fn update_scene(&mut self, scene: Scene) -> Result<(), SceneError>;
    /// Draws every canvas of the scene at `frames.pts`.
    fn render(&mut self, frames: FrameSet) -> Result<RenderOutput, RenderError>;
    /// Gives a rendered canvas back to be drawn into again.
    fn recycle(&mut self, canvas: VideoFrame);
}

impl Renderer for Compositor {
    fn register_input(&mut self, id: InputId) -> bool {
        Compositor::register_input(self, id)
    }
    fn unregister_input(&mut self, id: &InputId) {
        Compositor::unregister_input(self, id)
    }
    fn set_no_video(&mut self, id: &InputId) {
        Compositor::set_no_video(self, id)
    }
    fn update_scene(&mut self, scene: Scene) -> Result<(), SceneError> {
        Compositor::update_scene(self, scene)
    }
    fn render(&mut self, frames: FrameSet) -> Result<RenderOutput, RenderError> {
        Compositor::render(self, frames)
    }
    fn recycle(&mut self, canvas: VideoFrame) {
        Compositor::recycle(self, canvas)
    }
}

/// Opens the canvases' encoders.
pub trait EncoderFactory {
    /// An encoder of `codec` with `config`.
    fn video_encoder(&mut self, codec: VideoCodec, config: &EncoderConfig) -> Result<Box<dyn VideoEncoder>, OpenError>;

    /// An encoder it opened on `backend` failed while encoding (a hardware session lost).
    /// True when it will open encoders of another kind from now on (software after NVENC):
    /// the canvas is then reopened at once rather than after the retry delay.
    fn encoder_failed(&mut self, backend: Backend) -> bool {
        let _ = backend;
        false
    }
}

/// Encoders chosen by the process's [`EncoderSelector`] (NVENC where the GPU has it and the
/// codec is one it encodes, software otherwise), for one room. Each reason a stream gets
/// software rather than NVENC is logged once per process (`told`, shared), not once per
/// stream. A hardware encoder that fails mid-stream moves the room to software encoders.
pub struct SelectedEncoders {
    selector: Arc<EncoderSelector>,
    /// NVENC failed in this room: software from now on.
    software: bool,
    told: Arc<Mutex<HashSet<String>>>,
}

impl SelectedEncoders {
    /// A room's encoders from `selector`; `told` is the process's set of reasons logged.
    pub fn new(selector: Arc<EncoderSelector>, told: Arc<Mutex<HashSet<String>>>) -> SelectedEncoders {
        SelectedEncoders { selector, software: false, told }
    }

    /// Whether this room's encoders are software from now on (after an NVENC failure).
    pub fn fell_back(&self) -> bool {
        self.software
    }
}

impl EncoderFactory for SelectedEncoders {
    fn video_encoder(&mut self, codec: VideoCodec, config: &EncoderConfig) -> Result<Box<dyn VideoEncoder>, OpenError> {
        if self.software {
            return new_software_encoder(codec, config);
        }
        let selection = self.selector.create(codec, config)?;
        let told = self.told.lock().map(|mut t| t.insert(format!("{codec}: {}", selection.reason))).unwrap_or(false);
        if told {
            tracing::info!(%codec, backend = %selection.backend, "composite encoders: {}", selection.reason);
        }
        Ok(selection.encoder)
    }

    fn encoder_failed(&mut self, backend: Backend) -> bool {
        if backend == Backend::Nvenc && !self.software {
            self.software = true;
            return true;
        }
        false
    }
}

/// Opens the inputs' decoders.
pub trait DecoderFactory {
    /// A decoder of `codec`.
    fn video_decoder(&mut self, codec: VideoCodec, options: &DecoderOptions) -> Result<Box<dyn VideoDecoder>, OpenError>;
}

/// The codec crate's software encoders and its decoders (libavcodec first).
#[derive(Debug, Clone, Copy, Default)]
pub struct SoftwareCodecs;

impl EncoderFactory for SoftwareCodecs {
    fn video_encoder(&mut self, codec: VideoCodec, config: &EncoderConfig) -> Result<Box<dyn VideoEncoder>, OpenError> {
        new_software_encoder(codec, config)
    }
}

impl DecoderFactory for SoftwareCodecs {
    fn video_decoder(&mut self, codec: VideoCodec, options: &DecoderOptions) -> Result<Box<dyn VideoDecoder>, OpenError> {
        new_decoder(codec, options)
    }
}
