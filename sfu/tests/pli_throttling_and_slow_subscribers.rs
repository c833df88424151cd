//! Keyframe requests from many subscribers reach the publisher at most once per 500 ms per
//! layer; a subscriber whose send queue backs up is paused without slowing the others, and
//! resumes at a keyframe once drained.

mod common;
use std::time::Duration;

use common::{Clock, Publisher, drain};
use mcu_sfu::{Codec, Forwarder, ForwarderConfig, rtcp};

#[test]
fn ten_plis_in_100ms_make_one_request() {
    let mut clock = Clock::start();
    let mut f = Forwarder::new(ForwarderConfig::default());
    f.publish("cam", Codec::H264, 90_000, &[(0x1111, 1_000_000)]).unwrap();
    let mut publisher = Publisher::new();
    for sub in 0..10 {
        f.subscribe(clock.0, sub, "cam", 0x100 + sub as u32, None).unwrap();
    }
    let (_, initial) = drain(&mut f, &mut publisher);
    assert_eq!(initial, 1, "ten subscriptions at once: one keyframe request");
    clock.advance(Duration::from_secs(1));
    for sub in 0..10u64 {
        let now = clock.advance(Duration::from_millis(10));
        f.handle_subscriber_rtcp(now, sub, &rtcp::pli(sub as u32, 0x100 + sub as u32)).unwrap();
    }
    let (_, plis) = drain(&mut f, &mut publisher);
    assert_eq!(plis, 1);
    assert_eq!(f.stats().plis_throttled, 9 + 9);
    let now = clock.advance(Duration::from_millis(600));
    f.handle_subscriber_rtcp(now, 3, &rtcp::fir(3, 0x103, 1)).unwrap();
    assert_eq!(drain(&mut f, &mut publisher).1, 1, "after the interval a FIR gets through");
}

#[test]
fn a_slow_subscriber_is_paused_and_resumes_at_a_keyframe() {
    let mut clock = Clock::start();
    let mut f = Forwarder::new(ForwarderConfig::default());
    f.publish("cam", Codec::Vp8, 90_000, &[(0x1111, 100_000)]).unwrap();
    let mut publisher = Publisher::new();
    publisher.ssrcs = [0x1111, 0x9998, 0x9999];
    f.subscribe(clock.0, 1, "cam", 0xA1, None).unwrap();
    f.subscribe(clock.0, 2, "cam", 0xA2, None).unwrap();
    let mut counts = [[0usize; 2]; 3];
    let mut first_after_resume = None;
    for frame in 0..150u64 {
        let now = clock.advance(Duration::from_millis(33));
        let phase = match frame {
            0..50 => 0,
            50..100 => 1,
            _ => 2,
        };
        if frame == 50 {
            f.set_backlog(now, 2, 5 << 20);
        }
        if frame == 100 {
            f.set_backlog(now, 2, 0);
        }
        for p in publisher.frame() {
            // Only layer 0 is published in this test.
            if mcu_sfu::rtp::RtpPacket::parse(&p).unwrap().ssrc == 0x1111 {
                f.handle_rtp(now, &p).unwrap();
            }
        }
        f.handle_timeout(now);
        for (to, p) in drain(&mut f, &mut publisher).0 {
            counts[phase][to as usize - 1] += 1;
            if to == 2 && phase == 2 && first_after_resume.is_none() {
                first_after_resume = Some(common::got(&p));
            }
        }
    }
    assert_eq!(counts[1][1], 0, "paused subscriber got nothing");
    assert_eq!(counts[1][0], 150, "the other kept all 50 frames × 3 packets");
    assert!(counts[2][1] > 100, "resumed: {counts:?}");
    assert!(first_after_resume.unwrap().4, "resumed at a keyframe");
    assert!(f.stats().dropped_slow > 0);
}

#[test]
fn garbage_is_counted_never_fatal() {
    let mut f = Forwarder::new(ForwarderConfig::default());
    f.publish("cam", Codec::Vp8, 90_000, &[(0x1111, 100_000)]).unwrap();
    let clock = Clock::start();
    f.subscribe(clock.0, 1, "cam", 0xA1, None).unwrap();
    let mut s = 1u64;
    let mut errors = 0;
    for len in 0..400usize {
        let bytes: Vec<u8> = (0..len)
            .map(|_| {
                s = s.wrapping_mul(6364136223846793005).wrapping_add(1);
                (s >> 56) as u8
            })
            .collect();
        errors += f.handle_rtp(clock.0, &bytes).is_err() as usize;
        errors += f.handle_subscriber_rtcp(clock.0, 1, &bytes).is_err() as usize;
    }
    assert!(errors > 700, "{errors}");
    assert!(f.stats().dropped_invalid > 700);
    assert!(f.handle_rtp(clock.0, &mcu_sfu::rtp::build(96, false, 1, 1, 0xdead, b"x")).is_err(), "unknown SSRC");
}

#[test]
fn a_track_may_be_asked_for_keyframes_more_often() {
    let mut clock = Clock::start();
    let mut f = Forwarder::new(ForwarderConfig::default());
    f.publish("mix", Codec::Vp8, 90_000, &[(0x2222, 0)]).unwrap();
    f.set_pli_interval("mix", Duration::from_millis(100)).unwrap();
    assert!(f.set_pli_interval("nope", Duration::from_millis(100)).is_err());
    let mut publisher = Publisher::new();
    f.subscribe(clock.0, 1, "mix", 0x101, None).unwrap();
    assert_eq!(drain(&mut f, &mut publisher).1, 1);
    // A second viewer 150 ms later: past this track's interval, so its request goes out now
    // (the default 500 ms would have held it).
    let now = clock.advance(Duration::from_millis(150));
    f.subscribe(now, 2, "mix", 0x102, None).unwrap();
    assert_eq!(drain(&mut f, &mut publisher).1, 1);
    assert_eq!(f.poll_timeout(), Some(now + Duration::from_millis(100)), "retries follow the track's interval");
}

#[test]
fn subscriptions_are_counted_per_track() {
    // The composite draws only pictures someone receives: it asks how many subscribe.
    let clock = Clock::start();
    let mut f = Forwarder::new(ForwarderConfig::default());
    f.publish("cam", Codec::Vp8, 90_000, &[(1, 0)]).unwrap();
    f.publish("mic", Codec::Audio, 48_000, &[(2, 0)]).unwrap();
    assert_eq!(f.subscribers_of("cam"), 0);
    f.subscribe(clock.0, 1, "cam", 0xA1, None).unwrap();
    f.subscribe(clock.0, 2, "cam", 0xA2, None).unwrap();
    f.subscribe(clock.0, 2, "mic", 0xA3, None).unwrap();
    assert_eq!((f.subscribers_of("cam"), f.subscribers_of("mic"), f.subscribers_of("nothing")), (2, 1, 0));
    f.unsubscribe(2, None);
    assert_eq!((f.subscribers_of("cam"), f.subscribers_of("mic")), (1, 0));
}

#[test]
fn a_throttled_request_is_sent_when_the_interval_ends() {
    let mut clock = Clock::start();
    let mut f = Forwarder::new(ForwarderConfig::default());
    f.publish("cam", Codec::Vp8, 90_000, &[(0x1111, 0)]).unwrap();
    let mut publisher = Publisher::new();
    f.subscribe(clock.0, 1, "cam", 0x100, None).unwrap();
    // The subscription starts at the keyframe it asked for, at once.
    let step = |f: &mut Forwarder, publisher: &mut Publisher, clock: &mut Clock| {
        let now = clock.advance(Duration::from_millis(100));
        for p in publisher.frame() {
            if p[12 + 5] == 0 {
                f.handle_rtp(now, &p).unwrap();
            }
        }
        if f.poll_timeout().is_some_and(|t| t <= now) {
            f.handle_timeout(now);
        }
        drain(f, publisher)
    };
    let (out, plis) = step(&mut f, &mut publisher, &mut clock);
    assert!(!out.is_empty() && plis == 1, "{} packets, {plis} requests", out.len());
    // A decoder (or a recording starting) asks once, 100 ms later: throttled, but not lost.
    f.request_keyframe_for(clock.0, 1, "cam");
    assert_eq!(drain(&mut f, &mut publisher).1, 0);
    assert_eq!(f.stats().plis_throttled, 1);
    let mut sent_at = Vec::new();
    for k in 1..=10 {
        if step(&mut f, &mut publisher, &mut clock).1 > 0 {
            sent_at.push(100 + k * 100);
        }
    }
    assert_eq!(sent_at, vec![500], "sent once, when the 500 ms interval ended");
}
