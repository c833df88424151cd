//! Planar 4:2:0 video frames.

use std::time::Duration;

use crate::color::{Rgb, Yuv, clamp_u8, yuv_to_rgb_f};

/// The memory layout of a 4:2:0 frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum PixelFormat {
    /// Three planes: Y, then U (Cb), then V (Cr), chroma at half resolution.
    I420,
    /// Two planes: Y, then interleaved UV at half resolution (what NVDEC/NVENC use).
    Nv12,
}

impl PixelFormat {
    /// How many planes a frame of this format has.
    pub fn plane_count(self) -> usize {
        match self {
            PixelFormat::I420 => 3,
            PixelFormat::Nv12 => 2,
        }
    }
}

/// One plane of pixels: `stride` bytes per row, at least `rows × stride` bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Plane {
    /// Pixel bytes, row after row.
    pub data: Vec<u8>,
    /// Bytes from the start of one row to the start of the next.
    pub stride: usize,
}

/// Why a frame is not usable.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum FrameError {
    /// Width or height is zero.
    #[error("frame has zero size ({width}x{height})")]
    ZeroSize {
        /// Stated width.
        width: u32,
        /// Stated height.
        height: u32,
    },
    /// Wider or taller than any codec we accept produces.
    #[error("frame size {width}x{height} exceeds the maximum of {max}x{max}")]
    TooLarge {
        /// Stated width.
        width: u32,
        /// Stated height.
        height: u32,
        /// The limit on either side.
        max: u32,
    },
    /// The number of planes does not match the format.
    #[error("{format:?} frame has {got} planes, expected {expected}")]
    PlaneCount {
        /// The stated format.
        format: PixelFormat,
        /// Planes present.
        got: usize,
        /// Planes required.
        expected: usize,
    },
    /// A plane is too small for the stated size.
    #[error("plane {plane} of a {width}x{height} frame: stride {stride} and {len} bytes, need stride >= {min_stride} and {min_len} bytes")]
    PlaneTooSmall {
        /// Plane index.
        plane: usize,
        /// Stated width.
        width: u32,
        /// Stated height.
        height: u32,
        /// The plane's stride.
        stride: usize,
        /// The plane's length.
        len: usize,
        /// The smallest stride that holds a row.
        min_stride: usize,
        /// The smallest length that holds all rows.
        min_len: usize,
    },
}

/// A decoded 4:2:0 picture with its presentation timestamp.
///
/// Odd sizes are allowed; chroma planes are `ceil(w/2) × ceil(h/2)`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VideoFrame {
    /// Memory layout.
    pub format: PixelFormat,
    /// Luma width in pixels.
    pub width: u32,
    /// Luma height in pixels.
    pub height: u32,
    /// Y, U, V (I420) or Y, UV (NV12).
    pub planes: Vec<Plane>,
    /// Presentation time since the stream's origin.
    pub pts: Duration,
}

/// Largest side we accept (8K); anything larger is hostile or broken input.
pub const MAX_SIDE: u32 = 8192;

impl VideoFrame {
    /// A tightly packed frame filled with one colour.
    pub fn filled(format: PixelFormat, width: u32, height: u32, color: Yuv, pts: Duration) -> VideoFrame {
        let (cw, ch) = chroma_size(width, height);
        let y = Plane { data: vec![color.y; (width * height) as usize], stride: width as usize };
        let planes = match format {
            PixelFormat::I420 => vec![
                y,
                Plane { data: vec![color.u; (cw * ch) as usize], stride: cw as usize },
                Plane { data: vec![color.v; (cw * ch) as usize], stride: cw as usize },
            ],
            PixelFormat::Nv12 => {
                let uv = [color.u, color.v].repeat((cw * ch) as usize);
                vec![y, Plane { data: uv, stride: 2 * cw as usize }]
            }
        };
        VideoFrame { format, width, height, planes, pts }
    }

    /// Builds a frame from planes, checking that they hold the stated size.
    pub fn from_planes(format: PixelFormat, width: u32, height: u32, planes: Vec<Plane>, pts: Duration) -> Result<VideoFrame, FrameError> {
        let frame = VideoFrame { format, width, height, planes, pts };
        frame.validate()?;
        Ok(frame)
    }

    /// Checks that the planes hold the stated size and format.
    pub fn validate(&self) -> Result<(), FrameError> {
        let (width, height) = (self.width, self.height);
        if width == 0 || height == 0 {
            return Err(FrameError::ZeroSize { width, height });
        }
        if width > MAX_SIDE || height > MAX_SIDE {
            return Err(FrameError::TooLarge { width, height, max: MAX_SIDE });
        }
        let expected = self.format.plane_count();
        if self.planes.len() != expected {
            return Err(FrameError::PlaneCount { format: self.format, got: self.planes.len(), expected });
        }
        for (i, plane) in self.planes.iter().enumerate() {
            let (row_bytes, rows) = self.plane_row_bytes(i);
            let min_len = if rows == 0 { 0 } else { (rows - 1) * plane.stride + row_bytes };
            if plane.stride < row_bytes || plane.data.len() < min_len {
                return Err(FrameError::PlaneTooSmall { plane: i, width, height, stride: plane.stride, len: plane.data.len(), min_stride: row_bytes, min_len });
            }
        }
        Ok(())
    }

    /// Bytes per row and number of rows of plane `i`.
    pub fn plane_row_bytes(&self, i: usize) -> (usize, usize) {
        let (cw, ch) = chroma_size(self.width, self.height);
        match (self.format, i) {
            (_, 0) => (self.width as usize, self.height as usize),
            (PixelFormat::I420, _) => (cw as usize, ch as usize),
            (PixelFormat::Nv12, _) => (2 * cw as usize, ch as usize),
        }
    }

    /// The chroma plane size of this frame.
    pub fn chroma_size(&self) -> (u32, u32) {
        chroma_size(self.width, self.height)
    }

    /// The Y'CbCr sample at luma position (x, y). Panics if out of bounds (a caller bug).
    pub fn yuv_at(&self, x: u32, y: u32) -> Yuv {
        let (x, y) = (x as usize, y as usize);
        let luma = self.planes[0].data[y * self.planes[0].stride + x];
        let (cx, cy) = (x / 2, y / 2);
        let (u, v) = match self.format {
            PixelFormat::I420 => (self.planes[1].data[cy * self.planes[1].stride + cx], self.planes[2].data[cy * self.planes[2].stride + cx]),
            PixelFormat::Nv12 => {
                let p = &self.planes[1];
                (p.data[cy * p.stride + 2 * cx], p.data[cy * p.stride + 2 * cx + 1])
            }
        };
        Yuv { y: luma, u, v }
    }

    /// The frame as tightly packed RGBA (BT.601 limited range, nearest chroma).
    pub fn to_rgba(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity((self.width * self.height * 4) as usize);
        for y in 0..self.height {
            for x in 0..self.width {
                let p = self.yuv_at(x, y);
                let (r, g, b) = yuv_to_rgb_f(p.y as f32, p.u as f32, p.v as f32);
                out.extend_from_slice(&[clamp_u8(r), clamp_u8(g), clamp_u8(b), 255]);
            }
        }
        out
    }

    /// Mean colour of the luma rectangle `[x0, x1) × [y0, y1)`, in RGB.
    pub fn mean_rgb(&self, x0: u32, y0: u32, x1: u32, y1: u32) -> Rgb {
        let (mut sy, mut su, mut sv, mut n) = (0u64, 0u64, 0u64, 0u64);
        for y in y0..y1.min(self.height) {
            for x in x0..x1.min(self.width) {
                let p = self.yuv_at(x, y);
                sy += p.y as u64;
                su += p.u as u64;
                sv += p.v as u64;
                n += 1;
            }
        }
        let n = n.max(1);
        Yuv { y: (sy / n) as u8, u: (su / n) as u8, v: (sv / n) as u8 }.to_rgb()
    }

    /// The same picture in another memory layout (tightly packed).
    pub fn converted(&self, format: PixelFormat) -> VideoFrame {
        let (cw, ch) = self.chroma_size();
        let (cw, ch) = (cw as usize, ch as usize);
        let (w, h) = (self.width as usize, self.height as usize);
        let mut y = Vec::with_capacity(w * h);
        for row in 0..h {
            let s = row * self.planes[0].stride;
            y.extend_from_slice(&self.planes[0].data[s..s + w]);
        }
        let mut u = Vec::with_capacity(cw * ch);
        let mut v = Vec::with_capacity(cw * ch);
        for row in 0..ch {
            for col in 0..cw {
                let p = self.yuv_at((col * 2) as u32, (row * 2) as u32);
                u.push(p.u);
                v.push(p.v);
            }
        }
        let y = Plane { data: y, stride: w };
        let planes = match format {
            PixelFormat::I420 => vec![y, Plane { data: u, stride: cw }, Plane { data: v, stride: cw }],
            PixelFormat::Nv12 => {
                let uv = u.iter().zip(&v).flat_map(|(&a, &b)| [a, b]).collect();
                vec![y, Plane { data: uv, stride: 2 * cw }]
            }
        };
        VideoFrame { format, width: self.width, height: self.height, planes, pts: self.pts }
    }
}

/// Chroma plane size for a luma size: `ceil(w/2) × ceil(h/2)`.
pub fn chroma_size(width: u32, height: u32) -> (u32, u32) {
    (width.div_ceil(2), height.div_ceil(2))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn validation_catches_short_planes_and_zero_size() {
        let mut f = VideoFrame::filled(PixelFormat::I420, 641, 359, Rgb(10, 20, 30).to_yuv(), Duration::ZERO);
        assert_eq!(f.chroma_size(), (321, 180));
        f.validate().unwrap();
        f.planes[2].data.pop();
        assert!(matches!(f.validate(), Err(FrameError::PlaneTooSmall { plane: 2, .. })));
        let z = VideoFrame { width: 0, ..f.clone() };
        assert!(matches!(z.validate(), Err(FrameError::ZeroSize { .. })));
        let mut p = f.clone();
        p.planes.pop();
        assert!(matches!(p.validate(), Err(FrameError::PlaneCount { .. })));
    }

    #[test]
    fn nv12_and_i420_hold_the_same_picture() {
        let c = Rgb(200, 40, 90).to_yuv();
        let a = VideoFrame::filled(PixelFormat::I420, 33, 17, c, Duration::ZERO);
        let b = a.converted(PixelFormat::Nv12);
        b.validate().unwrap();
        assert_eq!(b.yuv_at(32, 16), c);
        assert_eq!(b.converted(PixelFormat::I420), a);
    }
}
