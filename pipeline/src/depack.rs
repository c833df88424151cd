//! An input's jitter buffer and depacketizer (packets in, whole access units out), and the pts
//! its decoder is given.

use std::time::{Duration, Instant};

use crate::jitter::{JitterBuffer, JitterConfig};
use bytes::Bytes;
use mcu_codec::VideoCodec;
use rtc::rtp::{
    codec::{av1::Av1Depacketizer, h264::H264Packet, vp8::Vp8Packet},
    packetizer::Depacketizer,
};

use crate::MediaPacket;

/// Packets in, whole access units out (`crate::jitter`: a missing packet is waited for ~3×
/// the measured jitter, 10–300 ms, then its frame is given up).
pub(crate) struct Depack {
    jitter: JitterBuffer<Bytes>,
    depacketizer: Box<dyn Depacketizer + Send>,
}

impl Depack {
    /// `None` for a codec the composite does not decode.
    pub(crate) fn new(codec: VideoCodec) -> Option<Depack> {
        let depacketizer: Box<dyn Depacketizer + Send> = match codec {
            VideoCodec::Vp8 => Box::new(Vp8Packet::default()),
            VideoCodec::H264 => Box::new(H264Packet::default()),
            VideoCodec::Av1 => Box::new(Av1Depacketizer::default()),
            VideoCodec::Hevc => return None,
        };
        Some(Depack { jitter: JitterBuffer::new(JitterConfig::default()), depacketizer })
    }

    pub(crate) fn push(&mut self, arrived: Instant, p: MediaPacket) {
        let head = self.depacketizer.is_partition_head(&p.payload);
        self.jitter.push(arrived, p.seq, p.timestamp, p.marker, head, p.payload);
    }

    /// The next complete access unit: its bytes, packets given up before it, RTP timestamp.
    /// A unit whose payloads do not depacketize counts as lost.
    pub(crate) fn pop(&mut self, now: Instant) -> Option<(Bytes, u64, u32)> {
        let mut lost = 0;
        loop {
            let frame = self.jitter.pop(now)?;
            lost += frame.lost_before;
            let mut data = Vec::new();
            let ok = frame.packets.iter().all(|p| match self.depacketizer.depacketize(p) {
                Ok(b) => {
                    data.extend_from_slice(&b);
                    true
                }
                Err(_) => false,
            });
            if ok && !data.is_empty() {
                return Some((Bytes::from(data), lost, frame.timestamp));
            }
            lost += frame.packets.len() as u64;
        }
    }
}

/// Unwraps 32-bit 90 kHz RTP timestamps into an increasing pts (decoders refuse a repeated
/// pts as a duplicate).
#[derive(Default)]
pub(crate) struct PtsClock {
    last_rtp: Option<u32>,
    ticks: i64,
    last_pts: Option<Duration>,
}

impl PtsClock {
    pub(crate) fn pts(&mut self, rtp_ts: u32) -> Duration {
        if let Some(last) = self.last_rtp {
            self.ticks += rtp_ts.wrapping_sub(last) as i32 as i64;
        }
        self.last_rtp = Some(rtp_ts);
        let mut pts = Duration::from_micros((self.ticks.max(0) as u64).saturating_mul(100) / 9);
        if let Some(prev) = self.last_pts
            && pts <= prev
        {
            pts = prev + Duration::from_micros(1);
        }
        self.last_pts = Some(pts);
        pts
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pts_increases_across_wraps_and_repeats() {
        let mut c = PtsClock::default();
        let a = c.pts(u32::MAX - 1499);
        let b = c.pts(1500);
        assert_eq!(b - a, Duration::from_micros(3000 * 100 / 9));
        let d = c.pts(1500);
        assert!(d > b, "a repeated timestamp still gets a later pts");
    }
}
