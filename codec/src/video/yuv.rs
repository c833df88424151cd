//! Moving planes between codec libraries and [`VideoFrame`]s.

use std::time::Duration;

use mcu_media::{PixelFormat, Plane, VideoFrame, frame::chroma_size};

/// Borrowed I420 planes of one picture (what every encoder library reads).
pub(crate) struct I420<'a> {
    pub y: &'a [u8],
    pub u: &'a [u8],
    pub v: &'a [u8],
    /// Strides of Y, U, V.
    pub strides: [usize; 3],
    pub width: u32,
    pub height: u32,
}

/// The frame as I420 planes: borrowed when it is I420, de-interleaved into `scratch` when NV12.
/// The frame must have been validated.
pub(crate) fn as_i420<'a>(frame: &'a VideoFrame, scratch: &'a mut Vec<u8>) -> I420<'a> {
    let (cw, ch) = chroma_size(frame.width, frame.height);
    let (cw, ch) = (cw as usize, ch as usize);
    match frame.format {
        PixelFormat::I420 => I420 {
            y: &frame.planes[0].data,
            u: &frame.planes[1].data,
            v: &frame.planes[2].data,
            strides: [frame.planes[0].stride, frame.planes[1].stride, frame.planes[2].stride],
            width: frame.width,
            height: frame.height,
        },
        PixelFormat::Nv12 => {
            scratch.clear();
            scratch.resize(2 * cw * ch, 0);
            let uv = &frame.planes[1];
            let (u, v) = scratch.split_at_mut(cw * ch);
            for row in 0..ch {
                let src = &uv.data[row * uv.stride..row * uv.stride + 2 * cw];
                for (i, pair) in src.chunks_exact(2).enumerate() {
                    u[row * cw + i] = pair[0];
                    v[row * cw + i] = pair[1];
                }
            }
            let (u, v) = scratch.split_at(cw * ch);
            I420 { y: &frame.planes[0].data, u, v, strides: [frame.planes[0].stride, cw, cw], width: frame.width, height: frame.height }
        }
    }
}

/// Copies `rows` rows of `row_bytes` from a strided source into a tight plane; `None` if the
/// source is shorter than it claims.
fn tight(src: &[u8], stride: usize, row_bytes: usize, rows: usize) -> Option<Vec<u8>> {
    if stride < row_bytes {
        return None;
    }
    let mut out = Vec::with_capacity(row_bytes * rows);
    for r in 0..rows {
        out.extend_from_slice(src.get(r * stride..r * stride + row_bytes)?);
    }
    Some(out)
}

/// A tightly packed frame in `format` from decoder-owned I420 planes (with strides); `None`
/// if a plane is shorter than its stride and size say.
#[allow(clippy::too_many_arguments)]
pub(crate) fn frame_from_i420(
    (y, ys): (&[u8], usize),
    (u, us): (&[u8], usize),
    (v, vs): (&[u8], usize),
    width: u32,
    height: u32,
    format: PixelFormat,
    pts: Duration,
) -> Option<VideoFrame> {
    let (w, h) = (width as usize, height as usize);
    let (cw, ch) = chroma_size(width, height);
    let (cw, ch) = (cw as usize, ch as usize);
    let yp = Plane { data: tight(y, ys, w, h)?, stride: w };
    let planes = match format {
        PixelFormat::I420 => {
            vec![yp, Plane { data: tight(u, us, cw, ch)?, stride: cw }, Plane { data: tight(v, vs, cw, ch)?, stride: cw }]
        }
        PixelFormat::Nv12 => {
            let mut uv = Vec::with_capacity(2 * cw * ch);
            for r in 0..ch {
                let ur = u.get(r * us..r * us + cw)?;
                let vr = v.get(r * vs..r * vs + cw)?;
                for (a, b) in ur.iter().zip(vr) {
                    uv.push(*a);
                    uv.push(*b);
                }
            }
            vec![yp, Plane { data: uv, stride: 2 * cw }]
        }
    };
    VideoFrame::from_planes(format, width, height, planes, pts).ok()
}
