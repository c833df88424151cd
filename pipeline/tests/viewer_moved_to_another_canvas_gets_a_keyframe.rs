//! A viewer that moves from its own canvas to the room canvas gets a keyframe of the room
//! canvas at once: the room canvas's encoder, deep in inter frames, is asked for one.
mod common;

use common::*;
use mcu_compositor::RoomLayout;
use mcu_media::Rgb;
use mcu_pipeline::{Control, SoftwareCodecs};
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
    let a_keys = room.viewers.by_ssrc[&100].frames.iter().filter(|f| f.2).count();
    assert_eq!(a_keys, 1, "the room canvas made one keyframe (its first) in 2 s");
    assert!(!room.viewers.by_ssrc[&200].frames[b - 1].2, "b's own canvas is in inter frames too");

    // b's layout is withdrawn: b now sees the room canvas.
    room.view.control = Arc::new(Control::default());
    room.run(0.5, &["alice"]);
    let b_frames = &room.viewers.by_ssrc[&200].frames;
    assert!(b_frames.len() > b + 2, "b goes on receiving");
    assert!(b_frames[b].2, "b's first picture of the room canvas is a keyframe");
    let a_frames = &room.viewers.by_ssrc[&100].frames;
    assert!(a_frames[a].2, "the shared room encode made it (a gets it too)");
    assert_eq!(a_frames[a].1, b_frames[b].1, "one encode: a and b receive the same picture");
    assert!(!a_frames[a + 1].2, "one keyframe, not a stream of them");
}
