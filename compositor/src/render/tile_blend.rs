//! Loads `shaders/tile_blend.wgsl` and builds its pipelines: one for the luma plane and one for
//! each chroma layout (I420's two planes, NV12's interleaved plane).

use bytemuck::{Pod, Zeroable};

/// The shader source, for validation tests.
pub const SOURCE: &str = include_str!("../../../shaders/tile_blend.wgsl");

/// Per-tile instance data; field meanings and coordinate spaces are documented in the shader.
#[repr(C)]
#[derive(Debug, Clone, Copy, Pod, Zeroable)]
pub struct TileInstance {
    pub rect: [f32; 4],
    pub content: [f32; 4],
    /// The luma plane's sample map in texture uv: `[k_x, o_x, k_y, o_y]`.
    pub map_luma: [f32; 4],
    pub shape: [f32; 4],
    pub background: [f32; 4],
    pub border_color: [f32; 4],
    /// The chroma plane's sample map in texture uv.
    pub map_chroma: [f32; 4],
}

pub const FLAG_VIDEO: u32 = 1;
pub const FLAG_NV12: u32 = 2;

/// Per-pass uniforms (`PassUniforms` in the shader).
#[repr(C)]
#[derive(Debug, Clone, Copy, Pod, Zeroable)]
pub struct PassUniforms {
    /// Target size in target px.
    pub target_size: [f32; 2],
    /// Canvas px per target px.
    pub plane_scale: f32,
    pub _pad: f32,
}

/// Uniform slots are this far apart so that one buffer serves both passes by dynamic offset.
pub const UNIFORM_STRIDE: u64 = 256;

/// The pipelines of one plane: blended (any tile) and opaque (a picture filling its rectangle).
pub struct PlanePipelines {
    pub blended: wgpu::RenderPipeline,
    pub opaque: wgpu::RenderPipeline,
}

pub struct TileBlend {
    pub luma: PlanePipelines,
    pub chroma_planar: PlanePipelines,
    pub chroma_interleaved: PlanePipelines,
    pub pass_layout: wgpu::BindGroupLayout,
    pub input_layout: wgpu::BindGroupLayout,
    pub sampler: wgpu::Sampler,
}

impl TileBlend {
    pub fn new(device: &wgpu::Device) -> TileBlend {
        let module =
            device.create_shader_module(wgpu::ShaderModuleDescriptor { label: Some("tile blend shader"), source: wgpu::ShaderSource::Wgsl(SOURCE.into()) });
        let pass_layout = device.create_bind_group_layout(&wgpu::BindGroupLayoutDescriptor {
            label: Some("tile blend pass bind group layout"),
            entries: &[
                wgpu::BindGroupLayoutEntry {
                    binding: 0,
                    visibility: wgpu::ShaderStages::VERTEX_FRAGMENT,
                    ty: wgpu::BindingType::Buffer {
                        ty: wgpu::BufferBindingType::Uniform,
                        has_dynamic_offset: true,
                        min_binding_size: wgpu::BufferSize::new(std::mem::size_of::<PassUniforms>() as u64),
                    },
                    count: None,
                },
                wgpu::BindGroupLayoutEntry {
                    binding: 1,
                    visibility: wgpu::ShaderStages::FRAGMENT,
                    ty: wgpu::BindingType::Sampler(wgpu::SamplerBindingType::Filtering),
                    count: None,
                },
            ],
        });
        let tex = |binding| wgpu::BindGroupLayoutEntry {
            binding,
            visibility: wgpu::ShaderStages::FRAGMENT,
            ty: wgpu::BindingType::Texture {
                sample_type: wgpu::TextureSampleType::Float { filterable: true },
                view_dimension: wgpu::TextureViewDimension::D2,
                multisampled: false,
            },
            count: None,
        };
        let input_layout = device.create_bind_group_layout(&wgpu::BindGroupLayoutDescriptor {
            label: Some("tile blend input bind group layout"),
            entries: &[tex(0), tex(1), tex(2)],
        });
        let layout = device.create_pipeline_layout(&wgpu::PipelineLayoutDescriptor {
            label: Some("tile blend pipeline layout"),
            bind_group_layouts: &[Some(&pass_layout), Some(&input_layout)],
            immediate_size: 0,
        });
        let attributes = wgpu::vertex_attr_array![
            0 => Float32x4, 1 => Float32x4, 2 => Float32x4, 3 => Float32x4, 4 => Float32x4, 5 => Float32x4, 6 => Float32x4
        ];
        let buffers = [Some(wgpu::VertexBufferLayout {
            array_stride: std::mem::size_of::<TileInstance>() as u64,
            step_mode: wgpu::VertexStepMode::Instance,
            attributes: &attributes,
        })];
        let opaque_target = |format| Some(wgpu::ColorTargetState { format, blend: None, write_mask: wgpu::ColorWrites::ALL });
        let blend_target = |format| {
            Some(wgpu::ColorTargetState {
                format,
                blend: Some(wgpu::BlendState {
                    color: wgpu::BlendComponent {
                        src_factor: wgpu::BlendFactor::SrcAlpha,
                        dst_factor: wgpu::BlendFactor::OneMinusSrcAlpha,
                        operation: wgpu::BlendOperation::Add,
                    },
                    alpha: wgpu::BlendComponent::REPLACE,
                }),
                write_mask: wgpu::ColorWrites::ALL,
            })
        };
        let pipeline = |label, entry, targets: &[Option<wgpu::ColorTargetState>]| {
            device.create_render_pipeline(&wgpu::RenderPipelineDescriptor {
                label: Some(label),
                layout: Some(&layout),
                vertex: wgpu::VertexState { module: &module, entry_point: Some("vs_tile"), compilation_options: Default::default(), buffers: &buffers },
                primitive: wgpu::PrimitiveState { topology: wgpu::PrimitiveTopology::TriangleStrip, ..Default::default() },
                depth_stencil: None,
                multisample: wgpu::MultisampleState::default(),
                fragment: Some(wgpu::FragmentState { module: &module, entry_point: Some(entry), compilation_options: Default::default(), targets }),
                multiview_mask: None,
                cache: None,
            })
        };
        let (r8, rg8) = (wgpu::TextureFormat::R8Unorm, wgpu::TextureFormat::Rg8Unorm);
        let luma = PlanePipelines {
            blended: pipeline("tile blend luma render pipeline", "fs_luma", &[blend_target(r8)]),
            opaque: pipeline("opaque tile luma render pipeline", "fs_luma_opaque", &[opaque_target(r8)]),
        };
        let chroma_planar = PlanePipelines {
            blended: pipeline("tile blend planar chroma render pipeline", "fs_chroma_planar", &[blend_target(r8), blend_target(r8)]),
            opaque: pipeline("opaque tile planar chroma render pipeline", "fs_chroma_planar_opaque", &[opaque_target(r8), opaque_target(r8)]),
        };
        let chroma_interleaved = PlanePipelines {
            blended: pipeline("tile blend interleaved chroma render pipeline", "fs_chroma_interleaved", &[blend_target(rg8)]),
            opaque: pipeline("opaque tile interleaved chroma render pipeline", "fs_chroma_interleaved_opaque", &[opaque_target(rg8)]),
        };
        let sampler = device.create_sampler(&wgpu::SamplerDescriptor {
            label: Some("tile blend bilinear sampler"),
            address_mode_u: wgpu::AddressMode::ClampToEdge,
            address_mode_v: wgpu::AddressMode::ClampToEdge,
            mag_filter: wgpu::FilterMode::Linear,
            min_filter: wgpu::FilterMode::Linear,
            ..Default::default()
        });
        TileBlend { luma, chroma_planar, chroma_interleaved, pass_layout, input_layout, sampler }
    }
}
