//! Where a compositor frame's time goes: upload, render, readback (9 tiles into 720p).
#![allow(clippy::disallowed_methods)] // benchmarks time things: the clock is the point

use mcu_compositor::{AdapterChoice, CanvasId, CanvasSpec, Compositor, FrameSet, Gpu, InputId, Layout, Scene};
use mcu_media::{PixelFormat, Rgb, testsrc};
use std::time::{Duration, Instant};

fn main() {
    let gpu = Gpu::new(&AdapterChoice::Auto).unwrap();
    let n = 9;
    let frames: Vec<_> = (0..n)
        .map(|i| {
            (
                InputId::new(format!("in{i}")),
                testsrc::frame(&testsrc::Pattern::Card { color: testsrc::palette(i), label: i as u32 }, PixelFormat::I420, 640, 360, Duration::ZERO),
            )
        })
        .collect();
    let mut c = Compositor::new(gpu.clone());
    for (id, _) in &frames {
        c.register_input(id.clone());
    }
    let ids: Vec<String> = (0..n).map(|i| format!("in{i}")).collect();
    c.update_scene(Scene {
        canvases: vec![CanvasSpec {
            id: CanvasId::new("m"),
            width: 1280,
            height: 720,
            format: PixelFormat::I420,
            background: Rgb::BLACK,
            layout: Layout::grid(ids),
            transition: None,
        }],
    })
    .unwrap();
    let time = |name: &str, c: &mut Compositor, f: &dyn Fn(&mut Compositor)| {
        for _ in 0..5 {
            f(c);
        }
        let t = Instant::now();
        let k = 100;
        for _ in 0..k {
            f(c);
        }
        println!("{name}: {:.2} ms", t.elapsed().as_secs_f64() * 1000.0 / k as f64);
    };
    time("upload+render+readback", &mut c, &|c| {
        c.render(FrameSet { pts: Duration::ZERO, frames: frames.clone() }).unwrap();
    });
    time("render+readback", &mut c, &|c| {
        c.render(FrameSet { pts: Duration::ZERO, frames: vec![] }).unwrap();
    });
    time("upload+render (no readback)", &mut c, &|c| {
        c.render_to_textures(FrameSet { pts: Duration::ZERO, frames: frames.clone() }).unwrap();
        gpu.device.poll(wgpu::PollType::wait_indefinitely()).unwrap();
    });
    time("render (no readback)", &mut c, &|c| {
        c.render_to_textures(FrameSet { pts: Duration::ZERO, frames: vec![] }).unwrap();
        gpu.device.poll(wgpu::PollType::wait_indefinitely()).unwrap();
    });
    time("frames.clone()", &mut c, &|_| {
        std::hint::black_box(frames.clone());
    });
}
