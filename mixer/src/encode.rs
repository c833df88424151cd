//! One Opus encode per distinct mix, however many listeners hear it.

use std::collections::HashMap;

use mcu_codec::audio::{AudioEncodeError, AudioOpenError, OpusConfig, OpusEncoder};

use crate::{MixGroup, MixTick, mixer::ParticipantId};

/// The listeners of one distinct mix and its Opus packet for the tick.
pub type EncodedMix = (Vec<ParticipantId>, Vec<u8>);

/// Opus encoders keyed by mix (gain row); see [`crate::MixGroup::key`].
///
/// A listener whose mix changes (a new speaker joins the top-K) moves to another encoder; Opus
/// decoders take that like a short loss, which PLC covers. Encoders idle for `idle_ticks` are
/// dropped.
pub struct SharedEncoders {
    config: OpusConfig,
    encoders: HashMap<u64, (OpusEncoder, u64)>,
    idle_ticks: u64,
    encodes: u64,
}

impl SharedEncoders {
    /// Encoders made with `config` (its channel count should be mono: mixes are mono).
    pub fn new(config: OpusConfig) -> SharedEncoders {
        SharedEncoders { config, encoders: HashMap::new(), idle_ticks: 250, encodes: 0 }
    }

    /// Opus encodes done so far.
    pub fn encodes(&self) -> u64 {
        self.encodes
    }

    /// Encoders alive.
    pub fn encoders(&self) -> usize {
        self.encoders.len()
    }

    /// Encodes every group of `tick` once; returns (listeners, packet) per group.
    pub fn encode(&mut self, tick: &MixTick) -> Result<Vec<EncodedMix>, EncodeMixError> {
        let config = self.config;
        self.encode_with(tick, |_| Some(config)).into_iter().map(|(g, packet)| Ok((g.listeners.clone(), packet?))).collect()
    }

    /// Encodes the groups of `tick` that `config` gives a config for, once each; a group's
    /// encoder is made with the config given when the group is first encoded (a mix keeps its
    /// encoder, and so its settings, while it lasts). One failing group does not stop the
    /// others: each group's packet or error is returned with it.
    pub fn encode_with<'t>(
        &mut self,
        tick: &'t MixTick,
        mut config: impl FnMut(&MixGroup) -> Option<OpusConfig>,
    ) -> Vec<(&'t MixGroup, Result<Vec<u8>, EncodeMixError>)> {
        let mut out = Vec::with_capacity(tick.groups.len());
        let mut pcm16 = Vec::new();
        for g in &tick.groups {
            let Some(c) = config(g) else { continue };
            let enc = match self.encoders.entry(g.key) {
                std::collections::hash_map::Entry::Occupied(e) => e.into_mut(),
                std::collections::hash_map::Entry::Vacant(v) => match OpusEncoder::new(c) {
                    Ok(e) => v.insert((e, tick.tick)),
                    Err(e) => {
                        out.push((g, Err(e.into())));
                        continue;
                    }
                },
            };
            enc.1 = tick.tick;
            pcm16.clear();
            pcm16.extend(g.pcm.iter().map(|&v| (v * 32767.0).round().clamp(-32768.0, 32767.0) as i16));
            let packet = enc.0.encode(&pcm16).map_err(EncodeMixError::from);
            if packet.is_ok() {
                self.encodes += 1;
            }
            out.push((g, packet));
        }
        let now = tick.tick;
        let idle = self.idle_ticks;
        self.encoders.retain(|_, (_, last)| now.saturating_sub(*last) <= idle);
        out
    }
}

/// Encoding a mix failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum EncodeMixError {
    /// The encoder could not be made.
    #[error(transparent)]
    Open(#[from] AudioOpenError),
    /// The encoder refused the frame.
    #[error(transparent)]
    Encode(#[from] AudioEncodeError),
}
