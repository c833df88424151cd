//! Room layouts: what an operator sets (a kind of arrangement, pins, a spotlight, tile options),
//! resolved against whoever is in the room at each frame into a concrete [`Layout`].
//!
//! The control API stores a [`RoomLayout`]; the composite engine calls
//! [`RoomLayout::resolve`] when the participants, the active speaker or the room layout change.
//! Resolution never fails: participants a fixed grid has no cell for, or custom rectangles name
//! but who are absent, are left out.

use mcu_media::Rgb;

use crate::scene::{CustomTile, Layout, Rect, Strip, Tile, TileStyle, Transition};

/// The arrangement an operator chose for a canvas.
#[derive(Debug, Clone, PartialEq)]
pub enum RoomLayoutKind {
    /// Equal cells for everyone.
    Grid {
        /// Fixed column count, or automatic.
        columns: Option<u32>,
        /// Fixed row count, or automatic.
        rows: Option<u32>,
        /// Pixels between and around cells.
        gap: u32,
    },
    /// The active speaker (or the spotlight) large, the others in a strip.
    ActiveSpeaker {
        /// The strip.
        strip: Strip,
    },
    /// The presenter large and whole, the others in a strip.
    Presentation {
        /// Who presents; the spotlight, else the first participant, when `None`.
        presenter: Option<String>,
        /// The strip.
        strip: Strip,
    },
    /// Named participants at explicit rectangles; nobody else is shown.
    Custom {
        /// The rectangles.
        slots: Vec<CustomSlot>,
    },
}

/// One rectangle of a custom layout.
#[derive(Debug, Clone, PartialEq)]
pub struct CustomSlot {
    /// Who is shown there.
    pub participant: String,
    /// Where, in canvas pixels.
    pub rect: Rect,
    /// Stacking order.
    pub z: i32,
    /// A style of its own (the layout's when `None`).
    pub style: Option<TileStyle>,
}

/// A canvas layout as the control API sets it.
#[derive(Debug, Clone, PartialEq)]
pub struct RoomLayout {
    /// The arrangement.
    pub kind: RoomLayoutKind,
    /// Participants placed first, in this order.
    pub pinned: Vec<String>,
    /// The large tile of the speaker and presentation layouts, overriding the active speaker.
    pub spotlight: Option<String>,
    /// How tiles are drawn.
    pub style: TileStyle,
    /// Canvas background.
    pub background: Rgb,
    /// How changes animate.
    pub transition: Option<Transition>,
    /// A viewer's own canvas leaves the viewer out.
    pub hide_self: bool,
}

impl Default for RoomLayout {
    /// An automatic grid, default tiles, the dark background, no animation.
    fn default() -> RoomLayout {
        RoomLayout {
            kind: RoomLayoutKind::Grid { columns: None, rows: None, gap: 0 },
            pinned: Vec::new(),
            spotlight: None,
            style: TileStyle::default(),
            background: Rgb(16, 16, 24),
            transition: None,
            hide_self: false,
        }
    }
}

impl RoomLayout {
    /// The layout for these participants (any order) with this active speaker.
    pub fn resolve(&self, participants: &[String], active_speaker: Option<&str>) -> Layout {
        let order = self.order(participants);
        let tile = |p: &str| Tile::new(p).with_style(self.style);
        let main_and_rest = |main: Option<&str>| -> Option<(Tile, Vec<Tile>)> {
            let main = main.filter(|m| order.iter().any(|p| p == m)).or(order.first().map(String::as_str))?;
            Some((tile(main), order.iter().filter(|p| p.as_str() != main).map(|p| tile(p)).collect()))
        };
        match &self.kind {
            RoomLayoutKind::Grid { columns, rows, gap } => {
                let cap = match (columns, rows) {
                    (Some(c), Some(r)) => (*c as usize).saturating_mul(*r as usize),
                    _ => usize::MAX,
                };
                Layout::Grid { tiles: order.iter().take(cap).map(|p| tile(p)).collect(), columns: *columns, rows: *rows, gap: *gap }
            }
            RoomLayoutKind::ActiveSpeaker { strip } => {
                let main = self.spotlight.as_deref().filter(|s| order.iter().any(|p| p == s)).or(active_speaker);
                match main_and_rest(main) {
                    Some((speaker, others)) => Layout::ActiveSpeaker { speaker, others, strip: *strip },
                    None => Layout::grid(Vec::<String>::new()),
                }
            }
            RoomLayoutKind::Presentation { presenter, strip } => {
                let main = presenter.as_deref().filter(|s| order.iter().any(|p| p == s)).or(self.spotlight.as_deref());
                match main_and_rest(main) {
                    Some((mut presentation, others)) => {
                        presentation.style.fit = crate::scene::Fit::Contain;
                        Layout::Presentation { presentation, others, strip: *strip }
                    }
                    None => Layout::grid(Vec::<String>::new()),
                }
            }
            RoomLayoutKind::Custom { slots } => Layout::Custom {
                tiles: slots
                    .iter()
                    .filter(|s| participants.contains(&s.participant))
                    .map(|s| CustomTile { tile: Tile::new(&s.participant).with_style(s.style.unwrap_or(self.style)), rect: s.rect, z: s.z })
                    .collect(),
            },
        }
    }

    /// The layout `viewer` sees with this as its own layout (itself left out with `hide_self`).
    pub fn resolve_for(&self, viewer: &str, participants: &[String], active_speaker: Option<&str>) -> Layout {
        if !self.hide_self {
            return self.resolve(participants, active_speaker);
        }
        self.resolve_without(viewer, participants, active_speaker)
    }

    /// The layout without `viewer` (everyone but me), whether or not `hide_self` is set: its
    /// own voice does not put it on its screen either.
    pub fn resolve_without(&self, viewer: &str, participants: &[String], active_speaker: Option<&str>) -> Layout {
        let others: Vec<String> = participants.iter().filter(|p| p.as_str() != viewer).cloned().collect();
        self.resolve(&others, active_speaker.filter(|s| *s != viewer))
    }

    /// Pinned participants who are present, in pin order, then the rest by name.
    fn order(&self, participants: &[String]) -> Vec<String> {
        let mut rest: Vec<String> = participants.iter().filter(|p| !self.pinned.contains(p)).cloned().collect();
        rest.sort();
        rest.dedup();
        let mut order: Vec<String> = self.pinned.iter().filter(|p| participants.contains(p)).cloned().collect();
        order.dedup();
        order.extend(rest);
        order
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scene::{Fit, Side};

    fn names(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| s.to_string()).collect()
    }

    fn inputs(l: &Layout) -> Vec<String> {
        l.tiles().iter().map(|t| t.input.to_string()).collect()
    }

    #[test]
    fn grid_sorts_by_name_with_pins_first() {
        let mut l = RoomLayout::default();
        assert_eq!(inputs(&l.resolve(&names(&["carol", "alice", "bob"]), None)), ["alice", "bob", "carol"]);
        l.pinned = names(&["carol", "zed"]);
        assert_eq!(inputs(&l.resolve(&names(&["carol", "alice", "bob"]), None)), ["carol", "alice", "bob"]);
    }

    #[test]
    fn fixed_grid_leaves_out_who_has_no_cell() {
        let l = RoomLayout { kind: RoomLayoutKind::Grid { columns: Some(2), rows: Some(1), gap: 4 }, ..RoomLayout::default() };
        let out = l.resolve(&names(&["a", "b", "c"]), None);
        assert_eq!(inputs(&out), ["a", "b"]);
        assert!(matches!(out, Layout::Grid { columns: Some(2), rows: Some(1), gap: 4, .. }));
    }

    #[test]
    fn speaker_layout_follows_the_speaker_unless_spotlit() {
        let mut l = RoomLayout { kind: RoomLayoutKind::ActiveSpeaker { strip: Strip::bottom() }, ..RoomLayout::default() };
        let people = names(&["a", "b", "c"]);
        assert_eq!(inputs(&l.resolve(&people, Some("b"))), ["b", "a", "c"]);
        assert_eq!(inputs(&l.resolve(&people, None)), ["a", "b", "c"], "nobody speaking: the first");
        assert_eq!(inputs(&l.resolve(&people, Some("gone"))), ["a", "b", "c"]);
        l.spotlight = Some("c".into());
        assert_eq!(inputs(&l.resolve(&people, Some("b"))), ["c", "a", "b"]);
        assert_eq!(l.resolve(&[], Some("b")), Layout::grid(Vec::<String>::new()));
    }

    #[test]
    fn presentation_shows_the_presenter_whole() {
        let l = RoomLayout {
            kind: RoomLayoutKind::Presentation { presenter: Some("b".into()), strip: Strip { side: Side::Right, size: 0.25, gap: 2 } },
            ..RoomLayout::default()
        };
        let Layout::Presentation { presentation, others, strip } = l.resolve(&names(&["a", "b"]), Some("a")) else { panic!("presentation") };
        assert_eq!(&*presentation.input.0, "b");
        assert_eq!(presentation.style.fit, Fit::Contain);
        assert_eq!(others.len(), 1);
        assert_eq!(strip.side, Side::Right);
    }

    #[test]
    fn a_viewer_may_leave_itself_out() {
        let mut l = RoomLayout { kind: RoomLayoutKind::ActiveSpeaker { strip: Strip::bottom() }, ..RoomLayout::default() };
        let people = names(&["a", "b", "c"]);
        assert_eq!(inputs(&l.resolve_for("b", &people, Some("b"))), ["b", "a", "c"]);
        l.hide_self = true;
        assert_eq!(inputs(&l.resolve_for("b", &people, Some("b"))), ["a", "c"], "its own voice does not put it on its screen");
    }

    #[test]
    fn custom_shows_only_present_named_participants() {
        let slot = |p: &str, z| CustomSlot { participant: p.into(), rect: Rect { x: 0, y: 0, width: 10, height: 10 }, z, style: None };
        let l = RoomLayout { kind: RoomLayoutKind::Custom { slots: vec![slot("a", 1), slot("ghost", 2), slot("b", 0)] }, ..RoomLayout::default() };
        let Layout::Custom { tiles } = l.resolve(&names(&["a", "b", "c"]), None) else { panic!("custom") };
        assert_eq!(tiles.iter().map(|t| (t.tile.input.to_string(), t.z)).collect::<Vec<_>>(), [("a".to_string(), 1), ("b".to_string(), 0)]);
    }
}
