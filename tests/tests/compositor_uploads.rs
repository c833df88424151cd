//! Every render shows each input's newest frame, on both paths: frames replaced render after
//! render (the GPU path reuses a staging buffer per input), two frames for one input in one
//! frame set (the later wins), renders left on the GPU without readback in between, and an
//! input whose frame size changes.

use std::time::Duration;

use mcu_compositor::{FrameSet, Layout};
use mcu_media::{PixelFormat, Rgb, VideoFrame};
use mcu_tests::{PATHS, compositor_on, input_id, one_canvas};

fn solid(rgb: Rgb, w: u32, h: u32) -> VideoFrame {
    VideoFrame::filled(PixelFormat::I420, w, h, rgb.to_yuv(), Duration::ZERO)
}

/// The canvas's centre pixel as RGB.
fn centre(f: &VideoFrame) -> [u8; 3] {
    let rgba = f.to_rgba();
    let i = ((f.height / 2 * f.width + f.width / 2) * 4) as usize;
    [rgba[i], rgba[i + 1], rgba[i + 2]]
}

fn near(got: [u8; 3], want: Rgb) -> bool {
    got.iter().zip([want.0, want.1, want.2]).all(|(a, b)| a.abs_diff(b) <= 6)
}

#[test]
fn each_render_shows_the_newest_frame() {
    let colours = [Rgb(200, 30, 30), Rgb(30, 200, 30), Rgb(30, 30, 200), Rgb(220, 220, 40)];
    for path in PATHS {
        let mut c = compositor_on(path, 1);
        c.update_scene(one_canvas(320, 180, PixelFormat::I420, Layout::grid(vec![input_id(0).to_string()]))).unwrap();
        let pts = std::cell::Cell::new(Duration::ZERO);
        let tick = || {
            pts.set(pts.get() + Duration::from_millis(33));
            pts.get()
        };
        let next = |c: &mut mcu_compositor::Compositor, frames: Vec<VideoFrame>| {
            let out = c.render(FrameSet { pts: tick(), frames: frames.into_iter().map(|f| (input_id(0), f)).collect() }).unwrap();
            out.canvases.into_iter().next().unwrap().1
        };
        for rgb in colours {
            let f = next(&mut c, vec![solid(rgb, 160, 90)]);
            assert!(near(centre(&f), rgb), "{path:?}: {:?} for {rgb:?}", centre(&f));
        }
        // Two frames for the input in one set: the later is shown.
        let f = next(&mut c, vec![solid(colours[0], 160, 90), solid(colours[1], 160, 90)]);
        assert!(near(centre(&f), colours[1]), "{path:?}: {:?}", centre(&f));
        // Renders kept on the GPU (an encoder reading textures), then one read back.
        if path != mcu_compositor::RenderPath::Cpu {
            for rgb in [colours[2], colours[3]] {
                c.render_to_textures(FrameSet { pts: tick(), frames: vec![(input_id(0), solid(rgb, 160, 90))] }).unwrap();
            }
        }
        let f = next(&mut c, vec![solid(colours[0], 160, 90)]);
        assert!(near(centre(&f), colours[0]), "{path:?}: {:?}", centre(&f));
        // A new size.
        let f = next(&mut c, vec![solid(colours[2], 64, 48)]);
        assert!(near(centre(&f), colours[2]), "{path:?}: {:?}", centre(&f));
        let f = next(&mut c, vec![solid(colours[3], 64, 48)]);
        assert!(near(centre(&f), colours[3]), "{path:?}: {:?}", centre(&f));
    }
}
