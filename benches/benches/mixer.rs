//! Audio mixing cost per 20 ms tick, Opus encodes included, for (a) 1000 participants with 3
//! speaking, (b) 50 all speaking, (c) 200 with 10 speaking, (d) 1000 listeners × 50 sources,
//! each listener with a gain row of its own (1000 distinct mixes and Opus encodes a tick); CPU and GPU mix paths; beside the
//! naive design (one mix and one Opus encode per listener, Janus AudioBridge style: the total
//! minus one's own) in the same run.
//!
//! `cargo bench -p mcu-benches --bench mixer [-- --save] [-- --ticks N]`
#![allow(clippy::disallowed_methods)] // benchmarks time things: the clock is the point

use std::{fmt::Write as _, time::Instant};

use mcu_benches::{cpu_time, git_rev, machine, save_results, today};
use mcu_codec::audio::{OpusChannels, OpusConfig, OpusEncoder};
use mcu_gpu::{AdapterChoice, Gpu, describe};
use mcu_mixer::{AudioFrame, GpuMixer, MixPath, Mixer, MixerConfig, Role, SharedEncoders, soft_limit};

const N: usize = 960;

/// Participant `i`'s frame for `tick`: a tone when speaking, faint hiss (an open microphone,
/// about -70 dBov) otherwise.
fn frame(i: usize, speaking: bool, tick: u64) -> AudioFrame {
    let samples = if speaking {
        let f = 200.0 + 50.0 * (i % 30) as f32;
        (0..N).map(|k| (0.2 * (2.0 * std::f32::consts::PI * f * (tick as usize * N + k) as f32 / 48_000.0).sin() * 32767.0) as i16).collect()
    } else {
        (0..N).map(|k| (((k * 7919 + i * 104_729 + tick as usize * 31) % 21) as i16) - 10).collect()
    };
    AudioFrame { sample_rate: 48_000, channels: 1, samples }
}

struct Case {
    name: &'static str,
    participants: usize,
    speaking: usize,
    top_k: usize,
    /// Every listener has a gain of its own on one source (a personal matrix): every row of
    /// the gain matrix differs, so every listener's mix is computed and encoded.
    personal_gains: bool,
}

/// Returns (ms per tick wall, ms per tick CPU, distinct mixes = encodes per tick).
fn ours(case: &Case, path: MixPath, gpu: Option<&std::sync::Arc<Gpu>>, ticks: u64) -> (f64, f64, f64) {
    let gm = (path == MixPath::Gpu).then(|| GpuMixer::new(gpu.expect("GPU path needs a GPU").clone()));
    let mut m = Mixer::new(MixerConfig { top_k: case.top_k, path, ..Default::default() }, gm).expect("config");
    for i in 0..case.participants {
        m.add(format!("p{i}"), Role::SourceAndListener).expect("unique");
    }
    let ids: Vec<String> = (0..case.participants).map(|i| format!("p{i}")).collect();
    if case.personal_gains {
        // Listener i: source i % speaking at a gain no other listener has on it.
        for (i, id) in ids.iter().enumerate() {
            let source = &ids[i % case.speaking.max(1)];
            if source != id {
                m.set_gain(id, source, 0.3 + 0.02 * (i / case.speaking.max(1)) as f32).expect("a gain");
            }
        }
    }
    let mut enc = SharedEncoders::new(OpusConfig::voice(OpusChannels::Mono, 32_000));
    // Frames are made before timing: decoding is not the mixer's cost.
    let frames: Vec<Vec<AudioFrame>> = (0..4).map(|t| (0..case.participants).map(|i| frame(i, i < case.speaking, t)).collect()).collect();
    let mut run = |tick: u64| {
        for (i, id) in ids.iter().enumerate() {
            m.push(id, tick, &frames[(tick % 4) as usize][i]).expect("valid frame");
        }
        let t = m.tick(tick);
        enc.encode(&t).expect("encode").len()
    };
    for tick in 0..10 {
        run(tick);
    }
    let (t0, c0) = (Instant::now(), cpu_time(false));
    let mut groups = 0usize;
    for tick in 10..10 + ticks {
        groups += run(tick);
    }
    let wall = t0.elapsed().as_secs_f64() * 1000.0 / ticks as f64;
    let cpu = (cpu_time(false) - c0).as_secs_f64() * 1000.0 / ticks as f64;
    (wall, cpu, groups as f64 / ticks as f64)
}

/// The naive design: every listener gets its own mix (total minus own) and its own encoder.
fn naive(case: &Case, ticks: u64) -> (f64, f64) {
    let p = case.participants;
    let mut encoders: Vec<OpusEncoder> = (0..p).map(|_| OpusEncoder::new(OpusConfig::voice(OpusChannels::Mono, 32_000)).expect("opus")).collect();
    let frames: Vec<Vec<Vec<f32>>> =
        (0..4).map(|t| (0..p).map(|i| frame(i, i < case.speaking, t).samples.iter().map(|&v| v as f32 / 32768.0).collect()).collect()).collect();
    let mut total = vec![0.0f32; N];
    let mut pcm = vec![0i16; N];
    let mut run = |tick: u64| {
        let f = &frames[(tick % 4) as usize];
        total.iter_mut().for_each(|v| *v = 0.0);
        for src in f {
            for (t, v) in total.iter_mut().zip(src) {
                *t += v;
            }
        }
        for (i, enc) in encoders.iter_mut().enumerate() {
            for ((o, t), own) in pcm.iter_mut().zip(&total).zip(&f[i]) {
                *o = (soft_limit(t - own) * 32767.0) as i16;
            }
            std::hint::black_box(enc.encode(&pcm).expect("encode"));
        }
    };
    for tick in 0..3 {
        run(tick);
    }
    let (t0, c0) = (Instant::now(), cpu_time(false));
    for tick in 3..3 + ticks {
        run(tick);
    }
    (t0.elapsed().as_secs_f64() * 1000.0 / ticks as f64, (cpu_time(false) - c0).as_secs_f64() * 1000.0 / ticks as f64)
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let save = args.iter().any(|a| a == "--save");
    let ticks: u64 = args.iter().position(|a| a == "--ticks").and_then(|i| args.get(i + 1)).and_then(|s| s.parse().ok()).unwrap_or(200);
    let gpu = Gpu::new(&AdapterChoice::Auto).ok();
    let cases = [
        Case { name: "(a) 1000 participants, 3 speaking, top-K 3", participants: 1000, speaking: 3, top_k: 3, personal_gains: false },
        Case { name: "(b) 50 participants, all speaking, top-K 3", participants: 50, speaking: 50, top_k: 3, personal_gains: false },
        Case { name: "(b') 50 participants, all speaking, no top-K (50 mixed)", participants: 50, speaking: 50, top_k: 0, personal_gains: false },
        Case { name: "(c) 200 participants, 10 speaking, top-K 3", participants: 200, speaking: 10, top_k: 3, personal_gains: false },
        Case { name: "(c') 200 participants, 10 speaking, top-K 10", participants: 200, speaking: 10, top_k: 10, personal_gains: false },
        Case {
            name: "(d) 1000 listeners × 50 sources: 50 speaking, no top-K, every listener a gain of its own",
            participants: 1000,
            speaking: 50,
            top_k: 0,
            personal_gains: true,
        },
    ];
    let mut table = String::new();
    writeln!(table, "| case | distinct mixes (= Opus encodes) per tick | CPU path ms/tick | GPU path ms/tick (wall) | GPU path CPU ms/tick | naive ms/tick | naive ÷ CPU path |").unwrap();
    writeln!(table, "|---|---:|---:|---:|---:|---:|---:|").unwrap();
    let only = args.iter().position(|a| a == "--only").and_then(|i| args.get(i + 1)).cloned();
    let skip_naive = args.iter().any(|a| a == "--no-naive");
    for case in cases.iter().filter(|c| only.as_ref().is_none_or(|o| c.name.starts_with(o.as_str()))) {
        let (cpu_wall, _, groups) = ours(case, MixPath::Cpu, None, ticks);
        let gpu_cols = match &gpu {
            Some(g) => {
                let (w, c, _) = ours(case, MixPath::Gpu, Some(g), ticks.min(100));
                format!("{w:.3} | {c:.3}")
            }
            None => "– | –".into(),
        };
        let naive_ticks = (ticks / 10).max(5);
        // The naive design has no per-listener gains to compare with.
        let (naive_wall, _) = if skip_naive || case.personal_gains { (f64::NAN, 0.0) } else { naive(case, naive_ticks) };
        let naive_cols = if naive_wall.is_nan() { "– | –".to_string() } else { format!("{naive_wall:.2} | {:.0}×", naive_wall / cpu_wall) };
        let line = format!("| {} | {groups:.0} | {cpu_wall:.3} | {gpu_cols} | {naive_cols} |", case.name);
        println!("{line}");
        writeln!(table, "{line}").unwrap();
    }
    if save {
        let date = today();
        let mut md = String::new();
        writeln!(md, "# Audio mixer cost per 20 ms tick, {date}\n").unwrap();
        writeln!(md, "- Machine: {}", machine()).unwrap();
        writeln!(md, "- GPU path adapter: {}", gpu.as_ref().map_or("none".to_string(), |g| describe(&g.info))).unwrap();
        writeln!(md, "- Commit: {}", git_rev()).unwrap();
        writeln!(md, "- Command: `cargo bench -p mcu-benches --bench mixer -- --save --ticks {ticks}`").unwrap();
        writeln!(md, "- What is timed, per tick, on one thread: pushing every participant's 20 ms frame (speakers: tones; the rest: open microphones with faint hiss, about -70 dBov, which the speech gate and top-K leave out), levels, top-K, grouping of identical mixes, the mixes, and one Opus encode (mono, 32 kbps, complexity default) per distinct mix. Naive: one mix (room total minus own) and one Opus encode per listener.\n").unwrap();
        md.push_str(&table);
        save_results("mixer", &date, &md);
    }
}
