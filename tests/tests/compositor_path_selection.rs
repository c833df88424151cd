//! Which render path the compositor picks: the CPU path when the only adapter rasterizes in
//! software (as here, on lavapipe), wgpu when forced, and a clear error when wgpu is forced
//! without an adapter.

use mcu_compositor::{AdapterKind, Compositor, RenderPath};
use mcu_tests::gpu;

#[test]
fn auto_picks_the_cpu_path_on_a_software_adapter() {
    let g = gpu();
    let c = Compositor::select(RenderPath::Auto, Some(g.clone()), 2).unwrap();
    if g.kind.is_software() {
        assert_eq!(c.path(), RenderPath::Cpu, "{}", c.describe());
        assert_eq!(c.describe(), "CPU, 2 threads");
    } else {
        assert_eq!(g.kind, AdapterKind::Hardware);
        assert_eq!(c.path(), RenderPath::Gpu);
    }
}

#[test]
fn auto_without_an_adapter_is_the_cpu_path() {
    let c = Compositor::select(RenderPath::Auto, None, 1).unwrap();
    assert_eq!(c.path(), RenderPath::Cpu);
}

#[test]
fn forcing_either_path_is_obeyed() {
    let c = Compositor::select(RenderPath::Gpu, Some(gpu()), 0).unwrap();
    assert_eq!(c.path(), RenderPath::Gpu);
    assert!(c.describe().starts_with("wgpu on "), "{}", c.describe());
    let c = Compositor::select(RenderPath::Cpu, Some(gpu()), 0).unwrap();
    assert_eq!(c.path(), RenderPath::Cpu);
    let err = Compositor::select(RenderPath::Gpu, None, 0).err().expect("no adapter is an error");
    assert!(err.to_string().contains("GPU render path was forced"), "{err}");
    assert_eq!("cpu".parse::<RenderPath>().unwrap(), RenderPath::Cpu);
    assert!("fast".parse::<RenderPath>().is_err());
}

#[test]
fn the_cpu_path_cannot_leave_canvases_in_gpu_memory() {
    let mut c = Compositor::new_cpu(1);
    let err = c.render_to_textures(Default::default()).unwrap_err();
    assert_eq!(err, mcu_compositor::RenderError::NotOnGpu);
}
