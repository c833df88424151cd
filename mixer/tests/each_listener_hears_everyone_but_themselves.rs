//! Four participants with distinct tones: each listener hears the three other tones at their
//! level (±1 %) and its own at least 60 dB down; a muted entry removes exactly that tone for
//! exactly that listener.

mod common;
use common::{FREQS, amplitude, tone_frame};
use mcu_mixer::{MixTick, Mixer, MixerConfig, Role};

fn room(n: usize) -> Mixer {
    let mut m = Mixer::new(MixerConfig { top_k: 0, ..Default::default() }, None).unwrap();
    for i in 0..n {
        m.add(format!("p{i}"), Role::SourceAndListener).unwrap();
    }
    m
}

fn run(m: &mut Mixer, n: usize, tick: u64) -> MixTick {
    for (i, &f) in FREQS.iter().enumerate().take(n) {
        m.push(&format!("p{i}"), tick, &tone_frame(f, 0.2, tick)).unwrap();
    }
    m.tick(tick)
}

fn heard_by<'a>(t: &'a MixTick, listener: &str) -> &'a [f32] {
    &t.groups.iter().find(|g| g.listeners.iter().any(|l| &**l == listener)).expect("every listener is in a group").pcm
}

#[test]
fn everyone_but_me() {
    let mut m = room(4);
    let t = run(&mut m, 4, 0);
    assert_eq!(t.groups.len(), 4, "every participant speaks, so every mix differs");
    for me in 0..4 {
        let pcm = heard_by(&t, &format!("p{me}"));
        for (i, &f) in FREQS[..4].iter().enumerate() {
            let a = amplitude(pcm, f);
            if i == me {
                assert!(a < 0.2e-3, "p{me} hears itself at {a}");
            } else {
                assert!((a - 0.2).abs() < 0.002, "p{me} hears p{i} at {a}");
            }
        }
    }
}

#[test]
fn a_muted_entry_removes_exactly_that_tone_for_exactly_that_listener() {
    let mut m = room(4);
    m.set_gain("p0", "p2", 0.0).unwrap();
    m.set_gain("p1", "p3", 0.5).unwrap();
    let t = run(&mut m, 4, 0);
    let p0 = heard_by(&t, "p0");
    assert!(amplitude(p0, FREQS[2]) < 0.2e-3);
    assert!((amplitude(p0, FREQS[1]) - 0.2).abs() < 0.002 && (amplitude(p0, FREQS[3]) - 0.2).abs() < 0.002);
    let p1 = heard_by(&t, "p1");
    assert!((amplitude(p1, FREQS[3]) - 0.1).abs() < 0.002, "half gain");
    assert!((amplitude(p1, FREQS[2]) - 0.2).abs() < 0.002);
    for other in ["p2", "p3"] {
        let pcm = heard_by(&t, other);
        assert!((amplitude(pcm, FREQS[0]) - 0.2).abs() < 0.002, "{other} still hears p0");
    }
    // Back to the default.
    m.reset_gains("p0").unwrap();
    let t = run(&mut m, 4, 1);
    assert!((amplitude(heard_by(&t, "p0"), FREQS[2]) - 0.2).abs() < 0.002);
}

#[test]
fn bad_gains_and_unknown_ids_are_errors() {
    let mut m = room(2);
    assert!(m.set_gain("p0", "p1", f32::NAN).is_err());
    assert!(m.set_gain("p0", "p1", 9.0).is_err());
    assert!(m.set_gain("p0", "ghost", 1.0).is_err());
    assert!(m.add("p0", Role::Source).is_err());
    m.add("viewer", Role::Listener).unwrap();
    let err = m.push("viewer", 0, &tone_frame(300.0, 0.1, 0)).unwrap_err();
    assert_eq!(err.to_string(), "participant \"viewer\" has no source role");
    let short = mcu_mixer::AudioFrame { sample_rate: 48_000, channels: 1, samples: vec![0; 100] };
    assert!(m.push("p0", 0, &short).is_err());
}
