//! An adaptive jitter buffer for the packets of one video stream, sans-IO: packets go in with
//! the time they arrived, whole frames come out in order, and a frame that cannot be completed
//! is given up once the wait exceeds a target delay that follows the measured jitter.
//!
//! The target is small on a clean network (10 ms floor) and grows with jitter (RFC 3550
//! interarrival jitter, ×3), capped at `max_delay`: a lost packet costs one frame and a keyframe
//! request (the caller sees `lost_before`) instead of freezing the stream. Frames are runs of
//! consecutive sequence numbers from a packet that starts a frame (`head`, from the codec's
//! payload header) to one with the marker bit.
//!
//! Time: every call takes `now`; [`JitterBuffer::poll_timeout`] says when a blocked frame
//! expires. Nothing here reads a clock. Panics: none on input.

use std::{
    collections::BTreeMap,
    time::{Duration, Instant},
};

/// Jitter buffer settings.
#[derive(Debug, Clone, Copy)]
pub struct JitterConfig {
    /// RTP clock rate (90 000 for video).
    pub clock_rate: u32,
    /// Smallest wait for a missing packet.
    pub min_delay: Duration,
    /// Largest wait for a missing packet.
    pub max_delay: Duration,
    /// Packets held at most; beyond it the oldest blocked frame is given up.
    pub capacity: usize,
}

impl Default for JitterConfig {
    fn default() -> Self {
        JitterConfig { clock_rate: 90_000, min_delay: Duration::from_millis(10), max_delay: Duration::from_millis(300), capacity: 1024 }
    }
}

/// A frame's packets, in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Frame<T> {
    /// Its RTP timestamp.
    pub timestamp: u32,
    /// Its packets' payloads (whatever the caller stored).
    pub packets: Vec<T>,
    /// Packets given up (lost, or parts of incomplete frames) since the previous frame.
    pub lost_before: u64,
}

/// Counters.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct JitterStats {
    /// Frames delivered.
    pub frames: u64,
    /// Packets given up.
    pub lost: u64,
    /// Packets that arrived after their place was given up.
    pub late: u64,
    /// Packets seen twice.
    pub duplicates: u64,
}

struct Entry<T> {
    timestamp: u32,
    marker: bool,
    head: bool,
    arrival: Instant,
    item: T,
}

/// The buffer of one stream.
pub struct JitterBuffer<T> {
    config: JitterConfig,
    packets: BTreeMap<u64, Entry<T>>,
    /// The extended sequence number expected next.
    next: Option<u64>,
    /// Below this everything is final (delivered or given up): later arrivals are late.
    floor: Option<u64>,
    /// The highest extended sequence number seen.
    highest: Option<u64>,
    /// Lost since the last frame out.
    lost_pending: u64,
    /// RFC 3550 interarrival jitter, seconds.
    jitter: f64,
    last_transit: Option<f64>,
    epoch: Option<Instant>,
    stats: JitterStats,
}

impl<T> JitterBuffer<T> {
    /// An empty buffer.
    pub fn new(config: JitterConfig) -> JitterBuffer<T> {
        JitterBuffer {
            config,
            packets: BTreeMap::new(),
            next: None,
            floor: None,
            highest: None,
            lost_pending: 0,
            jitter: 0.0,
            last_transit: None,
            epoch: None,
            stats: JitterStats::default(),
        }
    }

    /// Counters.
    pub fn stats(&self) -> JitterStats {
        self.stats
    }

    /// How long a missing packet is waited for now.
    pub fn target_delay(&self) -> Duration {
        let want = Duration::from_secs_f64(self.jitter * 3.0);
        want.clamp(self.config.min_delay, self.config.max_delay)
    }

    /// The extended sequence number nearest the highest seen.
    fn extend(&self, seq: u16) -> u64 {
        let Some(h) = self.highest else { return (1 << 16) + seq as u64 };
        let base = h & !0xffff;
        [base.wrapping_sub(1 << 16), base, base + (1 << 16)].into_iter().map(|b| b + seq as u64).min_by_key(|c| c.abs_diff(h)).unwrap_or(base + seq as u64)
    }

    /// Takes a packet that arrived at `now`. `head`: it starts a frame (the codec's payload
    /// header says so); `marker`: it ends one.
    pub fn push(&mut self, now: Instant, seq: u16, timestamp: u32, marker: bool, head: bool, item: T) {
        let ext = self.extend(seq);
        if self.floor.is_some_and(|f| ext < f) {
            self.stats.late += 1;
            return;
        }
        if self.packets.contains_key(&ext) {
            self.stats.duplicates += 1;
            return;
        }
        // Interarrival jitter (RFC 3550 §6.4.1), in seconds.
        let epoch = *self.epoch.get_or_insert(now);
        let transit = now.duration_since(epoch).as_secs_f64() - timestamp as f64 / self.config.clock_rate.max(1) as f64;
        if let Some(last) = self.last_transit {
            let d = (transit - last).abs();
            // A timestamp wrap or a restarted sender: not jitter.
            if d < 10.0 {
                self.jitter += (d - self.jitter) / 16.0;
            }
        }
        self.last_transit = Some(transit);
        self.highest = Some(self.highest.map_or(ext, |h| h.max(ext)));
        // Until something is final, an earlier packet moves the head back (reordering at the
        // start of the stream).
        self.next = Some(self.next.map_or(ext, |n| n.min(ext)));
        self.packets.insert(ext, Entry { timestamp, marker, head, arrival: now, item });
        while self.packets.len() > self.config.capacity {
            if !self.give_up_head() {
                break;
            }
        }
    }

    /// The complete frame at the head, if there is one: its last extended sequence number.
    fn complete_at_head(&self) -> Option<u64> {
        let n = self.next?;
        let first = self.packets.get(&n)?;
        if !first.head {
            return None;
        }
        let mut seq = n;
        loop {
            let e = self.packets.get(&seq)?;
            if e.timestamp != first.timestamp {
                return None;
            }
            if e.marker {
                return Some(seq);
            }
            // A frame whose last packet lost its marker ends where the next frame starts.
            if let Some(after) = self.packets.get(&(seq + 1))
                && after.head
                && after.timestamp != first.timestamp
            {
                return Some(seq);
            }
            seq += 1;
        }
    }

    /// Drops what blocks the head: everything up to the next packet that starts a frame after
    /// a gap or after the head's frame. False when there is nothing to drop.
    fn give_up_head(&mut self) -> bool {
        let Some(n) = self.next else { return false };
        let Some((&first_key, first)) = self.packets.range(n..).next() else { return false };
        let blocked_ts = first.timestamp;
        // The next frame start after the blocked frame's packets.
        let resume = self.packets.range(first_key + 1..).find(|(_, e)| e.head && e.timestamp != blocked_ts).map(|(&k, _)| k);
        let Some(resume) = resume else {
            // Nothing to resume from yet: drop everything held.
            let highest = self.packets.keys().next_back().copied().unwrap_or(n);
            let dropped = highest + 1 - n;
            self.packets.clear();
            self.lost_pending += dropped;
            self.stats.lost += dropped;
            self.next = Some(highest + 1);
            self.floor = self.next;
            return dropped > 0;
        };
        let dropped = resume - n;
        self.packets.retain(|&k, _| k >= resume);
        self.lost_pending += dropped;
        self.stats.lost += dropped;
        self.next = Some(resume);
        self.floor = self.next;
        true
    }

    /// When the frame at the head stops being waited for. A missing packet counts as late only
    /// once a packet after it has arrived (a large keyframe still arriving is not a loss): the
    /// deadline is that packet's arrival plus the target delay. A head that cannot start a
    /// frame (the stream was joined mid-frame, or its start is reordered) waits the target
    /// delay too.
    fn head_deadline(&self) -> Option<Instant> {
        let n = self.next?;
        let (&first_key, first) = self.packets.range(n..).next()?;
        if first_key == n && !first.head {
            return Some(first.arrival + self.target_delay());
        }
        // The first missing sequence number at or after the head.
        let mut missing = n;
        while self.packets.contains_key(&missing) {
            missing += 1;
        }
        let after = self.packets.range(missing..).map(|(_, e)| e.arrival).min()?;
        Some(after + self.target_delay())
    }

    /// The next complete frame, in order; frames that cannot be completed within the target
    /// delay are given up (and counted in the next frame's `lost_before`).
    pub fn pop(&mut self, now: Instant) -> Option<Frame<T>> {
        loop {
            if let Some(last) = self.complete_at_head() {
                let n = self.next?;
                let mut packets = Vec::with_capacity((last - n + 1) as usize);
                let mut timestamp = 0;
                for k in n..=last {
                    if let Some(e) = self.packets.remove(&k) {
                        timestamp = e.timestamp;
                        packets.push(e.item);
                    }
                }
                self.next = Some(last + 1);
                self.floor = self.next;
                self.stats.frames += 1;
                let lost_before = std::mem::take(&mut self.lost_pending);
                return Some(Frame { timestamp, packets, lost_before });
            }
            match self.head_deadline() {
                Some(deadline) if now >= deadline => {
                    if !self.give_up_head() {
                        return None;
                    }
                }
                _ => return None,
            }
        }
    }

    /// When [`JitterBuffer::pop`] may give up the blocked head frame.
    pub fn poll_timeout(&self) -> Option<Instant> {
        if self.complete_at_head().is_some() {
            return None;
        }
        self.head_deadline()
    }
}

#[cfg(test)]
// The tests need one real instant to offset from; the code under test never reads the clock.
#[allow(clippy::disallowed_methods)]
mod tests {
    use super::*;

    fn buffer() -> (JitterBuffer<u16>, Instant) {
        (JitterBuffer::new(JitterConfig::default()), Instant::now())
    }

    /// Frame `f` (two packets, seq 2f and 2f+1) arriving at `t0 + 33 ms · f`.
    fn push_frame(jb: &mut JitterBuffer<u16>, t0: Instant, f: u16, skip: Option<u16>) {
        let at = t0 + Duration::from_millis(33 * f as u64);
        for (i, seq) in [2 * f, 2 * f + 1].into_iter().enumerate() {
            if Some(seq) != skip {
                jb.push(at, seq, f as u32 * 3000, i == 1, i == 0, seq);
            }
        }
    }

    #[test]
    fn in_order_frames_come_out_whole() {
        let (mut jb, t0) = buffer();
        for f in 0..3 {
            push_frame(&mut jb, t0, f, None);
        }
        let out: Vec<Frame<u16>> = std::iter::from_fn(|| jb.pop(t0 + Duration::from_millis(70))).collect();
        assert_eq!(out.iter().map(|f| f.packets.clone()).collect::<Vec<_>>(), [vec![0, 1], vec![2, 3], vec![4, 5]]);
        assert!(out.iter().all(|f| f.lost_before == 0));
        assert_eq!(jb.target_delay(), Duration::from_millis(10), "no jitter: the floor");
    }

    #[test]
    fn reordered_packets_wait_then_complete() {
        let (mut jb, t0) = buffer();
        jb.push(t0, 1, 0, true, false, 1);
        assert_eq!(jb.pop(t0), None, "the frame's first packet is missing");
        assert_eq!(jb.poll_timeout(), Some(t0 + Duration::from_millis(10)));
        jb.push(t0 + Duration::from_millis(2), 0, 0, false, true, 0);
        assert_eq!(jb.pop(t0 + Duration::from_millis(2)).map(|f| f.packets), Some(vec![0, 1]));
    }

    #[test]
    fn a_lost_packet_costs_one_frame_after_the_target_delay() {
        let (mut jb, t0) = buffer();
        push_frame(&mut jb, t0, 0, None);
        assert!(jb.pop(t0).is_some());
        push_frame(&mut jb, t0, 1, Some(3)); // frame 1 loses its second packet
        push_frame(&mut jb, t0, 2, None);
        let at = t0 + Duration::from_millis(38);
        assert_eq!(jb.pop(at), None, "frame 1 is still waited for");
        let deadline = jb.poll_timeout().expect("a deadline");
        assert_eq!(deadline, t0 + Duration::from_millis(66 + 10), "the arrival of the first packet after the gap + the 10 ms target");
        let f = jb.pop(deadline).expect("frame 2, frame 1 given up");
        assert_eq!((f.packets, f.lost_before), (vec![4, 5], 2), "frame 1's two packets (one held, one missing)");
        jb.push(at, 3, 3000, true, false, 3);
        assert_eq!(jb.stats().late, 1, "the straggler is late, not delivered");
    }

    #[test]
    fn jitter_raises_the_target_and_sequence_numbers_wrap() {
        let mut jb = JitterBuffer::new(JitterConfig::default());
        let t0 = Instant::now();
        let mut got = Vec::new();
        for f in 0..200u32 {
            // ±20 ms of jitter around a 33 ms frame interval, across the 16-bit wrap.
            let wobble = if f % 2 == 0 { 0 } else { 20 };
            let at = t0 + Duration::from_millis(33 * f as u64 + wobble);
            let seq = (65_500u32 + f) as u16;
            jb.push(at, seq, f * 3000, true, true, seq);
            while let Some(fr) = jb.pop(at) {
                got.extend(fr.packets);
            }
        }
        assert_eq!(got.len(), 200, "every frame, in order, across the wrap");
        assert!(got.windows(2).all(|w| w[1] == w[0].wrapping_add(1)));
        assert!(jb.target_delay() > Duration::from_millis(25), "{:?}", jb.target_delay());
    }

    #[test]
    fn a_keyframe_still_arriving_is_not_given_up() {
        let (mut jb, t0) = buffer();
        // 40 packets paced over 80 ms, none lost: no deadline while they come in order.
        for i in 0..40u16 {
            jb.push(t0 + Duration::from_millis(2 * i as u64), i, 0, i == 39, i == 0, i);
            if i < 39 {
                assert_eq!(jb.pop(t0 + Duration::from_millis(2 * i as u64 + 1)), None);
                assert_eq!(jb.poll_timeout(), None, "nothing missing yet");
            }
        }
        assert_eq!(jb.pop(t0 + Duration::from_millis(80)).map(|f| f.packets.len()), Some(40));
    }

    #[test]
    fn a_stream_joined_mid_frame_starts_at_the_next_frame() {
        let (mut jb, t0) = buffer();
        jb.push(t0, 7, 0, true, false, 7); // the tail of a frame whose start was never seen
        jb.push(t0, 8, 3000, true, true, 8);
        assert_eq!(jb.pop(t0), None, "its start may still come");
        let f = jb.pop(t0 + Duration::from_millis(10)).expect("the next whole frame");
        assert_eq!((f.packets, f.lost_before), (vec![8], 1));
    }

    #[test]
    fn garbage_never_panics_and_capacity_holds() {
        let mut jb = JitterBuffer::new(JitterConfig { capacity: 64, ..JitterConfig::default() });
        let t0 = Instant::now();
        let mut x = 12345u32;
        for i in 0..5000u32 {
            x = x.wrapping_mul(1_103_515_245).wrapping_add(12345);
            jb.push(t0 + Duration::from_millis(i as u64), (x >> 8) as u16, x, x & 1 == 0, x & 2 == 0, i);
            let _ = jb.pop(t0 + Duration::from_millis(i as u64 + 5));
            assert!(jb.packets.len() <= 64);
        }
    }
}
