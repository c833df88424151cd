//! A subscriber of a three-layer simulcast track: starts on the top layer at a keyframe, drops
//! to the bottom layer when its REMB falls, climbs back when it rises. Through both switches it
//! sees one SSRC, sequence numbers that never skip or repeat, and timestamps that keep
//! advancing; every switch happens at a keyframe of the new layer.

mod common;
use std::time::Duration;

use common::{Clock, Publisher, drain, got};
use mcu_sfu::{Codec, Forwarder, ForwarderConfig, rtcp};

#[test]
fn one_continuous_stream_across_switches() {
    let mut clock = Clock::start();
    let mut f = Forwarder::new(ForwarderConfig::default());
    let layers = [(0x1111, 150_000), (0x2222, 500_000), (0x3333, 1_500_000)];
    f.publish("cam", Codec::Vp8, 90_000, &layers).unwrap();
    let mut publisher = Publisher::new();
    f.subscribe(clock.0, 7, "cam", 0xAAAA, None).unwrap();
    let mut received = Vec::new();
    for frame in 0..300u64 {
        let now = clock.advance(Duration::from_millis(33));
        if frame == 100 {
            f.handle_subscriber_rtcp(now, 7, &rtcp::remb(99, 300_000, &[0xAAAA])).unwrap();
        }
        if frame == 200 {
            f.handle_subscriber_rtcp(now, 7, &rtcp::remb(99, 3_000_000, &[0xAAAA])).unwrap();
        }
        for p in publisher.frame() {
            f.handle_rtp(now, &p).unwrap();
        }
        f.handle_timeout(now);
        let (out, _) = drain(&mut f, &mut publisher);
        received.extend(out.into_iter().map(|(to, p)| {
            assert_eq!(to, 7);
            (frame, got(&p))
        }));
    }
    assert!(received[0].1.4, "the stream starts at a keyframe");
    let layers_seen: Vec<u8> = received.iter().map(|(_, g)| g.3).collect();
    assert_eq!(layers_seen[0], 2, "top layer first");
    assert!(layers_seen.contains(&0), "dropped to the bottom layer");
    assert_eq!(*layers_seen.last().unwrap(), 2, "back on top");
    for w in received.windows(2) {
        let ((_, a), (_, b)) = (&w[0], &w[1]);
        assert_eq!(b.2, 0xAAAA);
        assert_eq!(b.0, a.0.wrapping_add(1), "sequence continuous: {a:?} -> {b:?}");
        let dt = b.1.wrapping_sub(a.1);
        assert!(dt < 90_000, "timestamp moves forward: {a:?} -> {b:?}");
        if b.3 != a.3 {
            assert!(b.4, "switches happen at a keyframe of the new layer");
            assert!(dt > 0, "a switch advances the timestamp");
        }
    }
    assert_eq!(f.stats().layer_switches, 2);
}

#[test]
fn a_publisher_restart_with_new_ssrcs_stays_continuous() {
    let mut clock = Clock::start();
    let mut f = Forwarder::new(ForwarderConfig::default());
    f.publish("mic", Codec::Audio, 48_000, &[(0x1111, 40_000)]).unwrap();
    f.subscribe(clock.0, 1, "mic", 0xBBBB, None).unwrap();
    let mut last: Option<(u16, u32)> = None;
    let mut send = |f: &mut Forwarder, now, seq: u16, ts: u32, ssrc: u32| {
        f.handle_rtp(now, &mcu_sfu::rtp::build(111, false, seq, ts, ssrc, b"opus")).unwrap();
        while let Some(mcu_sfu::Output::Rtp { packet, .. }) = f.poll_output() {
            let p = mcu_sfu::rtp::RtpPacket::parse(&packet).unwrap();
            if let Some((s, t)) = last {
                assert_eq!(p.seq, s.wrapping_add(1));
                assert!(p.timestamp.wrapping_sub(t) >= 960 && p.timestamp.wrapping_sub(t) < 48_000);
            }
            last = Some((p.seq, p.timestamp));
        }
    };
    for k in 0..50u16 {
        let now = clock.advance(Duration::from_millis(20));
        send(&mut f, now, 1000 + k, 10_000 + 960 * k as u32, 0x1111);
    }
    // The publisher reconnects: new SSRC, new random bases.
    f.replace_ssrc("mic", 0, 0x5555).unwrap();
    for k in 0..50u16 {
        let now = clock.advance(Duration::from_millis(20));
        send(&mut f, now, 40_000 + k, 7_777_777 + 960 * k as u32, 0x5555);
    }
    assert_eq!(f.stats().forwarded, 100);
}

/// One encode for every subscriber of a track (the MCU's composite) stays under the lowest
/// recent REMB among them; an estimate older than the age asked for no longer counts.
#[test]
fn track_estimate_is_the_lowest_recent_remb() {
    let mut clock = Clock::start();
    let mut f = Forwarder::new(ForwarderConfig::default());
    f.publish("mix", Codec::Vp8, 90_000, &[(0x1111, 0)]).unwrap();
    f.publish("other", Codec::Vp8, 90_000, &[(0x2222, 0)]).unwrap();
    for (sub, ssrc) in [(1, 0xA1), (2, 0xA2), (3, 0xA3)] {
        f.subscribe(clock.0, sub, "mix", ssrc, None).unwrap();
    }
    f.subscribe(clock.0, 4, "other", 0xB4, None).unwrap();
    let age = Duration::from_secs(3);
    assert_eq!(f.track_estimate(clock.0, &["mix"], age), None, "nobody sent REMB");
    let now = clock.advance(Duration::from_millis(100));
    f.handle_subscriber_rtcp(now, 1, &rtcp::remb(9, 900_000, &[0xA1])).unwrap();
    f.handle_subscriber_rtcp(now, 2, &rtcp::remb(9, 300_000, &[0xA2])).unwrap();
    f.handle_subscriber_rtcp(now, 4, &rtcp::remb(9, 100_000, &[0xB4])).unwrap();
    assert_eq!(f.track_estimate(now, &["mix"], age), Some(300_000), "the lowest of the mix's subscribers");
    assert_eq!(f.track_estimate(now, &["other"], age), Some(100_000));
    let later = clock.advance(Duration::from_secs(2));
    f.handle_subscriber_rtcp(later, 1, &rtcp::remb(9, 800_000, &[0xA1])).unwrap();
    let much_later = clock.advance(Duration::from_millis(1500));
    assert_eq!(f.track_estimate(much_later, &["mix"], age), Some(800_000), "subscriber 2's estimate is 3.5 s old");
    f.unsubscribe(1, None);
    assert_eq!(f.track_estimate(much_later, &["mix"], age), None);
}

/// Receiver reports: a track's worst recent loss among its subscribers, and when the newest
/// report came; reports on other streams or too old do not count.
#[test]
fn track_loss_is_the_worst_recent_report() {
    let mut clock = Clock::start();
    let mut f = Forwarder::new(ForwarderConfig::default());
    f.publish("mix", Codec::Vp8, 90_000, &[(0x1111, 0)]).unwrap();
    f.subscribe(clock.0, 1, "mix", 0xA1, None).unwrap();
    f.subscribe(clock.0, 2, "mix", 0xA2, None).unwrap();
    let age = Duration::from_secs(3);
    assert_eq!(f.track_loss(clock.0, &["mix"], age), None);
    let t1 = clock.advance(Duration::from_millis(100));
    f.handle_subscriber_rtcp(t1, 1, &rtcp::receiver_report(9, &[(0xA1, 64)])).unwrap();
    let t2 = clock.advance(Duration::from_millis(100));
    f.handle_subscriber_rtcp(t2, 2, &rtcp::receiver_report(9, &[(0xA2, 3), (0xDEAD, 200)])).unwrap();
    assert_eq!(f.track_loss(t2, &["mix"], age), Some((t2, 64)), "the worst fraction, the newest time; 0xDEAD is nobody's");
    let later = clock.advance(Duration::from_millis(2950));
    assert_eq!(f.track_loss(later, &["mix"], age), Some((t2, 3)), "subscriber 1's report is too old");
}

#[test]
fn sender_reports_carry_loss_too() {
    // A subscriber that also publishes (a browser MCU participant) puts its report blocks in
    // its sender reports: header (PT 200, one block), sender SSRC, sender info, the block.
    let mut clock = Clock::start();
    let mut f = Forwarder::new(ForwarderConfig::default());
    f.publish("mix", Codec::Vp8, 90_000, &[(0x1111, 0)]).unwrap();
    f.subscribe(clock.0, 1, "mix", 0xA1, None).unwrap();
    let rr = rtcp::receiver_report(9, &[(0xA1, 77)]);
    let block = &rr[8..];
    let mut sr = vec![0x81, 200, 0, 0];
    sr.extend_from_slice(&9u32.to_be_bytes());
    sr.extend_from_slice(&[0; 20]);
    sr.extend_from_slice(block);
    let words = (sr.len() / 4 - 1) as u16;
    sr[2..4].copy_from_slice(&words.to_be_bytes());
    let t = clock.advance(Duration::from_millis(100));
    f.handle_subscriber_rtcp(t, 1, &sr).unwrap();
    assert_eq!(f.track_loss(t, &["mix"], Duration::from_secs(3)), Some((t, 77)));
}
