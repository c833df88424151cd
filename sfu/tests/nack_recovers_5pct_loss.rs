//! A subscriber behind a link that loses 5 % of packets (retransmissions included) NACKs every
//! gap each 20 ms; the forwarder answers from its cache — plainly or as RTX (RFC 4588) — and
//! every packet but those of the last round trip arrives.

mod common;
use std::{collections::BTreeSet, time::Duration};

use common::{Clock, Publisher, drain};
use mcu_sfu::{Codec, Forwarder, ForwarderConfig, rtcp, rtp::RtpPacket};

struct Lossy(u64);

impl Lossy {
    /// Drops 1 packet in 20, pseudo-randomly and deterministically.
    fn drop(&mut self) -> bool {
        self.0 = self.0.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        (self.0 >> 33).is_multiple_of(20)
    }
}

fn run(rtx: Option<(u32, u8)>) -> (BTreeSet<u16>, u16, u16, u64, u64) {
    let mut clock = Clock::start();
    let mut f = Forwarder::new(ForwarderConfig::default());
    f.publish("cam", Codec::Vp8, 90_000, &[(0x1111, 100_000), (0x2222, 300_000), (0x3333, 1_000_000)]).unwrap();
    f.subscribe(clock.0, 1, "cam", 0xAAAA, rtx).unwrap();
    let mut publisher = Publisher::new();
    let mut net = Lossy(42);
    let mut have = BTreeSet::new();
    let (mut first, mut highest) = (None, 0u16);
    let mut dropped = 0u64;
    for _ in 0..600u64 {
        let now = clock.advance(Duration::from_millis(33));
        for p in publisher.frame() {
            f.handle_rtp(now, &p).unwrap();
        }
        let (out, _) = drain(&mut f, &mut publisher);
        for (_, packet) in out {
            if net.drop() {
                dropped += 1;
                continue;
            }
            let p = RtpPacket::parse(&packet).unwrap();
            let seq = if p.ssrc == 0xAAAA {
                p.seq
            } else {
                assert_eq!(Some((p.ssrc, p.payload_type)), rtx, "retransmissions come on the RTX stream");
                u16::from_be_bytes([p.payload()[0], p.payload()[1]])
            };
            first.get_or_insert(seq);
            if seq.wrapping_sub(highest) < 0x8000 || have.is_empty() {
                highest = seq;
            }
            have.insert(seq);
        }
        // The receiver NACKs every gap it sees (once per frame interval here).
        let Some(start) = first else { continue };
        let missing: Vec<u16> = (0..highest.wrapping_sub(start)).map(|d| start.wrapping_add(d)).filter(|s| !have.contains(s)).collect();
        if !missing.is_empty() {
            f.handle_subscriber_rtcp(now, 1, &rtcp::nack(9, 0xAAAA, &missing)).unwrap();
        }
    }
    (have, first.unwrap(), highest, dropped, f.stats().retransmitted)
}

#[test]
fn plain_retransmission_fills_every_gap() {
    let (have, first, highest, dropped, retransmitted) = run(None);
    let span = highest.wrapping_sub(first) as usize;
    assert!(span > 1500, "{span} packets sent");
    assert!(dropped > 60, "the link really lost packets: {dropped}");
    // Everything older than the last few packets arrived.
    let missing: Vec<u16> = (0..span.saturating_sub(10)).map(|d| first.wrapping_add(d as u16)).filter(|s| !have.contains(s)).collect();
    assert!(missing.is_empty(), "never recovered: {missing:?}");
    assert!(retransmitted >= dropped - 10, "retransmitted {retransmitted} for {dropped} lost");
}

#[test]
fn rtx_retransmission_fills_every_gap() {
    let (have, first, highest, dropped, _) = run(Some((0xCCCC, 97)));
    let span = highest.wrapping_sub(first) as usize;
    assert!(dropped > 60);
    let missing = (0..span.saturating_sub(10)).map(|d| first.wrapping_add(d as u16)).filter(|s| !have.contains(s)).count();
    assert_eq!(missing, 0);
}
