//! A publisher that sends only some of its simulcast layers (a browser whose bandwidth estimate
//! is too low for the top one, or that pauses one): subscriptions move to layers that flow,
//! within their caps, and climb back when a higher layer starts; the stream stays continuous.

mod common;
use std::time::Duration;

use common::{Clock, Publisher, drain, got};
use mcu_sfu::{Codec, Forwarder, ForwarderConfig};

#[test]
fn subscriptions_follow_the_layers_that_flow() {
    let mut clock = Clock::start();
    let mut f = Forwarder::new(ForwarderConfig::default());
    // Bitrates unknown (0): the forwarder measures them.
    f.publish("cam", Codec::Vp8, 90_000, &[(0x1111, 0), (0x2222, 0), (0x3333, 0)]).unwrap();
    let mut publisher = Publisher::new();
    f.subscribe(clock.0, 1, "cam", 0xA1, None).unwrap();
    f.subscribe(clock.0, 2, "cam", 0xA2, None).unwrap();
    f.set_max_layer(clock.0, 2, "cam", 0).unwrap();
    // Which layers the publisher sends, by frame: the top one only from frame 150, the middle
    // one stops at frame 250.
    let sending = |frame: u64| -> [bool; 3] { [true, frame < 250, frame >= 150] };
    let mut got1 = Vec::new();
    let mut got2 = Vec::new();
    let mut layers_at = Vec::new();
    for frame in 0..400u64 {
        let now = clock.advance(Duration::from_millis(33));
        let on = sending(frame);
        for p in publisher.frame() {
            let layer = p[12 + 5] as usize;
            if on[layer] {
                f.handle_rtp(now, &p).unwrap();
            }
        }
        if f.poll_timeout().is_some_and(|t| t <= now) {
            f.handle_timeout(now);
        }
        let (out, _) = drain(&mut f, &mut publisher);
        for (to, p) in out {
            match to {
                1 => got1.push((frame, got(&p))),
                2 => got2.push((frame, got(&p))),
                _ => unreachable!(),
            }
        }
        layers_at.push((frame, f.live_layers("cam"), f.current_layer(1, "cam")));
    }
    let layer_of = |v: &[(u64, common::Got)], frame: u64| v.iter().rev().find(|(f, _)| *f <= frame).map(|(_, g)| g.3);
    // The top layer never came for the first 1.5 s: subscriber 1 was moved to the middle one.
    assert_eq!(layer_of(&got1, 100), Some(1), "{:?}", &layers_at[100]);
    assert_eq!(layers_at[100].1, vec![0, 1], "the top layer counts as stopped");
    // It started at frame 150: subscriber 1 climbed to it.
    assert_eq!(layer_of(&got1, 240), Some(2), "{:?}", &layers_at[240]);
    // The middle one stopped at frame 250; subscriber 1 stays on top, subscriber 2 (capped at
    // the bottom layer) was on the bottom layer all along.
    assert_eq!(layer_of(&got1, 399), Some(2));
    assert!(got2.iter().all(|(_, g)| g.3 == 0), "the capped subscriber only ever gets layer 0");
    assert!(got2.len() > 900, "{} packets", got2.len());
    // Then the top layer is capped away for subscriber 1: it moves to the only other layer that
    // flows, the bottom one (the middle one stopped).
    let now = clock.advance(Duration::from_millis(33));
    f.set_max_layer(now, 1, "cam", 1).unwrap();
    let mut after = Vec::new();
    for _ in 0..60 {
        let now = clock.advance(Duration::from_millis(33));
        for p in publisher.frame() {
            if p[12 + 5] != 1 {
                f.handle_rtp(now, &p).unwrap();
            }
        }
        if f.poll_timeout().is_some_and(|t| t <= now) {
            f.handle_timeout(now);
        }
        let (out, _) = drain(&mut f, &mut publisher);
        after.extend(out.into_iter().filter(|(to, _)| *to == 1).map(|(_, p)| got(&p)));
    }
    assert_eq!(after.last().map(|g| g.3), Some(0), "capped below the top, only the bottom layer flows");
    // Subscriber 1's stream: continuous sequence numbers across all its switches, each switch
    // at a keyframe.
    let all: Vec<common::Got> = got1.iter().map(|(_, g)| *g).chain(after).collect();
    for w in all.windows(2) {
        assert_eq!(w[1].0, w[0].0.wrapping_add(1), "sequence continuous: {:?} -> {:?}", w[0], w[1]);
        if w[1].3 != w[0].3 {
            assert!(w[1].4, "switch at a keyframe: {:?} -> {:?}", w[0], w[1]);
        }
    }
    assert_eq!(f.stats().layer_switches, 2, "middle to top, top to bottom");
}

#[test]
fn unknown_bitrates_are_measured_for_the_estimate() {
    let mut clock = Clock::start();
    let mut f = Forwarder::new(ForwarderConfig::default());
    f.publish("cam", Codec::Vp8, 90_000, &[(0x1111, 0), (0x2222, 0), (0x3333, 0)]).unwrap();
    let mut publisher = Publisher::new();
    f.subscribe(clock.0, 1, "cam", 0xA1, None).unwrap();
    // Each layer sends 3 packets of 18 bytes at 30 fps: about 13 kbit/s. An estimate of 10 kbit/s
    // affords none (the lowest then), 20 kbit/s every one (the top then).
    let run = |f: &mut Forwarder, clock: &mut Clock, publisher: &mut Publisher, frames: usize| {
        let mut last = None;
        for _ in 0..frames {
            let now = clock.advance(Duration::from_millis(33));
            for p in publisher.frame() {
                f.handle_rtp(now, &p).unwrap();
            }
            f.handle_timeout(now);
            let (out, _) = drain(f, publisher);
            if let Some((_, p)) = out.last() {
                last = Some(got(p).3);
            }
        }
        last
    };
    assert_eq!(run(&mut f, &mut clock, &mut publisher, 60), Some(2));
    let now = clock.advance(Duration::from_millis(1));
    f.handle_subscriber_rtcp(now, 1, &mcu_sfu::rtcp::remb(9, 10_000, &[0xA1])).unwrap();
    assert_eq!(run(&mut f, &mut clock, &mut publisher, 60), Some(0));
    let now = clock.advance(Duration::from_millis(1));
    f.handle_subscriber_rtcp(now, 1, &mcu_sfu::rtcp::remb(9, 20_000, &[0xA1])).unwrap();
    assert_eq!(run(&mut f, &mut clock, &mut publisher, 60), Some(2));
}

#[test]
fn a_subscription_turned_off_and_on_continues_without_a_gap() {
    let mut clock = Clock::start();
    let mut f = Forwarder::new(ForwarderConfig::default());
    f.publish("cam", Codec::Vp8, 90_000, &[(0x1111, 0)]).unwrap();
    let mut publisher = Publisher::new();
    f.subscribe(clock.0, 1, "cam", 0xA1, None).unwrap();
    let mut got1 = Vec::new();
    for frame in 0..150u64 {
        let now = clock.advance(Duration::from_millis(33));
        if frame == 50 {
            f.set_active(now, 1, "cam", false).unwrap();
        }
        if frame == 100 {
            f.set_active(now, 1, "cam", true).unwrap();
        }
        for p in publisher.frame() {
            if p[12 + 5] == 0 {
                f.handle_rtp(now, &p).unwrap();
            }
        }
        f.handle_timeout(now);
        let (out, _) = drain(&mut f, &mut publisher);
        got1.extend(out.into_iter().map(|(_, p)| (frame, got(&p))));
    }
    assert!(got1.iter().all(|(f, _)| *f < 50 || *f >= 100), "nothing while off");
    let resumed = got1.iter().position(|(f, _)| *f >= 100).expect("on again");
    let (before, after) = (got1[resumed - 1].1, got1[resumed].1);
    assert!(after.4, "resumes at a keyframe");
    assert_eq!(after.0, before.0.wrapping_add(1), "no sequence gap across the pause");
    assert!(after.1.wrapping_sub(before.1) >= 45 * 3000, "the timestamp advanced by the pause");
    assert!(got1[resumed].0 <= 102, "the keyframe was asked for at once (frame {})", got1[resumed].0);
}
