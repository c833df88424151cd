//! A viewer that moves from its own canvas to the room canvas gets a keyframe of the room
//! canvas at once: its subscription moves to the room canvas's track, whose encoder, deep in
//! inter frames, is asked for one (by the forwarder, as the move waits for it).
mod common;

use common::*;
use mcu_compositor::RoomLayout;
use mcu_media::Rgb;
use mcu_pipeline::{Control, SoftwareCodecs, VideoOutput};
use std::sync::Arc;

#[test]
fn a_viewer_moved_to_another_canvas_gets_a_keyframe() {
    let mut room = Room::new(Box::new(SoftwareCodecs));
    room.publish(Publisher::new("alice", (160, 90), Rgb(200, 30, 30)));
    room.listener("a", 100, None);
    room.listener("b", 200, None);
    // b sees a layout of its own (another background): a canvas of its own.
    let mut control = Control::default();
    control.viewer_layouts.insert("b".into(), RoomLayout { background: Rgb(0, 90, 0), ..RoomLayout::default() });
    room.view.control = Arc::new(control);
    room.run(2.0, &["alice"]);
    let (a, b) = (room.viewers.frames(100), room.viewers.frames(200));
    assert!(a >= 15 && b >= 15, "both canvases sent: a {a}, b {b}");
    // Its first keyframe, and the one a's subscription asked for as it started (the forwarder
    // asks the canvas track for one whenever a subscription starts): none since.
    let a_keys: Vec<usize> = room.viewers.by_ssrc[&100].frames.iter().enumerate().filter(|(_, f)| f.2).map(|(i, _)| i).collect();
    assert!(a_keys.len() <= 2 && a_keys.iter().all(|&i| i < 3), "the room canvas is deep in inter frames: keyframes at {a_keys:?}");
    assert!(!room.viewers.by_ssrc[&200].frames[b - 1].2, "b's own canvas is in inter frames too");

    // b's layout is withdrawn: b now sees the room canvas.
    room.view.control = Arc::new(Control::default());
    room.run(0.5, &["alice"]);
    assert!(room.outputs.iter().any(|o| matches!(o, VideoOutput::Show { listener, track } if listener == "b" && &**track == "_mix/video-0")));
    assert!(room.outputs.iter().any(|o| matches!(o, VideoOutput::CanvasGone { .. })), "b's own canvas track is gone");
    let b_frames = &room.viewers.by_ssrc[&200].frames;
    assert!(b_frames.len() > b + 2, "b goes on receiving");
    assert!(b_frames[b].2, "b's first picture of the room canvas is a keyframe");
    let a_frames = &room.viewers.by_ssrc[&100].frames;
    let key = a_frames[a..].iter().position(|f| f.2).expect("the room canvas made a keyframe") + a;
    assert!(key <= a + 1, "at once: the frame after the move at the latest ({})", key - a);
    assert_eq!(a_frames[key].1, b_frames[b].1, "one encode: a and b receive the same picture");
    assert!(!a_frames[key + 1].2, "one keyframe, not a stream of them");
    assert_eq!(room.viewers.by_ssrc[&200].seq_gaps, 0, "b's sequence numbers run on across the move");
    assert_eq!(room.fwd.stats().track_switches, 0, "b's old track ended before the keyframe: its subscription was handed over");
}

#[test]
fn a_viewer_moved_off_a_canvas_that_goes_on_switches_at_its_new_canvas_keyframe() {
    let mut room = Room::new(Box::new(SoftwareCodecs));
    room.publish(Publisher::new("alice", (160, 90), Rgb(200, 30, 30)));
    room.listener("a", 100, None);
    room.listener("b", 200, None);
    room.run(1.5, &["alice"]);
    let before = room.viewers.frames(100);
    // a gets a layout of its own; b stays on the room canvas, which goes on.
    let mut control = Control::default();
    control.viewer_layouts.insert("a".into(), RoomLayout { background: Rgb(0, 0, 120), ..RoomLayout::default() });
    room.view.control = Arc::new(control);
    room.run(1.0, &["alice"]);
    assert_eq!(room.fwd.stats().track_switches, 1, "a's subscription moved to its canvas's track");
    let a = &room.viewers.by_ssrc[&100];
    let moved = a.frames[before..].iter().position(|f| f.2).expect("a keyframe after the move") + before;
    assert!(moved <= before + 2, "the move waited at most a frame or two for its keyframe");
    assert_eq!(a.seq_gaps, 0, "a's sequence numbers run on across the move: one stream");
    let b = &room.viewers.by_ssrc[&200].frames;
    assert!(b.len() >= 24, "b's canvas never stopped: {}", b.len());
    assert_ne!(a.frames.last().unwrap().1, b.last().unwrap().1, "a and b see different pictures now");
}
