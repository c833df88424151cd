//! Compositor throughput: 720p and 1080p canvases with 4, 9, 25 and 49 tiles, and 16
//! personalised canvases of one 9-tile room, on both render paths (wgpu: render + readback; CPU:
//! SIMD scaling), beside ffmpeg doing the same composite (bilinear scale + xstack on raw I420)
//! in the same run.
//!
//! `cargo bench -p mcu-benches --bench compositor [-- --save] [-- --seconds S]`
//! With `--save` the table is written to `benches/results/compositor-<date>.md`.

#![allow(clippy::disallowed_methods)] // benchmarks time things: the clock is the point

use std::{
    fmt::Write as _,
    io::Write as _,
    process::{Command, Stdio},
    time::{Duration, Instant},
};

use mcu_benches::{cpu_time, ffmpeg_version, git_rev, machine, save_results, today};
use mcu_compositor::{AdapterChoice, CanvasId, CanvasSpec, Compositor, FrameSet, Gpu, InputId, Layout, Scene, gpu::describe};
use mcu_media::{PixelFormat, Rgb, VideoFrame, testsrc};

const IN_W: u32 = 640;
const IN_H: u32 = 360;

struct Measured {
    fps: f64,
    wall_ms: f64,
    cpu_ms: f64,
}

fn inputs(n: usize) -> Vec<(InputId, VideoFrame)> {
    (0..n)
        .map(|i| {
            let f = testsrc::frame(&testsrc::Pattern::Card { color: testsrc::palette(i), label: i as u32 }, PixelFormat::I420, IN_W, IN_H, Duration::ZERO);
            (InputId::new(format!("in{i}")), f)
        })
        .collect()
}

fn canvas(id: String, w: u32, h: u32, ids: Vec<String>) -> CanvasSpec {
    CanvasSpec { id: CanvasId::new(id), width: w, height: h, format: PixelFormat::I420, background: Rgb::BLACK, layout: Layout::grid(ids), transition: None }
}

/// Renders `scene` with fresh frames for every input each time until `seconds` pass.
fn run_ours(mut c: Compositor, n_inputs: usize, scene: Scene, seconds: f64) -> Measured {
    let frames = inputs(n_inputs);
    for (id, _) in &frames {
        c.register_input(id.clone());
    }
    c.update_scene(scene).expect("bench scene is valid");
    let mut pts = Duration::ZERO;
    let mut step = |c: &mut Compositor| {
        pts += Duration::from_millis(33);
        let out = c.render(FrameSet { pts, frames: frames.clone() }).expect("render");
        std::hint::black_box(out.canvases.len());
    };
    for _ in 0..10 {
        step(&mut c);
    }
    let (t0, c0) = (Instant::now(), cpu_time(false));
    let mut n = 0u32;
    while t0.elapsed().as_secs_f64() < seconds || n < 10 {
        step(&mut c);
        n += 1;
    }
    let wall = t0.elapsed().as_secs_f64();
    let cpu = (cpu_time(false) - c0).as_secs_f64();
    Measured { fps: n as f64 / wall, wall_ms: wall * 1000.0 / n as f64, cpu_ms: cpu * 1000.0 / n as f64 }
}

/// ffmpeg: n raw I420 inputs, each scaled (bilinear) to its grid cell, xstack'ed, to null.
fn run_ffmpeg(dir: &std::path::Path, n: usize, w: u32, h: u32, frames: u32) -> Option<Measured> {
    let cols = (n as f64).sqrt().ceil() as u32;
    let rows = (n as u32).div_ceil(cols);
    let (cw, ch) = (w / cols / 2 * 2, h / rows / 2 * 2);
    let mut args: Vec<String> = "-hide_banner -loglevel error -nostdin".split(' ').map(String::from).collect();
    for i in 0..n {
        let path = dir.join(format!("in{}.yuv", i % 8));
        args.extend(["-stream_loop", "-1", "-f", "rawvideo", "-pix_fmt", "yuv420p", "-s", &format!("{IN_W}x{IN_H}")].map(String::from));
        args.extend(["-i".to_string(), path.display().to_string()]);
    }
    let mut filter = String::new();
    for i in 0..n {
        write!(filter, "[{i}:v]scale={cw}:{ch}:flags=bilinear[s{i}];").unwrap();
    }
    let layout: Vec<String> = (0..n as u32).map(|i| format!("{}_{}", (i % cols) * cw, (i / cols) * ch)).collect();
    for i in 0..n {
        write!(filter, "[s{i}]").unwrap();
    }
    write!(filter, "xstack=inputs={n}:layout={}:fill=black[out]", layout.join("|")).unwrap();
    args.extend([
        "-filter_complex".into(),
        filter,
        "-map".into(),
        "[out]".into(),
        "-frames:v".into(),
        frames.to_string(),
        "-f".into(),
        "null".into(),
        "-".into(),
    ]);
    let (t0, c0) = (Instant::now(), cpu_time(true));
    let status = Command::new("ffmpeg").args(&args).stdout(Stdio::null()).status().ok()?;
    let wall = t0.elapsed().as_secs_f64();
    let cpu = (cpu_time(true) - c0).as_secs_f64();
    if !status.success() {
        eprintln!("ffmpeg failed for {n} tiles {w}x{h}");
        return None;
    }
    Some(Measured { fps: frames as f64 / wall, wall_ms: wall * 1000.0 / frames as f64, cpu_ms: cpu * 1000.0 / frames as f64 })
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let save = args.iter().any(|a| a == "--save");
    let seconds: f64 = args.iter().position(|a| a == "--seconds").and_then(|i| args.get(i + 1)).and_then(|s| s.parse().ok()).unwrap_or(3.0);
    let choice: AdapterChoice = std::env::var("MCU_BENCH_ADAPTER").unwrap_or_default().parse().expect("adapter choice");
    let gpu = Gpu::new(&choice).expect("an adapter");
    let dir = std::env::temp_dir().join("mcu-bench-compositor");
    std::fs::create_dir_all(&dir).expect("temp dir");
    for (i, (_, f)) in inputs(8).iter().enumerate() {
        let mut file = std::fs::File::create(dir.join(format!("in{i}.yuv"))).expect("raw input");
        for p in &f.planes {
            file.write_all(&p.data).expect("raw input written");
        }
    }
    let have_ffmpeg = Command::new("ffmpeg").arg("-version").stdout(Stdio::null()).status().is_ok_and(|s| s.success());

    let mut table = String::new();
    writeln!(
        table,
        "| case | wgpu fps | wgpu CPU ms/canvas | CPU path fps | CPU path CPU ms/canvas | ffmpeg fps | ffmpeg CPU ms/canvas | ffmpeg CPU ÷ CPU path CPU | ffmpeg fps ÷ wgpu fps |"
    )
    .unwrap();
    writeln!(table, "|---|---:|---:|---:|---:|---:|---:|---:|---:|").unwrap();
    let mut row = |name: String, gpu: Measured, cpu: Measured, theirs: Option<Measured>| {
        let line = match theirs {
            Some(t) => format!(
                "| {name} | {:.1} | {:.2} | {:.1} | {:.2} | {:.1} | {:.2} | {:.2} | {:.2} |",
                gpu.fps,
                gpu.cpu_ms,
                cpu.fps,
                cpu.cpu_ms,
                t.fps,
                t.cpu_ms,
                t.cpu_ms / cpu.cpu_ms,
                t.fps / gpu.fps
            ),
            None => format!("| {name} | {:.1} | {:.2} | {:.1} | {:.2} | – | – | – | – |", gpu.fps, gpu.cpu_ms, cpu.fps, cpu.cpu_ms),
        };
        println!("{line}");
        writeln!(table, "{line}").unwrap();
    };
    for (w, h) in [(1280, 720), (1920, 1080)] {
        for n in [4usize, 9, 25, 49] {
            let ids: Vec<String> = (0..n).map(|i| format!("in{i}")).collect();
            let scene = Scene { canvases: vec![canvas("main".into(), w, h, ids)] };
            let ours = run_ours(Compositor::new(gpu.clone()), n, scene.clone(), seconds);
            let cpu = run_ours(Compositor::new_cpu(0), n, scene, seconds);
            let frames = (cpu.fps * seconds).clamp(30.0, 600.0) as u32;
            let theirs = if have_ffmpeg { run_ffmpeg(&dir, n, w, h, frames) } else { None };
            row(format!("{w}x{h}, {n} tiles of {IN_W}x{IN_H}"), ours, cpu, theirs);
        }
    }
    // 16 viewers of a 9-input room, each canvas leaving out one input (viewer k omits input k % 9).
    let canvases: Vec<CanvasSpec> =
        (0..16).map(|k| canvas(format!("viewer{k}"), 1280, 720, (0..9).filter(|i| *i != k % 9).map(|i| format!("in{i}")).collect())).collect();
    let per_canvas = |m: Measured| Measured { fps: m.fps * 16.0, wall_ms: m.wall_ms / 16.0, cpu_ms: m.cpu_ms / 16.0 };
    let ours = run_ours(Compositor::new(gpu.clone()), 9, Scene { canvases: canvases.clone() }, seconds);
    let cpu = run_ours(Compositor::new_cpu(0), 9, Scene { canvases }, seconds);
    let rounds = format!("16-canvas round: wgpu {:.1} rounds/s ({:.2} ms), CPU path {:.1} rounds/s ({:.2} ms)", ours.fps, ours.wall_ms, cpu.fps, cpu.wall_ms);
    let theirs = if have_ffmpeg { run_ffmpeg(&dir, 8, 1280, 720, 300) } else { None };
    row("1280x720, 16 personalised canvases of a 9-input room (8 tiles each), per canvas".into(), per_canvas(ours), per_canvas(cpu), theirs);
    println!("({rounds})");

    if save {
        let date = today();
        let mut md = String::new();
        writeln!(md, "# Compositor throughput, {date}\n").unwrap();
        writeln!(md, "- Machine: {}", machine()).unwrap();
        writeln!(md, "- Adapter: {} ({:?})", describe(&gpu.info), gpu.kind).unwrap();
        writeln!(md, "- ffmpeg: {}", if have_ffmpeg { ffmpeg_version() } else { "not installed".into() }).unwrap();
        writeln!(md, "- Commit: {}", git_rev()).unwrap();
        writeln!(md, "- Command: `cargo bench -p mcu-benches --bench compositor -- --save --seconds {seconds}`").unwrap();
        writeln!(md, "- What is timed: fresh {IN_W}x{IN_H} I420 frames for every input each canvas; wgpu: upload, render (instanced quads, one pass per plane), readback of the I420 canvas into memory, one canvas at a time (round trip, no pipelining); CPU path: bilinear scaling by libyuv (one ScalePlane, or transpose + row scaling + transpose + row scaling where that is cheaper; fast_image_resize for sub-pixel geometry, none in these cases) in horizontal bands (two per thread, cut at tile edges where possible) on a rayon pool of one thread per core. CPU = this process's user+system time (on lavapipe that is the rasterizer's threads). ffmpeg: raw I420 inputs, `scale=flags=bilinear` per tile + `xstack`, `-f null`, its own threading; CPU = its user+system time.\n").unwrap();
        md.push_str(&table);
        md.push_str(&format!("\n{rounds}.\n"));
        save_results("compositor", &date, &md);
    }
}
