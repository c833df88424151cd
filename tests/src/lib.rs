//! Shared helpers for the scenario tests: one GPU per test binary, synthetic inputs, and the
//! golden-frame check.
//!
//! Goldens live in `tests/goldens/*.png` (RGBA, BT.601 limited range conversion of the canvas).
//! A missing golden fails. `UPDATE_GOLDENS=1 cargo test -p mcu-tests` rewrites them, on purpose
//! only. On a mismatch the actual, expected and difference images are written to
//! `target/golden-failures/`.

use std::{
    path::PathBuf,
    sync::{Arc, OnceLock},
    time::Duration,
};

use mcu_compositor::{AdapterChoice, CanvasSpec, Compositor, Gpu, InputId, Layout, RenderPath, Scene};
use mcu_media::{
    PixelFormat, Rgb, VideoFrame,
    image::RgbaImage,
    testsrc::{self, Pattern},
};

/// The adapter the tests run on: `MCU_TEST_ADAPTER` (auto, lavapipe, gl, …), default auto,
/// which is lavapipe on a machine without a GPU. No adapter is a failure, never a skip.
pub fn gpu() -> Arc<Gpu> {
    static GPU: OnceLock<Arc<Gpu>> = OnceLock::new();
    GPU.get_or_init(|| {
        let choice: AdapterChoice = std::env::var("MCU_TEST_ADAPTER").unwrap_or_default().parse().expect("MCU_TEST_ADAPTER is a valid adapter choice");
        Gpu::new(&choice).unwrap_or_else(|e| panic!("the GPU tests need an adapter (install mesa-vulkan-drivers): {e}"))
    })
    .clone()
}

/// The render paths every golden runs on: wgpu (on [`gpu`]) and the CPU path.
pub const PATHS: [RenderPath; 2] = [RenderPath::Gpu, RenderPath::Cpu];

/// A compositor on `path` with inputs "in0".."in{n-1}" registered.
pub fn compositor_on(path: RenderPath, n: usize) -> Compositor {
    let mut c = match path {
        RenderPath::Cpu => Compositor::new_cpu(2),
        _ => Compositor::new(gpu()),
    };
    assert_eq!(c.path(), if path == RenderPath::Cpu { RenderPath::Cpu } else { RenderPath::Gpu });
    for i in 0..n {
        c.register_input(input_id(i));
    }
    c
}

/// Input `i`'s id: "in0", "in1", …
pub fn input_id(i: usize) -> InputId {
    InputId::new(format!("in{i}"))
}

/// Input `i`'s synthetic frame: a card in palette colour `i` labelled `i`.
pub fn card(i: usize, format: PixelFormat, width: u32, height: u32, pts: Duration) -> VideoFrame {
    testsrc::frame(&Pattern::Card { color: testsrc::palette(i), label: i as u32 }, format, width, height, pts)
}

/// A one-canvas scene.
pub fn one_canvas(width: u32, height: u32, format: PixelFormat, layout: Layout) -> Scene {
    Scene {
        canvases: vec![CanvasSpec { id: mcu_compositor::CanvasId::new("main"), width, height, format, background: Rgb(16, 16, 24), layout, transition: None }],
    }
}

/// How far a canvas may stray from its golden.
///
/// Bounded by lavapipe (Mesa 22.3.6, LLVM 15) against goldens made on lavapipe: identical there.
/// The slack is for other rasterizers (a GPU's bilinear filter uses fewer fraction bits; edge
/// antialiasing of rounded corners differs by a few levels); it will be re-stated when a real
/// GPU and the CPU path are measured against the same goldens.
#[derive(Debug, Clone, Copy)]
pub struct Tolerance {
    /// A pixel "differs" when a channel is off by more than this.
    pub threshold: u8,
    /// At most this fraction of pixels may differ.
    pub max_fraction: f64,
    /// No channel anywhere may be off by more than this.
    pub max_diff: u8,
}

/// The tolerance used by the golden tests.
pub const TOLERANCE: Tolerance = Tolerance { threshold: 6, max_fraction: 0.005, max_diff: 96 };

fn workspace_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// How far the CPU path may stray from the goldens (made on lavapipe).
///
/// Bounded by the CPU path against lavapipe on this machine: over all goldens the largest
/// difference is 5 levels and the mean at most 0.15 (libyuv's 7- and 8-bit filter fractions
/// against the GPU's float weights, antialiased corners; `GOLDEN_REPORT=1` prints them); the
/// bound leaves a little room above that.
pub const CPU_TOLERANCE: Tolerance = Tolerance { threshold: 6, max_fraction: 0.001, max_diff: 16 };

/// Compares a canvas rendered on `path` with `tests/goldens/{name}.png`. Goldens are written
/// (with `UPDATE_GOLDENS=1`) from the GPU path only.
pub fn check_golden(path: RenderPath, name: &str, frame: &VideoFrame) {
    match path {
        RenderPath::Cpu => check_golden_with(name, "cpu", frame, CPU_TOLERANCE, false),
        _ => check_golden_with(name, "gpu", frame, TOLERANCE, true),
    }
}

/// [`check_golden`] with an explicit tolerance; `label` names the failure images; `may_update`
/// lets `UPDATE_GOLDENS` rewrite the golden from this frame.
pub fn check_golden_with(name: &str, label: &str, frame: &VideoFrame, tol: Tolerance, may_update: bool) {
    let actual = RgbaImage { width: frame.width, height: frame.height, data: frame.to_rgba() };
    let path = workspace_dir().join("tests/goldens").join(format!("{name}.png"));
    if may_update && std::env::var_os("UPDATE_GOLDENS").is_some() {
        actual.write_png(&path).expect("golden written");
        eprintln!("golden {name} updated at {}", path.display());
        return;
    }
    let expected = RgbaImage::read_png(&path).unwrap_or_else(|e| {
        let out = workspace_dir().join("target/golden-failures").join(format!("{name}.{label}.actual.png"));
        let _ = actual.write_png(&out);
        panic!("golden {name} is missing ({e}); actual written to {}; run with UPDATE_GOLDENS=1 on purpose to create it", out.display())
    });
    let cmp = actual.compare(&expected);
    let total = (frame.width * frame.height) as f64;
    let over = cmp.over(tol.threshold);
    if std::env::var_os("GOLDEN_REPORT").is_some() {
        eprintln!("golden {name} ({label}): max {} mean {:.4} over>{}: {}", cmp.max_diff, cmp.mean_diff, tol.threshold, over);
    }
    let ok = cmp.size_matches && (over as f64) <= tol.max_fraction * total && cmp.max_diff <= tol.max_diff;
    if !ok || std::env::var_os("GOLDEN_REPORT").is_some() {
        let dir = workspace_dir().join("target/golden-failures");
        let _ = actual.write_png(&dir.join(format!("{name}.{label}.actual.png")));
        let _ = expected.write_png(&dir.join(format!("{name}.expected.png")));
        if let Some(d) = &cmp.diff {
            let _ = d.write_png(&dir.join(format!("{name}.{label}.diff.png")));
        }
        assert!(
            ok,
            "golden {name} ({label} path): {over} pixels ({:.3} %) differ by more than {}, max difference {}, mean {:.3} \
             (tolerance {:.3} %, max {}); images in {}",
            over as f64 * 100.0 / total,
            tol.threshold,
            cmp.max_diff,
            cmp.mean_diff,
            tol.max_fraction * 100.0,
            tol.max_diff,
            dir.display()
        );
    }
}
