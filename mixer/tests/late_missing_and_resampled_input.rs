//! Input timing and formats: a frame for a tick already mixed is dropped and counted, a missing
//! frame is silence, a 16 kHz stereo source arrives at 48 kHz with its tone intact.

mod common;
use common::{amplitude, tone, tone_frame};
use mcu_mixer::{AudioFrame, Mixer, MixerConfig, Role};

#[test]
fn late_frames_are_counted_and_missing_ones_are_silence() {
    let mut m = Mixer::new(MixerConfig { top_k: 0, ..Default::default() }, None).unwrap();
    m.add("a", Role::Source).unwrap();
    m.add("l", Role::Listener).unwrap();
    m.push("a", 0, &tone_frame(300.0, 0.2, 0)).unwrap();
    let t0 = m.tick(0);
    assert!((amplitude(&t0.groups[0].pcm, 300.0) - 0.2).abs() < 0.002);
    let t1 = m.tick(1);
    assert!(t1.groups[0].pcm.iter().all(|v| *v == 0.0), "no frame: silence");
    m.push("a", 0, &tone_frame(300.0, 0.2, 0)).unwrap();
    assert_eq!(m.stats().late_frames, 1);
    assert_eq!(m.stats().missing_frames, 1);
}

#[test]
fn a_16khz_stereo_source_is_resampled() {
    let mut m = Mixer::new(MixerConfig { top_k: 0, ..Default::default() }, None).unwrap();
    m.add("phone", Role::Source).unwrap();
    m.add("l", Role::Listener).unwrap();
    let mut heard = Vec::new();
    for tick in 0..10u64 {
        let mono = tone(1000.0, 0.25, 16_000, tick * 320, 320);
        let stereo: Vec<i16> = mono.iter().flat_map(|&v| [v, v]).collect();
        m.push("phone", tick, &AudioFrame { sample_rate: 16_000, channels: 2, samples: stereo }).unwrap();
        heard.extend(m.tick(tick).groups[0].pcm.clone());
    }
    let tail = &heard[heard.len() - 4800..];
    let a = amplitude(tail, 1000.0);
    assert!((a - 0.25).abs() < 0.01, "1 kHz at {a}");
    assert!(amplitude(tail, 15_000.0) < 0.002, "no imaging above 8 kHz");
}
