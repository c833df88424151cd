//! The wgpu compute pass (lavapipe here) and the CPU reference give the same mixes within
//! 1e-5 of full scale, for raw matrices and through the mixer.

mod common;
use std::sync::{Arc, OnceLock};

use common::tone_frame;
use mcu_gpu::{AdapterChoice, Gpu};
use mcu_mixer::{GpuMixer, MixPath, Mixer, MixerConfig, Role, mix_cpu};

fn gpu() -> Arc<Gpu> {
    static G: OnceLock<Arc<Gpu>> = OnceLock::new();
    G.get_or_init(|| {
        let choice: AdapterChoice = std::env::var("MCU_TEST_ADAPTER").unwrap_or_default().parse().unwrap();
        Gpu::new(&choice).expect("the GPU tests need an adapter (lavapipe without a GPU)")
    })
    .clone()
}

/// Deterministic pseudo-random numbers in -1..1.
fn noise(seed: u64, n: usize) -> Vec<f32> {
    let mut s = seed.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
    (0..n)
        .map(|_| {
            s = s.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            ((s >> 40) as f32 / (1u64 << 24) as f32) * 2.0 - 1.0
        })
        .collect()
}

#[test]
fn matrices_agree() {
    let mut g = GpuMixer::new(gpu());
    for (s, n, m) in [(3, 960, 4), (10, 480, 11), (50, 960, 51), (1, 960, 1)] {
        let x: Vec<f32> = noise(s as u64, s * n).iter().map(|v| v * 0.3).collect();
        let gains: Vec<f32> = noise(m as u64 + 7, m * s).iter().map(|v| v.abs()).collect();
        let a = g.mix(&x, s, n, &gains, m).unwrap();
        let b = mix_cpu(&x, s, n, &gains, m);
        let worst = a.iter().zip(&b).map(|(p, q)| (p - q).abs()).fold(0.0f32, f32::max);
        assert!(worst < 1e-5, "{s} sources, {m} mixes: max difference {worst}");
        if s >= 10 {
            assert!(b.iter().any(|v| v.abs() > 0.9), "the limiter is exercised too");
        }
    }
}

#[test]
fn the_mixer_gives_the_same_groups_on_both_paths() {
    let run = |path| {
        let gm = (path == MixPath::Gpu).then(|| GpuMixer::new(gpu()));
        let mut m = Mixer::new(MixerConfig { top_k: 0, path, ..Default::default() }, gm).unwrap();
        for i in 0..6 {
            m.add(format!("p{i}"), Role::SourceAndListener).unwrap();
        }
        m.set_gain("p1", "p4", 0.25).unwrap();
        for i in 0..6 {
            m.push(&format!("p{i}"), 0, &tone_frame(common::FREQS[i], 0.3, 0)).unwrap();
        }
        let t = m.tick(0);
        (t, m.stats())
    };
    let (gpu_tick, gpu_stats) = run(MixPath::Gpu);
    let (cpu_tick, cpu_stats) = run(MixPath::Cpu);
    assert_eq!(gpu_stats.gpu_mixes, 6);
    assert_eq!(cpu_stats.gpu_mixes, 0);
    assert_eq!(gpu_tick.groups.len(), cpu_tick.groups.len());
    for (a, b) in gpu_tick.groups.iter().zip(&cpu_tick.groups) {
        assert_eq!(a.listeners, b.listeners);
        assert_eq!(a.key, b.key);
        let worst = a.pcm.iter().zip(&b.pcm).map(|(p, q)| (p - q).abs()).fold(0.0f32, f32::max);
        assert!(worst < 1e-5, "{worst}");
    }
}

#[test]
fn auto_keeps_small_mixes_and_software_adapters_on_the_cpu() {
    let g = gpu();
    let gm = GpuMixer::new(g.clone());
    // Small work never pays for the transfer; large work does on hardware only.
    assert!(!gm.worth_it(4, 3, 960));
    assert_eq!(gm.worth_it(200, 20, 960), !g.kind.is_software());
    let mut m = Mixer::new(MixerConfig { top_k: 0, path: MixPath::Auto, ..Default::default() }, Some(gm)).unwrap();
    for i in 0..3 {
        m.add(format!("p{i}"), Role::SourceAndListener).unwrap();
        m.push(&format!("p{i}"), 0, &tone_frame(common::FREQS[i], 0.3, 0)).unwrap();
    }
    m.tick(0);
    assert_eq!(m.stats().mixes, 3);
    assert_eq!(m.stats().gpu_mixes, 0, "three small mixes stay on the CPU");
}

#[test]
fn a_lost_device_moves_the_mixer_to_the_cpu_for_good() {
    // A device of its own (the others' is shared), destroyed between two ticks: a real loss.
    let choice: AdapterChoice = std::env::var("MCU_TEST_ADAPTER").unwrap_or_default().parse().unwrap();
    let own = Gpu::new(&choice).expect("an adapter");
    let feed = |m: &mut Mixer, tick: u64| {
        for i in 0..4 {
            m.push(&format!("p{i}"), tick, &tone_frame(common::FREQS[i], 0.3, tick)).unwrap();
        }
        m.tick(tick)
    };
    let new = |gm: Option<GpuMixer>, path| {
        let mut m = Mixer::new(MixerConfig { top_k: 0, path, ..Default::default() }, gm).unwrap();
        for i in 0..4 {
            m.add(format!("p{i}"), Role::SourceAndListener).unwrap();
        }
        m
    };
    let mut on_gpu = new(Some(GpuMixer::new(own.clone())), MixPath::Gpu);
    let mut reference = new(None, MixPath::Cpu);
    feed(&mut on_gpu, 0);
    feed(&mut reference, 0);
    assert_eq!((on_gpu.stats().gpu_mixes, on_gpu.stats().gpu_fallbacks), (4, 0));
    own.device.destroy();
    for tick in 1..4 {
        let (a, b) = (feed(&mut on_gpu, tick), feed(&mut reference, tick));
        assert_eq!(a.groups.len(), b.groups.len());
        for (x, y) in a.groups.iter().zip(&b.groups) {
            assert_eq!(x.listeners, y.listeners);
            let worst = x.pcm.iter().zip(&y.pcm).map(|(p, q)| (p - q).abs()).fold(0.0f32, f32::max);
            assert!(worst < 1e-5, "tick {tick}: the mixes after the loss are the CPU's ({worst})");
        }
    }
    let s = on_gpu.stats();
    assert_eq!((s.gpu_mixes, s.gpu_fallbacks, s.mixes), (4, 1, 16), "one failed try, then the CPU for good: {s:?}");
}
