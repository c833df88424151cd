//! CPU path timing for one 9-tile 720p canvas (quick A/B while tuning).
#![allow(clippy::disallowed_methods)] // benchmarks time things: the clock is the point

use std::time::{Duration, Instant};

use mcu_benches::cpu_time;
use mcu_compositor::{CanvasId, CanvasSpec, Compositor, FrameSet, InputId, Layout, Scene};
use mcu_media::{PixelFormat, Rgb, testsrc};

fn main() {
    let n: usize = std::env::args().nth(1).and_then(|s| s.parse().ok()).unwrap_or(9);
    let threads: usize = std::env::args().nth(2).and_then(|s| s.parse().ok()).unwrap_or(0);
    let (cw, ch): (u32, u32) = match std::env::args().nth(3).as_deref() {
        Some("1080p") => (1920, 1080),
        _ => (1280, 720),
    };
    let frames: Vec<_> = (0..n)
        .map(|i| {
            let p = testsrc::Pattern::Card { color: testsrc::palette(i), label: i as u32 };
            (InputId::new(format!("in{i}")), testsrc::frame(&p, PixelFormat::I420, 640, 360, Duration::ZERO))
        })
        .collect();
    let mut c = Compositor::new_cpu(threads);
    for (id, _) in &frames {
        c.register_input(id.clone());
    }
    let ids: Vec<String> = (0..n).map(|i| format!("in{i}")).collect();
    let spec = CanvasSpec {
        id: CanvasId::new("m"),
        width: cw,
        height: ch,
        format: PixelFormat::I420,
        background: Rgb::BLACK,
        layout: Layout::grid(ids),
        transition: None,
    };
    c.update_scene(Scene { canvases: vec![spec] }).unwrap();
    for _ in 0..20 {
        c.render(FrameSet { pts: Duration::ZERO, frames: frames.clone() }).unwrap();
    }
    let (t, c0) = (Instant::now(), cpu_time(false));
    let k = 300;
    for _ in 0..k {
        c.render(FrameSet { pts: Duration::ZERO, frames: frames.clone() }).unwrap();
    }
    let wall = t.elapsed().as_secs_f64() * 1000.0 / k as f64;
    let cpu = (cpu_time(false) - c0).as_secs_f64() * 1000.0 / k as f64;
    println!("{n} tiles {cw}x{ch}, CPU path: {wall:.2} ms wall, {cpu:.2} ms CPU per canvas");
}
