//! The composite's audio: each publisher's Opus through an adaptive playout buffer, decoded to
//! mono; every 20 ms the mixes (the room's, and each listener's everyone-but-me), each distinct
//! mix encoded once and sent on the track of everyone who hears it.

use std::{
    collections::{HashMap, VecDeque},
    sync::Arc,
    time::{Duration, Instant},
};

use crate::audio_jitter::{AudioJitter, AudioJitterConfig, AudioJitterStats, Playout};
use bytes::Bytes;
use mcu_codec::audio::{OpusChannels, OpusConfig, OpusDecoder};
use mcu_mixer::{AudioFrame, Mixer, MixerConfig, MixerError, Role, SharedEncoders};

use crate::{AUDIO_PT, McuConfig, RoomView, TrackId, video::next_random};

/// The mixer participant whose mix is the room's (the composite's own audio track, recordings).
const ROOM_LISTENER: &str = "_room";
/// The mix tick.
const TICK: Duration = Duration::from_millis(20);
/// Samples of one tick at 48 kHz.
const SAMPLES: usize = 960;
/// Ticks in a row that a missing frame is concealed (FEC or PLC) before it is silence.
const MAX_CONCEALED: u32 = 5;

/// What each publisher's Opus is decoded to for the mixer. The mixes are mono, and libopus
/// decodes a stereo stream straight to mono (a third less CPU than decoding both channels
/// for the mixer to fold).
pub const MIX_INPUT: OpusChannels = OpusChannels::Mono;

/// Opus complexity of the mixes WebRTC participants and recordings hear. At libopus' default
/// 10 SILK's delayed-decision quantiser made one mix's encode an eighth of a 4-sender room's CPU
/// (perf, `benches/mcu_capacity.rs`); at 5 it keeps 2 candidate states instead of 4, as WebRTC
/// itself runs on phones (still ~2.5 % of a room's CPU in perf). One encode serves every
/// listener of a mix, so this is per mix, not per listener.
const MIX_OPUS_COMPLEXITY: u8 = 5;
/// Opus complexity for audio that comes from or goes to G.711 phones (narrowband speech), the
/// mixes only SIP legs hear among them: below 2 SILK skips its delayed-decision quantiser,
/// which took most of an audio-only call's CPU at libopus' default 10 (perf,
/// `benches/sip_capacity.rs`).
pub const PHONE_OPUS_COMPLEXITY: u8 = 1;

/// What the audio engine asks of its driver.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum AudioOutput {
    /// An RTP packet of one of the composite's audio tracks, for the room's forwarder.
    Rtp(Vec<u8>),
    /// An Opus packet of a publisher's track as it arrived, for the track recordings.
    TrackAudio {
        /// The track.
        track: TrackId,
        /// The Opus packet.
        payload: Bytes,
    },
    /// The room mix's Opus packet of a tick, for the recordings.
    CompositeAudio(Bytes),
    /// Someone else speaks now.
    SpeakerChanged {
        /// Who speaks.
        to: String,
        /// Who spoke before.
        previous: Option<String>,
    },
    /// A mix could not be encoded this tick (its listeners miss 20 ms).
    EncoderFailed {
        /// Why.
        error: String,
    },
}

/// What the audio engine counted.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct AudioStats {
    /// Packets the playout buffers dropped (late, duplicated, excess).
    pub playout_dropped: u64,
    /// 20 ms frames concealed (FEC or PLC).
    pub concealed: u64,
    /// Mix encodes that failed.
    pub encoder_failures: u64,
    /// Opus encodes done (one per distinct mix heard, per tick).
    pub encodes: u64,
    /// The mixer's GPU failed and it mixes on the CPU from then on (0 or 1).
    pub mix_gpu_fallbacks: u64,
}

struct AudioInput {
    participant: String,
    decoder: OpusDecoder,
    /// Opus packets in playout order, one per 20 ms tick (adaptive delay, reordering, loss).
    jitter: AudioJitter,
    /// Ticks concealed in a row (loss concealment fades out after a few).
    concealed_run: u32,
    concealed: u64,
}

impl AudioInput {
    /// This tick's 20 ms of PCM (`MIX_INPUT`'s channels, interleaved), if any: the next frame
    /// decoded, or a missing one rebuilt from the next frame's FEC or concealed.
    fn play(&mut self, now: Instant) -> Option<Vec<i16>> {
        let pcm = match self.jitter.pop(now) {
            Playout::Frame(payload) => {
                self.concealed_run = 0;
                self.decoder.decode(&payload).map_err(|e| tracing::debug!(participant = %self.participant, error = %e, "undecodable audio")).ok()
            }
            Playout::Missing { next } => {
                self.concealed_run += 1;
                if self.concealed_run > MAX_CONCEALED {
                    // A sender gone quiet (muted, stopped): silence, not concealment.
                    return None;
                }
                self.concealed += 1;
                match next {
                    Some(next) => self.decoder.decode_fec(&next, SAMPLES).or_else(|_| self.decoder.conceal(SAMPLES)).ok(),
                    None => self.decoder.conceal(SAMPLES).ok(),
                }
            }
            Playout::Silence => None,
        };
        pcm.filter(|p| p.len() == SAMPLES * MIX_INPUT.count())
    }

    fn dropped(&self) -> u64 {
        let s: AudioJitterStats = self.jitter.stats();
        s.late + s.duplicates + s.dropped
    }
}

/// The composite's audio, sans-IO (see the crate docs).
pub struct AudioEngine {
    config: McuConfig,
    mixer: Mixer,
    encoders: SharedEncoders,
    view: RoomView,
    /// The view's listeners by name: the SSRC of their mix track, and whether a phone.
    listeners: HashMap<String, (u32, bool)>,
    roles: HashMap<String, Role>,
    gains_dirty: bool,
    inputs: HashMap<TrackId, AudioInput>,
    listener_seq: HashMap<String, u16>,
    room_seq: u16,
    mix_tick: u64,
    next_tick: Instant,
    speaker: Option<String>,
    /// Counters of inputs that have left.
    gone: AudioStats,
    stats: AudioStats,
    rng: u64,
    outputs: VecDeque<AudioOutput>,
}

impl AudioEngine {
    /// An engine whose first tick is at `now`; `mixer` mixes on the CPU or a GPU; `seed` picks
    /// the tracks' first sequence numbers.
    pub fn new(config: McuConfig, now: Instant, mixer: Mixer, seed: u64) -> Result<AudioEngine, MixerError> {
        let mut mixer = mixer;
        mixer.add(ROOM_LISTENER, Role::Listener)?;
        let mut rng = seed | 1;
        let room_seq = next_random(&mut rng) as u16;
        Ok(AudioEngine {
            config,
            mixer,
            encoders: SharedEncoders::new(OpusConfig { complexity: MIX_OPUS_COMPLEXITY, ..OpusConfig::voice(OpusChannels::Mono, config.audio_bitrate) }),
            view: RoomView::default(),
            listeners: HashMap::new(),
            roles: HashMap::new(),
            gains_dirty: true,
            inputs: HashMap::new(),
            listener_seq: HashMap::new(),
            room_seq,
            mix_tick: 0,
            next_tick: now,
            speaker: None,
            gone: AudioStats::default(),
            stats: AudioStats::default(),
            rng,
            outputs: VecDeque::new(),
        })
    }

    /// The mixer's config for a room's composite.
    pub fn mixer_config() -> MixerConfig {
        MixerConfig { top_k: 0, ..MixerConfig::default() }
    }

    /// What it counted so far.
    pub fn stats(&self) -> AudioStats {
        let (mut dropped, mut concealed) = (self.gone.playout_dropped, self.gone.concealed);
        for a in self.inputs.values() {
            dropped += a.dropped();
            concealed += a.concealed;
        }
        AudioStats { playout_dropped: dropped, concealed, mix_gpu_fallbacks: self.mixer.stats().gpu_fallbacks, ..self.stats }
    }

    /// The room as it is now.
    pub fn set_view(&mut self, view: RoomView) {
        // The driver hands the same `Arc` until the operator changes something.
        if !Arc::ptr_eq(&view.control, &self.view.control) && view.control != self.view.control {
            self.gains_dirty = true;
        }
        if view.listeners != self.view.listeners {
            self.listeners = view.listeners.iter().map(|l| (l.name.clone(), (l.audio_ssrc, l.phone))).collect();
        }
        self.view = view;
    }

    /// An Opus packet of a publisher's track, arrived at `arrived`.
    pub fn handle_packet(&mut self, arrived: Instant, track: &TrackId, participant: &str, seq: u16, payload: Bytes) {
        let input = match self.inputs.entry(track.clone()) {
            std::collections::hash_map::Entry::Occupied(o) => o.into_mut(),
            std::collections::hash_map::Entry::Vacant(v) => {
                let Ok(decoder) = OpusDecoder::new(MIX_INPUT) else { return };
                let jitter = AudioJitter::new(AudioJitterConfig::default());
                v.insert(AudioInput { participant: participant.into(), decoder, jitter, concealed_run: 0, concealed: 0 })
            }
        };
        if self.view.recordings.iter().any(|r| r.tracks) {
            self.outputs.push_back(AudioOutput::TrackAudio { track: track.clone(), payload: payload.clone() });
        }
        input.jitter.push(seq, payload.to_vec(), arrived);
    }

    /// When [`AudioEngine::handle_timeout`] is due next (the next tick).
    pub fn poll_timeout(&self) -> Instant {
        self.next_tick
    }

    /// The next output, if any.
    pub fn poll_output(&mut self) -> Option<AudioOutput> {
        self.outputs.pop_front()
    }

    /// Mixes every tick due at `now` (catching up a late tick or two; after 100 ms behind,
    /// the missed ticks are skipped).
    pub fn handle_timeout(&mut self, now: Instant) {
        let live = &self.view.live_tracks;
        let gone = &mut self.gone;
        self.inputs.retain(|id, a| {
            let keep = live.contains(id);
            if !keep {
                gone.playout_dropped += a.dropped();
                gone.concealed += a.concealed;
            }
            keep
        });
        self.sync_roles();
        let room_mix_heard = !self.view.recordings.is_empty() || self.view.room_audio_watched;
        while now >= self.next_tick {
            self.next_tick += TICK;
            if now > self.next_tick + TICK * 5 {
                self.next_tick = now + TICK;
            }
            self.tick(now, room_mix_heard);
        }
    }

    /// Who is in the mix, and how: audio publishers are sources, MCU participants also
    /// listeners (each hears everyone but itself), the room's viewers one more listener.
    fn sync_roles(&mut self) {
        let mut want: HashMap<String, Role> = self.inputs.values().map(|a| (a.participant.clone(), Role::Source)).collect();
        for l in &self.view.listeners {
            let r = want.entry(l.name.clone()).or_insert(Role::Listener);
            if *r == Role::Source {
                *r = Role::SourceAndListener;
            }
        }
        for (p, role) in &want {
            if self.roles.get(p) != Some(role) {
                if self.roles.remove(p).is_some() {
                    let _ = self.mixer.remove(p);
                }
                if self.mixer.add(p.as_str(), *role).is_ok() {
                    self.roles.insert(p.clone(), *role);
                }
                self.gains_dirty = true;
            }
        }
        let (mixer, listener_seq, gains_dirty) = (&mut self.mixer, &mut self.listener_seq, &mut self.gains_dirty);
        self.roles.retain(|p, _| {
            let keep = want.contains_key(p);
            if !keep {
                let _ = mixer.remove(p);
                listener_seq.remove(p);
                *gains_dirty = true;
            }
            keep
        });
        if self.gains_dirty {
            self.gains_dirty = false;
            self.apply_gains();
            self.mixer.set_top_k(self.view.control.top_k);
        }
    }

    /// Applies the operator's gain matrix to the mixer (listener "" is the room mix). Entries
    /// naming someone not in the mix wait until they are.
    fn apply_gains(&mut self) {
        let _ = self.mixer.reset_gains(ROOM_LISTENER);
        for (p, role) in &self.roles {
            if *role != Role::Source {
                let _ = self.mixer.reset_gains(p);
            }
        }
        for ((listener, source), gain) in &self.view.control.gains {
            let listener = if listener.is_empty() { ROOM_LISTENER } else { listener.as_str() };
            let listens = listener == ROOM_LISTENER || self.roles.get(listener).is_some_and(|r| *r != Role::Source);
            if listens && self.roles.get(source).is_some_and(|r| *r != Role::Listener) {
                let _ = self.mixer.set_gain(listener, source, *gain);
            }
        }
    }

    fn tick(&mut self, now: Instant, room_mix_heard: bool) {
        for a in self.inputs.values_mut() {
            if let Some(pcm) = a.play(now)
                && self.roles.get(&a.participant).is_some_and(|r| *r != Role::Listener)
            {
                let _ = self.mixer.push(&a.participant, self.mix_tick, &AudioFrame { sample_rate: 48000, channels: MIX_INPUT.count() as u16, samples: pcm });
            }
        }
        let out = self.mixer.tick(self.mix_tick);
        self.mix_tick += 1;
        for change in &out.speaker_changes {
            let to = change.to.to_string();
            if self.speaker.as_deref() != Some(to.as_str()) {
                let previous = self.speaker.replace(to.clone());
                self.outputs.push_back(AudioOutput::SpeakerChanged { to, previous });
            }
        }
        let ts = (self.mix_tick * SAMPLES as u64) as u32;
        let listeners = &self.listeners;
        let phones_only = |g: &mcu_mixer::MixGroup| g.listeners.iter().all(|l| listeners.get(&**l).is_some_and(|(_, phone)| *phone));
        let base = OpusConfig { complexity: MIX_OPUS_COMPLEXITY, ..OpusConfig::voice(OpusChannels::Mono, self.config.audio_bitrate) };
        // One encode per distinct mix (Opus keeps state between frames, so each mix keeps its
        // encoder); a mix only SIP legs hear is mostly turned into G.711: a cheaper encode.
        // The room mix alone, heard by nobody (no viewer, no recording): not encoded.
        let encoded = self.encoders.encode_with(&out, |g| {
            if !room_mix_heard && g.listeners.iter().all(|l| &**l == ROOM_LISTENER) {
                None
            } else if phones_only(g) {
                Some(OpusConfig { complexity: PHONE_OPUS_COMPLEXITY, ..base })
            } else {
                Some(base)
            }
        });
        for (g, packet) in encoded {
            let packet = match packet {
                Ok(p) => Bytes::from(p),
                Err(e) => {
                    self.stats.encoder_failures += 1;
                    self.outputs.push_back(AudioOutput::EncoderFailed { error: e.to_string() });
                    continue;
                }
            };
            self.stats.encodes += 1;
            for l in &g.listeners {
                if &**l == ROOM_LISTENER {
                    if !self.view.recordings.is_empty() {
                        self.outputs.push_back(AudioOutput::CompositeAudio(packet.clone()));
                    }
                    self.room_seq = self.room_seq.wrapping_add(1);
                    self.outputs.push_back(AudioOutput::Rtp(mcu_sfu::rtp::build(AUDIO_PT, false, self.room_seq, ts, self.view.room_ssrcs.1, &packet)));
                } else if let Some(&(ssrc, _)) = self.listeners.get(&**l) {
                    let rng = &mut self.rng;
                    let seq = self.listener_seq.entry(l.to_string()).or_insert_with(|| next_random(rng) as u16);
                    *seq = seq.wrapping_add(1);
                    self.outputs.push_back(AudioOutput::Rtp(mcu_sfu::rtp::build(AUDIO_PT, false, *seq, ts, ssrc, &packet)));
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Power of `freq` in `pcm` (Goertzel), per sample.
    fn tone_power(pcm: &[i16], freq: f64) -> f64 {
        let w = 2.0 * std::f64::consts::PI * freq / 48_000.0;
        let (mut s1, mut s2) = (0f64, 0f64);
        for &x in pcm {
            let s0 = x as f64 + 2.0 * w.cos() * s1 - s2;
            s2 = s1;
            s1 = s0;
        }
        (s1 * s1 + s2 * s2 - 2.0 * w.cos() * s1 * s2) / pcm.len() as f64
    }

    #[test]
    fn a_stereo_publisher_is_played_to_the_mixer_as_its_tone_in_mix_input_channels() {
        // A publisher sending stereo Opus (as browsers may) of a 440 Hz tone.
        let mut enc = mcu_codec::audio::OpusEncoder::new(OpusConfig::voice(OpusChannels::Stereo, 48_000)).unwrap();
        #[allow(clippy::disallowed_methods)] // a virtual clock's origin; every step is `t0 + n * 20 ms`
        let t0 = Instant::now();
        let mut input = AudioInput {
            participant: "p".into(),
            decoder: OpusDecoder::new(MIX_INPUT).unwrap(),
            jitter: AudioJitter::new(AudioJitterConfig::default()),
            concealed_run: 0,
            concealed: 0,
        };
        let mut played = Vec::new();
        for f in 0..50u16 {
            let pcm: Vec<i16> = (0..960)
                .flat_map(|k| {
                    let v = ((2.0 * std::f64::consts::PI * 440.0 * (f as usize * 960 + k) as f64 / 48_000.0).sin() * 8_000.0) as i16;
                    [v, v]
                })
                .collect();
            let now = t0 + Duration::from_millis(20 * f as u64);
            input.jitter.push(f, enc.encode(&pcm).unwrap(), now);
            if let Some(pcm) = input.play(now) {
                assert_eq!(pcm.len(), 960 * MIX_INPUT.count(), "20 ms at 48 kHz in the mixer's channels");
                played.push(pcm);
            }
        }
        assert!(played.len() >= 40, "the tone plays every tick once buffered: {} of 50", played.len());
        // Past the decoder's first frames: the tone, and not a neighbour.
        let tail: Vec<i16> = played[10..].concat();
        let (at, off) = (tone_power(&tail, 440.0), tone_power(&tail, 1_000.0));
        assert!(at > 1e6 && at > off * 1_000.0, "440 Hz power {at:.0}, 1 kHz {off:.0}");
        assert!(input.concealed == 0, "nothing was lost");
    }
}
