//! The one wgpu device and queue that the video compositor and the audio mixer share.
//!
//! Adapter choice: a hardware GPU when present, else lavapipe (Vulkan on the CPU), else GL on
//! llvmpipe; forced by [`AdapterChoice`]. The choice is logged with its reason. wgpu's default
//! panic on uncaptured errors is replaced by logging: a GPU fault must not take the server down.
#![deny(missing_docs)]

use std::{fmt, str::FromStr, sync::Arc};

/// Which adapter to use.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum AdapterChoice {
    /// A hardware GPU if present, else lavapipe (Vulkan on the CPU), else GL on llvmpipe.
    #[default]
    Auto,
    /// A hardware GPU only (discrete, integrated or virtual); fail without one.
    Hardware,
    /// A software Vulkan rasterizer (Mesa lavapipe) only.
    Lavapipe,
    /// OpenGL (ES) only, e.g. Mesa llvmpipe through EGL.
    Gl,
    /// The first adapter whose name contains this text (case-insensitive).
    Named(String),
}

impl FromStr for AdapterChoice {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Ok(match s.to_ascii_lowercase().as_str() {
            "auto" | "" => AdapterChoice::Auto,
            "hardware" | "gpu" => AdapterChoice::Hardware,
            "lavapipe" | "vulkan-cpu" => AdapterChoice::Lavapipe,
            "gl" | "llvmpipe" => AdapterChoice::Gl,
            other => match other.strip_prefix("name:") {
                Some(n) if !n.is_empty() => AdapterChoice::Named(s[5..].to_string()),
                _ => return Err(format!("unknown adapter choice {s:?}: use auto, hardware, lavapipe, gl or name:<text>")),
            },
        })
    }
}

impl fmt::Display for AdapterChoice {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            AdapterChoice::Auto => f.write_str("auto"),
            AdapterChoice::Hardware => f.write_str("hardware"),
            AdapterChoice::Lavapipe => f.write_str("lavapipe"),
            AdapterChoice::Gl => f.write_str("gl"),
            AdapterChoice::Named(n) => write!(f, "name:{n}"),
        }
    }
}

/// What kind of rasterizer an adapter is, for choosing the CPU compositing path and for logs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AdapterKind {
    /// A GPU (discrete, integrated or virtual).
    Hardware,
    /// A software rasterizer behind Vulkan (lavapipe) or DX12 (WARP).
    SoftwareVulkan,
    /// A software rasterizer behind OpenGL (llvmpipe).
    SoftwareGl,
}

impl AdapterKind {
    /// Whether the adapter rasterizes on the CPU.
    pub fn is_software(self) -> bool {
        !matches!(self, AdapterKind::Hardware)
    }
}

/// No usable adapter or device.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum GpuError {
    /// Nothing matched the choice.
    #[error("no adapter matches {choice}; available: [{}]", available.join(", "))]
    NoAdapter {
        /// What was asked for.
        choice: AdapterChoice,
        /// What was found.
        available: Vec<String>,
    },
    /// The adapter refused to give a device.
    #[error("adapter {adapter} refused a device: {message}")]
    RequestDevice {
        /// The adapter's name.
        adapter: String,
        /// What wgpu said.
        message: String,
    },
}

/// One device and queue, shared (behind an `Arc`) by the compositor and the mixer.
pub struct Gpu {
    /// The adapter the device came from.
    pub adapter: wgpu::Adapter,
    /// The device.
    pub device: wgpu::Device,
    /// Its queue.
    pub queue: wgpu::Queue,
    /// The adapter's description.
    pub info: wgpu::AdapterInfo,
    /// Hardware or software.
    pub kind: AdapterKind,
}

impl fmt::Debug for Gpu {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Gpu({})", describe(&self.info))
    }
}

fn kind_of(info: &wgpu::AdapterInfo) -> AdapterKind {
    match (info.device_type, info.backend) {
        (wgpu::DeviceType::Cpu, wgpu::Backend::Gl) => AdapterKind::SoftwareGl,
        (wgpu::DeviceType::Cpu, _) => AdapterKind::SoftwareVulkan,
        // Some GL drivers report llvmpipe as "Other".
        (wgpu::DeviceType::Other, _) if info.name.to_ascii_lowercase().contains("llvmpipe") => {
            if info.backend == wgpu::Backend::Gl {
                AdapterKind::SoftwareGl
            } else {
                AdapterKind::SoftwareVulkan
            }
        }
        _ => AdapterKind::Hardware,
    }
}

/// Lower is better for [`AdapterChoice::Auto`].
fn rank(info: &wgpu::AdapterInfo) -> u32 {
    match (kind_of(info), info.device_type) {
        (AdapterKind::Hardware, wgpu::DeviceType::DiscreteGpu) => 0,
        (AdapterKind::Hardware, wgpu::DeviceType::IntegratedGpu) => 1,
        (AdapterKind::Hardware, _) => 2,
        (AdapterKind::SoftwareVulkan, _) => 3,
        (AdapterKind::SoftwareGl, _) => 4,
    }
}

/// "llvmpipe (LLVM 15.0.6, 256 bits) via Vulkan, Cpu, driver llvmpipe Mesa 22.3.6".
pub fn describe(info: &wgpu::AdapterInfo) -> String {
    format!("{} via {:?}, {:?}, driver {} {}", info.name, info.backend, info.device_type, info.driver, info.driver_info)
}

fn matches(choice: &AdapterChoice, info: &wgpu::AdapterInfo) -> bool {
    let kind = kind_of(info);
    match choice {
        AdapterChoice::Auto => true,
        AdapterChoice::Hardware => kind == AdapterKind::Hardware,
        AdapterChoice::Lavapipe => kind == AdapterKind::SoftwareVulkan && info.backend == wgpu::Backend::Vulkan,
        AdapterChoice::Gl => info.backend == wgpu::Backend::Gl,
        AdapterChoice::Named(n) => info.name.to_ascii_lowercase().contains(&n.to_ascii_lowercase()),
    }
}

impl Gpu {
    /// Opens the adapter `choice` asks for and a device on it, logging which one and why.
    pub fn new(choice: &AdapterChoice) -> Result<Arc<Gpu>, GpuError> {
        let mut desc = wgpu::InstanceDescriptor::new_without_display_handle();
        desc.backends = wgpu::Backends::all() - wgpu::Backends::BROWSER_WEBGPU;
        let instance = wgpu::Instance::new(desc);
        let adapters = pollster::block_on(instance.enumerate_adapters(desc_backends()));
        let available: Vec<String> = adapters.iter().map(|a| describe(&a.get_info())).collect();
        let mut candidates: Vec<wgpu::Adapter> = adapters.into_iter().filter(|a| matches(choice, &a.get_info())).collect();
        candidates.sort_by_key(|a| rank(&a.get_info()));
        let Some(adapter) = candidates.into_iter().next() else {
            return Err(GpuError::NoAdapter { choice: choice.clone(), available });
        };
        let info = adapter.get_info();
        let kind = kind_of(&info);
        tracing::info!(
            adapter = %describe(&info),
            ?kind,
            choice = %choice,
            candidates = available.len(),
            "GPU adapter chosen ({})",
            match (choice, kind) {
                (AdapterChoice::Auto, AdapterKind::Hardware) => "best hardware GPU",
                (AdapterChoice::Auto, _) => "no hardware GPU found, using a software rasterizer",
                _ => "forced by configuration",
            }
        );
        let (device, queue) = pollster::block_on(adapter.request_device(&wgpu::DeviceDescriptor {
            label: Some("mcu device"),
            required_features: wgpu::Features::empty(),
            required_limits: adapter.limits(),
            ..Default::default()
        }))
        .map_err(|e| GpuError::RequestDevice { adapter: info.name.clone(), message: e.to_string() })?;
        // wgpu panics on uncaptured errors by default; we catch ours with error scopes and log
        // anything else rather than take the server down.
        device.on_uncaptured_error(Arc::new(|e| tracing::error!("uncaptured wgpu error: {e}")));
        device.set_device_lost_callback(|reason, msg| tracing::error!(?reason, "GPU device lost: {msg}"));
        Ok(Arc::new(Gpu { adapter, device, queue, info, kind }))
    }
}

fn desc_backends() -> wgpu::Backends {
    wgpu::Backends::all() - wgpu::Backends::BROWSER_WEBGPU
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn adapter_choice_parses_and_prints() {
        for s in ["auto", "hardware", "lavapipe", "gl", "name:NVIDIA L4"] {
            assert_eq!(s.parse::<AdapterChoice>().unwrap().to_string(), s);
        }
        assert!("fastest".parse::<AdapterChoice>().is_err());
        assert!("name:".parse::<AdapterChoice>().is_err());
    }
}
