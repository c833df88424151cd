//! The active speaker follows the loudest tone: A speaks; B, 12 dB louder, takes over only
//! after leading by the 6 dB margin for 15 ticks (300 ms); a 100 ms interjection by C does not
//! switch.

mod common;
use common::tone_frame;
use mcu_mixer::{Mixer, MixerConfig, Role};

#[test]
fn switches_after_the_hold_and_ignores_short_interjections() {
    let mut m = Mixer::new(MixerConfig::default(), None).unwrap();
    for id in ["a", "b", "c"] {
        m.add(id, Role::SourceAndListener).unwrap();
    }
    let mut changes = Vec::new();
    for tick in 0..200u64 {
        let a_amp = 0.05; // about -29 dBov
        m.push("a", tick, &tone_frame(300.0, a_amp, tick)).unwrap();
        if (50..200).contains(&tick) {
            m.push("b", tick, &tone_frame(600.0, 0.2, tick)).unwrap(); // +12 dB over a
        }
        if (20..25).contains(&tick) {
            m.push("c", tick, &tone_frame(900.0, 0.4, tick)).unwrap(); // loud but 100 ms
        }
        let t = m.tick(tick);
        changes.extend(t.speaker_changes.into_iter().map(|c| (c.tick, c.from.map(|f| f.to_string()), c.to.to_string())));
    }
    // A is heard within 80 ms (its smoothed level crosses the -45 dBov gate).
    assert!(changes[0].0 <= 4 && changes[0].1.is_none() && changes[0].2 == "a", "{changes:?}");
    assert_eq!(changes.len(), 2, "c's 100 ms interjection did not switch: {changes:?}");
    let (tick, from, to) = &changes[1];
    assert_eq!((from.as_deref(), to.as_str()), (Some("a"), "b"));
    // B's smoothed level passes A's + 6 dB within a couple of ticks, then must lead 15 ticks.
    assert!((64..=72).contains(tick), "switched at tick {tick}");
    assert_eq!(m.active_speaker().map(|s| s.to_string()), Some("b".into()));
}

#[test]
fn client_levels_drive_the_choice_when_sent() {
    let mut m = Mixer::new(MixerConfig::default(), None).unwrap();
    m.add("a", Role::Source).unwrap();
    m.add("b", Role::Source).unwrap();
    for tick in 0..40u64 {
        // Equal audio, but the clients say b is at -10 dBov and a at -40 (RFC 6464).
        m.push("a", tick, &tone_frame(300.0, 0.1, tick)).unwrap();
        m.push("b", tick, &tone_frame(600.0, 0.1, tick)).unwrap();
        m.set_client_level("a", tick, 40).unwrap();
        m.set_client_level("b", tick, 10).unwrap();
        m.tick(tick);
    }
    assert_eq!(m.active_speaker().map(|s| s.to_string()), Some("b".into()));
}
