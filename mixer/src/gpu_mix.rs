//! The mix as a wgpu compute pass (`shaders/audio_mix.wgsl`) on the shared device.

use std::sync::Arc;

use parking_lot::Mutex;

use mcu_gpu::Gpu;

/// The shader source, for validation tests.
pub const SOURCE: &str = include_str!("../../shaders/audio_mix.wgsl");

#[repr(C)]
#[derive(Debug, Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
struct Dims {
    sources: u32,
    samples: u32,
    mixes: u32,
    _pad: u32,
}

struct Buffers {
    sources: wgpu::Buffer,
    gains: wgpu::Buffer,
    mixes: wgpu::Buffer,
    readback: wgpu::Buffer,
    bind_group: wgpu::BindGroup,
    /// Capacities in f32s.
    caps: (usize, usize, usize),
}

/// Mixes on the GPU. Bit-for-bit it differs from [`crate::mix_cpu`] only by float rounding.
pub struct GpuMixer {
    gpu: Arc<Gpu>,
    pipeline: wgpu::ComputePipeline,
    layout: wgpu::BindGroupLayout,
    dims: wgpu::Buffer,
    buffers: Option<Buffers>,
}

/// A GPU mix failed (the caller falls back to the CPU).
#[derive(Debug, thiserror::Error)]
#[error("GPU mix: {0}")]
pub struct GpuMixError(String);

impl GpuMixer {
    /// Builds the compute pipeline on `gpu`.
    pub fn new(gpu: Arc<Gpu>) -> GpuMixer {
        let device = &gpu.device;
        let module =
            device.create_shader_module(wgpu::ShaderModuleDescriptor { label: Some("audio mix shader"), source: wgpu::ShaderSource::Wgsl(SOURCE.into()) });
        let entry = |binding, ty| wgpu::BindGroupLayoutEntry { binding, visibility: wgpu::ShaderStages::COMPUTE, ty, count: None };
        let storage =
            |read_only| wgpu::BindingType::Buffer { ty: wgpu::BufferBindingType::Storage { read_only }, has_dynamic_offset: false, min_binding_size: None };
        let layout = device.create_bind_group_layout(&wgpu::BindGroupLayoutDescriptor {
            label: Some("audio mix bind group layout"),
            entries: &[
                entry(0, wgpu::BindingType::Buffer { ty: wgpu::BufferBindingType::Uniform, has_dynamic_offset: false, min_binding_size: None }),
                entry(1, storage(true)),
                entry(2, storage(true)),
                entry(3, storage(false)),
            ],
        });
        let pipeline_layout = device.create_pipeline_layout(&wgpu::PipelineLayoutDescriptor {
            label: Some("audio mix pipeline layout"),
            bind_group_layouts: &[Some(&layout)],
            immediate_size: 0,
        });
        let pipeline = device.create_compute_pipeline(&wgpu::ComputePipelineDescriptor {
            label: Some("audio mix compute pipeline"),
            layout: Some(&pipeline_layout),
            module: &module,
            entry_point: Some("mix_rows"),
            compilation_options: Default::default(),
            cache: None,
        });
        let dims = device.create_buffer(&wgpu::BufferDescriptor {
            label: Some("audio mix dims uniform buffer"),
            size: std::mem::size_of::<Dims>() as u64,
            usage: wgpu::BufferUsages::UNIFORM | wgpu::BufferUsages::COPY_DST,
            mapped_at_creation: false,
        });
        GpuMixer { gpu, pipeline, layout, dims, buffers: None }
    }

    /// Whether the GPU is worth its transfer cost for this much work: a hardware adapter and at
    /// least ~2 M multiply-adds (e.g. 100 distinct mixes of 20 sources at 20 ms).
    pub fn worth_it(&self, mixes: usize, sources: usize, samples: usize) -> bool {
        !self.gpu.kind.is_software() && mixes * sources * samples >= 2_000_000
    }

    fn ensure(&mut self, x: usize, g: usize, y: usize) {
        let fits = self.buffers.as_ref().is_some_and(|b| b.caps.0 >= x && b.caps.1 >= g && b.caps.2 >= y);
        if fits {
            return;
        }
        let device = &self.gpu.device;
        let grow = |n: usize| n.max(1).next_power_of_two();
        let caps = (grow(x), grow(g), grow(y));
        let buf = |label, floats: usize, usage| {
            device.create_buffer(&wgpu::BufferDescriptor { label: Some(label), size: (floats * 4) as u64, usage, mapped_at_creation: false })
        };
        let storage_in = wgpu::BufferUsages::STORAGE | wgpu::BufferUsages::COPY_DST;
        let sources = buf("audio mix sources buffer", caps.0, storage_in);
        let gains = buf("audio mix gains buffer", caps.1, storage_in);
        let mixes = buf("audio mix output buffer", caps.2, wgpu::BufferUsages::STORAGE | wgpu::BufferUsages::COPY_SRC);
        let readback = buf("audio mix readback buffer", caps.2, wgpu::BufferUsages::MAP_READ | wgpu::BufferUsages::COPY_DST);
        let bind_group = device.create_bind_group(&wgpu::BindGroupDescriptor {
            label: Some("audio mix bind group"),
            layout: &self.layout,
            entries: &[
                wgpu::BindGroupEntry { binding: 0, resource: self.dims.as_entire_binding() },
                wgpu::BindGroupEntry { binding: 1, resource: sources.as_entire_binding() },
                wgpu::BindGroupEntry { binding: 2, resource: gains.as_entire_binding() },
                wgpu::BindGroupEntry { binding: 3, resource: mixes.as_entire_binding() },
            ],
        });
        self.buffers = Some(Buffers { sources, gains, mixes, readback, bind_group, caps });
    }

    /// `m` mixes of `n` samples from `s` source rows in `x` and an `m × s` gain matrix.
    pub fn mix(&mut self, x: &[f32], s: usize, n: usize, gains: &[f32], m: usize) -> Result<Vec<f32>, GpuMixError> {
        if m == 0 || n == 0 {
            return Ok(vec![0.0; m * n]);
        }
        self.ensure(x.len(), gains.len(), m * n);
        let b = self.buffers.as_ref().expect("ensured");
        let q = &self.gpu.queue;
        q.write_buffer(&self.dims, 0, bytemuck::bytes_of(&Dims { sources: s as u32, samples: n as u32, mixes: m as u32, _pad: 0 }));
        if !x.is_empty() {
            q.write_buffer(&b.sources, 0, bytemuck::cast_slice(x));
        }
        if !gains.is_empty() {
            q.write_buffer(&b.gains, 0, bytemuck::cast_slice(gains));
        }
        let scope = self.gpu.device.push_error_scope(wgpu::ErrorFilter::Validation);
        let mut enc = self.gpu.device.create_command_encoder(&wgpu::CommandEncoderDescriptor { label: Some("audio mix encoder") });
        {
            let mut pass = enc.begin_compute_pass(&wgpu::ComputePassDescriptor { label: Some("audio mix pass"), timestamp_writes: None });
            pass.set_pipeline(&self.pipeline);
            pass.set_bind_group(0, &b.bind_group, &[]);
            pass.dispatch_workgroups((n as u32).div_ceil(64), m as u32, 1);
        }
        let bytes = (m * n * 4) as u64;
        enc.copy_buffer_to_buffer(&b.mixes, 0, &b.readback, 0, bytes);
        q.submit([enc.finish()]);
        if let Some(e) = pollster::block_on(scope.pop()) {
            return Err(GpuMixError(e.to_string()));
        }
        let result: Arc<Mutex<Option<Result<(), wgpu::BufferAsyncError>>>> = Arc::default();
        let r2 = result.clone();
        b.readback.slice(..bytes).map_async(wgpu::MapMode::Read, move |r| *r2.lock() = Some(r));
        self.gpu.device.poll(wgpu::PollType::wait_indefinitely()).map_err(|e| GpuMixError(e.to_string()))?;
        match result.lock().take() {
            Some(Ok(())) => {}
            Some(Err(e)) => return Err(GpuMixError(e.to_string())),
            None => return Err(GpuMixError("readback never completed".into())),
        }
        let out = {
            let view = b.readback.slice(..bytes).get_mapped_range().map_err(|e| GpuMixError(e.to_string()))?;
            bytemuck::cast_slice::<u8, f32>(&view).to_vec()
        };
        b.readback.unmap();
        Ok(out)
    }
}
