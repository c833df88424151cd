//! The CPU render path: the same `DrawTile`s as the wgpu path, drawn with SIMD plane scaling
//! (`fast_image_resize`, bilinear interpolation sampled at pixel centres exactly like the GPU
//! sampler) into planar canvases, in horizontal bands spread over a rayon pool.
//!
//! Sampling rule shared with `shaders/tile_blend.wgsl`: a canvas pixel is covered by a rectangle
//! when its centre lies in `[x0, x1) × [y0, y1)`; a chroma sample stands for the centre of its
//! 2×2 luma block; a covered pixel at canvas position `p` shows the source at
//! `crop0 + (p − content0) / content_size × crop_size`, bilinearly filtered, clamped at the edges.

use std::collections::HashMap;

use fast_image_resize::{
    FilterType, PixelType, ResizeAlg, ResizeOptions, Resizer,
    images::{CroppedImageMut, Image, ImageRef},
};
use mcu_media::{PixelFormat, Plane, VideoFrame, Yuv};
use rayon::prelude::*;

use crate::{DrawCanvas, DrawTile, RectF, libyuv, scene::InputId};

/// An input's latest picture as tightly packed planar Y, U, V.
struct CpuInput {
    width: u32,
    height: u32,
    /// Y, U, V; each `stride == width` of its plane.
    planes: [Vec<u8>; 3],
}

pub(crate) struct CpuRenderer {
    inputs: HashMap<InputId, CpuInput>,
    /// Worker threads; none for one thread: the caller's thread draws (a pool of one would
    /// only add two thread switches per render).
    pool: Option<rayon::ThreadPool>,
    /// Planes of canvases given back ([`CpuRenderer::recycle`]), drawn into again instead of
    /// allocating and clearing 1.4 MB per 720p canvas.
    spare: Vec<Vec<u8>>,
}

/// Most planes kept for reuse.
const SPARE_PLANES: usize = 24;

/// Splits `height` luma rows into about `target` bands, preferring cuts at tile edges so that a
/// tile is scaled in as few pieces as possible (each piece costs a filter set-up and re-reads the
/// filter's support rows), and never cutting inside `whole` (canvas rows of pictures to scale in
/// one piece: see `libyuv_box`). Cuts are even, so that bands split chroma
/// rows exactly.
fn band_cuts(height: u32, target: usize, tiles: &[DrawTile], whole: &[(f32, f32)]) -> Vec<u32> {
    let allowed = |y: u32| !whole.iter().any(|&(a, b)| a < y as f32 && (y as f32) < b);
    let mut edges: Vec<u32> = tiles
        .iter()
        .flat_map(|t| [t.rect.y0, t.rect.y1])
        .filter(|y| *y > 0.0 && *y < height as f32)
        .map(|y| (y.round() as u32) & !1)
        .filter(|y| allowed(*y))
        .collect();
    edges.sort_unstable();
    edges.dedup();
    let target = target.max(1) as u32;
    let slack = height / target / 2;
    let mut cuts = vec![0];
    for k in 1..target {
        let ideal = (height * k / target) & !1;
        let nearest = |within: u32| edges.iter().copied().filter(|e| e.abs_diff(ideal) <= within).min_by_key(|e| e.abs_diff(ideal));
        let cut = match nearest(slack) {
            Some(edge) => Some(edge),
            None if allowed(ideal) => Some(ideal),
            None => nearest(u32::MAX),
        };
        if let Some(cut) = cut.filter(|c| *c > *cuts.last().expect("starts with 0") && *c < height) {
            cuts.push(cut);
        }
    }
    cuts.push(height);
    cuts
}

impl CpuRenderer {
    /// A renderer on `threads` threads (0: one per core; 1: the caller's thread).
    pub fn new(threads: usize) -> CpuRenderer {
        let pool = (threads != 1).then(|| {
            rayon::ThreadPoolBuilder::new()
                .num_threads(threads)
                .thread_name(|i| format!("compositor-cpu-{i}"))
                .build()
                .expect("a rayon pool with a positive thread count builds")
        });
        CpuRenderer { inputs: HashMap::new(), pool, spare: Vec::new() }
    }

    pub fn threads(&self) -> usize {
        self.pool.as_ref().map_or(1, |p| p.current_num_threads())
    }

    /// Keeps a validated frame as the input's current picture: taken as it is when it is
    /// tightly packed I420 (no copy), else repacked as planar I420.
    pub fn upload(&mut self, id: &InputId, mut frame: VideoFrame) {
        let (cw, ch) = frame.chroma_size();
        let entry = self.inputs.entry(id.clone()).or_insert_with(|| CpuInput { width: 0, height: 0, planes: Default::default() });
        entry.width = frame.width;
        entry.height = frame.height;
        let packed = frame.format == PixelFormat::I420
            && frame.planes[0].stride == frame.width as usize
            && frame.planes[1].stride == cw as usize
            && frame.planes[2].stride == cw as usize;
        if packed {
            for (dst, plane) in entry.planes.iter_mut().zip(frame.planes.iter_mut()) {
                *dst = std::mem::take(&mut plane.data);
            }
            return;
        }
        pack(&frame.planes[0], frame.width as usize, frame.height as usize, &mut entry.planes[0]);
        match frame.format {
            PixelFormat::I420 => {
                pack(&frame.planes[1], cw as usize, ch as usize, &mut entry.planes[1]);
                pack(&frame.planes[2], cw as usize, ch as usize, &mut entry.planes[2]);
            }
            PixelFormat::Nv12 => {
                let [_, u, v] = &mut entry.planes;
                u.clear();
                v.clear();
                let uv = &frame.planes[1];
                for row in 0..ch as usize {
                    let r = &uv.data[row * uv.stride..][..2 * cw as usize];
                    u.extend(r.iter().step_by(2));
                    v.extend(r.iter().skip(1).step_by(2));
                }
            }
        }
    }

    pub fn remove_input(&mut self, id: &InputId) {
        self.inputs.remove(id);
    }

    /// Draws every canvas and returns them in order.
    pub fn draw(&mut self, canvases: &[DrawCanvas]) -> Vec<VideoFrame> {
        let planes: Vec<[Vec<u8>; 3]> = canvases.iter().map(|c| self.planes_for(c)).collect();
        let inputs = &self.inputs;
        let call = DRAW_CALLS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        match &self.pool {
            Some(pool) => {
                let threads = pool.current_num_threads();
                pool.install(|| canvases.par_iter().zip(planes).map(|(c, p)| draw_canvas(c, inputs, p, Some(threads), call)).collect())
            }
            None => canvases.iter().zip(planes).map(|(c, p)| draw_canvas(c, inputs, p, None, call)).collect(),
        }
    }

    /// Takes a drawn canvas back: its planes are drawn into again.
    pub fn recycle(&mut self, frame: VideoFrame) {
        if frame.format != PixelFormat::I420 {
            return;
        }
        for plane in frame.planes {
            if self.spare.len() < SPARE_PLANES && !plane.data.is_empty() {
                self.spare.push(plane.data);
            }
        }
    }

    /// Y, U and V planes for `c`: spare ones of the right sizes, holding whatever was drawn in
    /// them before, when every pixel will be drawn over ([`covers_canvas`]); else planes
    /// filled with the canvas background.
    fn planes_for(&mut self, c: &DrawCanvas) -> [Vec<u8>; 3] {
        let (w, h) = (c.width as usize, c.height as usize);
        let sizes = [w * h, (w / 2) * (h / 2), (w / 2) * (h / 2)];
        let fill = [c.background.y, c.background.u, c.background.v];
        let covered = covers_canvas(c, &self.inputs);
        let mut planes: [Vec<u8>; 3] = Default::default();
        for ((plane, size), bg) in planes.iter_mut().zip(sizes).zip(fill) {
            *plane = match self.spare.iter().position(|b| b.len() == size) {
                Some(i) => {
                    let mut b = self.spare.swap_remove(i);
                    if !covered {
                        b.fill(bg);
                    }
                    b
                }
                None => vec![bg; size],
            };
        }
        planes
    }
}

/// Whether the canvas's opaque picture tiles (with a picture to show) together draw every
/// pixel of every plane, so that nothing of what a plane held before shows through.
fn covers_canvas(c: &DrawCanvas, inputs: &HashMap<InputId, CpuInput>) -> bool {
    let opaque: Vec<&DrawTile> = c.tiles.iter().filter(|t| t.video && t.is_opaque_picture() && inputs.contains_key(&t.input)).collect();
    [1.0f32, 2.0].into_iter().all(|s| {
        let (pw, ph) = ((c.width as f32 / s) as i64, (c.height as f32 / s) as i64);
        let rects: Vec<[i64; 4]> = opaque
            .iter()
            .map(|t| {
                let (x0, x1) = covered(t.rect.x0, t.rect.x1, s);
                let (y0, y1) = covered(t.rect.y0, t.rect.y1, s);
                [x0.max(0), x1.min(pw), y0.max(0), y1.min(ph)]
            })
            .filter(|r| r[0] < r[1] && r[2] < r[3])
            .collect();
        let mut ys: Vec<i64> = rects.iter().flat_map(|r| [r[2], r[3]]).chain([0, ph]).collect();
        ys.sort_unstable();
        ys.dedup();
        ys.windows(2).all(|band| {
            let mut spans: Vec<(i64, i64)> = rects.iter().filter(|r| r[2] <= band[0] && r[3] >= band[1]).map(|r| (r[0], r[1])).collect();
            spans.sort_unstable();
            let reach = spans.iter().try_fold(0i64, |reach, &(lo, hi)| (lo <= reach).then_some(reach.max(hi)));
            reach.is_some_and(|r| r >= pw)
        })
    })
}

fn pack(plane: &Plane, row_bytes: usize, rows: usize, out: &mut Vec<u8>) {
    out.clear();
    if plane.stride == row_bytes {
        out.extend_from_slice(&plane.data[..row_bytes * rows]);
    } else {
        for r in 0..rows {
            out.extend_from_slice(&plane.data[r * plane.stride..][..row_bytes]);
        }
    }
}

/// Which plane a pass draws.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Which {
    Y,
    U,
    V,
}

impl Which {
    /// Canvas px per plane px.
    fn scale(self) -> f32 {
        if self == Which::Y { 1.0 } else { 2.0 }
    }
    fn index(self) -> usize {
        self as usize
    }
    fn pick(self, c: Yuv) -> u8 {
        match self {
            Which::Y => c.y,
            Which::U => c.u,
            Which::V => c.v,
        }
    }
}

/// Plane pixels `[lo, hi)` whose centres (in canvas px) fall in `[a, b)`.
fn covered(a: f32, b: f32, scale: f32) -> (i64, i64) {
    // Pixel k's centre is (k + 0.5) * scale; covered when a <= centre < b.
    let lo = (a / scale - 0.5).ceil() as i64;
    let hi = (b / scale - 0.5).ceil() as i64;
    (lo, hi.max(lo))
}

thread_local! {
    /// Per worker thread, reused across bands.
    static SCRATCH: std::cell::RefCell<Scratch> =
        std::cell::RefCell::new(Scratch { picture: Vec::new(), scalers: Scalers { resizer: Resizer::new(), transposed: Default::default(), tiles: TileCache::default() } });
}

/// Draws one canvas: in bands on the current rayon pool's `threads`, or whole on this thread.
/// `planes` come from [`CpuRenderer::planes_for`].
fn draw_canvas(c: &DrawCanvas, inputs: &HashMap<InputId, CpuInput>, planes: [Vec<u8>; 3], threads: Option<usize>, call: u64) -> VideoFrame {
    let (w, h) = (c.width as usize, c.height as usize);
    let (cw, _) = (w / 2, h / 2);
    let [mut y, mut u, mut v] = planes;
    // Bands of luma rows and the matching chroma rows, drawn independently.
    type BandPlanes<'a> = (u32, &'a mut [u8], &'a mut [u8], &'a mut [u8]);
    // Pictures enlarged vertically are not cut into bands: a cut would rarely fall on a whole
    // source row, which libyuv's enlarging needs (see `libyuv_box`).
    let whole: Vec<(f32, f32)> = c
        .tiles
        .iter()
        .filter(|t| t.video)
        .filter_map(|t| Some((t, inputs.get(&t.input)?)))
        .filter(|(t, input)| t.sample_map(input.width, input.height, 1.0)[1].enlarges(1.0))
        .map(|(t, _)| (t.content.y0, t.content.y1))
        .collect();
    let cuts = band_cuts(c.height, threads.map_or(1, |t| 2 * t), &c.tiles, &whole);
    let mut bands: Vec<BandPlanes> = Vec::with_capacity(cuts.len());
    let (mut ry, mut ru, mut rv) = (&mut y[..], &mut u[..], &mut v[..]);
    for pair in cuts.windows(2) {
        let rows = (pair[1] - pair[0]) as usize;
        let (by, rest_y) = std::mem::take(&mut ry).split_at_mut(rows * w);
        let (bu, rest_u) = std::mem::take(&mut ru).split_at_mut(rows / 2 * cw);
        let (bv, rest_v) = std::mem::take(&mut rv).split_at_mut(rows / 2 * cw);
        (ry, ru, rv) = (rest_y, rest_u, rest_v);
        bands.push((pair[0], by, bu, bv));
    }
    let draw_band = |(row0, by, bu, bv): BandPlanes| {
        SCRATCH.with_borrow_mut(|scratch| {
            scratch.scalers.tiles.for_call(call);
            for (which, buf, pw) in [(Which::Y, by, w), (Which::U, bu, cw), (Which::V, bv, cw)] {
                let prow0 = if which == Which::Y { row0 } else { row0 / 2 };
                let rows = buf.len() / pw;
                let mut band = Band { data: buf, width: pw, row0: prow0 as i64, rows: rows as i64 };
                for t in &c.tiles {
                    let input = t.video.then(|| inputs.get(&t.input)).flatten();
                    draw_tile(&mut band, which, t, input, scratch);
                }
            }
        })
    };
    match threads {
        Some(_) => bands.into_par_iter().for_each(draw_band),
        None => bands.into_iter().for_each(draw_band),
    }
    let planes = match c.format {
        PixelFormat::I420 => vec![Plane { data: y, stride: w }, Plane { data: u, stride: cw }, Plane { data: v, stride: cw }],
        PixelFormat::Nv12 => {
            let uv = u.iter().zip(&v).flat_map(|(&a, &b)| [a, b]).collect();
            vec![Plane { data: y, stride: w }, Plane { data: uv, stride: 2 * cw }]
        }
    };
    VideoFrame { format: c.format, width: c.width, height: c.height, planes, pts: c.pts }
}

/// A worker thread's buffers.
struct Scratch {
    /// A picture drawn before it is blended.
    picture: Vec<u8>,
    scalers: Scalers,
}

/// What [`resample`] scales with.
struct Scalers {
    resizer: Resizer,
    /// The transposed scaling's intermediate pictures.
    transposed: [Vec<u8>; 2],
    /// Pictures scaled during the current draw call.
    tiles: TileCache,
}

/// The draw calls of every renderer, numbered: a worker's [`TileCache`] holds one call's
/// pictures.
static DRAW_CALLS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);

/// Pictures a draw call scaled, by everything their pixels depend on: an input drawn at the
/// same size and crop in several canvases of one call (a classroom's personal canvases, a
/// recording's at the room's size) is scaled once and copied after that.
#[derive(Default)]
struct TileCache {
    call: u64,
    bytes: usize,
    /// Pictures copied rather than scaled, on this thread so far.
    reused: u64,
    pictures: HashMap<TileKey, Vec<u8>>,
}

/// What a scaled picture's pixels depend on: the input's plane, and the source box and steps
/// of the sample map (as bits: equal only when the computation is the same).
#[derive(PartialEq, Eq, Hash)]
struct TileKey {
    input: InputId,
    plane: usize,
    box_: [u64; 4],
    edges: (bool, bool),
    out: (usize, usize),
}

/// Memory a call's cache may hold (a 4K canvas of tiles is 12 MB).
const TILE_CACHE_BYTES: usize = 48 << 20;

impl TileCache {
    fn for_call(&mut self, call: u64) -> &mut TileCache {
        if self.call != call {
            self.call = call;
            self.bytes = 0;
            self.pictures.clear();
        }
        self
    }
}

/// Rows `[row0, row0 + rows)` of one plane.
struct Band<'a> {
    data: &'a mut [u8],
    width: usize,
    row0: i64,
    rows: i64,
}

/// A plane region to write into: `stride`-byte rows, the region's top-left at `(x, y)`.
struct Dst<'a> {
    data: &'a mut [u8],
    stride: usize,
    x: usize,
    y: usize,
}

/// Plane pixels `[x_lo, x_lo + out_w) × [y_lo, y_lo + out_h)` to draw a picture on.
#[derive(Clone, Copy)]
struct Region {
    x_lo: i64,
    y_lo: i64,
    out_w: usize,
    out_h: usize,
}

/// One axis of a region to scale: `n` outputs whose cells start at source position `start`,
/// `step` source pixels each, in a plane `size` pixels long.
#[derive(Clone, Copy)]
struct AxisSpan {
    start: f64,
    step: f64,
    n: usize,
    size: u32,
    /// The sample map's rule on this axis (`AxisMap::edges`).
    edges: bool,
}

impl AxisSpan {
    /// The whole source pixels `(first, count)` that scale to the outputs by the sample map's
    /// rule on this axis (see `DrawTile::sample_map`), when there are such.
    fn source(&self) -> Option<Span> {
        // Tile geometry is f32 (crops in normalised units): positions within 1/1000 px of whole
        // pixels count as whole.
        const EPS: f64 = 1e-3;
        let integral = |v: f64| (v - v.round()).abs() < EPS;
        let (first, count) = if !self.edges {
            // Centres on their share of [start, start + n·step).
            (self.start, self.n as f64 * self.step)
        } else {
            // The first and last centres on whole source pixels, `step` apart.
            (self.start + 0.5 * self.step - 0.5, (self.n - 1) as f64 * self.step + 1.0)
        };
        let fits = first > -EPS && first + count < self.size as f64 + EPS && count >= 1.0 - EPS;
        (self.n > 0 && fits && integral(first) && integral(count)).then(|| (first.round() as usize, count.round() as usize))
    }

    /// Enlarging by the centre rule, which the sample map uses only to enlarge by exactly 2.
    fn doubles(&self) -> bool {
        !self.edges && self.step < 1.0
    }
}

/// Whole source pixels `(first, count)` along one axis.
type Span = (usize, usize);

/// How libyuv scales a source box (see `crate::libyuv`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Libyuv {
    /// One `ScalePlane`.
    Direct,
    /// Transpose, scale rows, transpose, scale rows: only the row blend, never the column filter.
    Transposed,
}

/// How libyuv scales the source box `((left, width), (top, height))` into the `x × y` outputs
/// exactly as the sample map does, or `None` where its kernels follow other rules (then
/// `fast_image_resize` scales).
///
/// `ScalePlane` picks its kernel from both axes' sizes: enlarging by 2 keeps centres on their
/// share only when both axes double (or one doubles and the other keeps its size), and its 3/4
/// and 3/8 shrinking kernels use rounded weights. Scaling rows alone (the transposed way) maps
/// every enlargement first-and-last, so it serves wherever no axis doubles; it is the faster way
/// unless the columns shrink by 2 or more.
fn libyuv_plan(x: AxisSpan, y: AxisSpan) -> Option<(Libyuv, Span, Span)> {
    let (bx, by) = (x.source()?, y.source()?);
    let (same_x, same_y) = (bx.1 == x.n, by.1 == y.n);
    let transposable = !x.doubles() && !y.doubles() && !same_x;
    if transposable && (x.n > bx.1 || 2 * x.n > bx.1) {
        return Some((Libyuv::Transposed, bx, by));
    }
    let doubling_ok = match (x.doubles(), y.doubles()) {
        (true, true) => true,
        (true, false) => same_y && !same_x,
        (false, true) => false,
        (false, false) => true,
    };
    // 2n − 1 outputs from n also take libyuv's doubling kernel.
    let odd_double = |count: usize, n: usize| n > count && n == 2 * count - 1;
    let shrinking = x.n <= bx.1 && y.n <= by.1;
    let special_shrink = shrinking && ((4 * x.n == 3 * bx.1 && 4 * y.n == 3 * by.1) || (8 * x.n == 3 * bx.1 && 8 * y.n == 3 * by.1));
    // Enlarging columns other than by 2 takes the column filter: transposed instead.
    let columns_enlarge = x.n > bx.1 && !x.doubles();
    if doubling_ok && !odd_double(bx.1, x.n) && !odd_double(by.1, y.n) && !special_shrink && !columns_enlarge {
        return Some((Libyuv::Direct, bx, by));
    }
    transposable.then_some((Libyuv::Transposed, bx, by))
}

/// Writes the part of `input`'s plane that lands on plane pixels `[x_lo, x_lo + out_w) ×
/// [y_lo, y_lo + out_h)` (absolute plane coordinates) into `dst`.
///
/// Positions come from the tile's sample map (the GPU path's too). Pictures on whole source
/// pixels (grid cells, speaker and presentation tiles) are scaled by libyuv; other geometry
/// (fractional crops and positions, transitions under way, odd chroma sizes) by
/// `fast_image_resize`, whose boxes take fractional edges; the outermost samples there, whose
/// cells reach past the picture's edge, are filtered here with clamp-to-edge, as the GPU
/// sampler does, because a resize box must lie inside the picture.
fn resample(scalers: &mut Scalers, input: &CpuInput, which: Which, t: &DrawTile, region: Region, dst: Dst) {
    let Region { x_lo, y_lo, out_w, out_h } = region;
    let (sw, sh) = if which == Which::Y { (input.width, input.height) } else { (input.width.div_ceil(2), input.height.div_ceil(2)) };
    let plane = &input.planes[which.index()];
    let s = which.scale() as f64;
    let [mx, my] = t.sample_map(input.width, input.height, s);
    // Output pixel j spans source [left + j*sx, left + (j+1)*sx): its centre is sampled.
    let (sx, sy) = (s * mx.k, s * my.k);
    let left = mx.o + x_lo as f64 * sx;
    let top = my.o + y_lo as f64 * sy;
    if !(sx > 0.0 && sy > 0.0 && left.is_finite() && top.is_finite()) {
        return;
    }
    // The common case (pictures on whole source and canvas pixels, e.g. grid cells): libyuv,
    // where its mapping is the sample map's.
    let along_x = AxisSpan { start: left, step: sx, n: out_w, size: sw, edges: mx.edges };
    let along_y = AxisSpan { start: top, step: sy, n: out_h, size: sh, edges: my.edges };
    // Scaled already in this draw call (the same picture in another canvas): copied.
    let key = TileKey {
        input: t.input.clone(),
        plane: which.index(),
        box_: [left.to_bits(), top.to_bits(), sx.to_bits(), sy.to_bits()],
        edges: (mx.edges, my.edges),
        out: (out_w, out_h),
    };
    let Scalers { resizer, transposed, tiles } = scalers;
    if let Some(picture) = tiles.pictures.get(&key) {
        for k in 0..out_h {
            let at = (dst.y + k) * dst.stride + dst.x;
            dst.data[at..at + out_w].copy_from_slice(&picture[k * out_w..][..out_w]);
        }
        tiles.reused += 1;
        return;
    }
    let (data, (x, y, stride)) = (&mut *dst.data, (dst.x, dst.y, dst.stride));
    if let Some((how, (l, w), (tp, h))) = libyuv_plan(along_x, along_y) {
        let from = libyuv::Region { offset: tp * sw as usize + l, stride: sw as usize, width: w, height: h };
        let to = libyuv::Region { offset: y * stride + x, stride, width: out_w, height: out_h };
        match how {
            Libyuv::Direct => libyuv::scale_plane(plane, from, data, to),
            Libyuv::Transposed => scale_transposed(plane, from, data, to, transposed),
        }
    } else {
        resample_fir(resizer, plane, along_x, along_y, Dst { data: &mut *data, stride, x, y }, &t.input);
    }
    if tiles.bytes + out_w * out_h <= TILE_CACHE_BYTES {
        let mut picture = Vec::with_capacity(out_w * out_h);
        for k in 0..out_h {
            picture.extend_from_slice(&data[(y + k) * stride + x..][..out_w]);
        }
        tiles.bytes += picture.len();
        tiles.pictures.insert(key, picture);
    }
}

/// Scales by rows only: the box transposed (`h` wide, `w` tall), its rows scaled to `out_w`,
/// transposed back (`out_w` wide, `h` tall), its rows scaled to `out_h`. `scratch` holds the
/// intermediate pictures.
fn scale_transposed(src: &[u8], from: libyuv::Region, dst: &mut [u8], to: libyuv::Region, scratch: &mut [Vec<u8>; 2]) {
    use libyuv::Region;
    let (w, h, out_w) = (from.width, from.height, to.width);
    let [a, b] = scratch;
    let tall = |width: usize, height: usize| Region { offset: 0, stride: width, width, height };
    a.resize(h * w.max(out_w), 0);
    b.resize(h * out_w, 0);
    libyuv::transpose_plane(src, from, a, tall(h, w));
    libyuv::scale_plane(a.as_slice(), tall(h, w), b, tall(h, out_w));
    libyuv::transpose_plane(b.as_slice(), tall(h, out_w), a, tall(out_w, h));
    libyuv::scale_plane(a.as_slice(), tall(out_w, h), dst, to);
}

/// [`resample`] for any geometry: `fast_image_resize` (bilinear interpolation with pixel-centre
/// mapping, given boxes with fractional edges) for the outputs whose cells lie inside the
/// picture, and the clamped bilinear rule for the rim around them.
fn resample_fir(resizer: &mut Resizer, plane: &[u8], along_x: AxisSpan, along_y: AxisSpan, dst: Dst, input_id: &InputId) {
    let (AxisSpan { start: left, step: sx, n: out_w, size: sw, .. }, AxisSpan { start: top, step: sy, n: out_h, size: sh, .. }) = (along_x, along_y);
    // Outputs whose cells lie inside the picture: [j0, j1) × [k0, k1).
    let eps = 1e-9;
    let j0 = ((-left / sx) - eps).ceil().clamp(0.0, out_w as f64) as usize;
    let j1 = (((sw as f64 - left) / sx) + eps).floor().clamp(j0 as f64, out_w as f64) as usize;
    let k0 = ((-top / sy) - eps).ceil().clamp(0.0, out_h as f64) as usize;
    let k1 = (((sh as f64 - top) / sy) + eps).floor().clamp(k0 as f64, out_h as f64) as usize;
    let rows = dst.data.len() / dst.stride;
    if j0 < j1 && k0 < k1 {
        let src = ImageRef::new(sw, sh, &plane[..(sw * sh) as usize], PixelType::U8).expect("packed planes hold their size");
        let box_left = (left + j0 as f64 * sx).clamp(0.0, sw as f64);
        let box_top = (top + k0 as f64 * sy).clamp(0.0, sh as f64);
        let box_w = ((j1 - j0) as f64 * sx).min(sw as f64 - box_left);
        let box_h = ((k1 - k0) as f64 * sy).min(sh as f64 - box_top);
        let bilinear = ResizeOptions::new().resize_alg(ResizeAlg::Interpolation(FilterType::Bilinear));
        let (out_w, out_h) = ((j1 - j0) as u32, (k1 - k0) as u32);
        let mut img = Image::from_slice_u8(dst.stride as u32, rows as u32, dst.data, PixelType::U8).expect("destination holds its rows");
        let mut view = CroppedImageMut::new(&mut img, (dst.x + j0) as u32, (dst.y + k0) as u32, out_w, out_h).expect("region lies inside the destination");
        // fast_image_resize runs the vertical pass first for 8-bit pictures, which is cheaper when
        // shrinking; when enlarging vertically it makes the (costlier) horizontal pass run over
        // the enlarged row count, so there the horizontal pass goes first, over the source rows.
        let enlarging = box_h < out_h as f64 && box_w != out_w as f64;
        let result = if enlarging {
            let ry0 = (box_top.floor() - 1.0).max(0.0);
            let ry1 = ((box_top + box_h).ceil() + 1.0).min(sh as f64);
            let temp_rows = (ry1 - ry0) as u32;
            let mut temp = Image::new(out_w, temp_rows, PixelType::U8);
            resizer
                .resize(&src, &mut temp, &bilinear.crop(box_left, ry0, box_w, ry1 - ry0))
                .and_then(|()| resizer.resize(&temp, &mut view, &bilinear.crop(0.0, box_top - ry0, out_w as f64, box_h)))
        } else {
            resizer.resize(&src, &mut view, &bilinear.crop(box_left, box_top, box_w, box_h))
        };
        if let Err(e) = result {
            // Not reachable with U8 views of the sizes computed above; a bug, not worth a crash.
            tracing::error!(input = %input_id, "CPU resize failed: {e}");
        }
    }
    // The rim: rows above k0 and below k1 in full, columns left of j0 and right of j1 between.
    let sample = |j: usize, k: usize| bilinear(plane, sw as usize, sh as usize, left + (j as f64 + 0.5) * sx, top + (k as f64 + 0.5) * sy);
    for k in 0..out_h {
        let row = &mut dst.data[(dst.y + k) * dst.stride + dst.x..][..out_w];
        let rim: [std::ops::Range<usize>; 2] = if k < k0 || k >= k1 { [0..out_w, 0..0] } else { [0..j0, j1..out_w] };
        for j in rim.into_iter().flatten() {
            row[j] = sample(j, k);
        }
    }
}

/// Bilinear sample at source position `(x, y)` (pixel centres at half-integers), clamped to
/// the edges: the GPU sampler's rule.
fn bilinear(plane: &[u8], w: usize, h: usize, x: f64, y: f64) -> u8 {
    let (x, y) = (x - 0.5, y - 0.5);
    let (x0, y0) = (x.floor(), y.floor());
    let (fx, fy) = (x - x0, y - y0);
    let ix = |v: f64| (v.max(0.0) as usize).min(w - 1);
    let iy = |v: f64| (v.max(0.0) as usize).min(h - 1);
    let (xa, xb, ya, yb) = (ix(x0), ix(x0 + 1.0), iy(y0), iy(y0 + 1.0));
    let p = |xx: usize, yy: usize| plane[yy * w + xx] as f64;
    let top = p(xa, ya) + (p(xb, ya) - p(xa, ya)) * fx;
    let bottom = p(xa, yb) + (p(xb, yb) - p(xa, yb)) * fx;
    (top + (bottom - top) * fy).round().clamp(0.0, 255.0) as u8
}

fn draw_tile(band: &mut Band, which: Which, t: &DrawTile, input: Option<&CpuInput>, scratch: &mut Scratch) {
    let Scratch { picture: scratch, scalers } = scratch;
    let s = which.scale();
    let (x_lo, x_hi) = covered(t.rect.x0, t.rect.x1, s);
    let (y_lo, y_hi) = covered(t.rect.y0, t.rect.y1, s);
    let x_lo = x_lo.max(0);
    let x_hi = x_hi.min(band.width as i64);
    let y_lo = y_lo.max(band.row0);
    let y_hi = y_hi.min(band.row0 + band.rows);
    if x_lo >= x_hi || y_lo >= y_hi {
        return;
    }
    let opaque = input.is_some() && t.is_opaque_picture();
    if opaque {
        // Resize straight into the canvas.
        let (out_w, out_h) = ((x_hi - x_lo) as usize, (y_hi - y_lo) as usize);
        let dst = Dst { data: &mut *band.data, stride: band.width, x: x_lo as usize, y: (y_lo - band.row0) as usize };
        let region = Region { x_lo, y_lo, out_w, out_h };
        resample(scalers, input.expect("opaque tiles have input"), which, t, region, dst);
        return;
    }
    // General tile: picture (where inside the content rect) or background, border, rounded
    // coverage, opacity; blended over the canvas.
    let (cx_lo, cx_hi) = covered(t.content.x0, t.content.x1, s);
    let (cy_lo, cy_hi) = covered(t.content.y0, t.content.y1, s);
    let (cx_lo, cx_hi) = (cx_lo.max(x_lo), cx_hi.min(x_hi).max(cx_lo.max(x_lo)));
    let (cy_lo, cy_hi) = (cy_lo.max(y_lo), cy_hi.min(y_hi).max(cy_lo.max(y_lo)));
    let pic_w = (cx_hi - cx_lo) as usize;
    let pic_h = (cy_hi - cy_lo) as usize;
    let has_pic = input.is_some() && pic_w > 0 && pic_h > 0;
    if has_pic {
        scratch.clear();
        scratch.resize(pic_w * pic_h, 0);
        let dst = Dst { data: &mut scratch[..], stride: pic_w, x: 0, y: 0 };
        let region = Region { x_lo: cx_lo, y_lo: cy_lo, out_w: pic_w, out_h: pic_h };
        resample(scalers, input.expect("checked"), which, t, region, dst);
    }
    let bg = which.pick(t.background) as f32;
    let border_c = which.pick(t.border_color) as f32;
    let simple = t.radius <= 0.0 && t.border <= 0.0;
    let inner = RectF { x0: t.rect.x0 + t.border, y0: t.rect.y0 + t.border, x1: t.rect.x1 - t.border, y1: t.rect.y1 - t.border };
    let inner_radius = (t.radius - t.border).max(0.0);
    for py in y_lo..y_hi {
        let row = &mut band.data[(py - band.row0) as usize * band.width..][..band.width];
        let cy = (py as f32 + 0.5) * s;
        for px in x_lo..x_hi {
            let in_pic = has_pic && px >= cx_lo && px < cx_hi && py >= cy_lo && py < cy_hi;
            let mut c = if in_pic { scratch[(py - cy_lo) as usize * pic_w + (px - cx_lo) as usize] as f32 } else { bg };
            let mut alpha = t.opacity;
            if !simple {
                let p = ((px as f32 + 0.5) * s, cy);
                if t.radius > 0.0 {
                    alpha *= (0.5 - rounded_rect_sdf(p, &t.rect, t.radius)).clamp(0.0, 1.0);
                }
                if t.border > 0.0 {
                    let m = (0.5 + rounded_rect_sdf(p, &inner, inner_radius)).clamp(0.0, 1.0);
                    c += (border_c - c) * m;
                }
            }
            let d = &mut row[px as usize];
            *d = if alpha >= 1.0 { c.round() as u8 } else { (c * alpha + *d as f32 * (1.0 - alpha)).round().clamp(0.0, 255.0) as u8 };
        }
    }
}

/// Signed distance from `p` to a rounded rectangle (negative inside), canvas px; the shader's
/// `rounded_rect_sdf`.
fn rounded_rect_sdf(p: (f32, f32), r: &RectF, radius: f32) -> f32 {
    let (hx, hy) = (r.width() * 0.5, r.height() * 0.5);
    let (cx, cy) = (r.x0 + hx, r.y0 + hy);
    let rad = radius.min(hx.min(hy));
    let qx = (p.0 - cx).abs() - hx + rad;
    let qy = (p.1 - cy).abs() - hy + rad;
    (qx.max(0.0).hypot(qy.max(0.0))) + qx.max(qy).min(0.0) - rad
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    /// A 10 px wide picture tile over rows `[y0, y1)`.
    fn tile(y0: f32, y1: f32) -> DrawTile {
        DrawTile::opaque_for_tests(RectF { x0: 0.0, y0, x1: 10.0, y1 }, [0.0, 0.0, 1.0, 1.0])
    }

    #[test]
    fn bands_cut_at_tile_edges_when_near() {
        let grid: Vec<DrawTile> = [0.0, 240.0, 480.0].iter().map(|&y| tile(y, y + 240.0)).collect();
        assert_eq!(band_cuts(720, 4, &grid, &[]), vec![0, 240, 360, 480, 720]);
        assert_eq!(band_cuts(720, 3, &grid, &[]), vec![0, 240, 480, 720]);
        assert_eq!(band_cuts(720, 4, &[], &[]), vec![0, 180, 360, 540, 720]);
        assert_eq!(band_cuts(720, 1, &grid, &[]), vec![0, 720]);
    }

    #[test]
    fn bands_never_cut_a_picture_scaled_whole() {
        // Two rows of enlarged pictures: the only cut is between them.
        let two = [tile(0.0, 540.0), tile(540.0, 1080.0)];
        assert_eq!(band_cuts(1080, 4, &two, &[(0.0, 540.0), (540.0, 1080.0)]), vec![0, 540, 1080]);
        // One picture over the whole canvas: one band.
        assert_eq!(band_cuts(720, 4, &[tile(0.0, 720.0)], &[(0.0, 720.0)]), vec![0, 720]);
        // Cuts outside it go where they would (the first at its edge, which is near).
        assert_eq!(band_cuts(720, 4, &[tile(0.0, 100.0)], &[(0.0, 100.0)]), vec![0, 100, 360, 540, 720]);
    }

    /// libyuv (both ways) and the `fast_image_resize` path scale by the same map: compared on a
    /// picture of sharp stripes and a gradient, for shrinking a little and a lot, enlarging by
    /// 1.5 and by 2 (on one axis and on both), heights alone, and a region cut out of a larger
    /// output.
    #[test]
    fn both_scalers_follow_the_sample_map() {
        let (sw, sh) = (64u32, 36u32);
        let plane: Vec<u8> = (0..sw * sh).map(|i| if (i % sw / 3) % 2 == 0 { 30 + (i / sw) as u8 * 4 } else { 220 }).collect();
        let mut resizer = Resizer::new();
        let mut transposed = Default::default();
        // (outputs, source pixels) per axis, the region's first output row, and libyuv's way.
        let cases = [
            ((40, 64), (24, 36), 0, Libyuv::Transposed),
            ((20, 64), (12, 36), 0, Libyuv::Direct),
            ((96, 64), (54, 36), 0, Libyuv::Transposed),
            ((128, 64), (72, 36), 0, Libyuv::Direct),
            ((128, 64), (36, 36), 0, Libyuv::Direct),
            ((64, 64), (54, 36), 0, Libyuv::Direct),
            ((48, 64), (27, 36), 0, Libyuv::Transposed),
            ((40, 64), (12, 36), 6, Libyuv::Transposed),
        ];
        for ((nx, cx), (ny, cy), row0, way) in cases {
            let axis = |n: usize, count: usize, size: u32, first_out: usize| {
                let k = count as f64 / n as f64;
                if k < 1.0 && n != 2 * count {
                    // Enlarging: first and last centres on the source's first and last.
                    let step = (count as f64 - 1.0) / (n as f64 - 1.0);
                    AxisSpan { start: 0.5 - 0.5 * step + first_out as f64 * step, step, n, size, edges: true }
                } else {
                    AxisSpan { start: first_out as f64 * k, step: k, n, size, edges: false }
                }
            };
            let (ax, ay) = (axis(nx, cx, sw, 0), axis(ny, cy, sh, row0));
            let ay = AxisSpan { n: ay.n - row0, ..ay };
            let what = format!("{nx}x{ny} from {cx}x{cy} at row {row0}");
            let Some((how, (l, w), (t, h))) = libyuv_plan(ax, ay) else { panic!("libyuv takes {what}") };
            assert_eq!(how, way, "{what}");
            let mut a = vec![0u8; ax.n * ay.n];
            let from = libyuv::Region { offset: t * sw as usize + l, stride: sw as usize, width: w, height: h };
            let to = libyuv::Region { offset: 0, stride: ax.n, width: ax.n, height: ay.n };
            match how {
                Libyuv::Direct => libyuv::scale_plane(&plane, from, &mut a, to),
                Libyuv::Transposed => scale_transposed(&plane, from, &mut a, to, &mut transposed),
            }
            let mut b = vec![0u8; ax.n * ay.n];
            resample_fir(&mut resizer, &plane, ax, ay, Dst { data: &mut b, stride: ax.n, x: 0, y: 0 }, &InputId::new("t"));
            let worst = a.iter().zip(&b).map(|(p, q)| p.abs_diff(*q)).max().unwrap();
            assert!(worst <= 3, "{what}: libyuv ({how:?}) and fast_image_resize differ by {worst}");
        }
    }

    #[test]
    fn libyuv_is_left_the_cases_its_kernels_do_otherwise() {
        let span = |n: usize, count: usize| AxisSpan {
            start: if count < n && n != 2 * count { 0.5 - 0.5 * (count - 1) as f64 / (n - 1) as f64 } else { 0.0 },
            step: if count < n && n != 2 * count { (count - 1) as f64 / (n - 1) as f64 } else { count as f64 / n as f64 },
            n,
            size: count as u32,
            edges: count < n && n != 2 * count,
        };
        let way = |x, y| libyuv_plan(x, y).map(|(how, _, _)| how);
        // One axis doubled, the other shrunk or enlarged: ScalePlane would map the doubled axis
        // first-and-last, and rows alone map every enlargement so.
        assert_eq!(way(span(128, 64), span(24, 36)), None);
        assert_eq!(way(span(96, 64), span(72, 36)), None);
        assert_eq!(way(span(64, 64), span(72, 36)), None);
        // Both doubled: ScalePlane's doubling kernel.
        assert_eq!(way(span(128, 64), span(72, 36)), Some(Libyuv::Direct));
        // 3/4 in both axes: rows alone, not ScalePlane's 3:1 kernel.
        assert_eq!(way(span(48, 64), span(27, 36)), Some(Libyuv::Transposed));
        // A box past the picture's edge.
        assert_eq!(way(AxisSpan { start: 8.0, ..span(40, 64) }, span(24, 36)), None);
    }

    /// The same picture at the same size in two canvases (at other places) is scaled once and
    /// copied; each canvas comes out as it does drawn alone.
    #[test]
    fn a_picture_shared_by_canvases_is_scaled_once() {
        let frame = mcu_media::testsrc::frame(
            &mcu_media::testsrc::Pattern::Card { color: mcu_media::testsrc::palette(3), label: 7 },
            PixelFormat::I420,
            64,
            36,
            Duration::ZERO,
        );
        let at = |x: f32, y: f32| DrawTile::opaque_for_tests(RectF { x0: x, y0: y, x1: x + 32.0, y1: y + 18.0 }, [0.0, 0.0, 1.0, 1.0]);
        let canvas = |id: &str, tile: DrawTile| DrawCanvas {
            id: crate::CanvasId::new(id),
            width: 64,
            height: 36,
            format: PixelFormat::I420,
            background: mcu_media::Rgb::BLACK.to_yuv(),
            tiles: vec![tile],
            pts: Duration::ZERO,
        };
        let (one, two) = (canvas("one", at(0.0, 0.0)), canvas("two", at(32.0, 18.0)));
        let renderer = || {
            let mut r = CpuRenderer::new(1);
            r.upload(&InputId::new("a"), frame.clone());
            r
        };
        let reused = || SCRATCH.with_borrow(|s| s.scalers.tiles.reused);
        let before = reused();
        let both = renderer().draw(&[one.clone(), two.clone()]);
        assert_eq!(reused() - before, 3, "the second canvas copies the first's Y, U and V pictures");
        let alone = [renderer().draw(&[one])[0].clone(), renderer().draw(&[two])[0].clone()];
        assert_eq!(reused() - before, 3, "nothing reused across draw calls");
        for (a, b) in both.iter().zip(&alone) {
            assert_eq!(a.planes, b.planes, "drawn with the copy, as drawn alone");
        }
        assert!(both[1].planes[0].data[20 * 64 + 40] != both[1].planes[0].data[5 * 64 + 5], "the picture is at its own place");
    }

    #[test]
    fn coverage_follows_pixel_centres() {
        assert_eq!(covered(0.0, 4.0, 1.0), (0, 4));
        assert_eq!(covered(0.5, 4.5, 1.0), (0, 4), "centre 0.5 is inside [0.5, 4.5)");
        assert_eq!(covered(0.6, 4.4, 1.0), (1, 4));
        // Chroma: sample k stands for canvas px 2k+1.
        assert_eq!(covered(0.0, 4.0, 2.0), (0, 2));
        assert_eq!(covered(1.0, 5.0, 2.0), (0, 2));
        assert_eq!(covered(1.5, 5.0, 2.0), (1, 2));
    }

    #[test]
    fn sdf_is_negative_inside_and_rounds_corners() {
        let r = RectF { x0: 0.0, y0: 0.0, x1: 100.0, y1: 50.0 };
        assert!(rounded_rect_sdf((50.0, 25.0), &r, 10.0) < -20.0);
        assert!((rounded_rect_sdf((0.0, 25.0), &r, 10.0)).abs() < 1e-4);
        // The very corner is outside a rounded rectangle.
        assert!(rounded_rect_sdf((0.5, 0.5), &r, 10.0) > 2.0);
    }
}
