//! `mcu demo` writes one PNG per layout, and the grid shows each participant's colour in its cell.

use std::process::Command;

use mcu_media::{image::RgbaImage, testsrc::palette};

#[test]
fn demo_writes_a_grid_with_each_participant_in_its_cell() {
    let out = std::env::temp_dir().join(format!("mcu-demo-test-{}", std::process::id()));
    let status = Command::new(env!("CARGO_BIN_EXE_mcu"))
        .args(["demo", "--participants", "4", "--width", "640", "--height", "360", "--log", "warn", "--out"])
        .arg(&out)
        .env("XDG_RUNTIME_DIR", "/tmp")
        .output()
        .expect("mcu runs");
    assert!(status.status.success(), "{}", String::from_utf8_lossy(&status.stderr));
    let stdout = String::from_utf8_lossy(&status.stdout);
    for name in ["grid", "grid_rounded", "active_speaker", "presentation", "custom_picture_in_picture"] {
        assert!(stdout.contains(&format!("{name}.png")), "{stdout}");
        assert!(out.join(format!("{name}.png")).is_file());
    }
    let grid = RgbaImage::read_png(&out.join("grid.png")).unwrap();
    assert_eq!((grid.width, grid.height), (640, 360));
    // 2x2 grid: sample the right end of each cell's gradient (the bright end), below the label.
    for (i, (x, y)) in [(300, 160), (620, 160), (300, 340), (620, 340)].into_iter().enumerate() {
        let p = &grid.data[((y * 640 + x) * 4) as usize..][..3];
        let want = palette(i);
        let close = p.iter().zip([want.0, want.1, want.2]).all(|(&a, b)| a.abs_diff(b) <= 24);
        assert!(close, "cell {i} at ({x},{y}) is {p:?}, want about {want:?}");
    }
    let _ = std::fs::remove_dir_all(&out);
}

#[test]
fn demo_says_which_render_path_it_used() {
    for (path, expect) in [("cpu", "compositor: CPU, "), ("gpu", "compositor: wgpu on ")] {
        let out = Command::new(env!("CARGO_BIN_EXE_mcu"))
            .args(["demo", "--participants", "2", "--width", "320", "--height", "180", "--log", "warn", "--render-path", path, "--out"])
            .arg(std::env::temp_dir().join(format!("mcu-demo-path-{path}-{}", std::process::id())))
            .env("XDG_RUNTIME_DIR", "/tmp")
            .output()
            .expect("mcu runs");
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(stdout.contains(expect), "{path}: {stdout}");
    }
}

#[test]
fn demo_refuses_an_odd_canvas_with_a_clear_error() {
    let out = Command::new(env!("CARGO_BIN_EXE_mcu"))
        .args(["demo", "--width", "641", "--log", "warn", "--out", "/tmp/mcu-demo-odd"])
        .env("XDG_RUNTIME_DIR", "/tmp")
        .output()
        .expect("mcu runs");
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("must be even"), "{err}");
}
