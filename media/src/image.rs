//! RGBA images: PNG files and pixel comparison (for goldens and the demo).

use std::{fs::File, io::BufWriter, path::Path};

/// A tightly packed 8-bit RGBA image.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RgbaImage {
    /// Width in pixels.
    pub width: u32,
    /// Height in pixels.
    pub height: u32,
    /// `width × height × 4` bytes.
    pub data: Vec<u8>,
}

/// A PNG could not be read or written.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ImageError {
    /// File system error.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: String,
        /// The cause.
        source: std::io::Error,
    },
    /// Not a PNG we can read.
    #[error("{path}: {message}")]
    Png {
        /// The file.
        path: String,
        /// What the decoder said.
        message: String,
    },
}

impl RgbaImage {
    /// Writes the image as an 8-bit RGBA PNG, creating parent directories.
    pub fn write_png(&self, path: &Path) -> Result<(), ImageError> {
        let p = path.display().to_string();
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).map_err(|source| ImageError::Io { path: p.clone(), source })?;
        }
        let file = File::create(path).map_err(|source| ImageError::Io { path: p.clone(), source })?;
        let mut enc = png::Encoder::new(BufWriter::new(file), self.width, self.height);
        enc.set_color(png::ColorType::Rgba);
        enc.set_depth(png::BitDepth::Eight);
        let png_err = |e: png::EncodingError| ImageError::Png { path: p.clone(), message: e.to_string() };
        let mut w = enc.write_header().map_err(png_err)?;
        w.write_image_data(&self.data).map_err(png_err)?;
        w.finish().map_err(png_err)
    }

    /// Reads an 8-bit RGB or RGBA PNG.
    pub fn read_png(path: &Path) -> Result<RgbaImage, ImageError> {
        let p = path.display().to_string();
        let file = File::open(path).map_err(|source| ImageError::Io { path: p.clone(), source })?;
        let png_err = |e: png::DecodingError| ImageError::Png { path: p.clone(), message: e.to_string() };
        let mut reader = png::Decoder::new(std::io::BufReader::new(file)).read_info().map_err(png_err)?;
        let mut buf = vec![0; reader.output_buffer_size()];
        let info = reader.next_frame(&mut buf).map_err(png_err)?;
        let data = match (info.color_type, info.bit_depth) {
            (png::ColorType::Rgba, png::BitDepth::Eight) => buf[..info.buffer_size()].to_vec(),
            (png::ColorType::Rgb, png::BitDepth::Eight) => buf[..info.buffer_size()].chunks_exact(3).flat_map(|c| [c[0], c[1], c[2], 255]).collect(),
            (c, d) => {
                return Err(ImageError::Png { path: p, message: format!("unsupported PNG {c:?}/{d:?}") });
            }
        };
        Ok(RgbaImage { width: info.width, height: info.height, data })
    }

    /// Compares two images channel by channel (alpha ignored).
    pub fn compare(&self, expected: &RgbaImage) -> Comparison {
        if (self.width, self.height) != (expected.width, expected.height) {
            return Comparison { size_matches: false, max_diff: 255, pixels_over: Vec::new(), mean_diff: 255.0, diff: None };
        }
        let mut diff = Vec::with_capacity(self.data.len());
        let mut hist = [0u64; 256];
        let mut sum = 0u64;
        for (a, b) in self.data.chunks_exact(4).zip(expected.data.chunks_exact(4)) {
            let d = (0..3).map(|i| a[i].abs_diff(b[i])).max().unwrap_or(0);
            hist[d as usize] += 1;
            sum += d as u64;
            // Amplified so that small differences are visible in the PNG.
            let shown = (d as u32 * 8).min(255) as u8;
            diff.extend_from_slice(&[shown, shown, shown, 255]);
        }
        let n = (self.width * self.height).max(1) as f64;
        let max_diff = hist.iter().rposition(|&c| c > 0).unwrap_or(0) as u8;
        // pixels_over[t] = how many pixels differ by more than t.
        let mut pixels_over = vec![0u64; 256];
        let mut acc = 0;
        for t in (0..256).rev() {
            pixels_over[t] = acc;
            acc += hist[t];
        }
        Comparison {
            size_matches: true,
            max_diff,
            pixels_over,
            mean_diff: sum as f64 / n,
            diff: Some(RgbaImage { width: self.width, height: self.height, data: diff }),
        }
    }
}

/// How two images differ.
#[derive(Debug, Clone)]
pub struct Comparison {
    /// Whether the sizes are equal (nothing else is meaningful otherwise).
    pub size_matches: bool,
    /// Largest per-channel difference over all pixels.
    pub max_diff: u8,
    /// `pixels_over[t]`: pixels whose largest channel difference exceeds `t`.
    pub pixels_over: Vec<u64>,
    /// Mean of the per-pixel largest channel difference.
    pub mean_diff: f64,
    /// A greyscale picture of the differences (×8), when sizes match.
    pub diff: Option<RgbaImage>,
}

impl Comparison {
    /// Pixels whose difference exceeds `threshold`.
    pub fn over(&self, threshold: u8) -> u64 {
        if !self.size_matches {
            return u64::MAX;
        }
        self.pixels_over[threshold as usize]
    }
}
