//! The video compositor: layouts as data, rendered into the Y'CbCr canvases encoders consume.
//!
//! Model (after smelter's renderer): the compositor is a pure function of the scene and the
//! input frames at a pts. [`Compositor::update_scene`] replaces the scene (validated first: a
//! bad scene is an error and the previous one keeps rendering); [`Compositor::render`] takes the
//! frames that arrived since the last call and a pts, and returns every canvas at that pts.
//! Inputs keep their last frame until a new one arrives; transitions are state carried between
//! renders and driven by pts alone. Nothing here reads a clock or touches the network.
//!
//! Paths: [`layout`] turns the scene into tile geometry (pure, shared). Two renderers draw it
//! with the same semantics and pass the same goldens: the wgpu path (instanced quads, one pass
//! per plane, on the shared [`Gpu`]) and the CPU path (SIMD plane scaling in bands over a rayon
//! pool), which [`Compositor::select`] picks when the only adapter is a software rasterizer.
//!
//! Panics: none on input. Bad frames are rejected per input ([`RenderOutput::rejected`]) and the
//! input keeps its previous picture; GPU validation failures surface as [`RenderError`].
#![deny(missing_docs)]

mod cpu;
pub mod layout;
mod libyuv;
pub mod policy;
mod render;
pub mod scene;

use std::{collections::HashMap, sync::Arc, time::Duration};

use mcu_media::{FrameError, PixelFormat, VideoFrame, Yuv};

pub use layout::{LayoutError, RectF, TileGeom};
pub use mcu_gpu as gpu;
pub use mcu_gpu::{AdapterChoice, AdapterKind, Gpu, GpuError};
pub use policy::{CustomSlot, RoomLayout, RoomLayoutKind};
pub use render::CanvasTextures;
pub use scene::*;

/// Source code of every WGSL shader, by file name, for validation and tooling.
pub const SHADERS: &[(&str, &str)] = &[("tile_blend.wgsl", render::tile_blend::SOURCE)];

/// Which renderer draws the canvases.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum RenderPath {
    /// The GPU path on a hardware adapter; the CPU path when the only adapter is a software
    /// rasterizer (lavapipe, llvmpipe, WARP) or there is none.
    #[default]
    Auto,
    /// Always wgpu (on whatever adapter was chosen, software included).
    Gpu,
    /// Always the CPU path.
    Cpu,
}

impl std::str::FromStr for RenderPath {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.to_ascii_lowercase().as_str() {
            "auto" => Ok(RenderPath::Auto),
            "gpu" | "wgpu" => Ok(RenderPath::Gpu),
            "cpu" => Ok(RenderPath::Cpu),
            _ => Err(format!("unknown render path {s:?}: use auto, gpu or cpu")),
        }
    }
}

impl std::fmt::Display for RenderPath {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            RenderPath::Auto => "auto",
            RenderPath::Gpu => "gpu",
            RenderPath::Cpu => "cpu",
        })
    }
}

/// The GPU path was asked for and there is no adapter.
#[derive(Debug, thiserror::Error)]
#[error("the GPU render path was forced but no adapter is available: {0}")]
pub struct NoGpu(pub String);

/// Why a scene was refused (the previous scene stays in force).
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum SceneError {
    /// The layout cannot be placed.
    #[error(transparent)]
    Layout(#[from] LayoutError),
    /// Two canvases with one id.
    #[error("canvas \"{0}\" appears twice in the scene")]
    DuplicateCanvas(String),
    /// A tile names an input that was never registered.
    #[error("canvas \"{canvas}\": unknown input \"{input}\"")]
    UnknownInput {
        /// The canvas.
        canvas: String,
        /// The input named.
        input: String,
    },
}

/// Why a frame was not taken.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum InputError {
    /// The frame's planes do not hold its stated size.
    #[error("input \"{input}\": {source}")]
    BadFrame {
        /// The input.
        input: String,
        /// What is wrong with the frame.
        source: FrameError,
    },
    /// A frame for an input that is not registered.
    #[error("frame for unknown input \"{0}\"")]
    UnknownInput(String),
}

/// Rendering failed as a whole (a GPU fault); the scene and inputs are kept.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum RenderError {
    /// The GPU refused our commands or lost the device.
    #[error("GPU error: {0}")]
    Gpu(String),
    /// Canvases can stay in GPU memory only on the GPU path.
    #[error("the CPU render path has no GPU textures to leave canvases in")]
    NotOnGpu,
}

/// New input frames and the pts to render at.
#[derive(Debug, Clone, Default)]
pub struct FrameSet {
    /// Output pts; transitions advance by it.
    pub pts: Duration,
    /// Frames that arrived since the last render (inputs without one keep their last).
    pub frames: Vec<(InputId, VideoFrame)>,
}

/// The canvases at one pts.
#[derive(Debug, Clone)]
pub struct RenderOutput {
    /// The pts rendered.
    pub pts: Duration,
    /// Every canvas of the scene, in scene order.
    pub canvases: Vec<(CanvasId, VideoFrame)>,
    /// Frames that were refused; their inputs kept their previous picture.
    pub rejected: Vec<InputError>,
}

/// A tile ready to draw: geometry, picture placement and colours resolved.
#[derive(Debug, Clone, PartialEq)]
pub struct DrawTile {
    /// The input whose picture is shown when `video`.
    pub input: InputId,
    /// Outer rectangle, canvas px.
    pub rect: RectF,
    /// Where the picture goes, canvas px.
    pub content: RectF,
    /// Part of the picture shown, normalised source coordinates `[u0, v0, u1, v1]`.
    pub crop: [f32; 4],
    /// Corner radius, canvas px.
    pub radius: f32,
    /// Border width, canvas px.
    pub border: f32,
    /// 0..=1.
    pub opacity: f32,
    /// Letterbox or placeholder colour.
    pub background: Yuv,
    /// Border colour.
    pub border_color: Yuv,
    /// Whether the input's picture is drawn (else the tile is a placeholder).
    pub video: bool,
}

impl DrawTile {
    /// Whether the tile is an opaque rectangle entirely filled by its picture (given `video`),
    /// so that it can be drawn without blending.
    pub fn is_opaque_picture(&self) -> bool {
        self.radius <= 0.0 && self.border <= 0.0 && self.opacity >= 1.0 && self.content == self.rect
    }

    /// Where a plane of this tile's `width × height` picture is sampled, per axis: the source
    /// position (in that plane's pixels, pixel `i` spanning `[i, i + 1)`) shown at a canvas
    /// position. `plane_scale` is canvas px per plane px: 1 for luma, 2 for chroma. Both render
    /// paths sample through this map, bilinearly, clamped at the picture's edges.
    ///
    /// Shrinking (or keeping the size) along an axis maps the content rectangle's edges on the
    /// crop's edges (pixel centres on their share of the source), and so does enlarging by
    /// exactly 2 (each source pixel becomes two). Other enlargements map the first and last
    /// pixel centres of the content on the first and last source pixel centres of the crop.
    /// These are libyuv's rules (the CPU path scales with libyuv; Chromium enlarges so too); the
    /// enlarging rule differs from edge-to-edge mapping by at most `(1 − 1/factor)/2` source px.
    pub(crate) fn sample_map(&self, width: u32, height: u32, plane_scale: f64) -> [AxisMap; 2] {
        let s = plane_scale;
        let axis = |crop0: f32, crop1: f32, size: u32, c0: f32, c1: f32| {
            // Source span S and its start (plane px); content span D (plane px).
            let n = size as f64 / s;
            let (start, span) = (crop0 as f64 * n, (crop1 - crop0) as f64 * n);
            let (c0, d) = (c0 as f64, (c1 - c0) as f64 / s);
            if span < d && span >= 1.0 && d > 1.0 && (d - 2.0 * span).abs() > 1e-4 * d {
                let r = (span - 1.0) / (d - 1.0);
                AxisMap { k: r / s, o: start + 0.5 - 0.5 * r - c0 * r / s, edges: true }
            } else {
                let k = span / d / s;
                AxisMap { k, o: start - c0 * k, edges: false }
            }
        };
        [axis(self.crop[0], self.crop[2], width, self.content.x0, self.content.x1), axis(self.crop[1], self.crop[3], height, self.content.y0, self.content.y1)]
    }
}

#[cfg(test)]
impl DrawTile {
    /// An opaque picture tile of input "a" filling `content`, for unit tests.
    pub(crate) fn opaque_for_tests(content: RectF, crop: [f32; 4]) -> DrawTile {
        DrawTile {
            input: InputId::new("a"),
            rect: content,
            content,
            crop,
            radius: 0.0,
            border: 0.0,
            opacity: 1.0,
            background: mcu_media::Rgb::BLACK.to_yuv(),
            border_color: mcu_media::Rgb::BLACK.to_yuv(),
            video: true,
        }
    }
}

/// One axis of [`DrawTile::sample_map`]: source position `o + k · canvas position`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct AxisMap {
    pub k: f64,
    pub o: f64,
    /// Whether the axis enlarges by the first-and-last rule (false: pixel centres on their
    /// share, which shrinking and enlarging by exactly 2 use).
    pub edges: bool,
}

impl AxisMap {
    /// Whether the axis enlarges: less than one source pixel per plane pixel.
    pub fn enlarges(&self, plane_scale: f64) -> bool {
        self.k * plane_scale < 1.0
    }
}

/// A canvas ready to draw.
#[derive(Debug, Clone, PartialEq)]
pub struct DrawCanvas {
    /// Which canvas.
    pub id: CanvasId,
    /// Width.
    pub width: u32,
    /// Height.
    pub height: u32,
    /// Output layout.
    pub format: PixelFormat,
    /// Where no tile is.
    pub background: Yuv,
    /// Tiles in drawing order.
    pub tiles: Vec<DrawTile>,
    /// The pts drawn.
    pub pts: Duration,
}

#[derive(Debug, Default)]
struct InputState {
    /// Size of the last accepted frame.
    size: Option<(u32, u32)>,
    /// Whether the input currently has live video (else its placeholder shows).
    live: bool,
}

struct CanvasState {
    spec: CanvasSpec,
    target: Vec<TileGeom>,
    /// A transition in progress: where it started, and at which pts (set at the first render).
    from: Option<(Vec<TileGeom>, Option<Duration>)>,
    /// What the last render drew, the origin of the next transition.
    shown: Vec<TileGeom>,
}

enum Renderer {
    Gpu(render::GpuRenderer),
    Cpu(cpu::CpuRenderer),
}

/// Renders a [`Scene`] of canvases from input frames.
pub struct Compositor {
    renderer: Renderer,
    inputs: HashMap<InputId, InputState>,
    canvases: Vec<CanvasState>,
}

impl Compositor {
    /// A compositor drawing with wgpu on `gpu`.
    pub fn new(gpu: Arc<Gpu>) -> Compositor {
        Compositor::with(Renderer::Gpu(render::GpuRenderer::new(gpu)))
    }

    /// A compositor drawing on the CPU with `threads` worker threads (0: one per core; 1: on the
    /// thread that calls [`Compositor::render`], no pool).
    pub fn new_cpu(threads: usize) -> Compositor {
        Compositor::with(Renderer::Cpu(cpu::CpuRenderer::new(threads)))
    }

    fn with(renderer: Renderer) -> Compositor {
        Compositor { renderer, inputs: HashMap::new(), canvases: Vec::new() }
    }

    /// Picks the render path for `path` given the adapter (if any) and logs which and why.
    /// `cpu_threads` sizes the CPU path's pool (0: one per core).
    pub fn select(path: RenderPath, gpu: Option<Arc<Gpu>>, cpu_threads: usize) -> Result<Compositor, NoGpu> {
        let (compositor, why) = match (path, gpu) {
            (RenderPath::Cpu, _) => (Compositor::new_cpu(cpu_threads), "forced by configuration".to_string()),
            (RenderPath::Gpu, Some(g)) => (Compositor::new(g), "forced by configuration".to_string()),
            (RenderPath::Gpu, None) => return Err(NoGpu("no adapter was opened".into())),
            (RenderPath::Auto, Some(g)) if !g.kind.is_software() => {
                let why = format!("hardware adapter {}", g.info.name);
                (Compositor::new(g), why)
            }
            (RenderPath::Auto, Some(g)) => {
                (Compositor::new_cpu(cpu_threads), format!("the only adapter, {}, is a software rasterizer; SIMD scaling on the CPU is faster", g.info.name))
            }
            (RenderPath::Auto, None) => (Compositor::new_cpu(cpu_threads), "no GPU adapter".to_string()),
        };
        tracing::info!(path = %compositor.path(), "compositor render path: {} ({why})", compositor.describe());
        Ok(compositor)
    }

    /// Which path draws: [`RenderPath::Gpu`] or [`RenderPath::Cpu`].
    pub fn path(&self) -> RenderPath {
        match self.renderer {
            Renderer::Gpu(_) => RenderPath::Gpu,
            Renderer::Cpu(_) => RenderPath::Cpu,
        }
    }

    /// "wgpu on <adapter>" or "CPU, N threads".
    pub fn describe(&self) -> String {
        match &self.renderer {
            Renderer::Gpu(g) => format!("wgpu on {}", gpu::describe(&g.gpu().info)),
            Renderer::Cpu(c) => format!("CPU, {} threads", c.threads()),
        }
    }

    /// Makes an input known, so that scenes may name it. Returns false if it already was.
    pub fn register_input(&mut self, id: InputId) -> bool {
        if self.inputs.contains_key(&id) {
            return false;
        }
        self.inputs.insert(id, InputState::default());
        true
    }

    /// Forgets an input and its picture. Tiles still naming it show their placeholder colour
    /// until the scene changes.
    pub fn unregister_input(&mut self, id: &InputId) {
        self.inputs.remove(id);
        match &mut self.renderer {
            Renderer::Gpu(r) => r.remove_input(id),
            Renderer::Cpu(r) => r.remove_input(id),
        }
    }

    /// Marks an input as without video (a sender that froze or muted its camera): its tiles
    /// show their placeholder until its next frame.
    pub fn set_no_video(&mut self, id: &InputId) {
        if let Some(i) = self.inputs.get_mut(id) {
            i.live = false;
        }
    }

    /// Replaces the scene. On error nothing changes.
    pub fn update_scene(&mut self, scene: Scene) -> Result<(), SceneError> {
        let mut next = Vec::with_capacity(scene.canvases.len());
        for (i, spec) in scene.canvases.iter().enumerate() {
            if scene.canvases[..i].iter().any(|c| c.id == spec.id) {
                return Err(SceneError::DuplicateCanvas(spec.id.to_string()));
            }
            for tile in spec.layout.tiles() {
                if !self.inputs.contains_key(&tile.input) {
                    return Err(SceneError::UnknownInput { canvas: spec.id.to_string(), input: tile.input.to_string() });
                }
            }
            let target = layout::resolve(spec)?;
            next.push((spec.clone(), target));
        }
        let mut old: HashMap<CanvasId, CanvasState> = self.canvases.drain(..).map(|c| (c.spec.id.clone(), c)).collect();
        for (spec, target) in next {
            let state = match old.remove(&spec.id) {
                Some(prev) if (prev.spec.width, prev.spec.height) == (spec.width, spec.height) => {
                    let from =
                        if prev.target == target { prev.from } else { spec.transition.filter(|t| !t.duration.is_zero()).map(|_| (prev.shown.clone(), None)) };
                    CanvasState { spec, shown: prev.shown, target, from }
                }
                _ => CanvasState { spec, shown: target.clone(), target, from: None },
            };
            self.canvases.push(state);
        }
        if let Renderer::Gpu(r) = &mut self.renderer {
            let ids: Vec<CanvasId> = self.canvases.iter().map(|c| c.spec.id.clone()).collect();
            r.retain_canvases(|id| ids.contains(id));
        }
        Ok(())
    }

    /// Takes new frames and renders every canvas at `frames.pts`, read back into memory.
    pub fn render(&mut self, frames: FrameSet) -> Result<RenderOutput, RenderError> {
        let pts = frames.pts;
        let (draw, rejected) = self.prepare(frames);
        let out = match &mut self.renderer {
            Renderer::Gpu(r) => r.draw(&draw, true)?,
            Renderer::Cpu(r) => r.draw(&draw),
        };
        Ok(RenderOutput { pts, canvases: draw.into_iter().map(|c| c.id).zip(out).collect(), rejected })
    }

    /// Gives a canvas [`Compositor::render`] returned back once it has been used (encoded):
    /// the CPU path draws the next canvases into its memory instead of allocating and
    /// clearing new planes. Optional; the GPU path drops it.
    pub fn recycle(&mut self, canvas: VideoFrame) {
        if let Renderer::Cpu(r) = &mut self.renderer {
            r.recycle(canvas);
        }
    }

    /// Like [`Compositor::render`] but leaves the canvases in GPU memory
    /// ([`Compositor::canvas_textures`]) for an encoder that reads them there.
    pub fn render_to_textures(&mut self, frames: FrameSet) -> Result<Vec<InputError>, RenderError> {
        if !matches!(self.renderer, Renderer::Gpu(_)) {
            return Err(RenderError::NotOnGpu);
        }
        let (draw, rejected) = self.prepare(frames);
        let Renderer::Gpu(r) = &mut self.renderer else { unreachable!("checked above") };
        r.draw(&draw, false)?;
        Ok(rejected)
    }

    /// The GPU planes of a canvas as last rendered.
    pub fn canvas_textures(&self, id: &CanvasId) -> Option<CanvasTextures> {
        match &self.renderer {
            Renderer::Gpu(r) => r.canvas_textures(id),
            Renderer::Cpu(_) => None,
        }
    }

    /// Uploads the frames and resolves what every canvas draws at `pts`.
    fn prepare(&mut self, frames: FrameSet) -> (Vec<DrawCanvas>, Vec<InputError>) {
        let mut rejected = Vec::new();
        for (id, frame) in frames.frames {
            let Some(state) = self.inputs.get_mut(&id) else {
                rejected.push(InputError::UnknownInput(id.to_string()));
                continue;
            };
            if let Err(source) = frame.validate() {
                rejected.push(InputError::BadFrame { input: id.to_string(), source });
                continue;
            }
            state.size = Some((frame.width, frame.height));
            match &mut self.renderer {
                Renderer::Gpu(r) => r.upload(&id, &frame),
                Renderer::Cpu(r) => r.upload(&id, frame),
            }
            state.live = true;
        }
        let pts = frames.pts;
        let mut draw = Vec::with_capacity(self.canvases.len());
        for c in &mut self.canvases {
            let geoms = match &mut c.from {
                Some((from, start)) => {
                    let start = *start.get_or_insert(pts);
                    let duration = c.spec.transition.map_or(Duration::ZERO, |t| t.duration);
                    let t = pts.saturating_sub(start).as_secs_f32() / duration.as_secs_f32().max(1e-6);
                    if t >= 1.0 {
                        c.from = None;
                        c.target.clone()
                    } else {
                        let eased = c.spec.transition.map_or(1.0, |tr| tr.easing.apply(t));
                        layout::interpolate(from, &c.target, eased)
                    }
                }
                None => c.target.clone(),
            };
            let tiles = geoms.iter().map(|g| draw_tile(g, self.inputs.get(&g.input))).collect();
            c.shown = geoms;
            draw.push(DrawCanvas {
                id: c.spec.id.clone(),
                width: c.spec.width,
                height: c.spec.height,
                format: c.spec.format,
                background: c.spec.background.to_yuv(),
                tiles,
                pts,
            });
        }
        (draw, rejected)
    }
}

fn draw_tile(g: &TileGeom, input: Option<&InputState>) -> DrawTile {
    let size = input.and_then(|i| i.size);
    let video = match (input, g.style.placeholder) {
        (Some(i), _) if i.live && i.size.is_some() => true,
        (Some(i), Placeholder::LastFrame(_)) => i.size.is_some(),
        _ => false,
    };
    let inner = g.rect.inset(g.border);
    let (content, crop) = match size {
        Some((w, h)) if video => layout::place_picture(inner, w, h, g.style.fit),
        _ => (inner, [0.0, 0.0, 1.0, 1.0]),
    };
    let background = if video {
        g.style.background
    } else {
        match g.style.placeholder {
            Placeholder::Color(c) | Placeholder::LastFrame(c) => c,
        }
    };
    DrawTile {
        input: g.input.clone(),
        rect: g.rect,
        content,
        crop,
        radius: g.radius,
        border: g.border,
        opacity: g.opacity,
        background: background.to_yuv(),
        border_color: g.style.border_color.to_yuv(),
        video,
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn every_wgsl_file_parses_and_validates() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../shaders");
        let mut seen = 0;
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path.extension().and_then(|e| e.to_str()) != Some("wgsl") {
                continue;
            }
            let src = std::fs::read_to_string(&path).unwrap();
            let module = naga::front::wgsl::parse_str(&src).unwrap_or_else(|e| panic!("{}: {}", path.display(), e.emit_to_string(&src)));
            naga::valid::Validator::new(naga::valid::ValidationFlags::all(), naga::valid::Capabilities::all())
                .validate(&module)
                .unwrap_or_else(|e| panic!("{}: {e:?}", path.display()));
            seen += 1;
        }
        assert!(seen >= super::SHADERS.len(), "every shader the crate loads is in shaders/");
    }

    use super::DrawTile;

    fn tile(content: super::RectF, crop: [f32; 4]) -> DrawTile {
        DrawTile::opaque_for_tests(content, crop)
    }

    /// Source pixel index (centres at whole numbers) sampled for plane pixel `j` of `[x0, ..)`.
    fn sampled(m: super::AxisMap, x0: f64, j: usize, scale: f64) -> f64 {
        m.o + m.k * (x0 + (j as f64 + 0.5) * scale) - 0.5
    }

    #[test]
    fn shrinking_samples_pixel_centres_on_their_share() {
        // 640 luma px into 320 canvas px at x 100: pixel j samples 2j + 0.5.
        let t = tile(super::RectF { x0: 100.0, y0: 0.0, x1: 420.0, y1: 180.0 }, [0.0, 0.0, 1.0, 1.0]);
        let [x, y] = t.sample_map(640, 360, 1.0);
        for j in [0, 1, 159, 319] {
            assert!((sampled(x, 100.0, j, 1.0) - (2.0 * j as f64 + 0.5)).abs() < 1e-9);
        }
        assert!((sampled(y, 0.0, 0, 1.0) - 0.5).abs() < 1e-9);
        // Chroma: 320 chroma px into 160, from chroma px 50.
        let [cx, _] = t.sample_map(640, 360, 2.0);
        assert!((sampled(cx, 100.0, 0, 2.0) - 0.5).abs() < 1e-9);
        assert!((sampled(cx, 100.0, 159, 2.0) - 318.5).abs() < 1e-9);
    }

    #[test]
    fn doubling_samples_pixel_centres_on_their_share() {
        let t = tile(super::RectF { x0: 0.0, y0: 0.0, x1: 20.0, y1: 8.0 }, [0.0, 0.0, 1.0, 1.0]);
        let [x, y] = t.sample_map(10, 4, 1.0);
        assert!((sampled(x, 0.0, 0, 1.0) + 0.25).abs() < 1e-9 && (sampled(x, 0.0, 19, 1.0) - 9.25).abs() < 1e-9);
        assert!((sampled(y, 0.0, 7, 1.0) - 3.25).abs() < 1e-9);
    }

    #[test]
    fn enlarging_maps_first_and_last_centres_on_the_crop_edges() {
        // A 5-pixel-wide crop from x 10 of a 40-pixel picture shown on 15 canvas px.
        let t = tile(super::RectF { x0: 30.0, y0: 0.0, x1: 45.0, y1: 30.0 }, [10.0 / 40.0, 0.0, 15.0 / 40.0, 1.0]);
        let [x, y] = t.sample_map(40, 20, 1.0);
        assert!(x.enlarges(1.0) && y.enlarges(1.0));
        assert!((sampled(x, 30.0, 0, 1.0) - 10.0).abs() < 1e-9, "first on the crop's first pixel");
        assert!((sampled(x, 30.0, 14, 1.0) - 14.0).abs() < 1e-9, "last on its last pixel");
        assert!((sampled(x, 30.0, 7, 1.0) - 12.0).abs() < 1e-9, "steps of 4/14 px");
        assert!((sampled(y, 0.0, 29, 1.0) - 19.0).abs() < 1e-9);
    }
}
