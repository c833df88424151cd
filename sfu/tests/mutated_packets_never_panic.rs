//! Valid RTP and RTCP with random bytes overwritten, truncated or extended, 20 000 times each:
//! the parsers and the forwarder return errors or results, never panic, and every refused
//! packet is counted; an RTP packet that parses is rewritten for a subscriber into one that
//! parses too.

use std::time::Instant;

use mcu_sfu::{Codec, Forwarder, ForwarderConfig, rtcp, rtp};

struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        self.0 >> 33
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
}

fn mutate(rng: &mut Rng, base: &[u8]) -> Vec<u8> {
    let mut p = base.to_vec();
    for _ in 0..1 + rng.below(4) {
        match rng.below(3) {
            0 if !p.is_empty() => {
                let i = rng.below(p.len());
                p[i] = rng.next() as u8;
            }
            1 => p.truncate(rng.below(p.len() + 1)),
            _ => p.extend((0..rng.below(8)).map(|_| rng.next() as u8)),
        }
    }
    p
}

#[test]
fn mutated_rtcp_compounds() {
    let mut base = rtcp::pli(1, 2);
    base.extend(rtcp::nack(1, 2, &[10, 11, 30]));
    base.extend(rtcp::fir(1, 2, 3));
    base.extend(rtcp::remb(1, 2_000_000, &[2, 3]));
    base.extend([0x81, 201, 0, 7, 0, 0, 0, 9, 0, 0, 0, 2, 5, 0, 0, 1, 0, 0, 1, 0, 0, 0, 0, 9, 0, 0, 0, 0, 0, 0, 0, 0]);
    let mut rng = Rng(7);
    let mut f = Forwarder::new(ForwarderConfig::default());
    f.publish("t", Codec::Vp8, 90_000, &[(0x1111, 100_000)]).unwrap();
    #[allow(clippy::disallowed_methods)] // an arbitrary origin for the forwarder's clock
    let now = Instant::now();
    f.subscribe(now, 1, "t", 2, Some((3, 97))).unwrap();
    let (mut ok, mut err) = (0, 0);
    for _ in 0..20_000 {
        let p = mutate(&mut rng, &base);
        match rtcp::parse(&p) {
            Ok(_) => ok += 1,
            Err(_) => err += 1,
        }
        let _ = f.handle_subscriber_rtcp(now, 1, &p);
        while f.poll_output().is_some() {}
    }
    assert!(ok > 1000 && err > 1000, "both outcomes exercised: {ok} parsed, {err} refused");
    assert_eq!(f.stats().dropped_invalid, err as u64);
}

#[test]
fn mutated_rtp_packets() {
    let mut base = rtp::build(96, true, 100, 9000, 0x1111, &[0x90, 0x80, 0x81, 0x23, 0x10, 0x02, 1, 2, 3]);
    // Add a one-byte header extension block.
    base[0] |= 0x10;
    let ext = [0xBE, 0xDE, 0x00, 0x01, 0x10, 0x85, 0x00, 0x00];
    base.splice(12..12, ext);
    let mut rng = Rng(11);
    let mut f = Forwarder::new(ForwarderConfig::default());
    f.publish("t", Codec::Vp8, 90_000, &[(0x1111, 100_000)]).unwrap();
    #[allow(clippy::disallowed_methods)]
    let now = Instant::now();
    f.subscribe(now, 1, "t", 2, None).unwrap();
    let mut parsed = 0;
    for _ in 0..20_000 {
        let p = mutate(&mut rng, &base);
        if let Ok(r) = rtp::RtpPacket::parse(&p) {
            parsed += 1;
            let _ = (r.payload(), r.audio_level(1), r.extension(2));
            // What a direct-path viewer gets is itself a well-formed packet with the same
            // payload, whatever the extension block held.
            let mut out = Vec::new();
            rtp::write_for_subscriber(&r, 111, &[(1, 3), (2, 15), (8, 1)], &mut out);
            let w = rtp::RtpPacket::parse(&out).expect("a rewritten packet parses");
            assert_eq!((w.payload_type, w.seq, w.ssrc, w.payload()), (111, r.seq, r.ssrc, r.payload()));
            assert!(w.elements().all(|(id, _)| [3, 15, 1].contains(&id)));
        }
        let _ = f.handle_rtp(now, &p);
        while f.poll_output().is_some() {}
    }
    assert!(parsed > 1000, "{parsed}");
    assert!(f.stats().forwarded > 0 && f.stats().dropped_invalid > 1000);
}
