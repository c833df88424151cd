//! Pictures nobody receives are neither drawn nor encoded; a room with nobody publishing and
//! nobody watching tells its driver to stop after 5 s.
mod common;

use common::*;
use mcu_media::Rgb;
use mcu_pipeline::{SoftwareCodecs, VideoOutput};

#[test]
fn the_composite_stops_drawing_when_nobody_receives_it() {
    let mut room = Room::new(Box::new(SoftwareCodecs));
    room.publish(Publisher::new("alice", (160, 90), Rgb(200, 30, 30)));
    room.listener("a", 100, None);
    room.run(1.0, &["alice"]);
    let seen = room.engine.stats();
    assert!(seen.canvases_drawn >= 8 && seen.encodes >= 8, "drawn and encoded while watched: {seen:?}");
    let packets = room.viewers.by_ssrc[&100].packets;

    // a's connection drops its video (nobody receives the picture); alice still publishes.
    room.view.listeners[0].video_watched = false;
    room.run(2.0, &["alice"]);
    let now = room.engine.stats();
    assert_eq!(now.canvases_drawn, seen.canvases_drawn, "nothing drawn: {now:?}");
    assert_eq!(now.encodes, seen.encodes, "nothing encoded: {now:?}");
    assert!(now.renders > seen.renders, "the passes went on (inputs decoded, ready to draw)");
    assert_eq!(room.viewers.by_ssrc[&100].packets, packets, "nothing sent");
    assert!(!room.outputs.iter().any(|o| matches!(o, VideoOutput::Idle)), "someone publishes: the room goes on");

    // Alice leaves, a too: the room is idle, and after 5 s the engine says so, once.
    room.view.live_tracks.clear();
    room.view.listeners.clear();
    room.view.idle = true;
    room.run(4.5, &[]);
    assert!(!room.outputs.iter().any(|o| matches!(o, VideoOutput::Idle)), "not before 5 s");
    room.run(2.0, &[]);
    assert_eq!(room.outputs.iter().filter(|o| matches!(o, VideoOutput::Idle)).count(), 1, "idle after 5 s, told once");
}
