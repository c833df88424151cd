//! Active-speaker detection from per-tick levels, with hysteresis.
//!
//! Levels (measured RMS or the client's RFC 6464 value, in dBov) are smoothed per source with an
//! exponential average. A challenger takes over when its smoothed level has exceeded the
//! current speaker's by `margin_db` for `switch_ticks` consecutive ticks (or the current
//! speaker fell below the gate): short interjections and coughs do not switch the layout.

use std::collections::HashMap;

use crate::mixer::ParticipantId;

const FLOOR_DBOV: f32 = -80.0;

/// Tuning of the detector.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SpeakerConfig {
    /// Sources below this smoothed level (dBov) never become the speaker.
    pub gate_dbov: f32,
    /// A challenger must be this much louder (dB) than the current speaker.
    pub margin_db: f32,
    /// …for this many consecutive ticks (15 ticks of 20 ms: 300 ms).
    pub switch_ticks: u32,
    /// Exponential smoothing factor per tick (0..1; higher follows faster).
    pub smoothing: f32,
}

impl Default for SpeakerConfig {
    fn default() -> Self {
        SpeakerConfig { gate_dbov: -45.0, margin_db: 6.0, switch_ticks: 15, smoothing: 0.3 }
    }
}

/// The active speaker changed.
#[derive(Debug, Clone, PartialEq)]
pub struct SpeakerChange {
    /// The tick at which it was decided.
    pub tick: u64,
    /// The previous speaker.
    pub from: Option<ParticipantId>,
    /// The new speaker.
    pub to: ParticipantId,
}

/// The detector (sans-IO: fed levels per tick).
#[derive(Debug, Clone)]
pub struct ActiveSpeaker {
    config: SpeakerConfig,
    smoothed: HashMap<ParticipantId, f32>,
    current: Option<ParticipantId>,
    challenger: Option<(ParticipantId, u64)>,
}

impl ActiveSpeaker {
    /// A detector with no speaker yet.
    pub fn new(config: SpeakerConfig) -> ActiveSpeaker {
        ActiveSpeaker { config, smoothed: HashMap::new(), current: None, challenger: None }
    }

    /// The current speaker.
    pub fn current(&self) -> Option<&ParticipantId> {
        self.current.as_ref()
    }

    /// Forgets a participant that left (its turn ends at once).
    pub fn forget(&mut self, id: &str) {
        self.smoothed.remove(id);
        if self.current.as_deref() == Some(id) {
            self.current = None;
        }
        if self.challenger.as_ref().is_some_and(|(c, _)| &**c == id) {
            self.challenger = None;
        }
    }

    /// Feeds one tick of levels (dBov); returns the change decided at this tick, if any.
    pub fn update(&mut self, tick: u64, levels: &[(ParticipantId, f32)]) -> Vec<SpeakerChange> {
        let a = self.config.smoothing.clamp(0.01, 1.0);
        for (id, level) in levels {
            // Averaged from a floor of -80 dBov: below that is silence whatever its depth, and a
            // deeper floor would only delay a speaker who starts talking.
            let s = self.smoothed.entry(id.clone()).or_insert(FLOOR_DBOV);
            *s += a * (level.max(FLOOR_DBOV) - *s);
        }
        let gate = self.config.gate_dbov;
        let loudest =
            self.smoothed.iter().filter(|(_, l)| **l >= gate).max_by(|a, b| a.1.total_cmp(b.1).then_with(|| b.0.cmp(a.0))).map(|(id, l)| (id.clone(), *l));
        let Some((top, top_level)) = loudest else {
            self.challenger = None;
            return Vec::new();
        };
        let current_level = self.current.as_ref().and_then(|c| self.smoothed.get(c)).copied().unwrap_or(-127.0);
        let switch_now = match &self.current {
            None => true,
            Some(c) if *c == top => {
                self.challenger = None;
                return Vec::new();
            }
            Some(_) => {
                if current_level < gate {
                    true
                } else if top_level >= current_level + self.config.margin_db {
                    let since = match &self.challenger {
                        Some((c, since)) if *c == top => *since,
                        _ => {
                            self.challenger = Some((top.clone(), tick));
                            tick
                        }
                    };
                    tick + 1 - since >= self.config.switch_ticks as u64
                } else {
                    self.challenger = None;
                    false
                }
            }
        };
        if !switch_now {
            return Vec::new();
        }
        self.challenger = None;
        let from = self.current.replace(top.clone());
        vec![SpeakerChange { tick, from, to: top }]
    }
}
