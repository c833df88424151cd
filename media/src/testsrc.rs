//! Deterministic synthetic video: distinct colours, gradients and digits ("text-like" edges).
//!
//! Every frame is a pure function of (pattern, size, pts), so goldens and benchmarks are
//! reproducible. The same digits let a viewer read a frame counter out of a picture.

use std::time::Duration;

use crate::{
    color::{Rgb, Yuv, clamp_u8, rgb_to_yuv_f},
    frame::{PixelFormat, Plane, VideoFrame, chroma_size},
};

/// Eight colours far apart in Y'CbCr, so that a test can tell tiles apart after scaling and coding.
pub const PALETTE: [Rgb; 8] = [
    Rgb(220, 40, 40),   // red
    Rgb(40, 180, 60),   // green
    Rgb(50, 80, 220),   // blue
    Rgb(230, 200, 40),  // yellow
    Rgb(200, 60, 200),  // magenta
    Rgb(40, 200, 210),  // cyan
    Rgb(240, 140, 30),  // orange
    Rgb(140, 140, 140), // grey
];

/// The palette colour for input `i` (wraps around).
pub fn palette(i: usize) -> Rgb {
    PALETTE[i % PALETTE.len()]
}

/// A synthetic picture.
#[derive(Debug, Clone, PartialEq)]
pub enum Pattern {
    /// One flat colour.
    Solid(Rgb),
    /// A "participant card": a horizontal gradient of the colour (60 % to 100 % brightness), a
    /// label in large digits at the centre, and a bar that moves with pts (one sweep a second).
    Card {
        /// Base colour.
        color: Rgb,
        /// Number drawn at the centre.
        label: u32,
    },
}

/// Renders `pattern` at `width × height` for time `pts`.
pub fn frame(pattern: &Pattern, format: PixelFormat, width: u32, height: u32, pts: Duration) -> VideoFrame {
    let mut f = match pattern {
        Pattern::Solid(c) => VideoFrame::filled(PixelFormat::I420, width, height, c.to_yuv(), pts),
        Pattern::Card { color, label } => card(*color, *label, width, height, pts),
    };
    if format != PixelFormat::I420 {
        f = f.converted(format);
    }
    f
}

fn card(color: Rgb, label: u32, width: u32, height: u32, pts: Duration) -> VideoFrame {
    let (w, h) = (width as usize, height as usize);
    let (cw, ch) = chroma_size(width, height);
    let (cw, ch) = (cw as usize, ch as usize);
    let mut y = vec![0u8; w * h];
    let mut u = vec![0u8; cw * ch];
    let mut v = vec![0u8; cw * ch];
    // Gradient: brightness 0.6..1.0 from left to right, computed per column in RGB.
    let col_yuv: Vec<(f32, f32, f32)> = (0..w)
        .map(|x| {
            let k = 0.6 + 0.4 * (x as f32 + 0.5) / w as f32;
            rgb_to_yuv_f(color.0 as f32 * k, color.1 as f32 * k, color.2 as f32 * k)
        })
        .collect();
    for row in y.chunks_exact_mut(w) {
        for (x, p) in row.iter_mut().enumerate() {
            *p = clamp_u8(col_yuv[x].0);
        }
    }
    for row in 0..ch {
        for col in 0..cw {
            let x = (2 * col).min(w - 1);
            u[row * cw + col] = clamp_u8(col_yuv[x].1);
            v[row * cw + col] = clamp_u8(col_yuv[x].2);
        }
    }
    let mut f = VideoFrame {
        format: PixelFormat::I420,
        width,
        height,
        planes: vec![Plane { data: y, stride: w }, Plane { data: u, stride: cw }, Plane { data: v, stride: cw }],
        pts,
    };
    // Moving bar: 1/16 of the width, sweeping once per second.
    let bar_w = (width / 16).max(1);
    let phase = (pts.as_micros() % 1_000_000) as u64;
    let bar_x = ((width - bar_w) as u64 * phase / 1_000_000) as u32;
    fill_rect(&mut f, bar_x, 0, bar_w, (height / 10).max(1), Rgb::WHITE.to_yuv());
    // Label: digits sized to a third of the height, dark on light colours and light on dark.
    let luma = col_yuv[w / 2].0;
    let ink = if luma > 120.0 { Rgb(16, 16, 16) } else { Rgb::WHITE };
    let scale = (height / 3 / GLYPH_H).max(1);
    let text = label.to_string();
    let text_w = text_width(&text, scale);
    let x = width.saturating_sub(text_w) / 2;
    let yy = height.saturating_sub(GLYPH_H * scale) / 2;
    draw_text(&mut f, x, yy, scale, &text, ink.to_yuv());
    f
}

/// Glyph cell width in font pixels.
pub const GLYPH_W: u32 = 5;
/// Glyph cell height in font pixels.
pub const GLYPH_H: u32 = 7;

/// 5×7 bitmaps of 0–9, one row per byte, most significant of the low five bits leftmost.
const DIGITS: [[u8; 7]; 10] = [
    [0x0e, 0x11, 0x13, 0x15, 0x19, 0x11, 0x0e],
    [0x04, 0x0c, 0x04, 0x04, 0x04, 0x04, 0x0e],
    [0x0e, 0x11, 0x01, 0x02, 0x04, 0x08, 0x1f],
    [0x1f, 0x02, 0x04, 0x02, 0x01, 0x11, 0x0e],
    [0x02, 0x06, 0x0a, 0x12, 0x1f, 0x02, 0x02],
    [0x1f, 0x10, 0x1e, 0x01, 0x01, 0x11, 0x0e],
    [0x06, 0x08, 0x10, 0x1e, 0x11, 0x11, 0x0e],
    [0x1f, 0x01, 0x02, 0x04, 0x08, 0x08, 0x08],
    [0x0e, 0x11, 0x11, 0x0e, 0x11, 0x11, 0x0e],
    [0x0e, 0x11, 0x11, 0x0f, 0x01, 0x02, 0x0c],
];

/// Width in pixels of `text` drawn at `scale` (one font pixel of spacing between glyphs).
pub fn text_width(text: &str, scale: u32) -> u32 {
    let n = text.chars().count() as u32;
    if n == 0 { 0 } else { (n * (GLYPH_W + 1) - 1) * scale }
}

/// Draws decimal digits (other characters are skipped as blanks), clipped to the frame.
pub fn draw_text(f: &mut VideoFrame, x: u32, y: u32, scale: u32, text: &str, ink: Yuv) {
    for (i, ch) in text.chars().enumerate() {
        let Some(d) = ch.to_digit(10) else { continue };
        let gx = x + i as u32 * (GLYPH_W + 1) * scale;
        for (row, bits) in DIGITS[d as usize].iter().enumerate() {
            for col in 0..GLYPH_W {
                if bits & (0x10 >> col) != 0 {
                    fill_rect(f, gx + col * scale, y + row as u32 * scale, scale, scale, ink);
                }
            }
        }
    }
}

/// Fills a luma-space rectangle (clipped) with a colour; chroma samples whose top-left luma
/// pixel lies inside are set too.
pub fn fill_rect(f: &mut VideoFrame, x: u32, y: u32, w: u32, h: u32, c: Yuv) {
    let x1 = x.saturating_add(w).min(f.width);
    let y1 = y.saturating_add(h).min(f.height);
    if x >= x1 || y >= y1 {
        return;
    }
    for row in y..y1 {
        let s = row as usize * f.planes[0].stride;
        f.planes[0].data[s + x as usize..s + x1 as usize].fill(c.y);
    }
    for row in y.div_ceil(2)..y1.div_ceil(2) {
        for col in x.div_ceil(2)..x1.div_ceil(2) {
            let (row, col) = (row as usize, col as usize);
            match f.format {
                PixelFormat::I420 => {
                    let su = f.planes[1].stride;
                    f.planes[1].data[row * su + col] = c.u;
                    let sv = f.planes[2].stride;
                    f.planes[2].data[row * sv + col] = c.v;
                }
                PixelFormat::Nv12 => {
                    let s = f.planes[1].stride;
                    f.planes[1].data[row * s + 2 * col] = c.u;
                    f.planes[1].data[row * s + 2 * col + 1] = c.v;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn card_is_deterministic_and_carries_its_colour() {
        let p = Pattern::Card { color: palette(2), label: 7 };
        let a = frame(&p, PixelFormat::I420, 641, 359, Duration::from_millis(250));
        let b = frame(&p, PixelFormat::I420, 641, 359, Duration::from_millis(250));
        assert_eq!(a, b);
        a.validate().unwrap();
        // The left edge (no label, below the bar) is the darker end of the blue gradient.
        let m = a.mean_rgb(0, 100, 20, 120);
        assert!(m.2 > m.0 + 60 && m.2 > m.1 + 60, "{m:?}");
        // The bar moves with time.
        let c = frame(&p, PixelFormat::I420, 641, 359, Duration::from_millis(750));
        assert_ne!(a.planes[0].data[..641 * 10], c.planes[0].data[..641 * 10]);
    }

    #[test]
    fn tiny_frames_clip_their_label() {
        for (w, h) in [(1, 1), (2, 2), (8, 8), (9, 7), (16, 4)] {
            let f = frame(&Pattern::Card { color: palette(1), label: 12345 }, PixelFormat::I420, w, h, Duration::from_millis(900));
            f.validate().unwrap();
        }
    }

    #[test]
    fn digits_are_drawn_with_ink() {
        let mut f = VideoFrame::filled(PixelFormat::I420, 40, 20, Rgb::BLACK.to_yuv(), Duration::ZERO);
        draw_text(&mut f, 1, 1, 2, "1", Rgb::WHITE.to_yuv());
        // The "1" glyph's vertical stroke is column 2 of the glyph → x = 1 + 2*2 = 5.
        assert_eq!(f.yuv_at(5, 6).y, 235);
        assert_eq!(f.yuv_at(30, 6).y, 16);
    }
}
