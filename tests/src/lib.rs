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

use mcu_compositor::{AdapterChoice, CanvasSpec, Gpu, InputId, Layout, Scene};
use mcu_media::{
    image::RgbaImage,
    testsrc::{self, Pattern},
    PixelFormat, Rgb, VideoFrame,
};

/// The adapter the tests run on: `MCU_TEST_ADAPTER` (auto, lavapipe, gl, …), default auto,
/// which is lavapipe on a machine without a GPU. No adapter is a failure, never a skip.
pub fn gpu() -> Arc<Gpu> {
    static GPU: OnceLock<Arc<Gpu>> = OnceLock::new();
    GPU.get_or_init(|| {
        let choice: AdapterChoice = std::env::var("MCU_TEST_ADAPTER")
            .unwrap_or_default()
            .parse()
            .expect("MCU_TEST_ADAPTER is a valid adapter choice");
        Gpu::new(&choice).unwrap_or_else(|e| panic!("the GPU tests need an adapter (install mesa-vulkan-drivers): {e}"))
    })
    .clone()
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
        canvases: vec![CanvasSpec {
            id: mcu_compositor::CanvasId::new("main"),
            width,
            height,
            format,
            background: Rgb(16, 16, 24),
            layout,
            transition: None,
        }],
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

/// Compares `frame` (converted to RGBA) with `tests/goldens/{name}.png`.
pub fn check_golden(name: &str, frame: &VideoFrame) {
    check_golden_with(name, frame, TOLERANCE)
}

/// [`check_golden`] with an explicit tolerance.
pub fn check_golden_with(name: &str, frame: &VideoFrame, tol: Tolerance) {
    let actual = RgbaImage { width: frame.width, height: frame.height, data: frame.to_rgba() };
    let path = workspace_dir().join("tests/goldens").join(format!("{name}.png"));
    if std::env::var_os("UPDATE_GOLDENS").is_some() {
        actual.write_png(&path).expect("golden written");
        eprintln!("golden {name} updated at {}", path.display());
        return;
    }
    let expected = RgbaImage::read_png(&path).unwrap_or_else(|e| {
        let out = workspace_dir().join("target/golden-failures").join(format!("{name}.actual.png"));
        let _ = actual.write_png(&out);
        panic!("golden {name} is missing ({e}); actual written to {}; run with UPDATE_GOLDENS=1 on purpose to create it", out.display())
    });
    let cmp = actual.compare(&expected);
    let total = (frame.width * frame.height) as f64;
    let over = cmp.over(tol.threshold);
    let ok = cmp.size_matches && (over as f64) <= tol.max_fraction * total && cmp.max_diff <= tol.max_diff;
    if !ok {
        let dir = workspace_dir().join("target/golden-failures");
        let _ = actual.write_png(&dir.join(format!("{name}.actual.png")));
        let _ = expected.write_png(&dir.join(format!("{name}.expected.png")));
        if let Some(d) = &cmp.diff {
            let _ = d.write_png(&dir.join(format!("{name}.diff.png")));
        }
        panic!(
            "golden {name}: {over} pixels ({:.3} %) differ by more than {}, max difference {}, mean {:.3} \
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
