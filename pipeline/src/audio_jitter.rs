//! An adaptive playout buffer for one audio stream of fixed-duration frames (Opus, 20 ms),
//! sans-IO: packets go in as they arrive, one frame comes out per playout tick, in sequence
//! order.
//!
//! - **Order.** Frames play by RTP sequence number (extended over wrap-around). Reordered
//!   packets take their place; duplicates are dropped; a packet older than what already played
//!   is late and dropped (counted).
//! - **Adaptive delay.** The buffer starts playing once it holds `target` frames (initially
//!   [`AudioJitterConfig::initial_target`]). A tick with nothing to play while playing is a
//!   starvation: the caller conceals it ([`Playout::Missing`]) and the buffer does not skip
//!   ahead, so the frames of a sender that stalled and then sent a burst all play (late rather
//!   than lost). Each starvation episode, and each late packet, raises the target by one frame
//!   (up to `max_target`); a quiet `decay` lowers it by one (down to `min_target`).
//! - **Catching up.** While more than `target + 1` frames wait, one frame is dropped every
//!   `catch_up_every` ticks, so a burst's extra delay drains within a second or two instead of
//!   staying.
//! - **Loss.** A frame missing while later ones wait is waited for as long as fewer than
//!   `target` frames are buffered behind it, then given up ([`Playout::Missing`] with the next
//!   frame, whose in-band FEC may rebuild it).
//! - **Restarts.** A sequence jump of more than `capacity` frames either way (a publisher that
//!   restarted) flushes the buffer and starts again.
//!
//! Time: `push` and `pop` take `now`; nothing here reads a clock. Panics: none on input.

use std::{
    collections::BTreeMap,
    time::{Duration, Instant},
};

/// Playout buffer settings (frames of the stream's frame duration).
#[derive(Debug, Clone, Copy)]
pub struct AudioJitterConfig {
    /// Frames buffered before playing starts.
    pub initial_target: usize,
    /// Lowest target.
    pub min_target: usize,
    /// Highest target.
    pub max_target: usize,
    /// Frames held at most; beyond it the oldest are dropped.
    pub capacity: usize,
    /// A frame is dropped every this many ticks while the buffer runs above its target.
    pub catch_up_every: u32,
    /// The target falls by one frame after this long without a starvation or a late packet.
    pub decay: Duration,
}

impl Default for AudioJitterConfig {
    /// 20 ms frames: 40 ms to start, 20–200 ms as the network asks, 1 s held at most.
    fn default() -> Self {
        AudioJitterConfig { initial_target: 2, min_target: 1, max_target: 10, capacity: 50, catch_up_every: 5, decay: Duration::from_secs(5) }
    }
}

/// What to play at a tick.
#[derive(Debug, PartialEq, Eq)]
pub enum Playout {
    /// The next frame's payload.
    Frame(Vec<u8>),
    /// The next frame is missing (lost, or not here yet): conceal it. `next` is the frame after
    /// it when that one is here (its FEC may carry the missing one).
    Missing {
        /// The frame after the missing one, when here.
        next: Option<Vec<u8>>,
    },
    /// Nothing is playing (before the first frames, or after a flush).
    Silence,
}

/// Counters since creation.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct AudioJitterStats {
    /// Frames played.
    pub played: u64,
    /// Ticks concealed while playing (lost or not yet arrived).
    pub concealed: u64,
    /// Frames given up after later ones arrived.
    pub lost: u64,
    /// Packets that arrived after their frame's tick had passed.
    pub late: u64,
    /// Frames dropped to bring the delay back to the target, or for capacity.
    pub dropped: u64,
    /// Packets received twice.
    pub duplicates: u64,
    /// Flushes after a sequence jump.
    pub restarts: u64,
}

/// The playout buffer of one audio stream (see the module).
#[derive(Debug)]
pub struct AudioJitter {
    config: AudioJitterConfig,
    frames: BTreeMap<u64, Vec<u8>>,
    /// Highest extended sequence number seen.
    highest: Option<u64>,
    /// The next frame to play, once playing.
    next: Option<u64>,
    target: usize,
    /// Starved at the last tick (one episode raises the target once).
    starving: bool,
    last_trouble: Option<Instant>,
    ticks_above: u32,
    stats: AudioJitterStats,
}

impl AudioJitter {
    /// An empty buffer.
    pub fn new(config: AudioJitterConfig) -> AudioJitter {
        let config = AudioJitterConfig {
            min_target: config.min_target.max(1),
            max_target: config.max_target.max(config.min_target.max(1)),
            capacity: config.capacity.max(config.max_target.max(1) + 2),
            catch_up_every: config.catch_up_every.max(1),
            ..config
        };
        let target = config.initial_target.clamp(config.min_target, config.max_target);
        AudioJitter {
            config,
            frames: BTreeMap::new(),
            highest: None,
            next: None,
            target,
            starving: false,
            last_trouble: None,
            ticks_above: 0,
            stats: AudioJitterStats::default(),
        }
    }

    /// Counters since creation.
    pub fn stats(&self) -> AudioJitterStats {
        self.stats
    }

    /// Frames the buffer waits for before playing, and keeps in reserve while playing.
    pub fn target(&self) -> usize {
        self.target
    }

    /// Frames waiting.
    pub fn len(&self) -> usize {
        self.frames.len()
    }

    /// No frame waiting.
    pub fn is_empty(&self) -> bool {
        self.frames.is_empty()
    }

    fn extend(&self, seq: u16) -> u64 {
        match self.highest {
            None => (1 << 32) + seq as u64,
            Some(h) => {
                let delta = seq.wrapping_sub(h as u16) as i16 as i64;
                (h as i64 + delta).max(0) as u64
            }
        }
    }

    fn trouble(&mut self, now: Instant) {
        self.target = (self.target + 1).min(self.config.max_target);
        self.last_trouble = Some(now);
    }

    fn flush(&mut self) {
        self.frames.clear();
        self.highest = None;
        self.next = None;
        self.starving = false;
        self.ticks_above = 0;
    }

    /// A packet of the stream, with its RTP sequence number.
    pub fn push(&mut self, seq: u16, payload: Vec<u8>, now: Instant) {
        let mut ext = self.extend(seq);
        let far = self.config.capacity as u64;
        if self.highest.is_some_and(|h| ext > h + far || ext + far < h) {
            self.stats.restarts += 1;
            self.flush();
            ext = self.extend(seq);
        }
        if self.next.is_some_and(|n| ext < n) {
            self.stats.late += 1;
            self.trouble(now);
            return;
        }
        if self.frames.contains_key(&ext) {
            self.stats.duplicates += 1;
            return;
        }
        self.frames.insert(ext, payload);
        self.highest = Some(self.highest.map_or(ext, |h| h.max(ext)));
        while self.frames.len() > self.config.capacity {
            let (&oldest, _) = self.frames.iter().next().expect("over capacity, so not empty");
            self.frames.remove(&oldest);
            self.stats.dropped += 1;
            if let Some(n) = self.next.as_mut() {
                *n = (*n).max(oldest + 1);
            }
        }
    }

    /// The frame to play at this tick (call once per frame duration).
    pub fn pop(&mut self, now: Instant) -> Playout {
        if self.last_trouble.is_some_and(|t| now.saturating_duration_since(t) >= self.config.decay) {
            self.target = self.target.saturating_sub(1).max(self.config.min_target);
            self.last_trouble = Some(now);
        } else if self.last_trouble.is_none() {
            self.last_trouble = Some(now);
        }
        let next = match self.next {
            Some(n) => n,
            None => {
                // Not playing yet: wait for the target to fill.
                if self.frames.len() < self.target {
                    return Playout::Silence;
                }
                *self.frames.keys().next().expect("at least the target, so not empty")
            }
        };
        // Too much delay: drop a frame now and then until back near the target.
        if self.frames.len() > self.target + 1 {
            self.ticks_above += 1;
            if self.ticks_above >= self.config.catch_up_every {
                self.ticks_above = 0;
                if let Some((&first, _)) = self.frames.iter().next() {
                    self.frames.remove(&first);
                    self.stats.dropped += 1;
                    self.next = Some(first + 1);
                    return self.pop_at(first + 1, now);
                }
            }
        } else {
            self.ticks_above = 0;
        }
        self.pop_at(next, now)
    }

    fn pop_at(&mut self, next: u64, now: Instant) -> Playout {
        if let Some(payload) = self.frames.remove(&next) {
            self.next = Some(next + 1);
            self.starving = false;
            self.stats.played += 1;
            return Playout::Frame(payload);
        }
        self.next = Some(next);
        self.stats.concealed += 1;
        if self.frames.is_empty() {
            // Starved: conceal and keep the place, so that late frames still play.
            if !self.starving {
                self.starving = true;
                self.trouble(now);
            }
            return Playout::Missing { next: None };
        }
        self.starving = false;
        if self.frames.len() >= self.target {
            // Enough behind it: the missing frame is lost.
            self.stats.lost += 1;
            self.next = Some(next + 1);
            return Playout::Missing { next: self.frames.get(&(next + 1)).cloned() };
        }
        Playout::Missing { next: None }
    }
}

#[cfg(test)]
#[allow(clippy::disallowed_methods)] // a virtual clock's origin; every step is `t0 + n * TICK`
mod tests {
    use super::*;

    const TICK: Duration = Duration::from_millis(20);

    fn frame(seq: u16) -> Vec<u8> {
        seq.to_be_bytes().to_vec()
    }

    fn seq_of(p: &Playout) -> Option<u16> {
        match p {
            Playout::Frame(f) => Some(u16::from_be_bytes([f[0], f[1]])),
            _ => None,
        }
    }

    /// Runs `ticks` playout ticks; `arrivals(tick)` lists the sequence numbers arriving just
    /// before that tick. Returns what played at each tick.
    fn run(jb: &mut AudioJitter, ticks: u32, arrivals: impl Fn(u32) -> Vec<u16>) -> Vec<Option<u16>> {
        let t0 = Instant::now();
        (0..ticks)
            .map(|i| {
                let now = t0 + TICK * i;
                for s in arrivals(i) {
                    jb.push(s, frame(s), now);
                }
                seq_of(&jb.pop(now))
            })
            .collect()
    }

    #[test]
    fn a_steady_stream_plays_every_frame_in_order_after_the_initial_target() {
        let mut jb = AudioJitter::new(AudioJitterConfig::default());
        let out = run(&mut jb, 100, |i| vec![65500u16.wrapping_add(i as u16)]);
        assert_eq!(out[0], None, "waits for 2 frames");
        let played: Vec<u16> = out.iter().flatten().copied().collect();
        assert_eq!(played.len(), 99);
        assert!(played.windows(2).all(|w| w[1] == w[0].wrapping_add(1)), "in order across the wrap: {played:?}");
        assert_eq!(jb.stats().concealed, 0);
    }

    #[test]
    fn reordered_packets_play_in_sequence_order() {
        let mut jb = AudioJitter::new(AudioJitterConfig::default());
        // Pairs swapped: 1,0,3,2,...
        let out = run(&mut jb, 60, |i| vec![(i ^ 1) as u16]);
        let played: Vec<u16> = out.iter().flatten().copied().collect();
        assert!(played.windows(2).all(|w| w[1] == w[0] + 1), "{played:?}");
        assert_eq!(jb.stats().lost, 0);
    }

    #[test]
    fn a_stall_then_a_burst_is_concealed_then_played_late_not_lost_and_the_delay_drains() {
        let mut jb = AudioJitter::new(AudioJitterConfig::default());
        // Ticks 0..50 steady; the sender stalls 200 ms (10 frames) and sends them all at tick 60.
        let out = run(&mut jb, 200, |i| match i {
            50..60 => vec![],
            60 => (50..=60).collect(),
            _ => vec![i as u16],
        });
        let played: Vec<u16> = out.iter().flatten().copied().collect();
        assert!(played.windows(2).all(|w| w[1] > w[0]), "{played:?}");
        let s = jb.stats();
        // Nothing that arrived was lost or late: the burst's frames play, but for the few
        // dropped to drain the delay it added.
        assert_eq!((s.lost, s.late), (0, 0));
        let burst_played = (50..=60u16).filter(|f| played.contains(f)).count() as u64;
        assert!(burst_played >= 11 - s.dropped && burst_played >= 6, "{burst_played} of the burst played: {played:?}");
        assert!((0..50u16).all(|f| played.contains(&f)));
        assert!(s.concealed >= 9, "the stall was concealed: {s:?}");
        assert!(jb.target() > 2, "the stall raised the target: {}", jb.target());
        // The burst's extra delay drained: by the end the buffer holds about the target.
        assert!(jb.len() <= jb.target() + 1, "{} frames waiting, target {}", jb.len(), jb.target());
        assert!(s.dropped > 0 && s.dropped < 10, "caught up by dropping a few frames: {s:?}");
    }

    #[test]
    fn a_lost_packet_is_given_up_with_the_next_frame_for_fec_and_the_stream_goes_on() {
        let mut jb = AudioJitter::new(AudioJitterConfig::default());
        let t0 = Instant::now();
        let mut outs = Vec::new();
        for i in 0..40u32 {
            let now = t0 + TICK * i;
            if i != 10 {
                jb.push(i as u16, frame(i as u16), now);
            }
            outs.push(jb.pop(now));
        }
        // One tick waiting for it (it could be reordered), then given up with frame 11 at hand.
        let missing: Vec<&Playout> = outs.iter().filter(|p| matches!(p, Playout::Missing { .. })).collect();
        assert_eq!(missing, [&Playout::Missing { next: None }, &Playout::Missing { next: Some(frame(11)) }], "{outs:?}");
        assert_eq!(jb.stats().lost, 1);
        let played: Vec<u16> = outs.iter().filter_map(seq_of).collect();
        assert!(played.contains(&9) && played.contains(&11) && !played.contains(&10));
    }

    #[test]
    fn late_and_duplicate_packets_are_dropped_and_counted_and_the_target_adapts_then_decays() {
        let mut jb = AudioJitter::new(AudioJitterConfig::default());
        let t0 = Instant::now();
        for i in 0..10u32 {
            jb.push(i as u16, frame(i as u16), t0 + TICK * i);
            jb.push(i as u16, frame(i as u16), t0 + TICK * i);
            jb.pop(t0 + TICK * i);
        }
        assert_eq!(jb.stats().duplicates, 10);
        jb.push(2, frame(2), t0 + TICK * 10);
        assert_eq!(jb.stats().late, 1);
        assert_eq!(jb.target(), 3);
        // Ten quiet seconds later the target is back at its floor.
        for i in 10..600u32 {
            let now = t0 + TICK * i;
            jb.push(i as u16, frame(i as u16), now);
            jb.pop(now);
        }
        assert_eq!(jb.target(), 1);
    }

    #[test]
    fn a_sequence_jump_restarts_the_buffer() {
        let mut jb = AudioJitter::new(AudioJitterConfig::default());
        let out = run(&mut jb, 40, |i| vec![if i < 20 { i as u16 } else { 30000 + i as u16 }]);
        assert_eq!(jb.stats().restarts, 1);
        assert!(out[39].is_some_and(|s| s > 30000), "{out:?}");
    }

    #[test]
    fn garbage_sequence_numbers_never_panic_and_stay_within_capacity() {
        let mut jb = AudioJitter::new(AudioJitterConfig::default());
        let t0 = Instant::now();
        let mut x = 12345u32;
        for i in 0..5000u32 {
            x = x.wrapping_mul(1103515245).wrapping_add(12345);
            jb.push((x >> 16) as u16, vec![], t0 + TICK * i);
            jb.pop(t0 + TICK * i);
            assert!(jb.len() <= 50);
        }
    }
}
