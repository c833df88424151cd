//! Requests to domain values and back. Every check names the field it refuses, as a path
//! from the request (`layout.grid.gap`), so the server can answer `INVALID_ARGUMENT` with it.

use std::time::Duration;

use mcu_compositor::{CustomSlot, Easing, Fit, Placeholder, Rect, RoomLayout, RoomLayoutKind, Side, Strip, TileStyle, Transition};
use mcu_media::Rgb;

use crate::v1;

/// A field of a request that cannot be accepted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {reason}")]
pub struct FieldError {
    /// Its path in the request, e.g. `layout.custom.tiles[2].width`.
    pub field: String,
    /// Why.
    pub reason: String,
}

fn bad(field: impl Into<String>, reason: impl Into<String>) -> FieldError {
    FieldError { field: field.into(), reason: reason.into() }
}

/// Longest room, participant or track name.
pub const MAX_NAME: usize = 128;

/// A name that refers to something (room, participant, track): present and not oversized.
pub fn reference(field: &str, value: &str) -> Result<(), FieldError> {
    if value.is_empty() {
        return Err(bad(field, "required"));
    }
    if value.len() > MAX_NAME {
        return Err(bad(field, format!("longer than {MAX_NAME} bytes")));
    }
    Ok(())
}

/// A name for a new room: 1..=128 of `[A-Za-z0-9._-]`, not starting with `_` (reserved).
pub fn new_room_name(field: &str, value: &str) -> Result<(), FieldError> {
    reference(field, value)?;
    if let Some(c) = value.chars().find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'))) {
        return Err(bad(field, format!("character {c:?} is not allowed (use A-Z a-z 0-9 . _ -)")));
    }
    if value.starts_with('_') {
        return Err(bad(field, "names starting with _ are reserved for the server"));
    }
    Ok(())
}

fn color(field: &str, c: Option<&v1::Color>, default: Rgb) -> Result<Rgb, FieldError> {
    let Some(c) = c else { return Ok(default) };
    let part = |name: &str, v: u32| u8::try_from(v).map_err(|_| bad(format!("{field}.{name}"), format!("{v} is outside 0..=255")));
    Ok(Rgb(part("r", c.r)?, part("g", c.g)?, part("b", c.b)?))
}

fn rgb_pb(c: Rgb) -> v1::Color {
    v1::Color { r: c.0 as u32, g: c.1 as u32, b: c.2 as u32 }
}

fn at_most(field: &str, v: u32, max: u32) -> Result<u32, FieldError> {
    if v > max {
        return Err(bad(field, format!("{v} is more than {max}")));
    }
    Ok(v)
}

fn tile_style(field: &str, t: Option<&v1::TileOptions>, base: TileStyle) -> Result<TileStyle, FieldError> {
    let Some(t) = t else { return Ok(base) };
    let fit = match v1::Fit::try_from(t.fit) {
        Ok(v1::Fit::Unspecified) => base.fit,
        Ok(v1::Fit::Fill) => Fit::Cover,
        Ok(v1::Fit::Contain) => Fit::Contain,
        Err(_) => return Err(bad(format!("{field}.fit"), format!("unknown value {}", t.fit))),
    };
    let base_colour = match base.placeholder {
        Placeholder::Color(c) | Placeholder::LastFrame(c) => c,
    };
    let ph_colour = color(&format!("{field}.placeholder_color"), t.placeholder_color.as_ref(), base_colour)?;
    let placeholder = match v1::PlaceholderKind::try_from(t.placeholder) {
        Ok(v1::PlaceholderKind::Unspecified) => match base.placeholder {
            Placeholder::Color(_) => Placeholder::Color(ph_colour),
            Placeholder::LastFrame(_) => Placeholder::LastFrame(ph_colour),
        },
        Ok(v1::PlaceholderKind::Color) => Placeholder::Color(ph_colour),
        Ok(v1::PlaceholderKind::LastFrame) => Placeholder::LastFrame(ph_colour),
        Err(_) => return Err(bad(format!("{field}.placeholder"), format!("unknown value {}", t.placeholder))),
    };
    Ok(TileStyle {
        fit,
        border_width: at_most(&format!("{field}.border_width"), t.border_width, 64)?,
        border_color: color(&format!("{field}.border_color"), t.border_color.as_ref(), base.border_color)?,
        corner_radius: at_most(&format!("{field}.corner_radius"), t.corner_radius, 512)?,
        background: color(&format!("{field}.background"), t.background.as_ref(), base.background)?,
        placeholder,
    })
}

fn tile_style_pb(s: &TileStyle) -> v1::TileOptions {
    let (kind, c) = match s.placeholder {
        Placeholder::Color(c) => (v1::PlaceholderKind::Color, c),
        Placeholder::LastFrame(c) => (v1::PlaceholderKind::LastFrame, c),
    };
    v1::TileOptions {
        fit: match s.fit {
            Fit::Cover => v1::Fit::Fill,
            Fit::Contain => v1::Fit::Contain,
        } as i32,
        border_width: s.border_width,
        border_color: Some(rgb_pb(s.border_color)),
        corner_radius: s.corner_radius,
        background: Some(rgb_pb(s.background)),
        placeholder: kind as i32,
        placeholder_color: Some(rgb_pb(c)),
    }
}

fn strip(field: &str, s: Option<&v1::Strip>, default: Strip) -> Result<Strip, FieldError> {
    let Some(s) = s else { return Ok(default) };
    let side = match v1::Side::try_from(s.side) {
        Ok(v1::Side::Unspecified) => default.side,
        Ok(v1::Side::Bottom) => Side::Bottom,
        Ok(v1::Side::Top) => Side::Top,
        Ok(v1::Side::Left) => Side::Left,
        Ok(v1::Side::Right) => Side::Right,
        Err(_) => return Err(bad(format!("{field}.side"), format!("unknown value {}", s.side))),
    };
    let size = if s.size == 0.0 { default.size } else { s.size };
    if !(size > 0.0 && size < 1.0) {
        return Err(bad(format!("{field}.size"), format!("{} is not between 0 and 1", s.size)));
    }
    Ok(Strip { side, size, gap: at_most(&format!("{field}.gap"), s.gap, 256)? })
}

fn strip_pb(s: &Strip) -> v1::Strip {
    let side = match s.side {
        Side::Bottom => v1::Side::Bottom,
        Side::Top => v1::Side::Top,
        Side::Left => v1::Side::Left,
        Side::Right => v1::Side::Right,
    };
    v1::Strip { side: side as i32, size: s.size, gap: s.gap }
}

fn optional_name(field: &str, v: &str) -> Result<Option<String>, FieldError> {
    if v.is_empty() {
        return Ok(None);
    }
    reference(field, v)?;
    Ok(Some(v.to_string()))
}

/// Checks a layout from a request (`field` is its path, e.g. `layout`).
pub fn layout(field: &str, l: &v1::Layout) -> Result<RoomLayout, FieldError> {
    let base = RoomLayout::default();
    let style = tile_style(&format!("{field}.tile"), l.tile.as_ref(), base.style)?;
    let kind = match &l.kind {
        None => return Err(bad(format!("{field}.kind"), "required: one of grid, active_speaker, presentation, custom")),
        Some(v1::layout::Kind::Grid(g)) => {
            let f = format!("{field}.grid");
            RoomLayoutKind::Grid {
                columns: (g.columns > 0).then_some(at_most(&format!("{f}.columns"), g.columns, 16)?),
                rows: (g.rows > 0).then_some(at_most(&format!("{f}.rows"), g.rows, 16)?),
                gap: at_most(&format!("{f}.gap"), g.gap, 256)?,
            }
        }
        Some(v1::layout::Kind::ActiveSpeaker(s)) => {
            RoomLayoutKind::ActiveSpeaker { strip: strip(&format!("{field}.active_speaker.strip"), s.strip.as_ref(), Strip::bottom())? }
        }
        Some(v1::layout::Kind::Presentation(p)) => {
            let f = format!("{field}.presentation");
            RoomLayoutKind::Presentation {
                presenter: optional_name(&format!("{f}.presenter"), &p.presenter)?,
                strip: strip(&format!("{f}.strip"), p.strip.as_ref(), Strip::right())?,
            }
        }
        Some(v1::layout::Kind::Custom(c)) => {
            if c.tiles.len() > 64 {
                return Err(bad(format!("{field}.custom.tiles"), format!("{} tiles; at most 64", c.tiles.len())));
            }
            let mut slots = Vec::with_capacity(c.tiles.len());
            for (i, t) in c.tiles.iter().enumerate() {
                let f = format!("{field}.custom.tiles[{i}]");
                reference(&format!("{f}.participant"), &t.participant)?;
                for (name, v) in [("width", t.width), ("height", t.height)] {
                    if !(1..=8192).contains(&v) {
                        return Err(bad(format!("{f}.{name}"), format!("{v} is outside 1..=8192")));
                    }
                }
                for (name, v) in [("x", t.x), ("y", t.y)] {
                    if !(-8192..=8192).contains(&v) {
                        return Err(bad(format!("{f}.{name}"), format!("{v} is outside -8192..=8192")));
                    }
                }
                let own = t.tile.as_ref().map(|o| tile_style(&format!("{f}.tile"), Some(o), style)).transpose()?;
                slots.push(CustomSlot {
                    participant: t.participant.clone(),
                    rect: Rect { x: t.x, y: t.y, width: t.width, height: t.height },
                    z: t.z,
                    style: own,
                });
            }
            RoomLayoutKind::Custom { slots }
        }
    };
    if l.pinned.len() > 64 {
        return Err(bad(format!("{field}.pinned"), format!("{} names; at most 64", l.pinned.len())));
    }
    for (i, p) in l.pinned.iter().enumerate() {
        reference(&format!("{field}.pinned[{i}]"), p)?;
    }
    let transition = match &l.transition {
        None => None,
        Some(t) => {
            let easing = match v1::Easing::try_from(t.easing) {
                Ok(v1::Easing::Unspecified | v1::Easing::EaseInOut) => Easing::EaseInOut,
                Ok(v1::Easing::Linear) => Easing::Linear,
                Ok(v1::Easing::EaseOut) => Easing::EaseOut,
                Err(_) => return Err(bad(format!("{field}.transition.easing"), format!("unknown value {}", t.easing))),
            };
            let ms = at_most(&format!("{field}.transition.duration_ms"), t.duration_ms, 10_000)?;
            (ms > 0).then_some(Transition { duration: Duration::from_millis(ms as u64), easing })
        }
    };
    Ok(RoomLayout {
        kind,
        pinned: l.pinned.clone(),
        spotlight: optional_name(&format!("{field}.spotlight"), &l.spotlight)?,
        style,
        background: color(&format!("{field}.background"), l.background.as_ref(), base.background)?,
        transition,
        hide_self: l.hide_self,
    })
}

/// A layout as the API shows it.
pub fn layout_pb(l: &RoomLayout) -> v1::Layout {
    let kind = match &l.kind {
        RoomLayoutKind::Grid { columns, rows, gap } => v1::layout::Kind::Grid(v1::Grid { columns: columns.unwrap_or(0), rows: rows.unwrap_or(0), gap: *gap }),
        RoomLayoutKind::ActiveSpeaker { strip } => v1::layout::Kind::ActiveSpeaker(v1::ActiveSpeaker { strip: Some(strip_pb(strip)) }),
        RoomLayoutKind::Presentation { presenter, strip } => {
            v1::layout::Kind::Presentation(v1::Presentation { presenter: presenter.clone().unwrap_or_default(), strip: Some(strip_pb(strip)) })
        }
        RoomLayoutKind::Custom { slots } => v1::layout::Kind::Custom(v1::Custom {
            tiles: slots
                .iter()
                .map(|s| v1::CustomTile {
                    participant: s.participant.clone(),
                    x: s.rect.x,
                    y: s.rect.y,
                    width: s.rect.width,
                    height: s.rect.height,
                    z: s.z,
                    tile: s.style.as_ref().map(tile_style_pb),
                })
                .collect(),
        }),
    };
    v1::Layout {
        kind: Some(kind),
        pinned: l.pinned.clone(),
        spotlight: l.spotlight.clone().unwrap_or_default(),
        tile: Some(tile_style_pb(&l.style)),
        background: Some(rgb_pb(l.background)),
        transition: l.transition.map(|t| v1::Transition {
            duration_ms: t.duration.as_millis().min(u32::MAX as u128) as u32,
            easing: match t.easing {
                Easing::Linear => v1::Easing::Linear,
                Easing::EaseInOut => v1::Easing::EaseInOut,
                Easing::EaseOut => v1::Easing::EaseOut,
            } as i32,
        }),
        hide_self: l.hide_self,
    }
}

/// What one matrix edit does.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum GainChange {
    /// Set this gain (0.0..=4.0).
    Set(f32),
    /// Back to the default.
    Reset,
}

/// Largest per-listener gain (+12 dB).
pub const MAX_GAIN: f32 = 4.0;

/// Checks one edit of `UpdateAudioMatrix` (`field` is its path, e.g. `edits[0]`): listener
/// ("" is the room mix), source, change.
pub fn gain_edit(field: &str, e: &v1::GainEdit) -> Result<(String, String, GainChange), FieldError> {
    if !e.listener.is_empty() {
        reference(&format!("{field}.listener"), &e.listener)?;
    }
    reference(&format!("{field}.source"), &e.source)?;
    if e.listener == e.source {
        return Err(bad(format!("{field}.source"), "a listener never hears itself"));
    }
    let change = match e.change {
        None => return Err(bad(format!("{field}.change"), "required: one of gain, mute, reset")),
        Some(v1::gain_edit::Change::Gain(g)) => {
            if !(0.0..=MAX_GAIN).contains(&g) {
                return Err(bad(format!("{field}.gain"), format!("{g} is outside 0.0..={MAX_GAIN}")));
            }
            GainChange::Set(g)
        }
        Some(v1::gain_edit::Change::Mute(true)) => GainChange::Set(0.0),
        Some(v1::gain_edit::Change::Mute(false)) => GainChange::Set(1.0),
        Some(v1::gain_edit::Change::Reset(_)) => GainChange::Reset,
    };
    Ok((e.listener.clone(), e.source.clone(), change))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn grid(columns: u32, rows: u32, gap: u32) -> v1::Layout {
        v1::Layout { kind: Some(v1::layout::Kind::Grid(v1::Grid { columns, rows, gap })), ..Default::default() }
    }

    #[test]
    fn layouts_round_trip() {
        let mut l = grid(3, 0, 8);
        l.pinned = vec!["alice".into()];
        l.background = Some(v1::Color { r: 1, g: 2, b: 3 });
        l.transition = Some(v1::Transition { duration_ms: 300, easing: v1::Easing::Linear as i32 });
        let room = layout("layout", &l).expect("valid");
        assert_eq!(room.kind, RoomLayoutKind::Grid { columns: Some(3), rows: None, gap: 8 });
        assert_eq!(room.background, Rgb(1, 2, 3));
        assert_eq!(layout("layout", &layout_pb(&room)).expect("valid"), room);
    }

    #[test]
    fn bad_fields_are_named() {
        let field = |l: &v1::Layout| layout("layout", l).expect_err("invalid").field;
        assert_eq!(field(&v1::Layout::default()), "layout.kind");
        assert_eq!(field(&grid(0, 0, 999)), "layout.grid.gap");
        assert_eq!(field(&grid(17, 0, 0)), "layout.grid.columns");
        let mut l = grid(0, 0, 0);
        l.background = Some(v1::Color { r: 256, g: 0, b: 0 });
        assert_eq!(field(&l), "layout.background.r");
        l = grid(0, 0, 0);
        l.tile = Some(v1::TileOptions { fit: 9, ..Default::default() });
        assert_eq!(field(&l), "layout.tile.fit");
        l = grid(0, 0, 0);
        l.transition = Some(v1::Transition { duration_ms: 60_000, easing: 0 });
        assert_eq!(field(&l), "layout.transition.duration_ms");
        let custom = v1::Layout {
            kind: Some(v1::layout::Kind::Custom(v1::Custom {
                tiles: vec![
                    v1::CustomTile { participant: "a".into(), width: 10, height: 10, ..Default::default() },
                    v1::CustomTile { participant: "b".into(), width: 0, height: 10, ..Default::default() },
                ],
            })),
            ..Default::default()
        };
        assert_eq!(field(&custom), "layout.custom.tiles[1].width");
        let speaker = v1::Layout {
            kind: Some(v1::layout::Kind::ActiveSpeaker(v1::ActiveSpeaker { strip: Some(v1::Strip { size: 1.5, ..Default::default() }) })),
            ..Default::default()
        };
        assert_eq!(field(&speaker), "layout.active_speaker.strip.size");
    }

    #[test]
    fn room_names_and_gain_edits() {
        assert!(new_room_name("name", "class-1.a").is_ok());
        assert_eq!(new_room_name("name", "").unwrap_err().field, "name");
        assert!(new_room_name("name", "a b").is_err());
        assert!(new_room_name("name", "_mix").is_err());
        let edit = |listener: &str, source: &str, change| v1::GainEdit { listener: listener.into(), source: source.into(), change };
        assert_eq!(gain_edit("edits[0]", &edit("a", "b", Some(v1::gain_edit::Change::Mute(true)))).unwrap(), ("a".into(), "b".into(), GainChange::Set(0.0)));
        assert_eq!(gain_edit("edits[0]", &edit("", "b", Some(v1::gain_edit::Change::Reset(true)))).unwrap().2, GainChange::Reset);
        assert_eq!(gain_edit("edits[1]", &edit("a", "b", Some(v1::gain_edit::Change::Gain(5.0)))).unwrap_err().field, "edits[1].gain");
        assert_eq!(gain_edit("edits[0]", &edit("a", "a", Some(v1::gain_edit::Change::Gain(1.0)))).unwrap_err().field, "edits[0].source");
        assert_eq!(gain_edit("edits[0]", &edit("a", "", None)).unwrap_err().field, "edits[0].source");
        assert_eq!(gain_edit("edits[0]", &edit("a", "b", None)).unwrap_err().field, "edits[0].change");
    }
}
