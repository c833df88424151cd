//! Canvas planning: which canvases are drawn, in which encode profile, and who sees which;
//! and the simulcast layer each input is best decoded at for the tiles it is drawn in.

use std::collections::HashMap;

use mcu_compositor::{CanvasId, CanvasSpec, RoomLayout, Scene};
use mcu_media::PixelFormat;

use crate::{Control, McuConfig, ROOM_CANVAS, VideoProfile};

/// Per input (participant), the largest tile it is drawn in across the scene's canvases (px).
pub(crate) fn largest_tiles(scene: &Scene) -> HashMap<String, (u32, u32)> {
    let mut out: HashMap<String, (u32, u32)> = HashMap::new();
    for c in &scene.canvases {
        let Ok(tiles) = mcu_compositor::layout::resolve(c) else { continue };
        for t in tiles {
            let e = out.entry(t.input.0.to_string()).or_default();
            e.0 = e.0.max(t.rect.width().max(0.0) as u32);
            e.1 = e.1.max(t.rect.height().max(0.0) as u32);
        }
    }
    out
}

/// The simulcast layer the composite should decode: the lowest whose picture fills `tile`
/// (to 85 %), judging the layers' sizes from the one decoded now (`current`, `decoded`) and
/// the factor of 2 between layers that browsers use. Unknown sizes: the top layer.
pub fn layer_for_tile(layers: usize, current: usize, decoded: (u32, u32), tile: (u32, u32)) -> usize {
    let top = layers.saturating_sub(1);
    if decoded.0 == 0 || decoded.1 == 0 {
        return top;
    }
    let fills = |l: usize| {
        let scale = 2f64.powi(l as i32 - current as i32);
        decoded.0 as f64 * scale >= tile.0 as f64 * 0.85 && decoded.1 as f64 * scale >= tile.1 as f64 * 0.85
    };
    (0..=top).find(|&l| fills(l)).unwrap_or(top)
}

fn canvas(size: (u32, u32), id: &str, layout: &RoomLayout, resolved: mcu_compositor::Layout) -> CanvasSpec {
    CanvasSpec {
        id: CanvasId::new(id),
        width: size.0,
        height: size.1,
        format: PixelFormat::I420,
        background: layout.background,
        layout: resolved,
        transition: layout.transition,
    }
}

/// A plan: the scene, each canvas's profile, and the canvas each video SSRC shows.
pub(crate) type Plan = (Scene, HashMap<CanvasId, VideoProfile>, HashMap<u32, CanvasId>);

/// The canvases to draw and who sees each: the room canvas (the operator's room layout
/// resolved for who is in the room and who speaks) for the composite's own track and every MCU
/// participant without a layout of its own (nor, in an everyone-but-me room, a picture of its
/// own); then one canvas per distinct personalised picture or encode profile. Viewers whose pictures and profiles come out equal share a canvas (and
/// its encode). `viewers` are the MCU participants whose video someone receives, the SSRC of
/// their video and their profile; `room_ssrc` is the composite's track when someone receives
/// it; `recorded` the profiles recordings encode (each shows the room layout, on
/// [`VideoProfile::room_canvas`]).
pub(crate) fn plan_canvases(
    config: &McuConfig,
    control: &Control,
    inputs: &[String],
    speaker: Option<&str>,
    room_ssrc: Option<u32>,
    viewers: &[(String, u32, VideoProfile)],
    recorded: &[VideoProfile],
) -> Plan {
    let own = VideoProfile::of(config);
    let room = canvas((config.width, config.height), ROOM_CANVAS, &control.layout, control.layout.resolve(inputs, speaker));
    // The room canvas is drawn only when someone sees it (a viewer, a recording, an MCU
    // participant without a picture of its own).
    let room_seen =
        room_ssrc.is_some() || recorded.contains(&own) || viewers.iter().any(|(name, _, p)| *p == own && !control.viewer_layouts.contains_key(name));
    let mut canvases = if room_seen { vec![room] } else { Vec::new() };
    let mut profiles = HashMap::from([(CanvasId::new(ROOM_CANVAS), own)]);
    // Recordings with a profile of their own: the room layout at their size, in their codec.
    for p in recorded.iter().filter(|p| **p != own) {
        if let std::collections::hash_map::Entry::Vacant(e) = profiles.entry(p.room_canvas(config)) {
            canvases.push(canvas((p.width, p.height), &e.key().0, &control.layout, control.layout.resolve(inputs, speaker)));
            e.insert(*p);
        }
    }
    let mut assigned: HashMap<u32, CanvasId> = room_ssrc.map(|s| (s, CanvasId::new(ROOM_CANVAS))).into_iter().collect();
    let mut sorted: Vec<&(String, u32, VideoProfile)> = viewers.iter().collect();
    sorted.sort_by(|a, b| (&a.0, a.1).cmp(&(&b.0, b.1)));
    for (name, ssrc, profile) in sorted {
        let size = (profile.width, profile.height);
        let suffix = profile.suffix(config);
        // Everyone but me: a viewer in the picture gets the room layout without itself.
        let all_but_me = control.everyone_but_me && inputs.contains(name);
        let spec = match control.viewer_layouts.get(name) {
            Some(layout) => canvas(size, &format!("viewer:{name}{suffix}"), layout, layout.resolve_for(name, inputs, speaker)),
            None if all_but_me => canvas(size, &format!("all-but:{name}{suffix}"), &control.layout, control.layout.resolve_without(name, inputs, speaker)),
            None if *profile == own => {
                assigned.insert(*ssrc, CanvasId::new(ROOM_CANVAS));
                continue;
            }
            None => canvas(size, &format!("{ROOM_CANVAS}{suffix}"), &control.layout, control.layout.resolve(inputs, speaker)),
        };
        let same = canvases
            .iter()
            .find(|c| c.layout == spec.layout && c.background == spec.background && c.transition == spec.transition && profiles.get(&c.id) == Some(profile));
        let id = match same {
            Some(same) => same.id.clone(),
            None => {
                let id = spec.id.clone();
                profiles.insert(id.clone(), *profile);
                canvases.push(spec);
                id
            }
        };
        assigned.insert(*ssrc, id);
    }
    (Scene { canvases }, profiles, assigned)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn composite_layer_is_the_smallest_that_fills_the_tile() {
        // Chromium's q/h/f of a 640x480 camera, decoding h (320x240) now.
        assert_eq!(layer_for_tile(3, 1, (320, 240), (960, 720)), 2, "a big tile wants the top");
        assert_eq!(layer_for_tile(3, 1, (320, 240), (300, 220)), 1);
        assert_eq!(layer_for_tile(3, 1, (320, 240), (120, 90)), 0, "a thumbnail takes the quarter layer");
        // Decoding q (160x120) now: the same answers.
        assert_eq!(layer_for_tile(3, 0, (160, 120), (300, 220)), 1);
        assert_eq!(layer_for_tile(3, 0, (160, 120), (120, 90)), 0);
        // Nothing decoded yet, or a tile larger than the top: the top.
        assert_eq!(layer_for_tile(3, 0, (0, 0), (10, 10)), 2);
        assert_eq!(layer_for_tile(2, 1, (640, 360), (1920, 1080)), 1);
    }

    #[test]
    fn everyone_but_me_gives_each_publishing_viewer_the_others() {
        let config = crate::McuConfig { codec: crate::MixCodec::Vp8, width: 640, height: 360, fps: 30, video_bitrate: 1_000_000, audio_bitrate: 32_000 };
        let own = VideoProfile::of(&config);
        let control = Control { everyone_but_me: true, ..Control::default() };
        let inputs: Vec<String> = ["a", "b", "c"].iter().map(|s| s.to_string()).collect();
        let viewers: Vec<(String, u32, VideoProfile)> = [("a", 1), ("b", 2), ("c", 3), ("x", 4)].iter().map(|(n, s)| (n.to_string(), *s, own)).collect();
        let (scene, profiles, assigned) = plan_canvases(&config, &control, &inputs, Some("a"), Some(9), &viewers, &[]);
        let tiles = |ssrc: u32| {
            let id = &assigned[&ssrc];
            let c = scene.canvases.iter().find(|c| &c.id == id).expect("a canvas");
            c.layout.tiles().iter().map(|t| t.input.to_string()).collect::<Vec<_>>()
        };
        assert_eq!(tiles(1), ["b", "c"]);
        assert_eq!(tiles(2), ["a", "c"]);
        assert_eq!(tiles(3), ["a", "b"]);
        assert_eq!(tiles(4), ["a", "b", "c"], "a viewer not in the picture sees the room canvas");
        assert_eq!(assigned[&4], assigned[&9], "the room canvas, shared with the room track");
        assert_eq!(scene.canvases.len(), 4);
        assert!(profiles.values().all(|p| *p == own));
        // A viewer's own layout still wins.
        let mut control = control;
        control.viewer_layouts.insert("b".into(), RoomLayout { background: mcu_media::Rgb(0, 90, 0), ..RoomLayout::default() });
        let (_, _, assigned) = plan_canvases(&config, &control, &inputs, None, None, &viewers, &[]);
        assert_eq!(assigned[&2].0.as_ref(), "viewer:b");
    }
}
