//! The composite receives a simulcast sender at the smallest layer that fills the largest tile
//! it is drawn in: the cap follows the layout as people come and go.
mod common;

use common::*;
use mcu_media::Rgb;
use mcu_pipeline::{Simulcast, SoftwareCodecs, TrackId, VideoOutput};

fn last_cap(room: &Room, track: &TrackId) -> Option<usize> {
    room.outputs.iter().rev().find_map(|o| match o {
        VideoOutput::LayerCap { track: t, layer } if t == track => Some(*layer),
        _ => None,
    })
}

#[test]
fn simulcast_caps_follow_tile_size() {
    let mut room = Room::new(Box::new(SoftwareCodecs));
    // Alice sends three layers; the composite receives the middle one now, 320x180.
    let alice = Publisher::new("alice", (320, 180), Rgb(200, 30, 30));
    let track = alice.track.clone();
    room.publish(alice);
    room.view.simulcast.insert(track.clone(), Simulcast { layers: 3, current: Some(1) });
    room.listener("a", 100, None);
    room.run(1.5, &["alice"]);
    assert_eq!(last_cap(&room, &track), Some(1), "alone on the 320x180 canvas: the 320x180 layer fills her tile");

    // Three more people: a 2x2 grid, her tile 160x90: the quarter layer fills it.
    let names = ["bob", "carol", "dave"];
    for n in names {
        room.publish(Publisher::new(n, (64, 36), Rgb(30, 30, 200)));
    }
    room.run(1.5, &["alice", "bob", "carol", "dave"]);
    assert_eq!(last_cap(&room, &track), Some(0), "a quarter of the canvas: layer 0");

    // They leave: back to the larger layer.
    for p in &room.publishers[1..] {
        room.view.live_tracks.remove(&p.track);
    }
    room.run(1.5, &["alice"]);
    assert_eq!(last_cap(&room, &track), Some(1), "alone again: layer 1");
}
