//! Golden frames: both render paths — wgpu (lavapipe in CI) and the CPU path — render
//! deterministic scenes whose canvases must match the committed PNGs in `tests/goldens/`
//! (see `mcu_tests::TOLERANCE` and `mcu_tests::CPU_TOLERANCE`).

use std::time::Duration;

use mcu_compositor::{
    CanvasId, CanvasSpec, Compositor, CustomTile, Easing, Fit, FrameSet, InputId, Layout, Placeholder, Rect, Scene, Strip, Tile, TileStyle, Transition,
};
use mcu_media::{PixelFormat, Rgb, VideoFrame};
use mcu_tests::{PATHS, card, check_golden, compositor_on, input_id, one_canvas};

const W: u32 = 320;
const H: u32 = 180;

fn frames(n: usize, w: u32, h: u32, format: PixelFormat, pts: Duration) -> FrameSet {
    FrameSet { pts, frames: (0..n).map(|i| (input_id(i), card(i, format, w, h, pts))).collect() }
}

fn render_one(c: &mut Compositor, set: FrameSet) -> VideoFrame {
    let out = c.render(set).expect("render");
    assert!(out.rejected.is_empty(), "{:?}", out.rejected);
    out.canvases.into_iter().next().expect("one canvas").1
}

fn ids(n: usize) -> Vec<String> {
    (0..n).map(|i| input_id(i).to_string()).collect()
}

#[test]
fn grid_of_1_to_25_tiles() {
    for path in PATHS {
        let mut c = compositor_on(path, 25);
        for n in 1..=25 {
            let layout = Layout::Grid { tiles: ids(n).iter().map(Tile::new).collect(), columns: None, rows: None, gap: 2 };
            c.update_scene(one_canvas(W, H, PixelFormat::I420, layout)).unwrap();
            let f = render_one(&mut c, frames(n, 160, 90, PixelFormat::I420, Duration::ZERO));
            check_golden(path, &format!("grid_{n:02}"), &f);
        }
    }
}

#[test]
fn active_speaker_with_strip() {
    for path in PATHS {
        let mut c = compositor_on(path, 5);
        let layout = Layout::ActiveSpeaker { speaker: Tile::new("in0"), others: ids(5)[1..].iter().map(Tile::new).collect(), strip: Strip::bottom() };
        c.update_scene(one_canvas(W, H, PixelFormat::I420, layout)).unwrap();
        let f = render_one(&mut c, frames(5, 320, 180, PixelFormat::I420, Duration::ZERO));
        check_golden(path, "active_speaker", &f);
    }
}

#[test]
fn presentation_with_thumbnails() {
    for path in PATHS {
        let mut c = compositor_on(path, 4);
        let contain = TileStyle { fit: Fit::Contain, background: Rgb(0, 0, 0), ..TileStyle::default() };
        let layout = Layout::Presentation {
            presentation: Tile::new("in0").with_style(contain),
            others: ids(4)[1..].iter().map(Tile::new).collect(),
            strip: Strip::right(),
        };
        c.update_scene(one_canvas(W, H, PixelFormat::I420, layout)).unwrap();
        let mut set = frames(4, 160, 90, PixelFormat::I420, Duration::ZERO);
        // A 4:3 "screen share".
        set.frames[0].1 = card(7, PixelFormat::I420, 400, 300, Duration::ZERO);
        let f = render_one(&mut c, set);
        check_golden(path, "presentation", &f);
    }
}

fn custom(id: &str, x: i32, y: i32, w: u32, h: u32, z: i32, style: TileStyle) -> CustomTile {
    CustomTile { tile: Tile::new(id).with_style(style), rect: Rect { x, y, width: w, height: h }, z }
}

#[test]
fn custom_rectangles_overlap_in_z_order() {
    for path in PATHS {
        let mut c = compositor_on(path, 3);
        let s = TileStyle::default();
        // Listed top-most first: z, not list order, decides; one tile hangs off the canvas.
        let layout = Layout::Custom {
            tiles: vec![
                custom("in2", 150, 70, 140, 80, 3, s),
                custom("in0", 20, 20, 160, 90, 1, s),
                custom("in1", 90, 40, 160, 90, 2, s),
                custom("in0", 260, -20, 100, 60, 0, s),
            ],
        };
        c.update_scene(one_canvas(W, H, PixelFormat::I420, layout)).unwrap();
        let f = render_one(&mut c, frames(3, 160, 90, PixelFormat::I420, Duration::ZERO));
        check_golden(path, "custom_zorder", &f);
    }
}

#[test]
fn fit_letterboxes_and_fill_crops() {
    for path in PATHS {
        for (fit, name) in [(Fit::Contain, "fit_contain"), (Fit::Cover, "fit_cover")] {
            let mut c = compositor_on(path, 2);
            let style = TileStyle { fit, background: Rgb(90, 0, 90), ..TileStyle::default() };
            let layout = Layout::Grid { tiles: ids(2).iter().map(|i| Tile::new(i).with_style(style)).collect(), columns: None, rows: None, gap: 0 };
            c.update_scene(one_canvas(W, H, PixelFormat::I420, layout)).unwrap();
            // A portrait and a very wide input in 160x180 cells.
            let set = FrameSet {
                pts: Duration::ZERO,
                frames: vec![
                    (input_id(0), card(0, PixelFormat::I420, 90, 160, Duration::ZERO)),
                    (input_id(1), card(1, PixelFormat::I420, 320, 60, Duration::ZERO)),
                ],
            };
            let f = render_one(&mut c, set);
            check_golden(path, name, &f);
        }
    }
}

#[test]
fn odd_input_sizes() {
    for path in PATHS {
        let mut c = compositor_on(path, 3);
        c.update_scene(one_canvas(W, H, PixelFormat::I420, Layout::grid(ids(3)))).unwrap();
        let set = FrameSet {
            pts: Duration::ZERO,
            frames: vec![
                (input_id(0), card(0, PixelFormat::I420, 641, 359, Duration::ZERO)),
                (input_id(1), card(1, PixelFormat::I420, 321, 179, Duration::ZERO)),
                (input_id(2), card(2, PixelFormat::Nv12, 97, 55, Duration::ZERO)),
            ],
        };
        let f = render_one(&mut c, set);
        check_golden(path, "odd_sizes", &f);
    }
}

#[test]
fn rounded_corners_and_borders() {
    for path in PATHS {
        let mut c = compositor_on(path, 4);
        let style = TileStyle { corner_radius: 18, border_width: 4, border_color: Rgb(250, 250, 250), ..TileStyle::default() };
        let layout = Layout::Grid { tiles: ids(4).iter().map(|i| Tile::new(i).with_style(style)).collect(), columns: None, rows: None, gap: 6 };
        c.update_scene(one_canvas(W, H, PixelFormat::I420, layout)).unwrap();
        let f = render_one(&mut c, frames(4, 160, 90, PixelFormat::I420, Duration::ZERO));
        check_golden(path, "rounded_border", &f);
    }
}

#[test]
fn placeholders_for_inputs_without_video() {
    for path in PATHS {
        let mut c = compositor_on(path, 4);
        let colour = TileStyle { placeholder: Placeholder::Color(Rgb(30, 60, 120)), ..TileStyle::default() };
        let last = TileStyle { placeholder: Placeholder::LastFrame(Rgb(120, 30, 30)), ..TileStyle::default() };
        let layout = Layout::Grid {
            tiles: vec![
                Tile::new("in0").with_style(colour),
                Tile::new("in1").with_style(colour),
                Tile::new("in2").with_style(last),
                Tile::new("in3").with_style(last),
            ],
            columns: None,
            rows: None,
            gap: 0,
        };
        c.update_scene(one_canvas(W, H, PixelFormat::I420, layout)).unwrap();
        // in0 and in2 had video and lost it; in1 and in3 never had any.
        let set = FrameSet {
            pts: Duration::ZERO,
            frames: vec![
                (input_id(0), card(0, PixelFormat::I420, 160, 90, Duration::ZERO)),
                (input_id(2), card(2, PixelFormat::I420, 160, 90, Duration::ZERO)),
            ],
        };
        render_one(&mut c, set);
        c.set_no_video(&input_id(0));
        c.set_no_video(&input_id(2));
        let f = render_one(&mut c, FrameSet { pts: Duration::from_millis(40), frames: vec![] });
        // in0: colour placeholder; in1: colour; in2: its last frame; in3: LastFrame's colour.
        assert_eq!(f.mean_rgb(20, 20, 140, 70), f.mean_rgb(180, 20, 300, 70));
        check_golden(path, "placeholders", &f);
    }
}

#[test]
fn transition_half_way() {
    for path in PATHS {
        let mut c = compositor_on(path, 4);
        let mut scene = one_canvas(W, H, PixelFormat::I420, Layout::grid(ids(4)));
        c.update_scene(scene.clone()).unwrap();
        render_one(&mut c, frames(4, 160, 90, PixelFormat::I420, Duration::ZERO));
        scene.canvases[0].layout =
            Layout::ActiveSpeaker { speaker: Tile::new("in3"), others: vec![Tile::new("in0"), Tile::new("in1")], strip: Strip::bottom() };
        scene.canvases[0].transition = Some(Transition { duration: Duration::from_millis(1000), easing: Easing::Linear });
        c.update_scene(scene).unwrap();
        // The transition starts at the first render after the change (pts 1 s) and is half-way at 1.5 s.
        let start = render_one(&mut c, FrameSet { pts: Duration::from_secs(1), frames: vec![] });
        let mid = render_one(&mut c, FrameSet { pts: Duration::from_millis(1500), frames: vec![] });
        let end = render_one(&mut c, FrameSet { pts: Duration::from_millis(2500), frames: vec![] });
        check_golden(path, "transition_start", &start);
        check_golden(path, "transition_mid", &mid);
        check_golden(path, "transition_end", &end);
        assert_ne!(start, mid);
    }
}

#[test]
fn nv12_inputs_into_an_nv12_canvas() {
    for path in PATHS {
        let mut c = compositor_on(path, 4);
        c.update_scene(one_canvas(W, H, PixelFormat::Nv12, Layout::grid(ids(4)))).unwrap();
        let f = render_one(&mut c, frames(4, 160, 90, PixelFormat::Nv12, Duration::ZERO));
        assert_eq!(f.format, PixelFormat::Nv12);
        check_golden(path, "nv12_grid_4", &f);
        // The same scene into I420 holds the same picture.
        let mut c2 = compositor_on(path, 4);
        c2.update_scene(one_canvas(W, H, PixelFormat::I420, Layout::grid(ids(4)))).unwrap();
        let g = render_one(&mut c2, frames(4, 160, 90, PixelFormat::I420, Duration::ZERO));
        assert_eq!(f.converted(PixelFormat::I420), g);
    }
}

#[test]
fn personalised_canvases_leave_out_their_viewer() {
    for path in PATHS {
        let mut c = compositor_on(path, 3);
        let canvases = (0..3)
            .map(|me| CanvasSpec {
                id: CanvasId::new(format!("for-in{me}")),
                width: W,
                height: H,
                format: PixelFormat::I420,
                background: Rgb(16, 16, 24),
                layout: Layout::grid(ids(3).into_iter().filter(|i| *i != input_id(me).to_string())),
                transition: None,
            })
            .collect();
        c.update_scene(Scene { canvases }).unwrap();
        let out = c.render(frames(3, 160, 90, PixelFormat::I420, Duration::ZERO)).unwrap();
        assert_eq!(out.canvases.len(), 3);
        for (i, (id, f)) in out.canvases.iter().enumerate() {
            assert_eq!(id.to_string(), format!("for-in{i}"));
            check_golden(path, &format!("personal_{i}"), f);
        }
    }
}

#[test]
fn input_id_display_matches_scene_ids() {
    assert_eq!(InputId::new("in0"), input_id(0));
}
