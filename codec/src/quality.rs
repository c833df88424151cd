//! Picture quality measures for tests and benchmarks.

use mcu_media::VideoFrame;

/// Peak signal-to-noise ratio of the luma planes of two frames of the same size, in dB
/// (`f64::INFINITY` when identical); `None` when the sizes differ.
pub fn psnr_y(reference: &VideoFrame, decoded: &VideoFrame) -> Option<f64> {
    if reference.width != decoded.width || reference.height != decoded.height {
        return None;
    }
    let (w, h) = (reference.width as usize, reference.height as usize);
    let (a, b) = (&reference.planes.first()?, &decoded.planes.first()?);
    let mut sse = 0u64;
    for row in 0..h {
        let ra = a.data.get(row * a.stride..row * a.stride + w)?;
        let rb = b.data.get(row * b.stride..row * b.stride + w)?;
        sse += ra.iter().zip(rb).map(|(&x, &y)| (x as i64 - y as i64).pow(2) as u64).sum::<u64>();
    }
    if sse == 0 {
        return Some(f64::INFINITY);
    }
    let mse = sse as f64 / (w * h) as f64;
    Some(10.0 * (255.0f64 * 255.0 / mse).log10())
}
