//! A viewer of the composite moves between canvas tracks: two single-layer tracks ("a" and
//! "b", the test publisher's layers 0 and 1 published as tracks of their own). The subscription
//! keeps receiving "a" until "b"'s next keyframe (which the move asks for), then receives only
//! "b", on the same SSRC with sequence numbers that never skip or repeat. A track that goes
//! away while a subscription moves from it hands the subscription over to where it goes.

mod common;
use std::time::Duration;

use common::{Clock, Publisher, drain, got};
use mcu_sfu::{Codec, Forwarder, ForwarderConfig, Output};

fn forwarder() -> Forwarder {
    let mut f = Forwarder::new(ForwarderConfig::default());
    f.publish("a", Codec::Vp8, 90_000, &[(0x1111, 0)]).unwrap();
    f.publish("b", Codec::Vp8, 90_000, &[(0x2222, 0)]).unwrap();
    f
}

/// One frame of both tracks (the publisher's third layer is nobody's: refused).
fn send(f: &mut Forwarder, publisher: &mut Publisher, now: std::time::Instant) {
    for p in publisher.frame() {
        let _ = f.handle_rtp(now, &p);
    }
    f.handle_timeout(now);
}

#[test]
fn the_move_happens_at_the_new_tracks_keyframe_and_the_stream_stays_continuous() {
    let mut clock = Clock::start();
    let mut f = forwarder();
    let mut publisher = Publisher::new();
    f.subscribe(clock.0, 7, "a", 0xAAAA, None).unwrap();
    let mut received = Vec::new();
    let mut asked_for_b_at = None;
    for frame in 0..60u64 {
        let now = clock.advance(Duration::from_millis(33));
        if frame == 20 {
            // Frame 20 of "b" is not a keyframe (its first was at frame 0): "a" goes on.
            publisher.want_key = [false; 3];
            f.switch_track(now, 7, 0xAAAA, "b").unwrap();
            assert_eq!(f.moving_to(7, 0xAAAA).as_deref(), Some("b"));
            assert_eq!(f.subscribers_of("b"), 1, "a subscription on its way counts for its new track");
            // The keyframe request for "b" is out at once.
            let mut plis = Vec::new();
            while let Some(o) = f.poll_output() {
                if let Output::PublisherRtcp { track, packet } = o {
                    plis.push(track.to_string());
                    publisher.take_pli(&packet);
                }
            }
            assert_eq!(plis, vec!["b".to_string()]);
            asked_for_b_at = Some(frame);
        }
        send(&mut f, &mut publisher, now);
        let (out, _) = drain(&mut f, &mut publisher);
        received.extend(out.into_iter().map(|(to, p)| {
            assert_eq!(to, 7);
            (frame, got(&p))
        }));
    }
    assert!(asked_for_b_at.is_some());
    let tracks: Vec<(u64, u8)> = received.iter().map(|(frame, g)| (*frame, g.3)).collect();
    let first_b = tracks.iter().position(|(_, layer)| *layer == 1).expect("it moved to b");
    assert!(tracks[..first_b].iter().all(|(_, l)| *l == 0), "only a before the move");
    assert!(tracks[first_b..].iter().all(|(_, l)| *l == 1), "only b after it");
    assert_eq!(tracks[first_b].0, 20, "moved at b's next frame, the keyframe the move asked for");
    assert!(received[first_b].1.4, "the first packet of b starts a keyframe");
    for w in received.windows(2) {
        let ((_, a), (_, b)) = (&w[0], &w[1]);
        assert_eq!(b.2, 0xAAAA, "one SSRC throughout");
        assert_eq!(b.0, a.0.wrapping_add(1), "sequence continuous: {a:?} -> {b:?}");
        assert!(b.1.wrapping_sub(a.1) < 90_000, "timestamp moves forward: {a:?} -> {b:?}");
    }
    assert_eq!(f.stats().track_switches, 1);
    assert_eq!(f.moving_to(7, 0xAAAA), None);
}

#[test]
fn a_track_that_ends_hands_its_moving_subscription_over() {
    let mut clock = Clock::start();
    let mut f = forwarder();
    let mut publisher = Publisher::new();
    f.subscribe(clock.0, 7, "a", 0xAAAA, None).unwrap();
    f.subscribe(clock.0, 8, "a", 0xBBBB, None).unwrap();
    for _ in 0..5 {
        let now = clock.advance(Duration::from_millis(33));
        send(&mut f, &mut publisher, now);
        drain(&mut f, &mut publisher);
    }
    let now = clock.advance(Duration::from_millis(33));
    f.switch_track(now, 7, 0xAAAA, "b").unwrap();
    f.unpublish("a");
    assert_eq!(f.subscribers_of("b"), 1, "the moving subscription lives on");
    assert!(!f.is_subscribed(8, "a"), "the others end with their track");
    let mut got_b = Vec::new();
    for _ in 0..5 {
        let now = clock.advance(Duration::from_millis(33));
        send(&mut f, &mut publisher, now);
        let (out, _) = drain(&mut f, &mut publisher);
        got_b.extend(out.into_iter().map(|(to, p)| (to, got(&p))));
    }
    assert!(!got_b.is_empty() && got_b.iter().all(|(to, g)| *to == 7 && g.3 == 1 && g.2 == 0xAAAA));
    assert!(got_b[0].1.4, "starts at a keyframe of b");
    assert!(f.switch_track(now, 7, 0xAAAA, "gone").is_err(), "an unknown track is refused");
}
