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

/// One thread draws on the caller's thread (the server's per-room compositors), without a pool;
/// it must draw what the banded pool draws, pixel for pixel: scaled, letterboxed and rounded
/// tiles over several canvases, one of them NV12.
#[test]
fn one_thread_draws_what_the_pool_draws() {
    use mcu_compositor::{CanvasId, CanvasSpec, FrameSet, Layout, Scene, Tile, TileStyle};
    use mcu_media::{PixelFormat, Rgb};
    use mcu_tests::{card, input_id};
    use std::time::Duration;

    let ids: Vec<String> = (0..5).map(|i| input_id(i).to_string()).collect();
    let style = TileStyle { corner_radius: 12, border_width: 3, border_color: Rgb(250, 250, 250), ..TileStyle::default() };
    let canvas = |id: &str, width, height, format| CanvasSpec {
        id: CanvasId::new(id),
        width,
        height,
        format,
        background: Rgb(16, 16, 24),
        layout: Layout::Grid { tiles: ids.iter().map(|i| Tile::new(i).with_style(style)).collect(), columns: None, rows: None, gap: 4 },
        transition: None,
    };
    let scene = Scene { canvases: vec![canvas("a", 640, 360, PixelFormat::I420), canvas("b", 322, 242, PixelFormat::Nv12)] };
    let sizes = [(640, 360), (320, 240), (160, 90), (96, 200), (1280, 720)];
    let frames = || FrameSet {
        pts: Duration::ZERO,
        frames: sizes.iter().enumerate().map(|(i, &(w, h))| (input_id(i), card(i, PixelFormat::I420, w, h, Duration::ZERO))).collect(),
    };
    let mut rendered = Vec::new();
    for threads in [1, 2] {
        let mut c = Compositor::new_cpu(threads);
        assert_eq!(c.describe(), format!("CPU, {threads} threads"));
        for i in 0..sizes.len() {
            c.register_input(input_id(i));
        }
        c.update_scene(scene.clone()).unwrap();
        rendered.push(c.render(frames()).unwrap().canvases);
    }
    assert_eq!(rendered[0].len(), 2);
    for ((id1, one), (id2, pool)) in rendered[0].iter().zip(&rendered[1]) {
        assert_eq!(id1, id2);
        assert_eq!(one.format, pool.format);
        assert!(one.planes.iter().zip(&pool.planes).all(|(a, b)| a.data == b.data && a.stride == b.stride), "canvas {} differs", id1.0);
        // And the tiles are there: the first input's colour in its cell, not the background.
        let y = &one.planes[0];
        assert_ne!(y.data[y.stride * 40 + 40], y.data[0], "canvas {}: a tile at (40, 40)", id1.0);
    }
}

#[test]
fn recycled_canvases_draw_what_fresh_ones_draw() {
    // The CPU path draws into the planes of canvases given back, without clearing them when
    // its opaque tiles cover every pixel. Given back poisoned, they must come out as a fresh
    // canvas would: over a full grid, a grid with an empty cell, a grid with gaps and a tile
    // whose input has no picture yet.
    use mcu_compositor::{CanvasId, CanvasSpec, FrameSet, Layout, Scene, Tile};
    use mcu_media::{PixelFormat, Rgb};
    use mcu_tests::{card, input_id};
    use std::time::Duration;

    let scene = |n: usize, gap: u32| Scene {
        canvases: vec![CanvasSpec {
            id: CanvasId::new("room"),
            width: 1280,
            height: 720,
            format: PixelFormat::I420,
            background: Rgb(16, 16, 24),
            layout: Layout::Grid { tiles: (0..n).map(|i| Tile::new(input_id(i).to_string())).collect(), columns: Some(2), rows: Some(2), gap },
            transition: None,
        }],
    };
    let mut fresh = Compositor::new_cpu(1);
    let mut recycling = Compositor::new_cpu(1);
    for c in [&mut fresh, &mut recycling] {
        for i in 0..5 {
            c.register_input(input_id(i));
        }
    }
    // (scene, inputs sending pictures): full grid; one cell empty; gaps; input 3 without a picture.
    let steps = [(scene(4, 0), 4), (scene(4, 0), 4), (scene(3, 0), 3), (scene(4, 8), 4), (scene(4, 0), 4)];
    let mut background_seen = 0;
    for (step, (s, sending)) in steps.into_iter().enumerate() {
        let pts = Duration::from_millis(step as u64 * 33);
        let frames = || FrameSet { pts, frames: (0..sending).map(|i| (input_id(i), card(i + step, PixelFormat::I420, 640, 360, pts))).collect() };
        let mut out = Vec::new();
        for c in [&mut fresh, &mut recycling] {
            c.update_scene(s.clone()).unwrap();
            out.push(c.render(frames()).unwrap().canvases.remove(0).1);
        }
        let [a, mut b] = [out.remove(0), out.remove(0)];
        for (i, (pa, pb)) in a.planes.iter().zip(&b.planes).enumerate() {
            assert!(pa.data == pb.data, "step {step}: plane {i} of the recycled canvas differs from a fresh one");
        }
        // The empty cell (bottom right) shows the background (Y 30 for RGB 16,16,24), not
        // what the recycled planes held.
        let y = &b.planes[0];
        if sending == 3 {
            let v = y.data[y.stride * 700 + 1260];
            assert!((28..=32).contains(&v), "step {step}: the empty cell's luma is {v}");
            background_seen += 1;
        }
        for p in &mut b.planes {
            p.data.fill(0xab);
        }
        recycling.recycle(b);
    }
    assert_eq!(background_seen, 1, "the empty cell of the 3-tile grid is the background");
}
