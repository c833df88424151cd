//! The mixer state machine: sources in, distinct mixes out, one tick at a time.

use std::{
    collections::{BTreeMap, HashMap},
    sync::Arc,
};

use mcu_codec::audio::Resampler;

use crate::{
    gpu_mix::GpuMixer,
    soft_limit,
    speaker::{ActiveSpeaker, SpeakerChange, SpeakerConfig},
};

/// Names a participant (a source, a listener, or both).
pub type ParticipantId = Arc<str>;

/// The mixer's sample rate.
pub const RATE: u32 = 48_000;

/// What a participant does in the mix.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// Publishes audio and listens (an MCU participant).
    SourceAndListener,
    /// Publishes only (e.g. a WHIP publisher, a recorder's input).
    Source,
    /// Listens only (e.g. a WHEP viewer, a recorder of the room mix).
    Listener,
}

/// Where mixes are computed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum MixPath {
    /// The GPU when one is attached, the adapter is hardware and the work is large enough to
    /// beat the transfer cost; the CPU otherwise.
    #[default]
    Auto,
    /// Always the attached GPU (the CPU when none is attached).
    Gpu,
    /// Always the CPU.
    Cpu,
}

/// Mixer settings.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct MixerConfig {
    /// Samples per tick at 48 kHz: 480 (10 ms) or 960 (20 ms).
    pub frame_samples: usize,
    /// How many of the loudest sources are mixed (0: all above the speech gate).
    pub top_k: usize,
    /// Sources quieter than this (dBov) are not mixed at all.
    pub speech_gate_dbov: f32,
    /// A source stays among the mixed ones this many ticks after it last qualified, so that
    /// pauses between words do not cut it in and out.
    pub hold_ticks: u32,
    /// Where mixes are computed.
    pub path: MixPath,
    /// Frames queued per source ahead of the current tick before the oldest are dropped.
    pub max_queued: usize,
    /// Active-speaker detection.
    pub speaker: SpeakerConfig,
}

impl Default for MixerConfig {
    fn default() -> Self {
        MixerConfig {
            frame_samples: 960,
            top_k: 3,
            speech_gate_dbov: -50.0,
            hold_ticks: 25,
            path: MixPath::Auto,
            max_queued: 50,
            speaker: SpeakerConfig::default(),
        }
    }
}

/// Decoded audio for one tick of one source.
#[derive(Debug, Clone, PartialEq)]
pub struct AudioFrame {
    /// 8000, 16000 or 48000 Hz.
    pub sample_rate: u32,
    /// 1 or 2 (interleaved); stereo is mixed down to mono.
    pub channels: u16,
    /// Interleaved samples: one tick's worth at `sample_rate`.
    pub samples: Vec<i16>,
}

/// Input the mixer refuses.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum MixerError {
    /// Not added, or removed.
    #[error("unknown participant \"{0}\"")]
    UnknownParticipant(String),
    /// Added twice.
    #[error("participant \"{0}\" is already in the mix")]
    DuplicateParticipant(String),
    /// A listener-only participant cannot send, a source-only one cannot have gains as listener.
    #[error("participant \"{id}\" has no {what} role")]
    WrongRole {
        /// The participant.
        id: String,
        /// "source" or "listener".
        what: &'static str,
    },
    /// A frame of the wrong length, rate or channel count.
    #[error("participant \"{id}\": {message}")]
    BadFrame {
        /// The participant.
        id: String,
        /// What is wrong.
        message: String,
    },
    /// A gain that is not a finite number in 0..=4.
    #[error("gain {gain} for listener \"{listener}\" from \"{source_id}\" must be finite and in 0..=4")]
    BadGain {
        /// The listener.
        listener: String,
        /// The source.
        source_id: String,
        /// The gain asked for.
        gain: f32,
    },
    /// The frame size is not 10 or 20 ms.
    #[error("frame of {0} samples: the mixer ticks at 480 (10 ms) or 960 (20 ms) samples")]
    BadFrameSize(usize),
}

/// Counters, for metrics.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct MixerStats {
    /// Frames that arrived for a tick already mixed.
    pub late_frames: u64,
    /// Frames dropped because a source queued too far ahead.
    pub overflow_frames: u64,
    /// Source-ticks with no frame (mixed as silence).
    pub missing_frames: u64,
    /// Distinct mixes computed.
    pub mixes: u64,
    /// Mixes computed on the GPU.
    pub gpu_mixes: u64,
    /// Times a GPU mix failed and the mixer moved to the CPU for good (0 or 1).
    pub gpu_fallbacks: u64,
}

/// One distinct mix and who hears it.
#[derive(Debug, Clone, PartialEq)]
pub struct MixGroup {
    /// Identifies the gain row: equal keys across ticks mean the same mix (an encoder can be
    /// kept per key).
    pub key: u64,
    /// The listeners hearing exactly this mix.
    pub listeners: Vec<ParticipantId>,
    /// `frame_samples` samples of 48 kHz mono, full scale ±1.0, limited.
    pub pcm: Vec<f32>,
}

/// The result of one tick.
#[derive(Debug, Clone, PartialEq)]
pub struct MixTick {
    /// The tick mixed.
    pub tick: u64,
    /// Every listener appears in exactly one group.
    pub groups: Vec<MixGroup>,
    /// The sources mixed this tick (top-K above the gate), loudest first.
    pub mixed_sources: Vec<ParticipantId>,
    /// Active-speaker changes decided this tick.
    pub speaker_changes: Vec<SpeakerChange>,
}

struct Participant {
    id: ParticipantId,
    role: Role,
    /// Frames by tick: 48 kHz mono samples and their RMS level (dBov).
    queue: BTreeMap<u64, (Vec<f32>, f32)>,
    resampler: Option<(u32, u16, Resampler)>,
    /// RFC 6464 level (dBov, ≤ 0) sent by the client for a tick.
    client_level: Option<(u64, f32)>,
    /// Tick until which the source stays mixed (hold).
    held_until: Option<u64>,
    /// Listener-side overrides: source → gain.
    gains: HashMap<ParticipantId, f32>,
}

impl Participant {
    fn is_source(&self) -> bool {
        self.role != Role::Listener
    }
    fn is_listener(&self) -> bool {
        self.role != Role::Source
    }
}

/// Mixes a room's audio; see the crate docs.
pub struct Mixer {
    config: MixerConfig,
    participants: Vec<Participant>,
    index: HashMap<ParticipantId, usize>,
    next_tick: u64,
    speaker: ActiveSpeaker,
    gpu: Option<GpuMixer>,
    stats: MixerStats,
    /// Scratch: the selected sources' samples, row after row.
    x: Vec<f32>,
}

impl Mixer {
    /// A mixer computing on the CPU (and on `gpu` when given and the path allows).
    pub fn new(config: MixerConfig, gpu: Option<GpuMixer>) -> Result<Mixer, MixerError> {
        if config.frame_samples != 480 && config.frame_samples != 960 {
            return Err(MixerError::BadFrameSize(config.frame_samples));
        }
        Ok(Mixer {
            speaker: ActiveSpeaker::new(config.speaker),
            config,
            participants: Vec::new(),
            index: HashMap::new(),
            next_tick: 0,
            gpu,
            stats: MixerStats::default(),
            x: Vec::new(),
        })
    }

    /// Counters so far.
    pub fn stats(&self) -> MixerStats {
        self.stats
    }

    /// The configuration.
    pub fn config(&self) -> &MixerConfig {
        &self.config
    }

    /// Mixes only the `k` loudest sources from the next tick on (0: every source).
    pub fn set_top_k(&mut self, k: usize) {
        self.config.top_k = k;
    }

    /// The next tick [`Mixer::tick`] expects.
    pub fn next_tick(&self) -> u64 {
        self.next_tick
    }

    /// Adds a participant. Listeners hear every other source at gain 1 by default.
    pub fn add(&mut self, id: impl Into<ParticipantId>, role: Role) -> Result<(), MixerError> {
        let id = id.into();
        if self.index.contains_key(&id) {
            return Err(MixerError::DuplicateParticipant(id.to_string()));
        }
        self.index.insert(id.clone(), self.participants.len());
        self.participants.push(Participant { id, role, queue: BTreeMap::new(), resampler: None, client_level: None, held_until: None, gains: HashMap::new() });
        Ok(())
    }

    /// Removes a participant, its queued audio and every gain naming it.
    pub fn remove(&mut self, id: &str) -> Result<(), MixerError> {
        let i = self.index.remove(id).ok_or_else(|| MixerError::UnknownParticipant(id.to_string()))?;
        self.participants.swap_remove(i);
        if i < self.participants.len() {
            let moved = self.participants[i].id.clone();
            self.index.insert(moved, i);
        }
        for p in &mut self.participants {
            p.gains.remove(id);
        }
        self.speaker.forget(id);
        Ok(())
    }

    fn get(&self, id: &str) -> Result<usize, MixerError> {
        self.index.get(id).copied().ok_or_else(|| MixerError::UnknownParticipant(id.to_string()))
    }

    /// Sets what `listener` hears of `source` (0 mutes; 1 is the default; up to 4).
    pub fn set_gain(&mut self, listener: &str, source: &str, gain: f32) -> Result<(), MixerError> {
        if !gain.is_finite() || !(0.0..=4.0).contains(&gain) {
            return Err(MixerError::BadGain { listener: listener.into(), source_id: source.into(), gain });
        }
        let (l, s) = (self.get(listener)?, self.get(source)?);
        if !self.participants[l].is_listener() {
            return Err(MixerError::WrongRole { id: listener.into(), what: "listener" });
        }
        if !self.participants[s].is_source() {
            return Err(MixerError::WrongRole { id: source.into(), what: "source" });
        }
        let sid = self.participants[s].id.clone();
        let default = if l == s { 0.0 } else { 1.0 };
        let gains = &mut self.participants[l].gains;
        if gain == default {
            gains.remove(&sid)
        } else {
            gains.insert(sid, gain)
        };
        Ok(())
    }

    /// Drops every override of `listener` (back to "everyone but me").
    pub fn reset_gains(&mut self, listener: &str) -> Result<(), MixerError> {
        let l = self.get(listener)?;
        self.participants[l].gains.clear();
        Ok(())
    }

    /// The gain `listener` hears `source` at.
    pub fn gain(&self, listener: &str, source: &str) -> Result<f32, MixerError> {
        let (l, s) = (self.get(listener)?, self.get(source)?);
        Ok(self.gain_at(l, s))
    }

    fn gain_at(&self, l: usize, s: usize) -> f32 {
        let p = &self.participants[l];
        p.gains.get(&self.participants[s].id).copied().unwrap_or(if l == s { 0.0 } else { 1.0 })
    }

    /// Records the level the client put in the RFC 6464 header extension for `tick`
    /// (`level` is -dBov, 0..=127); it replaces the measured level for that tick.
    pub fn set_client_level(&mut self, source: &str, tick: u64, level: u8) -> Result<(), MixerError> {
        let s = self.get(source)?;
        self.participants[s].client_level = Some((tick, -(level.min(127) as f32)));
        Ok(())
    }

    /// Queues `source`'s audio for `tick`. A frame for a tick already mixed is dropped and
    /// counted; so is the oldest when a source queues too far ahead.
    pub fn push(&mut self, source: &str, tick: u64, frame: &AudioFrame) -> Result<(), MixerError> {
        let s = self.get(source)?;
        let n = self.config.frame_samples;
        let p = &mut self.participants[s];
        if !p.is_source() {
            return Err(MixerError::WrongRole { id: source.into(), what: "source" });
        }
        let bad = |message: String| MixerError::BadFrame { id: source.into(), message };
        if !matches!(frame.channels, 1 | 2) {
            return Err(bad(format!("{} channels (1 or 2)", frame.channels)));
        }
        let per_channel = frame.samples.len() / frame.channels as usize;
        if !matches!(frame.sample_rate, 8_000 | 16_000 | 48_000) || per_channel * RATE as usize != n * frame.sample_rate as usize {
            return Err(bad(format!("{} samples per channel at {} Hz; a tick is {} ms", per_channel, frame.sample_rate, n * 1000 / RATE as usize)));
        }
        if tick < self.next_tick {
            self.stats.late_frames += 1;
            return Ok(());
        }
        let resampled;
        let pcm48: &[i16] = if frame.sample_rate == RATE {
            &frame.samples
        } else {
            let key = (frame.sample_rate, frame.channels);
            if p.resampler.as_ref().is_none_or(|(r, c, _)| (*r, *c) != key) {
                let r = Resampler::new(frame.sample_rate, RATE, frame.channels as usize).map_err(|e| bad(e.to_string()))?;
                p.resampler = Some((key.0, key.1, r));
            }
            resampled = p.resampler.as_mut().expect("set above").2.process(&frame.samples);
            &resampled
        };
        // To mono f32, then the frame's energy (eight partial sums, so that it vectorises).
        let mut mono: Vec<f32> = Vec::with_capacity(n);
        if frame.channels == 2 {
            mono.extend(pcm48.chunks_exact(2).map(|c| (c[0] as f32 + c[1] as f32) * (0.5 / 32768.0)));
        } else {
            mono.extend(pcm48.iter().map(|&v| v as f32 * (1.0 / 32768.0)));
        }
        // The resampler's streaming output can be a sample short or long at a call; the tick is
        // what it is.
        mono.resize(n, 0.0);
        let energy = sum_of_squares(&mono);
        let level = if energy > 0.0 { (10.0 * (energy / n as f32).log10()).max(-127.0) } else { -127.0 };
        p.queue.insert(tick, (mono, level));
        while p.queue.len() > self.config.max_queued {
            p.queue.pop_first();
            self.stats.overflow_frames += 1;
        }
        Ok(())
    }

    /// Mixes tick `tick` (normally [`Mixer::next_tick`]; skipping ahead mixes silence for
    /// the skipped frames' sources). Ticks before `next_tick` are mixed again from nothing.
    pub fn tick(&mut self, tick: u64) -> MixTick {
        let n = self.config.frame_samples;
        self.next_tick = tick + 1;
        // 1. This tick's frame and level per source.
        let mut levels: Vec<(usize, f32)> = Vec::new();
        let mut frames: Vec<Option<Vec<f32>>> = Vec::with_capacity(self.participants.len());
        for (i, p) in self.participants.iter_mut().enumerate() {
            if !p.is_source() {
                continue;
            }
            // Drop anything older than this tick.
            while p.queue.first_key_value().is_some_and(|(&t, _)| t < tick) {
                p.queue.pop_first();
                self.stats.late_frames += 1;
            }
            frames.resize(i, None);
            let frame = p.queue.remove(&tick);
            if frame.is_none() {
                self.stats.missing_frames += 1;
            }
            let client = p.client_level.filter(|(t, _)| *t == tick).map(|(_, l)| l);
            let level = match (&frame, client) {
                (_, Some(l)) => l,
                (Some((_, measured)), None) => *measured,
                (None, None) => -127.0,
            };
            levels.push((i, level));
            frames.push(frame.map(|(f, _)| f));
        }
        frames.resize(self.participants.len(), None);
        // 2. Top-K above the gate, with hold.
        let gate = self.config.speech_gate_dbov;
        let hold = self.config.hold_ticks as u64;
        for &(i, level) in &levels {
            if level >= gate {
                self.participants[i].held_until = Some(tick + hold);
            }
        }
        let mut candidates: Vec<(usize, f32)> = levels
            .iter()
            .copied()
            .filter(|&(i, level)| level >= gate || self.participants[i].held_until.is_some_and(|u| u >= tick))
            .filter(|(i, _)| frames[*i].is_some())
            .collect();
        candidates.sort_by(|a, b| b.1.total_cmp(&a.1).then_with(|| self.participants[a.0].id.cmp(&self.participants[b.0].id)));
        if self.config.top_k > 0 {
            candidates.truncate(self.config.top_k);
        }
        let selected: Vec<usize> = candidates.iter().map(|&(i, _)| i).collect();
        // 3. Group listeners by their gain row over the selected sources.
        // Listeners with default gains who are not mixed themselves ("plain") all hear the
        // default row and skip the hashing.
        let mut groups: Vec<(Vec<f32>, Vec<ParticipantId>)> = Vec::new();
        let mut by_row: HashMap<Vec<u32>, usize> = HashMap::new();
        let default_row: Vec<f32> = vec![1.0; selected.len()];
        let mut default_group: Option<usize> = None;
        for (l, p) in self.participants.iter().enumerate() {
            if !p.is_listener() {
                continue;
            }
            let g = if p.gains.is_empty() && !selected.contains(&l) {
                *default_group.get_or_insert_with(|| {
                    let key: Vec<u32> = default_row.iter().map(|g| g.to_bits()).collect();
                    *by_row.entry(key).or_insert_with(|| {
                        groups.push((default_row.clone(), Vec::new()));
                        groups.len() - 1
                    })
                })
            } else {
                let row: Vec<f32> = selected.iter().map(|&s| self.gain_at(l, s)).collect();
                let key: Vec<u32> = row.iter().map(|g| g.to_bits()).collect();
                match by_row.get(&key) {
                    Some(&g) => g,
                    None => {
                        groups.push((row, Vec::new()));
                        by_row.insert(key, groups.len() - 1);
                        groups.len() - 1
                    }
                }
            };
            groups[g].1.push(p.id.clone());
        }
        // 4. Mix every distinct row once.
        self.x.clear();
        for &s in &selected {
            self.x.extend_from_slice(frames[s].as_deref().expect("selected sources have frames"));
        }
        let gains: Vec<f32> = groups.iter().flat_map(|(row, _)| row.iter().copied()).collect();
        let m = groups.len();
        let use_gpu = match (self.config.path, &self.gpu) {
            (MixPath::Cpu, _) | (_, None) => false,
            (MixPath::Gpu, Some(_)) => true,
            (MixPath::Auto, Some(g)) => g.worth_it(m, selected.len(), n),
        };
        let pcm = if use_gpu && m > 0 {
            let g = self.gpu.as_mut().expect("checked");
            match g.mix(&self.x, selected.len(), n, &gains, m) {
                Ok(out) => {
                    self.stats.gpu_mixes += m as u64;
                    out
                }
                Err(e) => {
                    // A device lost or out of memory: this mixer stays on the CPU from now on
                    // (told once, counted), rather than failing and warning every tick.
                    tracing::error!("GPU mix failed; this mixer mixes on the CPU from now on: {e}");
                    self.gpu = None;
                    self.stats.gpu_fallbacks += 1;
                    mix_cpu(&self.x, selected.len(), n, &gains, m)
                }
            }
        } else {
            mix_cpu(&self.x, selected.len(), n, &gains, m)
        };
        self.stats.mixes += m as u64;
        let groups = groups
            .into_iter()
            .zip(pcm.chunks_exact(n.max(1)).map(<[f32]>::to_vec).chain(std::iter::repeat_with(|| vec![0.0; n])))
            .map(|((row, listeners), pcm)| MixGroup { key: row_key(&selected, &row, &self.participants), listeners, pcm })
            .collect();
        // 5. Active speaker.
        let named: Vec<(ParticipantId, f32)> = levels.iter().map(|&(i, l)| (self.participants[i].id.clone(), l)).collect();
        let speaker_changes = self.speaker.update(tick, &named);
        MixTick { tick, groups, mixed_sources: selected.iter().map(|&i| self.participants[i].id.clone()).collect(), speaker_changes }
    }

    /// The current active speaker.
    pub fn active_speaker(&self) -> Option<&ParticipantId> {
        self.speaker.current()
    }
}

/// A stable key for a gain row over named sources (order-independent).
fn row_key(selected: &[usize], row: &[f32], participants: &[Participant]) -> u64 {
    use std::hash::{Hash, Hasher};
    let mut pairs: Vec<(&str, u32)> = selected.iter().zip(row).filter(|(_, g)| **g != 0.0).map(|(&s, g)| (&*participants[s].id, g.to_bits())).collect();
    pairs.sort();
    let mut h = std::collections::hash_map::DefaultHasher::new();
    pairs.hash(&mut h);
    h.finish()
}

fn sum_of_squares(x: &[f32]) -> f32 {
    let mut acc = [0.0f32; 8];
    let chunks = x.chunks_exact(8);
    let rest: f32 = chunks.remainder().iter().map(|v| v * v).sum();
    for c in chunks {
        for (a, v) in acc.iter_mut().zip(c) {
            *a += v * v;
        }
    }
    acc.iter().sum::<f32>() + rest
}

/// The CPU mix: `m` rows of `n` samples, row r = soft_limit(Σ_s gains[r·s_count + s] · x[s]).
pub fn mix_cpu(x: &[f32], sources: usize, n: usize, gains: &[f32], m: usize) -> Vec<f32> {
    let mut out = vec![0.0f32; m * n];
    for (r, row) in out.chunks_exact_mut(n.max(1)).enumerate().take(m) {
        for s in 0..sources {
            let g = gains[r * sources + s];
            if g == 0.0 {
                continue;
            }
            for (o, v) in row.iter_mut().zip(&x[s * n..(s + 1) * n]) {
                *o += g * v;
            }
        }
        for o in row.iter_mut() {
            *o = soft_limit(*o);
        }
    }
    out
}
