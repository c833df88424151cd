//! Per-listener audio mixing for MCU rooms.
//!
//! Model: the mix is a gain matrix, listener × source. The default is "everyone but me" (gain 1
//! from every other participant, 0 from oneself); the control API overrides any entry (mute one
//! source for one listener, whisper, coach mode, per-listener volume). Each tick (10 or 20 ms
//! of 48 kHz audio) the [`Mixer`]:
//!
//! 1. takes each source's frame for that tick (missing or late → silence; the decoder's PLC
//!    output is just a frame), converted to 48 kHz mono;
//! 2. measures levels (or takes the client's RFC 6464 level) and keeps the `top_k` loudest
//!    sources above the speech gate, so hundreds of open microphones add no noise;
//! 3. groups listeners whose gain rows over those sources are equal — every non-speaker with
//!    default gains hears the same mix — and computes each distinct mix once: out = G · X, on
//!    the CPU (reference) or as a wgpu compute pass on the shared [`mcu_gpu::Gpu`], with a soft
//!    limiter so sums never clip;
//! 4. feeds the active-speaker detector, which switches with hysteresis and emits events.
//!
//! [`SharedEncoders`] then encodes each distinct mix once with Opus, however many listeners share
//! it.
//!
//! Time enters only as the tick index passed to [`Mixer::tick`]; nothing reads a clock.
//! Panics: none on input (unknown ids, odd frame sizes and late frames are errors or counted
//! drops); a panic is a bug.
#![deny(missing_docs)]

mod gpu_mix;
mod mixer;
mod speaker;

pub use gpu_mix::GpuMixer;
pub use mixer::{AudioFrame, MixGroup, MixPath, MixTick, Mixer, MixerConfig, MixerError, MixerStats, ParticipantId, Role, mix_cpu};
pub use speaker::{ActiveSpeaker, SpeakerChange, SpeakerConfig};

mod encode;
pub use encode::{EncodeMixError, EncodedMix, SharedEncoders};

/// Source code of the mixer's WGSL shaders, by file name.
pub const SHADERS: &[(&str, &str)] = &[("audio_mix.wgsl", gpu_mix::SOURCE)];

/// The soft limiter applied to every mix: linear up to 0.9 of full scale, then a tanh knee that
/// approaches 0.99 and never passes it, so that summed voices never clip.
pub fn soft_limit(x: f32) -> f32 {
    const KNEE: f32 = 0.9;
    const CEILING: f32 = 0.99;
    let a = x.abs();
    if a <= KNEE { x } else { x.signum() * (KNEE + (CEILING - KNEE) * ((a - KNEE) / (CEILING - KNEE)).tanh()) }
}

#[cfg(test)]
mod tests {
    #[test]
    fn shaders_parse_and_validate() {
        for (name, src) in super::SHADERS {
            let module = naga::front::wgsl::parse_str(src).unwrap_or_else(|e| panic!("{name}: {}", e.emit_to_string(src)));
            naga::valid::Validator::new(naga::valid::ValidationFlags::all(), naga::valid::Capabilities::all())
                .validate(&module)
                .unwrap_or_else(|e| panic!("{name}: {e:?}"));
        }
    }
}
