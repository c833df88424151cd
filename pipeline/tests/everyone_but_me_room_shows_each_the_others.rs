//! A classroom: with the room option `everyone_but_me`, every MCU participant who publishes
//! video sees the room layout without itself (no layout per viewer set), and one who publishes
//! none sees the room canvas with everyone; each distinct picture is encoded once.
mod common;

use common::*;
use mcu_codec::{EncoderConfig, OpenError, VideoCodec, VideoEncoder, new_software_encoder};
use mcu_media::Rgb;
use mcu_media::VideoFrame;
use mcu_pipeline::EncoderFactory;
use mcu_pipeline::{Control, SoftwareCodecs};
use std::{
    collections::HashSet,
    sync::{Arc, Mutex},
};

const RED: Rgb = Rgb(220, 30, 30);
const GREEN: Rgb = Rgb(30, 200, 30);
const BLUE: Rgb = Rgb(30, 30, 220);

fn near(a: Rgb, b: Rgb) -> bool {
    a.0.abs_diff(b.0) < 60 && a.1.abs_diff(b.1) < 60 && a.2.abs_diff(b.2) < 60
}

/// The colours at the centres of the two halves of a 320x180 picture (a grid of two).
fn halves(room: &Room, ssrc: u32) -> (Rgb, Rgb) {
    let f = room.viewers.decode_last(ssrc);
    let (w, h) = (f.width, f.height);
    (f.mean_rgb(w / 4 - 6, h / 2 - 6, w / 4 + 6, h / 2 + 6), f.mean_rgb(3 * w / 4 - 6, h / 2 - 6, 3 * w / 4 + 6, h / 2 + 6))
}

fn classroom(room: &mut Room) {
    for (name, color) in [("a", RED), ("b", GREEN), ("c", BLUE)] {
        room.publish(Publisher::new(name, (160, 90), color));
    }
    room.listener("a", 100, None);
    room.listener("b", 200, None);
    room.listener("c", 300 + 10, None);
    // A viewer who publishes no video (a teacher's second screen): the whole room.
    room.listener("x", 400, None);
    room.view.control = Arc::new(Control { everyone_but_me: true, ..Control::default() });
    room.run(3.0, &["a", "b", "c"]);
}

#[test]
fn everyone_sees_the_others_but_not_themselves() {
    let mut room = Room::new(Box::new(SoftwareCodecs));
    classroom(&mut room);

    let (al, ar) = halves(&room, 100);
    assert!(near(al, GREEN) && near(ar, BLUE), "a sees b and c: {al:?} {ar:?}");
    let (bl, br) = halves(&room, 200);
    assert!(near(bl, RED) && near(br, BLUE), "b sees a and c: {bl:?} {br:?}");
    let (cl, cr) = halves(&room, 310);
    assert!(near(cl, RED) && near(cr, GREEN), "c sees a and b: {cl:?} {cr:?}");
    // x sees the grid of all three: a top left, b top right, c centred below.
    let f = room.viewers.decode_last(400);
    let q = |x: u32, y: u32| f.mean_rgb(x - 6, y - 6, x + 6, y + 6);
    let (w, h) = (f.width, f.height);
    assert!(near(q(w / 4, h / 4), RED) && near(q(3 * w / 4, h / 4), GREEN) && near(q(w / 2, 3 * h / 4), BLUE), "x sees everyone");

    // Four pictures (three personal, the room's), each encoded once per pass.
    let stats = room.engine.stats();
    assert!(stats.renders >= 25, "{stats:?}");
    assert!(stats.encodes >= stats.renders * 4 - 8 && stats.encodes <= stats.renders * 4, "four encodes a pass: {stats:?}");
    assert_eq!(room.fwd.stats().track_switches, 0, "each viewer starts on its own canvas");

    // The option off: everyone sees the room canvas again, one encode a pass.
    room.view.control = Arc::new(Control::default());
    let before = room.engine.stats();
    room.run(1.5, &["a", "b", "c"]);
    let after = room.engine.stats();
    assert_eq!(after.encodes - before.encodes, after.renders - before.renders, "one shared encode a pass");
    let f = room.viewers.decode_last(100);
    let (w, h) = (f.width, f.height);
    assert!(near(f.mean_rgb(w / 4 - 6, h / 4 - 6, w / 4 + 6, h / 4 + 6), RED), "a sees itself in the room canvas");
}

#[test]
fn canvases_encoded_in_parallel_come_out_the_same() {
    let mut one = Room::new(Box::new(SoftwareCodecs));
    classroom(&mut one);
    let threads: Arc<Mutex<HashSet<std::thread::ThreadId>>> = Arc::default();
    let mut pooled = Room::new(Box::new(OnThreads(threads.clone()))).with_encode_pool(3);
    classroom(&mut pooled);
    let seen = threads.lock().unwrap().len();
    assert!(seen >= 2, "the encodes ran on {seen} threads");
    assert!(!threads.lock().unwrap().contains(&std::thread::current().id()), "none on the engine's thread");
    for ssrc in [100, 200, 310, 400] {
        let (a, b) = (&one.viewers.by_ssrc[&ssrc].frames, &pooled.viewers.by_ssrc[&ssrc].frames);
        assert!(a.len() >= 25, "{ssrc}: {} pictures", a.len());
        assert_eq!(a, b, "{ssrc} receives the same pictures, in the same order, whether encoded on one thread or four");
    }
    assert_eq!(one.engine.stats(), pooled.engine.stats());
}

/// Software encoders that note the threads they encode on.
struct OnThreads(Arc<Mutex<HashSet<std::thread::ThreadId>>>);

impl EncoderFactory for OnThreads {
    fn video_encoder(&mut self, codec: VideoCodec, config: &EncoderConfig) -> Result<Box<dyn VideoEncoder>, OpenError> {
        let threads = self.0.clone();
        let hook = move |_: &VideoFrame| {
            threads.lock().unwrap().insert(std::thread::current().id());
            Ok(())
        };
        Ok(Box::new(Hooked { inner: new_software_encoder(codec, config)?, backend: None, hook: Box::new(hook) }))
    }
}
