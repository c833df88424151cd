//! Bad input to the compositor: a clear error, and the previous scene and pictures keep rendering,
//! on both render paths.

use std::time::Duration;

use mcu_compositor::RenderPath;
use mcu_compositor::{Compositor, FrameSet, InputError, Layout, LayoutError, SceneError, Tile};
use mcu_media::{FrameError, PixelFormat, Rgb, VideoFrame};
use mcu_tests::{PATHS, card, compositor_on, input_id, one_canvas};

fn setup(path: RenderPath) -> Compositor {
    let mut c = compositor_on(path, 2);
    c.update_scene(one_canvas(320, 180, PixelFormat::I420, Layout::grid(["in0", "in1"]))).unwrap();
    let out = c
        .render(FrameSet { pts: Duration::ZERO, frames: (0..2).map(|i| (input_id(i), card(i, PixelFormat::I420, 160, 90, Duration::ZERO))).collect() })
        .unwrap();
    assert!(out.rejected.is_empty());
    c
}

/// Mean colour of the left (in0) and right (in1) cells, away from the label and the moving bar.
fn cells(f: &VideoFrame) -> (Rgb, Rgb) {
    (f.mean_rgb(4, 150, 40, 176), f.mean_rgb(164, 150, 200, 176))
}

fn render(c: &mut Compositor, frames: Vec<(mcu_compositor::InputId, VideoFrame)>) -> (VideoFrame, Vec<InputError>) {
    let out = c.render(FrameSet { pts: Duration::from_millis(33), frames }).unwrap();
    (out.canvases.into_iter().next().unwrap().1, out.rejected)
}

#[test]
fn a_frame_whose_planes_are_short_is_refused_and_the_old_picture_stays() {
    for path in PATHS {
        let mut c = setup(path);
        let (before, _) = render(&mut c, vec![]);
        let mut bad = card(0, PixelFormat::I420, 160, 90, Duration::ZERO);
        bad.planes[1].data.truncate(10);
        let mut zero = card(1, PixelFormat::I420, 160, 90, Duration::ZERO);
        zero.width = 0;
        let (after, rejected) = render(&mut c, vec![(input_id(0), bad), (input_id(1), zero)]);
        assert!(matches!(&rejected[0], InputError::BadFrame { input, source: FrameError::PlaneTooSmall { plane: 1, .. } } if input == "in0"), "{rejected:?}");
        assert!(matches!(&rejected[1], InputError::BadFrame { source: FrameError::ZeroSize { .. }, .. }), "{rejected:?}");
        assert_eq!(cells(&before), cells(&after));
        let (l, r) = cells(&after);
        assert!(l.0 > 120 && l.1 < 80, "left cell still red: {l:?}");
        assert!(r.1 > 100 && r.0 < 80, "right cell still green: {r:?}");
    }
}

#[test]
fn a_frame_for_an_unknown_input_is_refused() {
    for path in PATHS {
        let mut c = setup(path);
        let (_, rejected) = render(&mut c, vec![(mcu_compositor::InputId::new("ghost"), card(0, PixelFormat::I420, 16, 16, Duration::ZERO))]);
        assert_eq!(rejected, vec![InputError::UnknownInput("ghost".into())]);
    }
}

#[test]
fn a_scene_naming_an_unknown_input_is_refused_and_the_old_scene_renders() {
    for path in PATHS {
        let mut c = setup(path);
        let (before, _) = render(&mut c, vec![]);
        let err = c.update_scene(one_canvas(320, 180, PixelFormat::I420, Layout::grid(["in0", "nobody"]))).unwrap_err();
        assert_eq!(err, SceneError::UnknownInput { canvas: "main".into(), input: "nobody".into() });
        assert_eq!(err.to_string(), "canvas \"main\": unknown input \"nobody\"");
        let (after, _) = render(&mut c, vec![]);
        assert_eq!(cells(&before), cells(&after));
    }
}

#[test]
fn more_tiles_than_cells_and_odd_canvases_are_refused() {
    for path in PATHS {
        let mut c = setup(path);
        let (before, _) = render(&mut c, vec![]);
        let layout = Layout::Grid { tiles: vec![Tile::new("in0"), Tile::new("in1")], columns: Some(1), rows: Some(1), gap: 0 };
        let err = c.update_scene(one_canvas(320, 180, PixelFormat::I420, layout)).unwrap_err();
        assert!(matches!(err, SceneError::Layout(LayoutError::TooManyTiles { tiles: 2, columns: 1, rows: 1, .. })));
        let err = c.update_scene(one_canvas(321, 180, PixelFormat::I420, Layout::grid(["in0"]))).unwrap_err();
        assert!(matches!(err, SceneError::Layout(LayoutError::CanvasSize { width: 321, .. })));
        let (after, _) = render(&mut c, vec![]);
        assert_eq!(cells(&before), cells(&after));
    }
}

#[test]
fn an_input_that_leaves_shows_its_placeholder() {
    for path in PATHS {
        let mut c = setup(path);
        c.unregister_input(&input_id(1));
        let (f, _) = render(&mut c, vec![]);
        let (l, r) = cells(&f);
        assert!(l.0 > 120, "{l:?}");
        // Default placeholder colour (48, 48, 56), within conversion rounding.
        assert!(r.0.abs_diff(48) <= 2 && r.2.abs_diff(56) <= 2, "{r:?}");
    }
}
