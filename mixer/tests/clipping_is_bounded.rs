//! Ten in-phase sources at half scale sum to 5× full scale; the limiter keeps every sample
//! inside ±0.99 while mixes below the knee (0.9) pass unchanged.

mod common;
use common::tone_frame;
use mcu_mixer::{Mixer, MixerConfig, Role, soft_limit};

#[test]
fn loud_sums_stay_inside_full_scale() {
    let mut m = Mixer::new(MixerConfig { top_k: 0, ..Default::default() }, None).unwrap();
    m.add("listener", Role::Listener).unwrap();
    for i in 0..10 {
        m.add(format!("s{i}"), Role::Source).unwrap();
        m.push(&format!("s{i}"), 0, &tone_frame(300.0, 0.5, 0)).unwrap();
    }
    let t = m.tick(0);
    let pcm = &t.groups[0].pcm;
    let peak = pcm.iter().fold(0.0f32, |a, v| a.max(v.abs()));
    assert!(peak <= 0.99 && peak > 0.95, "peak {peak}");
}

#[test]
fn the_limiter_is_transparent_below_its_knee_and_monotonic_above() {
    for x in [-0.9f32, -0.5, 0.0, 0.3, 0.89] {
        assert_eq!(soft_limit(x), x);
    }
    let mut last = 0.0;
    for i in 0..200 {
        let y = soft_limit(0.9 + i as f32 * 0.05);
        assert!(y >= last && y <= 0.99);
        last = y;
    }
}
