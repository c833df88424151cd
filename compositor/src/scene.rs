//! Layouts as data: what the control API sets and the renderer draws.

use std::{fmt, sync::Arc, time::Duration};

use mcu_media::{PixelFormat, Rgb};

/// Names a video input (a participant's camera, a screen share, a SIP leg).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct InputId(pub Arc<str>);

impl InputId {
    /// An id from text.
    pub fn new(s: impl AsRef<str>) -> InputId {
        InputId(Arc::from(s.as_ref()))
    }
}

impl fmt::Display for InputId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Names an output canvas (a room's composite, or one viewer's personalised canvas).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct CanvasId(pub Arc<str>);

impl CanvasId {
    /// An id from text.
    pub fn new(s: impl AsRef<str>) -> CanvasId {
        CanvasId(Arc::from(s.as_ref()))
    }
}

impl fmt::Display for CanvasId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Everything the compositor draws: a set of canvases.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Scene {
    /// The canvases, each rendered on every `render` call.
    pub canvases: Vec<CanvasSpec>,
}

/// One output picture.
#[derive(Debug, Clone, PartialEq)]
pub struct CanvasSpec {
    /// Unique within the scene; a spec with the same id as before continues that canvas
    /// (and animates its layout change when `transition` is set).
    pub id: CanvasId,
    /// Width in pixels (even, 2..=8192).
    pub width: u32,
    /// Height in pixels (even, 2..=8192).
    pub height: u32,
    /// What the encoder wants.
    pub format: PixelFormat,
    /// Colour where no tile covers the canvas.
    pub background: Rgb,
    /// The arrangement of tiles.
    pub layout: Layout,
    /// How a layout change animates; `None` switches at once.
    pub transition: Option<Transition>,
}

/// An animated layout change.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Transition {
    /// How long it takes, in pts.
    pub duration: Duration,
    /// The curve.
    pub easing: Easing,
}

/// Easing curves for transitions.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Easing {
    /// Constant speed.
    Linear,
    /// Cubic ease-in-out.
    #[default]
    EaseInOut,
    /// Cubic ease-out (fast start).
    EaseOut,
}

impl Easing {
    /// Maps progress `t` in 0..=1 to eased progress in 0..=1.
    pub fn apply(self, t: f32) -> f32 {
        let t = t.clamp(0.0, 1.0);
        match self {
            Easing::Linear => t,
            Easing::EaseInOut => {
                if t < 0.5 {
                    4.0 * t * t * t
                } else {
                    1.0 - (-2.0 * t + 2.0).powi(3) / 2.0
                }
            }
            Easing::EaseOut => 1.0 - (1.0 - t).powi(3),
        }
    }
}

/// The arrangement of a canvas.
#[derive(Debug, Clone, PartialEq)]
pub enum Layout {
    /// Equal cells in rows and columns; the last row is centred when not full.
    Grid {
        /// Tiles in reading order.
        tiles: Vec<Tile>,
        /// Fixed column count; automatic (`ceil(sqrt(n))`) when `None`.
        columns: Option<u32>,
        /// Fixed row count; automatic when `None`. With both set, more tiles than cells is an error.
        rows: Option<u32>,
        /// Pixels between cells and around the edge.
        gap: u32,
    },
    /// One large tile (the active speaker) and a strip of the others.
    ActiveSpeaker {
        /// The large tile.
        speaker: Tile,
        /// The strip's tiles.
        others: Vec<Tile>,
        /// Where the strip goes and how big it is.
        strip: Strip,
    },
    /// A screen share large and thumbnails of the participants beside it.
    Presentation {
        /// The large tile (usually shown with [`Fit::Contain`]).
        presentation: Tile,
        /// The thumbnails.
        others: Vec<Tile>,
        /// Where the thumbnails go and how big they are.
        strip: Strip,
    },
    /// Tiles at explicit rectangles, drawn in ascending `z` (ties in list order).
    Custom {
        /// The tiles.
        tiles: Vec<CustomTile>,
    },
}

/// The strip of small tiles in speaker and presentation layouts.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Strip {
    /// Which edge of the canvas it runs along.
    pub side: Side,
    /// Its thickness as a fraction of the canvas (0 < size < 1).
    pub size: f32,
    /// Pixels between its tiles and around them.
    pub gap: u32,
}

impl Strip {
    /// A strip along the bottom, a fifth of the height: the usual speaker view.
    pub fn bottom() -> Strip {
        Strip { side: Side::Bottom, size: 0.2, gap: 4 }
    }
    /// A strip on the right, a fifth of the width: the usual presentation view.
    pub fn right() -> Strip {
        Strip { side: Side::Right, size: 0.2, gap: 4 }
    }
}

/// An edge of the canvas.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Side {
    /// Top edge.
    Top,
    /// Bottom edge.
    Bottom,
    /// Left edge.
    Left,
    /// Right edge.
    Right,
}

/// A tile at an explicit place.
#[derive(Debug, Clone, PartialEq)]
pub struct CustomTile {
    /// What it shows and how.
    pub tile: Tile,
    /// Where, in canvas pixels (may extend past the canvas; it is clipped).
    pub rect: Rect,
    /// Stacking order: higher is drawn later (on top).
    pub z: i32,
}

/// An integer rectangle in canvas pixels.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rect {
    /// Left edge.
    pub x: i32,
    /// Top edge.
    pub y: i32,
    /// Width.
    pub width: u32,
    /// Height.
    pub height: u32,
}

/// One input shown in a layout.
#[derive(Debug, Clone, PartialEq)]
pub struct Tile {
    /// Which input.
    pub input: InputId,
    /// How it is drawn.
    pub style: TileStyle,
}

impl Tile {
    /// A tile with the default style.
    pub fn new(input: impl AsRef<str>) -> Tile {
        Tile { input: InputId::new(input), style: TileStyle::default() }
    }

    /// The same tile with another style.
    pub fn with_style(mut self, style: TileStyle) -> Tile {
        self.style = style;
        self
    }
}

/// How a picture fills its tile.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Fit {
    /// Scale to fit inside, letterboxing with the tile background (nothing cropped).
    Contain,
    /// Scale to cover the tile, cropping the overflow (nothing letterboxed).
    #[default]
    Cover,
}

/// What a tile shows while its input has no video.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Placeholder {
    /// A flat colour.
    Color(Rgb),
    /// The last frame received (the colour when none ever was).
    LastFrame(Rgb),
}

/// Per-tile drawing options.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct TileStyle {
    /// Fit (letterbox) or fill (crop).
    pub fit: Fit,
    /// Border thickness in canvas pixels, drawn inside the tile.
    pub border_width: u32,
    /// Border colour.
    pub border_color: Rgb,
    /// Corner radius in canvas pixels (antialiased).
    pub corner_radius: u32,
    /// Letterbox colour.
    pub background: Rgb,
    /// What shows without video.
    pub placeholder: Placeholder,
}

impl Default for TileStyle {
    fn default() -> Self {
        TileStyle {
            fit: Fit::Cover,
            border_width: 0,
            border_color: Rgb::WHITE,
            corner_radius: 0,
            background: Rgb(0, 0, 0),
            placeholder: Placeholder::Color(Rgb(48, 48, 56)),
        }
    }
}

impl Layout {
    /// A grid of the given inputs with default styles and automatic rows and columns.
    pub fn grid<S: AsRef<str>>(inputs: impl IntoIterator<Item = S>) -> Layout {
        Layout::Grid { tiles: inputs.into_iter().map(Tile::new).collect(), columns: None, rows: None, gap: 0 }
    }

    /// Every tile of the layout, in drawing order before z-sorting.
    pub fn tiles(&self) -> Vec<&Tile> {
        match self {
            Layout::Grid { tiles, .. } => tiles.iter().collect(),
            Layout::ActiveSpeaker { speaker: main, others, .. } | Layout::Presentation { presentation: main, others, .. } => {
                std::iter::once(main).chain(others.iter()).collect()
            }
            Layout::Custom { tiles } => tiles.iter().map(|t| &t.tile).collect(),
        }
    }
}
