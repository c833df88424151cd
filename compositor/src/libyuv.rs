//! The plane scaler of the CPU path: libyuv's `ScalePlane` (the system library, Debian package
//! `libyuv-dev`; the scaler WebRTC in Chromium uses), bilinear.
//!
//! Its mapping, which the CPU path checks against the tile's sample map before it picks this
//! scaler (`cpu::libyuv_box`): scaling a `sw`-wide source to `dw` outputs, output `j` samples
//! source pixel index (centres at whole numbers)
//! - down (or equal), and up by exactly 2 (in both axes, or one with the other unscaled):
//!   `(j + 0.5) · sw/dw − 0.5`, each output on the centre of its share;
//! - other enlargements: `j · (sw − 1)/(dw − 1)`, the first and last outputs on the first and
//!   last source pixels.
//!
//! `DrawTile::sample_map` follows the same rules, so both render paths agree.
//!
//!
//! `ScalePlane`'s column filter (`ScaleFilterCols`, SSSE3, one output at a time) costs 3× its
//! row blend (`InterpolateRow`, AVX2, 32 at a time): enlarging 640×360 to 960×540 takes 0.46 ms
//! of this machine's CPU directly, 0.13 ms as transpose ([`transpose_plane`]), scale rows,
//! transpose, scale rows; the CPU path goes that way where it pays (`cpu::libyuv_plan`). The
//! column filter enlarging is also the one kernel that reads a byte past a row's last pixel (with
//! weight 0); the CPU path never asks for it, so sources need no padding.
#![allow(unsafe_code)]

use std::os::raw::c_int;

/// libyuv's `enum FilterMode`.
const K_FILTER_BILINEAR: c_int = 2;

#[link(name = "yuv")]
unsafe extern "C" {
    fn ScalePlane(
        src: *const u8,
        src_stride: c_int,
        src_width: c_int,
        src_height: c_int,
        dst: *mut u8,
        dst_stride: c_int,
        dst_width: c_int,
        dst_height: c_int,
        filtering: c_int,
    );
    fn TransposePlane(src: *const u8, src_stride: c_int, dst: *mut u8, dst_stride: c_int, width: c_int, height: c_int);
}

/// A plane region: `width × height` pixels of `stride`-byte rows starting at byte `offset`.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Region {
    pub offset: usize,
    pub stride: usize,
    pub width: usize,
    pub height: usize,
}

impl Region {
    /// The bytes the region spans, from its first pixel to one past its last.
    fn end(&self) -> usize {
        self.offset + (self.height - 1) * self.stride + self.width
    }
}

/// Panics (a bug in the caller, not input) when a region is empty, lies outside its buffer, or
/// is larger than libyuv's `int` sizes.
fn check(src: &[u8], from: &Region, dst: &[u8], to: &Region) {
    for r in [from, to] {
        assert!(r.width > 0 && r.height > 0 && r.width <= r.stride, "a non-empty region within its rows: {r:?}");
        assert!(r.stride <= c_int::MAX as usize && r.height <= c_int::MAX as usize, "libyuv sizes are ints: {r:?}");
    }
    assert!(from.end() <= src.len(), "source region {from:?} inside {} bytes", src.len());
    assert!(to.end() <= dst.len(), "destination region {to:?} inside {} bytes", dst.len());
}

/// Scales the `from` region of `src` into the `to` region of `dst`, bilinear. The caller does
/// not ask it to enlarge horizontally other than by 2 (see the module docs).
pub(crate) fn scale_plane(src: &[u8], from: Region, dst: &mut [u8], to: Region) {
    check(src, &from, dst, &to);
    debug_assert!(to.width <= from.width || to.width == 2 * from.width, "no column-filter enlarging: {from:?} -> {to:?}");
    // SAFETY: both regions lie inside their slices (checked above), the slices do not overlap
    // (one is borrowed shared, the other exclusively), libyuv writes only the destination
    // region's pixels and, for the sizes allowed here, reads only the source region's.
    unsafe {
        ScalePlane(
            src.as_ptr().add(from.offset),
            from.stride as c_int,
            from.width as c_int,
            from.height as c_int,
            dst.as_mut_ptr().add(to.offset),
            to.stride as c_int,
            to.width as c_int,
            to.height as c_int,
            K_FILTER_BILINEAR,
        );
    }
}

/// Writes the `from` region of `src` transposed into `dst`: `to` is `from.height` wide and
/// `from.width` tall.
pub(crate) fn transpose_plane(src: &[u8], from: Region, dst: &mut [u8], to: Region) {
    check(src, &from, dst, &to);
    assert!(to.width == from.height && to.height == from.width, "a transposed region: {from:?} -> {to:?}");
    // SAFETY: as in `scale_plane`; a transpose reads and writes exactly its two regions.
    unsafe {
        TransposePlane(
            src.as_ptr().add(from.offset),
            from.stride as c_int,
            dst.as_mut_ptr().add(to.offset),
            to.stride as c_int,
            from.width as c_int,
            from.height as c_int,
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ramp(w: usize, h: usize) -> Vec<u8> {
        (0..w * h).map(|i| ((i % w) * 255 / (w - 1)) as u8).collect()
    }

    #[test]
    fn halving_averages_pixel_pairs() {
        let src = [10u8, 30, 50, 70, 10, 30, 50, 70];
        let mut dst = [0u8; 2];
        scale_plane(&src, Region { offset: 0, stride: 4, width: 4, height: 2 }, &mut dst, Region { offset: 0, stride: 2, width: 2, height: 1 });
        assert_eq!(dst, [20, 60]);
    }

    #[test]
    fn enlarging_rows_keeps_a_ramp_a_ramp_and_writes_only_the_region() {
        // A vertical ramp (the ramp transposed) enlarged in height only.
        let (w, h) = (36, 64);
        let mut src = vec![0u8; w * h];
        transpose_plane(&ramp(h, w), Region { offset: 0, stride: h, width: h, height: w }, &mut src, Region { offset: 0, stride: w, width: w, height: h });
        let mut dst = vec![7u8; 100 * 200];
        let to = Region { offset: 10 * 100 + 20, stride: 100, width: 36, height: 96 };
        scale_plane(&src, Region { offset: 0, stride: w, width: w, height: h }, &mut dst, to);
        let column: Vec<u8> = (0..96).map(|r| dst[(10 + r) * 100 + 20 + 5]).collect();
        assert!(column.windows(2).all(|p| p[1] >= p[0]), "monotonic: {column:?}");
        assert_eq!((column[0], column[95]), (0, 255), "first and last rows on the first and last");
        assert_eq!(dst[10 * 100 + 19], 7, "left of the region untouched");
        assert_eq!(dst[10 * 100 + 20 + 36], 7, "right of the region untouched");
        assert_eq!(dst[(10 + 96) * 100 + 20], 7, "below the region untouched");
    }

    #[test]
    fn transposing_swaps_rows_and_columns() {
        let src: Vec<u8> = (0..12).collect();
        let mut dst = vec![0u8; 12];
        transpose_plane(&src, Region { offset: 0, stride: 4, width: 4, height: 3 }, &mut dst, Region { offset: 0, stride: 3, width: 3, height: 4 });
        assert_eq!(dst, [0, 4, 8, 1, 5, 9, 2, 6, 10, 3, 7, 11]);
    }

    #[test]
    #[should_panic(expected = "inside")]
    fn a_region_past_its_buffer_is_a_bug() {
        let src = vec![0u8; 15];
        let mut dst = vec![0u8; 64];
        scale_plane(&src, Region { offset: 0, stride: 4, width: 4, height: 4 }, &mut dst, Region { offset: 0, stride: 8, width: 2, height: 2 });
    }
}
