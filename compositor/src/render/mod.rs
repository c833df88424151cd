//! The wgpu render path: uploads input planes to textures and draws every canvas with
//! instanced quads, one render pass per plane, all canvases in one submission.

pub(crate) mod tile_blend;

use std::{collections::HashMap, sync::Arc};

use parking_lot::Mutex;

use mcu_media::{PixelFormat, Plane, VideoFrame};

use crate::{
    DrawCanvas, RenderError,
    gpu::Gpu,
    scene::{CanvasId, InputId},
};
use tile_blend::{FLAG_NV12, FLAG_VIDEO, PassUniforms, TileBlend, TileInstance, UNIFORM_STRIDE};

struct GpuInput {
    format: PixelFormat,
    width: u32,
    height: u32,
    textures: Vec<wgpu::Texture>,
    bind_group: wgpu::BindGroup,
}

/// The planes of a rendered canvas, left in GPU memory for an encoder that reads them there.
#[derive(Debug, Clone)]
pub struct CanvasTextures {
    /// Luma, `R8Unorm`, canvas size.
    pub y: wgpu::Texture,
    /// Chroma: `[U, V]` as `R8Unorm` (I420) or `[UV]` as `Rg8Unorm` (NV12), half size.
    pub chroma: Vec<wgpu::Texture>,
}

struct PlaneCopy {
    offset: u64,
    padded_row: u32,
    row_bytes: u32,
    rows: u32,
}

struct GpuCanvas {
    width: u32,
    height: u32,
    format: PixelFormat,
    textures: CanvasTextures,
    pass_bind_group: wgpu::BindGroup,
    instances: wgpu::Buffer,
    instance_capacity: usize,
    readback: wgpu::Buffer,
    copies: Vec<PlaneCopy>,
}

pub(crate) struct GpuRenderer {
    gpu: Arc<Gpu>,
    blend: TileBlend,
    inputs: HashMap<InputId, GpuInput>,
    canvases: HashMap<CanvasId, GpuCanvas>,
    /// Bound for tiles without video (their shader never samples it).
    placeholder_input: wgpu::BindGroup,
    scratch: Vec<TileInstance>,
}

fn yuv_f(c: mcu_media::Yuv) -> [f32; 3] {
    [c.y as f32 / 255.0, c.u as f32 / 255.0, c.v as f32 / 255.0]
}

impl GpuRenderer {
    pub fn new(gpu: Arc<Gpu>) -> GpuRenderer {
        let blend = TileBlend::new(&gpu.device);
        let texture = |format| {
            gpu.device.create_texture(&wgpu::TextureDescriptor {
                label: Some("placeholder input texture"),
                size: wgpu::Extent3d { width: 1, height: 1, depth_or_array_layers: 1 },
                mip_level_count: 1,
                sample_count: 1,
                dimension: wgpu::TextureDimension::D2,
                format,
                usage: wgpu::TextureUsages::TEXTURE_BINDING,
                view_formats: &[],
            })
        };
        let t = texture(wgpu::TextureFormat::R8Unorm);
        let placeholder_input = input_bind_group(&gpu.device, &blend, &[&t, &t, &t], "placeholder input bind group");
        GpuRenderer { gpu, blend, inputs: HashMap::new(), canvases: HashMap::new(), placeholder_input, scratch: Vec::new() }
    }

    pub fn gpu(&self) -> &Arc<Gpu> {
        &self.gpu
    }

    /// Uploads a validated frame as the input's current picture.
    pub fn upload(&mut self, id: &InputId, frame: &VideoFrame) {
        let stale = self.inputs.get(id).is_none_or(|i| (i.format, i.width, i.height) != (frame.format, frame.width, frame.height));
        if stale {
            let input = self.create_input(id, frame);
            self.inputs.insert(id.clone(), input);
        }
        let input = &self.inputs[id];
        for (i, (plane, texture)) in frame.planes.iter().zip(&input.textures).enumerate() {
            let (_, rows) = frame.plane_row_bytes(i);
            let size = texture.size();
            self.gpu.queue.write_texture(
                wgpu::TexelCopyTextureInfo { texture, mip_level: 0, origin: wgpu::Origin3d::ZERO, aspect: wgpu::TextureAspect::All },
                &plane.data,
                wgpu::TexelCopyBufferLayout { offset: 0, bytes_per_row: Some(plane.stride as u32), rows_per_image: Some(rows as u32) },
                size,
            );
        }
    }

    fn create_input(&self, id: &InputId, frame: &VideoFrame) -> GpuInput {
        let (cw, ch) = frame.chroma_size();
        let make = |w, h, format, what: &str| {
            self.gpu.device.create_texture(&wgpu::TextureDescriptor {
                label: Some(&format!("input {id} {what} texture")),
                size: wgpu::Extent3d { width: w, height: h, depth_or_array_layers: 1 },
                mip_level_count: 1,
                sample_count: 1,
                dimension: wgpu::TextureDimension::D2,
                format,
                usage: wgpu::TextureUsages::TEXTURE_BINDING | wgpu::TextureUsages::COPY_DST,
                view_formats: &[],
            })
        };
        let y = make(frame.width, frame.height, wgpu::TextureFormat::R8Unorm, "Y");
        let textures = match frame.format {
            PixelFormat::I420 => vec![y, make(cw, ch, wgpu::TextureFormat::R8Unorm, "U"), make(cw, ch, wgpu::TextureFormat::R8Unorm, "V")],
            PixelFormat::Nv12 => vec![y, make(cw, ch, wgpu::TextureFormat::Rg8Unorm, "UV")],
        };
        let refs: [&wgpu::Texture; 3] = match frame.format {
            PixelFormat::I420 => [&textures[0], &textures[1], &textures[2]],
            PixelFormat::Nv12 => [&textures[0], &textures[1], &textures[1]],
        };
        let bind_group = input_bind_group(&self.gpu.device, &self.blend, &refs, &format!("input {id} bind group"));
        GpuInput { format: frame.format, width: frame.width, height: frame.height, textures, bind_group }
    }

    pub fn remove_input(&mut self, id: &InputId) {
        self.inputs.remove(id);
    }

    /// Drops canvases that are no longer in the scene.
    pub fn retain_canvases(&mut self, keep: impl Fn(&CanvasId) -> bool) {
        self.canvases.retain(|id, _| keep(id));
    }

    pub fn canvas_textures(&self, id: &CanvasId) -> Option<CanvasTextures> {
        self.canvases.get(id).map(|c| c.textures.clone())
    }

    fn ensure_canvas(&mut self, c: &DrawCanvas) {
        let ok = self.canvases.get(&c.id).is_some_and(|g| (g.width, g.height, g.format) == (c.width, c.height, c.format));
        if !ok {
            let canvas = self.create_canvas(c);
            self.canvases.insert(c.id.clone(), canvas);
        }
        let tiles = c.tiles.len().max(1);
        let g = self.canvases.get_mut(&c.id).expect("canvas was just ensured");
        if g.instance_capacity < tiles {
            let cap = tiles.next_power_of_two();
            g.instances = self.gpu.device.create_buffer(&wgpu::BufferDescriptor {
                label: Some(&format!("canvas {} tile instance buffer", c.id)),
                size: (cap * std::mem::size_of::<TileInstance>()) as u64,
                usage: wgpu::BufferUsages::VERTEX | wgpu::BufferUsages::COPY_DST,
                mapped_at_creation: false,
            });
            g.instance_capacity = cap;
        }
    }

    fn create_canvas(&self, c: &DrawCanvas) -> GpuCanvas {
        let device = &self.gpu.device;
        let (w, h) = (c.width, c.height);
        let target = |w, h, format, what: &str| {
            device.create_texture(&wgpu::TextureDescriptor {
                label: Some(&format!("canvas {} {what} plane", c.id)),
                size: wgpu::Extent3d { width: w, height: h, depth_or_array_layers: 1 },
                mip_level_count: 1,
                sample_count: 1,
                dimension: wgpu::TextureDimension::D2,
                format,
                usage: wgpu::TextureUsages::RENDER_ATTACHMENT | wgpu::TextureUsages::COPY_SRC | wgpu::TextureUsages::TEXTURE_BINDING,
                view_formats: &[],
            })
        };
        let y = target(w, h, wgpu::TextureFormat::R8Unorm, "Y");
        let chroma = match c.format {
            PixelFormat::I420 => vec![target(w / 2, h / 2, wgpu::TextureFormat::R8Unorm, "U"), target(w / 2, h / 2, wgpu::TextureFormat::R8Unorm, "V")],
            PixelFormat::Nv12 => vec![target(w / 2, h / 2, wgpu::TextureFormat::Rg8Unorm, "UV")],
        };
        let uniforms = device.create_buffer(&wgpu::BufferDescriptor {
            label: Some(&format!("canvas {} pass uniform buffer", c.id)),
            size: UNIFORM_STRIDE * 2,
            usage: wgpu::BufferUsages::UNIFORM | wgpu::BufferUsages::COPY_DST,
            mapped_at_creation: false,
        });
        let luma = PassUniforms { target_size: [w as f32, h as f32], plane_scale: 1.0, _pad: 0.0 };
        let chroma_u = PassUniforms { target_size: [(w / 2) as f32, (h / 2) as f32], plane_scale: 2.0, _pad: 0.0 };
        self.gpu.queue.write_buffer(&uniforms, 0, bytemuck::bytes_of(&luma));
        self.gpu.queue.write_buffer(&uniforms, UNIFORM_STRIDE, bytemuck::bytes_of(&chroma_u));
        let pass_bind_group = device.create_bind_group(&wgpu::BindGroupDescriptor {
            label: Some(&format!("canvas {} pass bind group", c.id)),
            layout: &self.blend.pass_layout,
            entries: &[
                wgpu::BindGroupEntry {
                    binding: 0,
                    resource: wgpu::BindingResource::Buffer(wgpu::BufferBinding {
                        buffer: &uniforms,
                        offset: 0,
                        size: wgpu::BufferSize::new(std::mem::size_of::<PassUniforms>() as u64),
                    }),
                },
                wgpu::BindGroupEntry { binding: 1, resource: wgpu::BindingResource::Sampler(&self.blend.sampler) },
            ],
        });
        // Readback layout: each plane's rows padded to 256 bytes, planes one after another.
        let mut copies = Vec::new();
        let mut offset = 0u64;
        let bpp_chroma = if c.format == PixelFormat::Nv12 { 2 } else { 1 };
        let mut plane = |row_bytes: u32, rows: u32| {
            let padded_row = row_bytes.div_ceil(wgpu::COPY_BYTES_PER_ROW_ALIGNMENT) * wgpu::COPY_BYTES_PER_ROW_ALIGNMENT;
            copies.push(PlaneCopy { offset, padded_row, row_bytes, rows });
            offset += padded_row as u64 * rows as u64;
        };
        plane(w, h);
        for _ in &chroma {
            plane(w / 2 * bpp_chroma, h / 2);
        }
        let readback = device.create_buffer(&wgpu::BufferDescriptor {
            label: Some(&format!("canvas {} readback buffer", c.id)),
            size: offset,
            usage: wgpu::BufferUsages::MAP_READ | wgpu::BufferUsages::COPY_DST,
            mapped_at_creation: false,
        });
        let instances = device.create_buffer(&wgpu::BufferDescriptor {
            label: Some(&format!("canvas {} tile instance buffer", c.id)),
            size: std::mem::size_of::<TileInstance>() as u64,
            usage: wgpu::BufferUsages::VERTEX | wgpu::BufferUsages::COPY_DST,
            mapped_at_creation: false,
        });
        GpuCanvas {
            width: w,
            height: h,
            format: c.format,
            textures: CanvasTextures { y, chroma },
            pass_bind_group,
            instances,
            instance_capacity: 1,
            readback,
            copies,
        }
    }

    /// Draws every canvas; with `readback`, copies them to memory and returns them in order.
    pub fn draw(&mut self, canvases: &[DrawCanvas], readback: bool) -> Result<Vec<VideoFrame>, RenderError> {
        for c in canvases {
            self.ensure_canvas(c);
        }
        let scope = self.gpu.device.push_error_scope(wgpu::ErrorFilter::Validation);
        let mut encoder = self.gpu.device.create_command_encoder(&wgpu::CommandEncoderDescriptor { label: Some("compositor frame encoder") });
        for c in canvases {
            self.encode_canvas(&mut encoder, c, readback);
        }
        self.gpu.queue.submit([encoder.finish()]);
        if let Some(e) = pollster::block_on(scope.pop()) {
            // Our own command stream was invalid: a bug, but one that must not take the server down.
            return Err(RenderError::Gpu(e.to_string()));
        }
        if !readback {
            return Ok(Vec::new());
        }
        let results: Arc<Mutex<Vec<Result<(), wgpu::BufferAsyncError>>>> = Arc::default();
        for c in canvases {
            let results = results.clone();
            self.canvases[&c.id].readback.slice(..).map_async(wgpu::MapMode::Read, move |r| results.lock().push(r));
        }
        self.gpu.device.poll(wgpu::PollType::wait_indefinitely()).map_err(|e| RenderError::Gpu(format!("waiting for the GPU: {e}")))?;
        for r in results.lock().drain(..) {
            r.map_err(|e| RenderError::Gpu(format!("reading a canvas back: {e}")))?;
        }
        let mut out = Vec::with_capacity(canvases.len());
        for c in canvases {
            let g = &self.canvases[&c.id];
            let frame = {
                let view = g.readback.slice(..).get_mapped_range().map_err(|e| RenderError::Gpu(e.to_string()))?;
                let planes = g
                    .copies
                    .iter()
                    .map(|p| {
                        let mut data = Vec::with_capacity((p.row_bytes * p.rows) as usize);
                        for r in 0..p.rows as u64 {
                            let s = (p.offset + r * p.padded_row as u64) as usize;
                            data.extend_from_slice(&view[s..s + p.row_bytes as usize]);
                        }
                        Plane { data, stride: p.row_bytes as usize }
                    })
                    .collect();
                VideoFrame { format: g.format, width: g.width, height: g.height, planes, pts: c.pts }
            };
            g.readback.unmap();
            out.push(frame);
        }
        Ok(out)
    }

    fn encode_canvas(&mut self, encoder: &mut wgpu::CommandEncoder, c: &DrawCanvas, readback: bool) {
        self.scratch.clear();
        for t in &c.tiles {
            let input = t.video.then(|| self.inputs.get(&t.input)).flatten();
            let mut flags = 0;
            let (mut map_luma, mut map_chroma) = ([0.0; 4], [0.0; 4]);
            if let Some(i) = input {
                flags |= FLAG_VIDEO;
                if i.format == PixelFormat::Nv12 {
                    flags |= FLAG_NV12;
                }
                // Sample maps in texture uv: plane px over the texture's size.
                let uv = |scale: f64, (tw, th): (u32, u32)| {
                    let [x, y] = t.sample_map(i.width, i.height, scale);
                    let (tw, th) = (tw as f64, th as f64);
                    [(x.k / tw) as f32, (x.o / tw) as f32, (y.k / th) as f32, (y.o / th) as f32]
                };
                map_luma = uv(1.0, (i.width, i.height));
                map_chroma = uv(2.0, (i.width.div_ceil(2), i.height.div_ceil(2)));
            }
            let bg = yuv_f(t.background);
            let bc = yuv_f(t.border_color);
            self.scratch.push(TileInstance {
                rect: t.rect.to_array(),
                content: t.content.to_array(),
                map_luma,
                shape: [t.radius, t.border, t.opacity, flags as f32],
                background: [bg[0], bg[1], bg[2], 0.0],
                border_color: [bc[0], bc[1], bc[2], 0.0],
                map_chroma,
            });
        }
        let g = &self.canvases[&c.id];
        if !self.scratch.is_empty() {
            self.gpu.queue.write_buffer(&g.instances, 0, bytemuck::cast_slice(&self.scratch));
        }
        let bg = yuv_f(c.background);
        let views: Vec<wgpu::TextureView> =
            std::iter::once(&g.textures.y).chain(&g.textures.chroma).map(|t| t.create_view(&wgpu::TextureViewDescriptor::default())).collect();
        let clear = |v: f64, v2: f64| wgpu::Operations { load: wgpu::LoadOp::Clear(wgpu::Color { r: v, g: v2, b: 0.0, a: 1.0 }), store: wgpu::StoreOp::Store };
        let attachment = |view, ops| Some(wgpu::RenderPassColorAttachment { view, depth_slice: None, resolve_target: None, ops });
        let (bg_y, bg_u, bg_v) = (bg[0] as f64, bg[1] as f64, bg[2] as f64);
        // Pass 1: luma. Pass 2: chroma (two targets for I420, one RG target for NV12).
        let passes: [(&tile_blend::PlanePipelines, Vec<Option<wgpu::RenderPassColorAttachment>>, u32, &str); 2] = [
            (&self.blend.luma, vec![attachment(&views[0], clear(bg_y, 0.0))], 0, "canvas luma pass"),
            match g.format {
                PixelFormat::I420 => (
                    &self.blend.chroma_planar,
                    vec![attachment(&views[1], clear(bg_u, 0.0)), attachment(&views[2], clear(bg_v, 0.0))],
                    UNIFORM_STRIDE as u32,
                    "canvas planar chroma pass",
                ),
                PixelFormat::Nv12 => {
                    (&self.blend.chroma_interleaved, vec![attachment(&views[1], clear(bg_u, bg_v))], UNIFORM_STRIDE as u32, "canvas interleaved chroma pass")
                }
            },
        ];
        for (pipelines, attachments, uniform_offset, label) in passes {
            let mut pass = encoder.begin_render_pass(&wgpu::RenderPassDescriptor {
                label: Some(label),
                color_attachments: &attachments,
                depth_stencil_attachment: None,
                timestamp_writes: None,
                occlusion_query_set: None,
                multiview_mask: None,
            });
            pass.set_bind_group(0, &g.pass_bind_group, &[uniform_offset]);
            pass.set_vertex_buffer(0, g.instances.slice(..));
            let mut current: Option<bool> = None;
            for (i, t) in c.tiles.iter().enumerate() {
                let input = t.video.then(|| self.inputs.get(&t.input)).flatten();
                let opaque = input.is_some() && t.is_opaque_picture();
                if current != Some(opaque) {
                    pass.set_pipeline(if opaque { &pipelines.opaque } else { &pipelines.blended });
                    current = Some(opaque);
                }
                let bind_group = match input {
                    Some(input) => &input.bind_group,
                    None => &self.placeholder_input,
                };
                pass.set_bind_group(1, bind_group, &[]);
                pass.draw(0..4, i as u32..i as u32 + 1);
            }
        }
        if readback {
            for (texture, copy) in std::iter::once(&g.textures.y).chain(&g.textures.chroma).zip(&g.copies) {
                encoder.copy_texture_to_buffer(
                    wgpu::TexelCopyTextureInfo { texture, mip_level: 0, origin: wgpu::Origin3d::ZERO, aspect: wgpu::TextureAspect::All },
                    wgpu::TexelCopyBufferInfo {
                        buffer: &g.readback,
                        layout: wgpu::TexelCopyBufferLayout { offset: copy.offset, bytes_per_row: Some(copy.padded_row), rows_per_image: Some(copy.rows) },
                    },
                    texture.size(),
                );
            }
        }
    }
}

fn input_bind_group(device: &wgpu::Device, blend: &TileBlend, textures: &[&wgpu::Texture; 3], label: &str) -> wgpu::BindGroup {
    let views: Vec<wgpu::TextureView> = textures.iter().map(|t| t.create_view(&wgpu::TextureViewDescriptor::default())).collect();
    device.create_bind_group(&wgpu::BindGroupDescriptor {
        label: Some(label),
        layout: &blend.input_layout,
        entries: &[
            wgpu::BindGroupEntry { binding: 0, resource: wgpu::BindingResource::TextureView(&views[0]) },
            wgpu::BindGroupEntry { binding: 1, resource: wgpu::BindingResource::TextureView(&views[1]) },
            wgpu::BindGroupEntry { binding: 2, resource: wgpu::BindingResource::TextureView(&views[2]) },
        ],
    })
}
