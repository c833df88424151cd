//! `mcu demo`: composites synthetic participants in each layout kind and writes PNGs.

use std::{path::PathBuf, time::Duration};

use anyhow::Context;
use mcu_compositor::{
    AdapterChoice, CanvasId, CanvasSpec, Compositor, CustomTile, Fit, FrameSet, Gpu, InputId, Layout, Rect, RenderPath, Scene, Strip, Tile, TileStyle,
    gpu::describe,
};
use mcu_media::{PixelFormat, Rgb, image::RgbaImage, testsrc};

pub fn adapters(choice: &AdapterChoice) -> anyhow::Result<()> {
    let gpu = Gpu::new(choice)?;
    println!("chosen for {choice}: {} ({:?})", describe(&gpu.info), gpu.kind);
    Ok(())
}

pub fn run(args: &DemoArgs) -> anyhow::Result<()> {
    let gpu = match Gpu::new(&args.adapter) {
        Ok(g) => Some(g),
        Err(e) if args.render_path != RenderPath::Gpu => {
            tracing::warn!("no GPU adapter ({e}); compositing on the CPU");
            None
        }
        Err(e) => return Err(e.into()),
    };
    let n = args.participants as usize;
    let ids: Vec<String> = (0..n).map(|i| format!("participant{i}")).collect();
    let mut compositor = Compositor::select(args.render_path, gpu, args.cpu_render_threads)?;
    for id in &ids {
        compositor.register_input(InputId::new(id));
    }
    let (w, h) = (args.width, args.height);
    let rounded = TileStyle { corner_radius: h / 40, border_width: 2, border_color: Rgb(240, 240, 240), ..TileStyle::default() };
    let tiles = |style: TileStyle| ids.iter().map(|i| Tile::new(i).with_style(style)).collect::<Vec<_>>();
    let layouts = [
        ("grid", Layout::Grid { tiles: tiles(TileStyle::default()), columns: None, rows: None, gap: 0 }),
        ("grid_rounded", Layout::Grid { tiles: tiles(rounded), columns: None, rows: None, gap: (h / 90) & !1 }),
        ("active_speaker", Layout::ActiveSpeaker { speaker: Tile::new(&ids[0]), others: tiles(rounded).split_off(1), strip: Strip::bottom() }),
        (
            "presentation",
            Layout::Presentation {
                presentation: Tile::new(&ids[0]).with_style(TileStyle { fit: Fit::Contain, ..TileStyle::default() }),
                others: tiles(TileStyle::default()).split_off(1),
                strip: Strip::right(),
            },
        ),
        (
            "custom_picture_in_picture",
            Layout::Custom {
                tiles: std::iter::once(CustomTile { tile: Tile::new(&ids[0]), rect: Rect { x: 0, y: 0, width: w, height: h }, z: 0 })
                    .chain(ids.iter().skip(1).take(3).enumerate().map(|(k, id)| CustomTile {
                        tile: Tile::new(id).with_style(rounded),
                        rect: Rect { x: (w - w / 4 - 16) as i32, y: (16 + k as u32 * (h / 4 + 8)) as i32, width: w / 4, height: h / 4 },
                        z: 1,
                    }))
                    .collect(),
            },
        ),
    ];
    let canvases = layouts
        .iter()
        .map(|(name, layout)| CanvasSpec {
            id: CanvasId::new(name),
            width: w,
            height: h,
            format: PixelFormat::I420,
            background: Rgb(16, 16, 24),
            layout: layout.clone(),
            transition: None,
        })
        .collect();
    compositor.update_scene(Scene { canvases }).context("demo scene")?;
    let pts = Duration::from_millis(500);
    let frames = ids
        .iter()
        .enumerate()
        .map(|(i, id)| {
            let pattern = testsrc::Pattern::Card { color: testsrc::palette(i), label: i as u32 };
            let (fw, fh) = if i == 0 { (1280, 720) } else { (640, 360) };
            (InputId::new(id), testsrc::frame(&pattern, PixelFormat::I420, fw, fh, pts))
        })
        .collect();
    let out = compositor.render(FrameSet { pts, frames })?;
    std::fs::create_dir_all(&args.out).with_context(|| format!("creating {}", args.out.display()))?;
    println!("compositor: {}", compositor.describe());
    for (id, frame) in out.canvases {
        let path = args.out.join(format!("{id}.png"));
        RgbaImage { width: frame.width, height: frame.height, data: frame.to_rgba() }
            .write_png(&path)
            .with_context(|| format!("writing {}", path.display()))?;
        println!("wrote {} ({}x{}, {} participants)", path.display(), frame.width, frame.height, n);
    }
    Ok(())
}

/// Options of `mcu demo`.
#[derive(clap::Args, Debug)]
pub struct DemoArgs {
    /// Adapter choice: auto, hardware, lavapipe, gl or name:<text>.
    #[arg(long, env = "MCU_GPU_ADAPTER", default_value = "auto")]
    pub adapter: AdapterChoice,
    /// Render path: auto (wgpu on a hardware GPU, CPU on a software rasterizer), gpu or cpu.
    #[arg(long, env = "MCU_RENDER_PATH", default_value = "auto")]
    pub render_path: RenderPath,
    /// Worker threads of the CPU render path (0: one per core).
    #[arg(long, env = "MCU_CPU_RENDER_THREADS", default_value_t = 0)]
    pub cpu_render_threads: usize,
    /// Directory for the PNGs.
    #[arg(long, env = "MCU_DEMO_OUT", default_value = "target/demo")]
    pub out: PathBuf,
    /// Number of synthetic participants (1..=49).
    #[arg(long, default_value_t = 6, value_parser = clap::value_parser!(u32).range(1..=49))]
    pub participants: u32,
    /// Canvas width (even).
    #[arg(long, default_value_t = 1280)]
    pub width: u32,
    /// Canvas height (even).
    #[arg(long, default_value_t = 720)]
    pub height: u32,
}
