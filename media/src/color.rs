//! BT.601 limited-range ("studio swing") Y'CbCr, the matrix WebRTC's libyuv uses for I420.
//!
//! Blending in Y'CbCr is the same as blending in R'G'B' because the two are related by an affine
//! map and blend weights sum to one; the compositor therefore never converts pixels to RGB.

/// An 8-bit R'G'B' colour.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct Rgb(pub u8, pub u8, pub u8);

/// An 8-bit Y'CbCr colour (BT.601, limited range: Y in 16..=235, Cb/Cr in 16..=240).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Yuv {
    /// Luma.
    pub y: u8,
    /// Blue-difference chroma (Cb).
    pub u: u8,
    /// Red-difference chroma (Cr).
    pub v: u8,
}

impl Rgb {
    /// Black.
    pub const BLACK: Rgb = Rgb(0, 0, 0);
    /// White.
    pub const WHITE: Rgb = Rgb(255, 255, 255);

    /// Parses `#rrggbb` or `rrggbb`.
    pub fn parse_hex(s: &str) -> Option<Rgb> {
        let s = s.strip_prefix('#').unwrap_or(s);
        if s.len() != 6 || !s.is_ascii() {
            return None;
        }
        let c = |i: usize| u8::from_str_radix(&s[i..i + 2], 16).ok();
        Some(Rgb(c(0)?, c(2)?, c(4)?))
    }

    /// This colour in BT.601 limited-range Y'CbCr.
    pub fn to_yuv(self) -> Yuv {
        let (y, u, v) = rgb_to_yuv_f(self.0 as f32, self.1 as f32, self.2 as f32);
        Yuv { y: clamp_u8(y), u: clamp_u8(u), v: clamp_u8(v) }
    }
}

impl Yuv {
    /// This colour in R'G'B'.
    pub fn to_rgb(self) -> Rgb {
        let (r, g, b) = yuv_to_rgb_f(self.y as f32, self.u as f32, self.v as f32);
        Rgb(clamp_u8(r), clamp_u8(g), clamp_u8(b))
    }
}

/// R'G'B' (0..255) to limited-range Y'CbCr (floating point, unclamped).
pub fn rgb_to_yuv_f(r: f32, g: f32, b: f32) -> (f32, f32, f32) {
    let y = 16.0 + (65.481 * r + 128.553 * g + 24.966 * b) / 255.0;
    let u = 128.0 + (-37.797 * r - 74.203 * g + 112.0 * b) / 255.0;
    let v = 128.0 + (112.0 * r - 93.786 * g - 18.214 * b) / 255.0;
    (y, u, v)
}

/// Limited-range Y'CbCr to R'G'B' (0..255, floating point, unclamped).
pub fn yuv_to_rgb_f(y: f32, u: f32, v: f32) -> (f32, f32, f32) {
    let c = (y - 16.0) * 1.164_383_6;
    let d = u - 128.0;
    let e = v - 128.0;
    let r = c + 1.596_026_8 * e;
    let g = c - 0.391_762_3 * d - 0.812_967_6 * e;
    let b = c + 2.017_232_2 * d;
    (r, g, b)
}

/// Rounds and clamps to 0..=255.
pub fn clamp_u8(x: f32) -> u8 {
    x.round().clamp(0.0, 255.0) as u8
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn primaries_round_trip_within_one_step() {
        for c in [Rgb(255, 0, 0), Rgb(0, 255, 0), Rgb(0, 0, 255), Rgb(255, 255, 255), Rgb(0, 0, 0), Rgb(12, 200, 99)] {
            let back = c.to_yuv().to_rgb();
            for (a, b) in [(c.0, back.0), (c.1, back.1), (c.2, back.2)] {
                assert!((a as i32 - b as i32).abs() <= 2, "{c:?} -> {back:?}");
            }
        }
        assert_eq!(Rgb::BLACK.to_yuv(), Yuv { y: 16, u: 128, v: 128 });
        assert_eq!(Rgb::WHITE.to_yuv(), Yuv { y: 235, u: 128, v: 128 });
    }

    #[test]
    fn hex_parsing_rejects_garbage() {
        assert_eq!(Rgb::parse_hex("#ff8000"), Some(Rgb(255, 128, 0)));
        assert_eq!(Rgb::parse_hex("ff80"), None);
        assert_eq!(Rgb::parse_hex("zz0000"), None);
        assert_eq!(Rgb::parse_hex("éé0000"), None);
    }
}
