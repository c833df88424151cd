//! Tones and a Goertzel detector for the mixer tests.
#![allow(dead_code)]

use mcu_mixer::AudioFrame;

/// `n` samples of a sine at `freq` Hz and `amp` (full scale 1.0), continuing from `start`.
pub fn tone(freq: f32, amp: f32, rate: u32, start: u64, n: usize) -> Vec<i16> {
    (0..n)
        .map(|i| {
            let t = (start + i as u64) as f32 / rate as f32;
            (amp * (2.0 * std::f32::consts::PI * freq * t).sin() * 32767.0).round() as i16
        })
        .collect()
}

/// One 20 ms mono frame of a tone at 48 kHz for `tick`.
pub fn tone_frame(freq: f32, amp: f32, tick: u64) -> AudioFrame {
    AudioFrame { sample_rate: 48_000, channels: 1, samples: tone(freq, amp, 48_000, tick * 960, 960) }
}

/// Amplitude (full scale 1.0) of the component at `freq` in `x` (48 kHz), by Goertzel.
pub fn amplitude(x: &[f32], freq: f32) -> f32 {
    let w = 2.0 * std::f32::consts::PI * freq / 48_000.0;
    let c = 2.0 * w.cos();
    let (mut s1, mut s2) = (0.0f32, 0.0f32);
    for &v in x {
        let s0 = v + c * s1 - s2;
        s2 = s1;
        s1 = s0;
    }
    let power = s1 * s1 + s2 * s2 - c * s1 * s2;
    2.0 * power.max(0.0).sqrt() / x.len() as f32
}

/// The frequencies given to participants 0.. in the tests: 50 Hz apart multiples so that a
/// 20 ms window holds whole periods.
pub const FREQS: [f32; 8] = [300.0, 450.0, 600.0, 750.0, 900.0, 1050.0, 1200.0, 1350.0];
