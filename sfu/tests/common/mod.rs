//! A simulated simulcast VP8 publisher and subscriber-side checks, on virtual time.
#![allow(dead_code)]

use std::time::{Duration, Instant};

use mcu_sfu::{Forwarder, Output, rtp};

/// Per layer: SSRC, first sequence number, first timestamp (distinct, as real encoders pick).
pub const LAYERS: [(u32, u16, u32); 3] = [(0x1111, 60_000, 5_000), (0x2222, 100, 900_000), (0x3333, 30_000, 4_000_000_000)];

/// A publisher sending 30 fps on every layer, 3 packets a frame, a keyframe every 100 frames or
/// at the next frame after a PLI for that layer. Payload byte 5 carries the layer index.
pub struct Publisher {
    pub seq: [u16; 3],
    pub ts: [u32; 3],
    pub want_key: [bool; 3],
    pub frame: u64,
    pub ssrcs: [u32; 3],
}

impl Publisher {
    pub fn new() -> Publisher {
        Publisher { seq: LAYERS.map(|l| l.1), ts: LAYERS.map(|l| l.2), want_key: [true; 3], frame: 0, ssrcs: LAYERS.map(|l| l.0) }
    }

    /// The packets of the next frame on every layer.
    pub fn frame(&mut self) -> Vec<Vec<u8>> {
        let mut out = Vec::new();
        for l in 0..3 {
            let key = self.want_key[l] || self.frame.is_multiple_of(100);
            self.want_key[l] = false;
            for k in 0..3u8 {
                let start = k == 0;
                let payload =
                    [if start { 0x90 } else { 0x80 }, 0x80, 0x80 | (self.frame >> 8) as u8 & 0x7f, self.frame as u8, if key { 0x00 } else { 0x01 }, l as u8];
                out.push(rtp::build(96, k == 2, self.seq[l], self.ts[l], self.ssrcs[l], &payload));
                self.seq[l] = self.seq[l].wrapping_add(1);
            }
            self.ts[l] = self.ts[l].wrapping_add(3000);
        }
        self.frame += 1;
        out
    }

    /// Reads a PLI the forwarder sent upstream.
    pub fn take_pli(&mut self, packet: &[u8]) {
        for p in mcu_sfu::rtcp::parse(packet).unwrap() {
            if let mcu_sfu::rtcp::RtcpPacket::Pli { media, .. } = p
                && let Some(l) = self.ssrcs.iter().position(|s| *s == media)
            {
                self.want_key[l] = true;
            }
        }
    }
}

/// A received packet: (sequence, timestamp, ssrc, layer byte, keyframe start).
pub type Got = (u16, u32, u32, u8, bool);

pub fn got(packet: &[u8]) -> Got {
    let p = rtp::RtpPacket::parse(packet).unwrap();
    let pl = p.payload();
    (p.seq, p.timestamp, p.ssrc, pl[5], pl[0] & 0x10 != 0 && pl[4] & 1 == 0)
}

/// Drains the forwarder: RTP per subscriber, PLIs into the publisher. Returns (sub, packet) and
/// the number of PLIs.
pub fn drain(f: &mut Forwarder, publisher: &mut Publisher) -> (Vec<(u64, Vec<u8>)>, usize) {
    let (mut rtp_out, mut plis) = (Vec::new(), 0);
    while let Some(o) = f.poll_output() {
        match o {
            Output::Rtp { to, packet } => rtp_out.push((to, packet)),
            Output::PublisherRtcp { packet, .. } => {
                plis += 1;
                publisher.take_pli(&packet);
            }
        }
    }
    (rtp_out, plis)
}

/// Virtual time.
pub struct Clock(pub Instant);

impl Clock {
    pub fn start() -> Clock {
        // The one clock read of the tests: an arbitrary origin; time then advances by hand.
        #[allow(clippy::disallowed_methods)]
        Clock(Instant::now())
    }
    pub fn advance(&mut self, d: Duration) -> Instant {
        self.0 += d;
        self.0
    }
}
