//! Receiver reports of loss lower a shared encode's bitrate (the worst receiver's, GCC's
//! loss rule) and, once the loss is gone, the rate climbs back to the profile's. The reports
//! reach the room's forwarder as RTCP from each viewer; the engine reads them per canvas track.
mod common;

use common::*;
use mcu_media::Rgb;

#[test]
fn loss_reports_lower_the_shared_rate_and_it_climbs_back() {
    let watched = Watched::default();
    let mut room = Room::new(Box::new(watched.clone()));
    room.publish(Publisher::new("alice", (160, 90), Rgb(30, 200, 30)));
    room.listener("a", 100, None);
    room.listener("b", 200, None);
    room.run(1.0, &["alice"]);
    // Only b's link loses 25 %; a reports nothing. One report every 500 ms.
    for _ in 0..8 {
        room.report_loss(200, 64);
        room.run(0.5, &["alice"]);
    }
    assert_eq!(*watched.opened.lock().unwrap(), 1, "a and b share one encode");
    let rates = || watched.rates.lock().unwrap().get(&1).cloned().unwrap_or_default();
    let low = *rates().last().expect("the rate was lowered");
    assert!(low < 300_000 / 2, "eight reports of 25 % loss more than halve the rate: {:?}", rates());
    assert!(rates().windows(2).all(|w| w[1] < w[0]), "it only went down: {:?}", rates());
    // a and b still get every picture.
    let before = room.viewers.frames(100);
    // The loss is gone: reports of none.
    for _ in 0..24 {
        room.report_loss(200, 0);
        room.run(0.5, &["alice"]);
    }
    let last = *rates().last().unwrap();
    assert!(last >= 285_000, "back to the profile's 300 kbit/s: {last} ({:?})", rates());
    assert!(room.viewers.frames(100) >= before + 115, "the encode never stopped");
    assert_eq!(room.viewers.by_ssrc[&100].frames, room.viewers.by_ssrc[&200].frames);
}

#[test]
fn an_estimate_holds_the_shared_encode_under_it() {
    let watched = Watched::default();
    let mut room = Room::new(Box::new(watched.clone()));
    room.publish(Publisher::new("alice", (160, 90), Rgb(30, 200, 30)));
    room.listener("a", 100, None);
    room.run(0.2, &["alice"]);
    room.report_estimate(100, 150_000);
    room.run(1.5, &["alice"]);
    assert_eq!(watched.rates.lock().unwrap()[&1].last(), Some(&135_000), "90 % of the estimate");
    // Estimates older than 5 s no longer count.
    room.run(6.0, &["alice"]);
    assert_eq!(watched.rates.lock().unwrap()[&1].last(), Some(&300_000), "no estimate: the profile's rate again");
}
