//! From layout data to tile geometry: a pure function of the canvas spec (and, for fit/fill,
//! of each input's picture size). Both render paths draw exactly this geometry.

use crate::scene::{CanvasSpec, Fit, InputId, Layout, Side, Strip, Tile, TileStyle};

/// A rectangle in canvas pixels (luma), edges as floats so that transitions move smoothly.
/// A pixel is covered when its centre lies inside `[x0, x1) × [y0, y1)`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RectF {
    /// Left edge.
    pub x0: f32,
    /// Top edge.
    pub y0: f32,
    /// Right edge.
    pub x1: f32,
    /// Bottom edge.
    pub y1: f32,
}

impl RectF {
    /// Width.
    pub fn width(&self) -> f32 {
        self.x1 - self.x0
    }
    /// Height.
    pub fn height(&self) -> f32 {
        self.y1 - self.y0
    }
    /// The rectangle moved in by `d` on every side (never inverted).
    pub fn inset(&self, d: f32) -> RectF {
        let dx = d.min(self.width() / 2.0);
        let dy = d.min(self.height() / 2.0);
        RectF { x0: self.x0 + dx, y0: self.y0 + dy, x1: self.x1 - dx, y1: self.y1 - dy }
    }
    /// Linear interpolation from `self` (t = 0) to `o` (t = 1).
    pub fn lerp(&self, o: &RectF, t: f32) -> RectF {
        RectF { x0: lerp(self.x0, o.x0, t), y0: lerp(self.y0, o.y0, t), x1: lerp(self.x1, o.x1, t), y1: lerp(self.y1, o.y1, t) }
    }
    /// As an array `[x0, y0, x1, y1]`.
    pub fn to_array(&self) -> [f32; 4] {
        [self.x0, self.y0, self.x1, self.y1]
    }
}

fn lerp(a: f32, b: f32, t: f32) -> f32 {
    a + (b - a) * t
}

/// A tile placed on a canvas.
#[derive(Debug, Clone, PartialEq)]
pub struct TileGeom {
    /// Which input it shows.
    pub input: InputId,
    /// The tile's outer rectangle (border included), canvas pixels.
    pub rect: RectF,
    /// Stacking order (ascending).
    pub z: i32,
    /// Corner radius, canvas pixels.
    pub radius: f32,
    /// Border thickness, canvas pixels.
    pub border: f32,
    /// Opacity, 0..=1 (transitions fade tiles in and out).
    pub opacity: f32,
    /// Colours, fit and placeholder.
    pub style: TileStyle,
}

/// Why a layout cannot be placed on its canvas.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum LayoutError {
    /// Canvas sides must be even (4:2:0) and at most 8192.
    #[error("canvas \"{canvas}\": size {width}x{height} must be even and between 2 and 8192")]
    CanvasSize {
        /// The canvas.
        canvas: String,
        /// Width asked for.
        width: u32,
        /// Height asked for.
        height: u32,
    },
    /// A grid with fixed rows and columns got more tiles than cells.
    #[error("canvas \"{canvas}\": {tiles} tiles do not fit a {columns}x{rows} grid")]
    TooManyTiles {
        /// The canvas.
        canvas: String,
        /// Tiles given.
        tiles: usize,
        /// Columns fixed.
        columns: u32,
        /// Rows fixed.
        rows: u32,
    },
    /// Zero rows or columns.
    #[error("canvas \"{canvas}\": a grid needs at least one row and one column")]
    EmptyGrid {
        /// The canvas.
        canvas: String,
    },
    /// A strip size outside (0, 1).
    #[error("canvas \"{canvas}\": strip size {size} must be between 0 and 1")]
    StripSize {
        /// The canvas.
        canvas: String,
        /// Size given.
        size: f32,
    },
    /// A custom rectangle with no area.
    #[error("canvas \"{canvas}\": custom tile for input \"{input}\" has zero size")]
    EmptyRect {
        /// The canvas.
        canvas: String,
        /// The tile's input.
        input: String,
    },
}

/// Rounds to an even pixel so that tile edges fall on chroma sample boundaries.
fn snap(v: f32) -> f32 {
    (v / 2.0).round() * 2.0
}

fn geom(tile: &Tile, rect: RectF, z: i32) -> TileGeom {
    TileGeom {
        input: tile.input.clone(),
        rect,
        z,
        radius: tile.style.corner_radius as f32,
        border: tile.style.border_width as f32,
        opacity: 1.0,
        style: tile.style,
    }
}

/// Places every tile of `spec.layout` on its canvas, in drawing order (ascending z, stable).
pub fn resolve(spec: &CanvasSpec) -> Result<Vec<TileGeom>, LayoutError> {
    let canvas = || spec.id.0.to_string();
    if spec.width < 2 || spec.height < 2 || spec.width > 8192 || spec.height > 8192 || spec.width % 2 == 1 || spec.height % 2 == 1 {
        return Err(LayoutError::CanvasSize { canvas: canvas(), width: spec.width, height: spec.height });
    }
    let (w, h) = (spec.width as f32, spec.height as f32);
    let full = RectF { x0: 0.0, y0: 0.0, x1: w, y1: h };
    let mut out = match &spec.layout {
        Layout::Grid { tiles, columns, rows, gap } => {
            let n = tiles.len() as u32;
            let (cols, rows) = match (*columns, *rows) {
                (Some(c), Some(r)) => {
                    if c == 0 || r == 0 {
                        return Err(LayoutError::EmptyGrid { canvas: canvas() });
                    }
                    if n > c.saturating_mul(r) {
                        return Err(LayoutError::TooManyTiles { canvas: canvas(), tiles: tiles.len(), columns: c, rows: r });
                    }
                    (c, r)
                }
                (Some(0), None) | (None, Some(0)) => return Err(LayoutError::EmptyGrid { canvas: canvas() }),
                (Some(c), None) => (c, n.div_ceil(c).max(1)),
                (None, Some(r)) => (n.div_ceil(r).max(1), r),
                (None, None) => {
                    let c = (n as f64).sqrt().ceil().max(1.0) as u32;
                    (c, n.div_ceil(c).max(1))
                }
            };
            grid_cells(full, tiles.len(), cols, rows, *gap as f32).into_iter().zip(tiles).map(|(r, t)| geom(t, r, 0)).collect()
        }
        Layout::ActiveSpeaker { speaker: main, others, strip } | Layout::Presentation { presentation: main, others, strip } => {
            if !(strip.size > 0.0 && strip.size < 1.0) {
                return Err(LayoutError::StripSize { canvas: canvas(), size: strip.size });
            }
            let (main_rect, cells) = main_and_strip(full, others.len(), strip);
            std::iter::once(geom(main, main_rect, 0)).chain(cells.into_iter().zip(others).map(|(r, t)| geom(t, r, 0))).collect()
        }
        Layout::Custom { tiles } => {
            let mut v = Vec::with_capacity(tiles.len());
            for t in tiles {
                if t.rect.width == 0 || t.rect.height == 0 {
                    return Err(LayoutError::EmptyRect { canvas: canvas(), input: t.tile.input.to_string() });
                }
                let r =
                    RectF { x0: t.rect.x as f32, y0: t.rect.y as f32, x1: t.rect.x as f32 + t.rect.width as f32, y1: t.rect.y as f32 + t.rect.height as f32 };
                v.push(geom(&t.tile, r, t.z));
            }
            v
        }
    };
    out.sort_by_key(|g| g.z);
    Ok(out)
}

/// `n` cells of a `cols × rows` grid in reading order, the last row centred.
fn grid_cells(area: RectF, n: usize, cols: u32, rows: u32, gap: f32) -> Vec<RectF> {
    let cw = ((area.width() - gap * (cols as f32 + 1.0)) / cols as f32).max(2.0);
    let ch = ((area.height() - gap * (rows as f32 + 1.0)) / rows as f32).max(2.0);
    let mut cells = Vec::with_capacity(n);
    for i in 0..n as u32 {
        let (r, c) = (i / cols, i % cols);
        let in_row = (n as u32 - r * cols).min(cols);
        let shift = (cols - in_row) as f32 * (cw + gap) / 2.0;
        let x = area.x0 + gap + c as f32 * (cw + gap) + shift;
        let y = area.y0 + gap + r as f32 * (ch + gap);
        cells.push(RectF { x0: snap(x), y0: snap(y), x1: snap(x + cw), y1: snap(y + ch) });
    }
    cells
}

/// The main area and `n` strip cells of 16:9 (smaller when they would not fit), centred.
fn main_and_strip(full: RectF, n: usize, strip: &Strip) -> (RectF, Vec<RectF>) {
    if n == 0 {
        return (full, Vec::new());
    }
    let gap = strip.gap as f32;
    let horizontal = matches!(strip.side, Side::Top | Side::Bottom);
    let thickness = if horizontal { full.height() } else { full.width() } * strip.size;
    let (main, band) = match strip.side {
        Side::Bottom => (RectF { y1: full.y1 - thickness, ..full }, RectF { y0: full.y1 - thickness, ..full }),
        Side::Top => (RectF { y0: full.y0 + thickness, ..full }, RectF { y1: full.y0 + thickness, ..full }),
        Side::Right => (RectF { x1: full.x1 - thickness, ..full }, RectF { x0: full.x1 - thickness, ..full }),
        Side::Left => (RectF { x0: full.x0 + thickness, ..full }, RectF { x1: full.x0 + thickness, ..full }),
    };
    let across = (thickness - 2.0 * gap).max(2.0);
    let length = if horizontal { band.width() } else { band.height() };
    let nf = n as f32;
    let want = if horizontal { across * 16.0 / 9.0 } else { across * 9.0 / 16.0 };
    let along = want.min((length - gap * (nf + 1.0)) / nf).max(2.0);
    let start = (length - (nf * along + (nf - 1.0) * gap)) / 2.0;
    let cells = (0..n)
        .map(|i| {
            let a = start + i as f32 * (along + gap);
            if horizontal {
                let x = band.x0 + a;
                let y = band.y0 + gap;
                RectF { x0: snap(x), y0: snap(y), x1: snap(x + along), y1: snap(y + across) }
            } else {
                let x = band.x0 + gap;
                let y = band.y0 + a;
                RectF { x0: snap(x), y0: snap(y), x1: snap(x + across), y1: snap(y + along) }
            }
        })
        .collect();
    let main = RectF { x0: snap(main.x0), y0: snap(main.y0), x1: snap(main.x1), y1: snap(main.y1) };
    (main, cells)
}

/// Where a `frame_w × frame_h` picture goes inside `area`, and which part of it (normalised
/// source coordinates `[u0, v0, u1, v1]`) is shown.
///
/// Pictures of 16 px and more land on even canvas pixels and crops on even source pixels (at
/// most 2 px off the exact aspect ratio): chroma samples line up, the picture's edges are whole
/// pixels, and the CPU path scales such a picture in one piece (`cpu::resample`).
pub fn place_picture(area: RectF, frame_w: u32, frame_h: u32, fit: Fit) -> (RectF, [f32; 4]) {
    let (fw, fh) = (frame_w.max(1) as f32, frame_h.max(1) as f32);
    let (aw, ah) = (area.width().max(0.0), area.height().max(0.0));
    if aw <= 0.0 || ah <= 0.0 {
        return (area, [0.0, 0.0, 1.0, 1.0]);
    }
    match fit {
        Fit::Contain => {
            let s = (aw / fw).min(ah / fh);
            let (cw, ch) = (fw * s, fh * s);
            let x0 = area.x0 + (aw - cw) / 2.0;
            let y0 = area.y0 + (ah - ch) / 2.0;
            let exact = RectF { x0, y0, x1: x0 + cw, y1: y0 + ch };
            let snapped = RectF { x0: snap(x0).max(area.x0), y0: snap(y0).max(area.y0), x1: snap(x0 + cw).min(area.x1), y1: snap(y0 + ch).min(area.y1) };
            let content = if cw >= 16.0 && ch >= 16.0 { snapped } else { exact };
            (content, [0.0, 0.0, 1.0, 1.0])
        }
        Fit::Cover => {
            let s = (aw / fw).max(ah / fh);
            let (vw, vh) = ((aw / s / fw).min(1.0), (ah / s / fh).min(1.0));
            let (u0, v0) = ((1.0 - vw) / 2.0, (1.0 - vh) / 2.0);
            let on_pixels = |u: f32, size: f32| (snap(u * size) / size).clamp(0.0, 1.0);
            let crop = if vw * fw >= 16.0 && vh * fh >= 16.0 {
                [on_pixels(u0, fw), on_pixels(v0, fh), on_pixels(u0 + vw, fw), on_pixels(v0 + vh, fh)]
            } else {
                [u0, v0, u0 + vw, v0 + vh]
            };
            (area, crop)
        }
    }
}

/// Interpolates between two tile sets. Tiles are matched by input (the k-th occurrence of an
/// input in `from` with its k-th occurrence in `to`); matched tiles move, unmatched ones fade.
/// `t` is eased progress in 0..=1.
pub fn interpolate(from: &[TileGeom], to: &[TileGeom], t: f32) -> Vec<TileGeom> {
    let key = |tiles: &[TileGeom], i: usize| {
        let id = &tiles[i].input;
        (id.clone(), tiles[..i].iter().filter(|g| &g.input == id).count())
    };
    let mut out = Vec::with_capacity(from.len() + to.len());
    let from_keys: Vec<_> = (0..from.len()).map(|i| key(from, i)).collect();
    let to_keys: Vec<_> = (0..to.len()).map(|i| key(to, i)).collect();
    // Leaving tiles first, so that arriving and moving tiles are drawn over them.
    for (i, g) in from.iter().enumerate() {
        if !to_keys.contains(&from_keys[i]) {
            out.push(TileGeom { opacity: g.opacity * (1.0 - t), ..g.clone() });
        }
    }
    for (i, g) in to.iter().enumerate() {
        match from_keys.iter().position(|k| k == &to_keys[i]) {
            Some(j) => {
                let f = &from[j];
                out.push(TileGeom {
                    rect: f.rect.lerp(&g.rect, t),
                    radius: lerp(f.radius, g.radius, t),
                    border: lerp(f.border, g.border, t),
                    opacity: lerp(f.opacity, g.opacity, t),
                    ..g.clone()
                });
            }
            None => out.push(TileGeom { opacity: g.opacity * t, ..g.clone() }),
        }
    }
    out.sort_by_key(|g| g.z);
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scene::{CanvasId, CustomTile, Rect};
    use mcu_media::{PixelFormat, Rgb};

    fn spec(layout: Layout) -> CanvasSpec {
        CanvasSpec { id: CanvasId::new("c"), width: 1280, height: 720, format: PixelFormat::I420, background: Rgb::BLACK, layout, transition: None }
    }

    fn ids(n: usize) -> Vec<String> {
        (0..n).map(|i| format!("in{i}")).collect()
    }

    #[test]
    fn grid_picks_rows_and_columns_and_covers_the_canvas() {
        for (n, cols, rows) in [(1, 1, 1), (2, 2, 1), (4, 2, 2), (5, 3, 2), (9, 3, 3), (10, 4, 3), (25, 5, 5), (49, 7, 7)] {
            let g = resolve(&spec(Layout::grid(ids(n)))).unwrap();
            assert_eq!(g.len(), n);
            let ys: std::collections::BTreeSet<i32> = g.iter().map(|t| t.rect.y0 as i32).collect();
            assert_eq!(ys.len(), rows, "n={n}: {ys:?}");
            let first_row = g.iter().filter(|t| t.rect.y0 == 0.0).count();
            assert_eq!(first_row, cols.min(n), "n={n}");
            for t in &g {
                assert!(t.rect.x0 >= 0.0 && t.rect.x1 <= 1280.0 && t.rect.y1 <= 720.0);
                assert_eq!(t.rect.x0 % 2.0, 0.0, "edges are even");
            }
        }
        // 2x2: exact quadrants.
        let g = resolve(&spec(Layout::grid(ids(4)))).unwrap();
        assert_eq!(g[3].rect, RectF { x0: 640.0, y0: 360.0, x1: 1280.0, y1: 720.0 });
    }

    #[test]
    fn last_grid_row_is_centred() {
        let g = resolve(&spec(Layout::grid(ids(3)))).unwrap();
        assert_eq!(g[2].rect.x0, 320.0);
        assert_eq!(g[2].rect.x1, 960.0);
    }

    #[test]
    fn fixed_grid_rejects_too_many_tiles() {
        let l = Layout::Grid { tiles: ids(5).iter().map(Tile::new).collect(), columns: Some(2), rows: Some(2), gap: 0 };
        assert!(matches!(resolve(&spec(l)), Err(LayoutError::TooManyTiles { tiles: 5, .. })));
        let mut s = spec(Layout::grid(ids(1)));
        s.width = 641;
        assert!(matches!(resolve(&s), Err(LayoutError::CanvasSize { .. })));
    }

    #[test]
    fn speaker_strip_sits_below_the_speaker() {
        let l = Layout::ActiveSpeaker { speaker: Tile::new("a"), others: ids(3).iter().map(Tile::new).collect(), strip: Strip::bottom() };
        let g = resolve(&spec(l)).unwrap();
        assert_eq!(g[0].rect, RectF { x0: 0.0, y0: 0.0, x1: 1280.0, y1: 576.0 });
        for t in &g[1..] {
            assert!(t.rect.y0 >= 576.0 && t.rect.y1 <= 720.0);
            let aspect = t.rect.width() / t.rect.height();
            assert!((aspect - 16.0 / 9.0).abs() < 0.05, "{aspect}");
        }
        let bad = Layout::ActiveSpeaker { speaker: Tile::new("a"), others: vec![], strip: Strip { size: 1.5, ..Strip::bottom() } };
        assert!(matches!(resolve(&spec(bad)), Err(LayoutError::StripSize { .. })));
    }

    #[test]
    fn custom_tiles_sort_by_z_stably() {
        let t = |id: &str, z| CustomTile { tile: Tile::new(id), rect: Rect { x: 0, y: 0, width: 10, height: 10 }, z };
        let g = resolve(&spec(Layout::Custom { tiles: vec![t("top", 5), t("a", 0), t("b", 0)] })).unwrap();
        let order: Vec<&str> = g.iter().map(|t| &*t.input.0).collect();
        assert_eq!(order, ["a", "b", "top"]);
    }

    #[test]
    fn contain_letterboxes_and_cover_crops() {
        let area = RectF { x0: 0.0, y0: 0.0, x1: 400.0, y1: 400.0 };
        let (c, crop) = place_picture(area, 640, 360, Fit::Contain);
        assert_eq!((c.y0, c.y1), (88.0, 312.0), "87.5..312.5 on even pixels");
        assert_eq!(crop, [0.0, 0.0, 1.0, 1.0]);
        let (c, crop) = place_picture(area, 640, 360, Fit::Cover);
        assert_eq!(c, area);
        assert!((crop[2] - crop[0] - 360.0 / 640.0).abs() < 1e-5 && crop[1].abs() < 1e-6, "{crop:?}");
    }

    #[test]
    fn pictures_land_on_even_pixels() {
        // 640x360 in a 426x240 grid cell: exactly 426 x 239.6 at y 0.2; snapped to the cell.
        let cell = RectF { x0: 426.0, y0: 240.0, x1: 852.0, y1: 480.0 };
        let (c, _) = place_picture(cell, 640, 360, Fit::Contain);
        assert_eq!(c, cell);
        // A 4:3 picture in that cell: 320 x 240 centred at x 479..799 → 480..800.
        let (c, _) = place_picture(cell, 640, 480, Fit::Contain);
        assert_eq!((c.x0, c.x1, c.y0, c.y1), (480.0, 800.0, 240.0, 480.0));
        // Cover crops on even source pixels: 641x359 into a square shows 358 or 360 columns.
        let square = RectF { x0: 0.0, y0: 0.0, x1: 200.0, y1: 200.0 };
        let (_, crop) = place_picture(square, 641, 359, Fit::Cover);
        for (u, size) in [(crop[0], 641.0), (crop[2], 641.0)] {
            assert!(((u * size) % 2.0).abs() < 1e-3, "{crop:?}");
        }
        assert_eq!((crop[1], crop[3]), (0.0, 1.0));
        // Tiny pictures keep their exact shape.
        let tiny = RectF { x0: 0.0, y0: 0.0, x1: 15.0, y1: 15.0 };
        let (c, _) = place_picture(tiny, 640, 360, Fit::Contain);
        assert!((c.height() - 15.0 * 360.0 / 640.0).abs() < 1e-4);
    }

    #[test]
    fn interpolation_moves_matched_tiles_and_fades_the_rest() {
        let a = resolve(&spec(Layout::grid(["x", "y"]))).unwrap();
        let b = resolve(&spec(Layout::grid(["y", "z"]))).unwrap();
        let mid = interpolate(&a, &b, 0.5);
        let find = |id: &str| mid.iter().find(|g| &*g.input.0 == id).unwrap();
        assert_eq!(find("x").opacity, 0.5);
        assert_eq!(find("z").opacity, 0.5);
        assert_eq!(find("y").rect.x0, 320.0, "y moves from 640 to 0");
    }
}
