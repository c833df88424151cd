//! A publisher that stops sending (its track still published) shows its placeholder after
//! 2 s instead of a frozen picture.
mod common;

use common::*;
use mcu_media::Rgb;
use mcu_pipeline::SoftwareCodecs;

fn centre(room: &Room) -> Rgb {
    let f = room.viewers.decode_last(100);
    f.mean_rgb(f.width / 2 - 8, f.height / 2 - 8, f.width / 2 + 8, f.height / 2 + 8)
}

#[test]
fn a_silent_sender_shows_its_placeholder_after_2_s() {
    let mut room = Room::new(Box::new(SoftwareCodecs));
    room.publish(Publisher::new("alice", (160, 90), Rgb(220, 20, 20)));
    room.listener("a", 100, None);
    room.run(1.0, &["alice"]);
    let Rgb(r, g, _) = centre(&room);
    assert!(r > 160 && g < 80, "alice's red: {:?}", centre(&room));
    // Alice stops sending; her track stays published.
    room.run(1.5, &[]);
    let Rgb(r, g, _) = centre(&room);
    assert!(r > 160 && g < 80, "1.5 s silent: her last picture still shows: {:?}", centre(&room));
    room.run(1.0, &[]);
    let Rgb(r, g, b) = centre(&room);
    // The default tile placeholder, rgb(48, 48, 56).
    assert!(r.abs_diff(48) < 20 && g.abs_diff(48) < 20 && b.abs_diff(56) < 20, "2.5 s silent: the placeholder: {:?}", Rgb(r, g, b));
}
