//! An encoder that fails stops its own canvas only: the room's other canvases go on, the
//! failure is counted and told, and the canvas is tried again 5 s later.
mod common;

use common::*;
use mcu_media::Rgb;
use mcu_pipeline::{MixCodec, VideoOutput, VideoProfile};

#[test]
fn a_failed_encoder_fails_only_its_canvas() {
    let watched = Watched { failing_bitrate: Some(123_000), ..Watched::default() };
    let mut room = Room::new(Box::new(watched.clone()));
    room.publish(Publisher::new("alice", (160, 90), Rgb(200, 200, 30)));
    room.listener("a", 100, None);
    let phone = VideoProfile { codec: MixCodec::Vp8, width: 160, height: 90, single_nal: false, bitrate: 123_000 };
    room.listener("phone", 200, Some(phone));
    room.run(2.0, &["alice"]);
    let failures = |room: &Room| room.outputs.iter().filter(|o| matches!(o, VideoOutput::EncoderFailed { canvas, .. } if canvas == "room@160x90-vp8")).count();
    assert_eq!(failures(&room), 1, "the phone's canvas failed once and waits: {:?}", room.engine.stats());
    assert_eq!(room.engine.stats().encoder_failures, 1);
    assert_eq!(room.viewers.frames(200), 0, "nothing sent for the failed canvas");
    assert!(room.viewers.frames(100) >= 15, "the room canvas goes on: {}", room.viewers.frames(100));

    room.run(5.0, &["alice"]);
    assert_eq!(failures(&room), 2, "tried again after 5 s, failed again");
    assert_eq!(room.engine.stats().encoder_failures, 2);
    assert!(room.viewers.frames(100) >= 65, "the room canvas never stopped: {}", room.viewers.frames(100));
    assert!(!room.outputs.iter().any(|o| matches!(o, VideoOutput::Idle)), "the room goes on");
}
