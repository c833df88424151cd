//! 100 participants, 3 speaking: 4 distinct mixes (each speaker hears the other two; everyone
//! else hears all three), so 4 Opus encodes per tick instead of 100; the shared packet,
//! decoded, holds all three tones, and a speaker's packet lacks its own.

mod common;
use common::{FREQS, amplitude, tone_frame};
use mcu_codec::audio::{OpusChannels, OpusConfig, OpusDecoder};
use mcu_mixer::{Mixer, MixerConfig, Role, SharedEncoders};

#[test]
fn hundred_listeners_three_speakers_four_encodes() {
    let mut m = Mixer::new(MixerConfig::default(), None).unwrap();
    for i in 0..100 {
        m.add(format!("p{i}"), Role::SourceAndListener).unwrap();
    }
    let mut enc = SharedEncoders::new(OpusConfig::voice(OpusChannels::Mono, 32_000));
    let mut dec_shared = OpusDecoder::new(OpusChannels::Mono).unwrap();
    let mut dec_speaker = OpusDecoder::new(OpusChannels::Mono).unwrap();
    let (mut shared_pcm, mut speaker_pcm) = (Vec::new(), Vec::new());
    let ticks = 25;
    for tick in 0..ticks {
        for (s, &f) in FREQS.iter().enumerate().take(3) {
            m.push(&format!("p{s}"), tick, &tone_frame(f, 0.2, tick)).unwrap();
        }
        // The other 97 have open microphones with faint hiss (-70 dBov): below the gate.
        for i in 3..100 {
            let hiss: Vec<i16> = (0..960).map(|k| (((k * 7919 + i * 104729 + tick as usize) % 21) as i16) - 10).collect();
            m.push(&format!("p{i}"), tick, &mcu_mixer::AudioFrame { sample_rate: 48_000, channels: 1, samples: hiss }).unwrap();
        }
        let t = m.tick(tick);
        assert_eq!(t.mixed_sources.len(), 3);
        assert_eq!(t.groups.len(), 4, "3 speakers + everyone else");
        let packets = enc.encode(&t).unwrap();
        assert_eq!(packets.len(), 4);
        let everyone = packets.iter().find(|(l, _)| l.len() == 97).expect("the shared mix");
        let p0 = packets.iter().find(|(l, _)| l.len() == 1 && &*l[0] == "p0").expect("p0's own mix");
        shared_pcm.extend(dec_shared.decode(&everyone.1).unwrap().iter().map(|&v| v as f32 / 32768.0));
        speaker_pcm.extend(dec_speaker.decode(&p0.1).unwrap().iter().map(|&v| v as f32 / 32768.0));
    }
    assert_eq!(enc.encodes(), 4 * ticks, "one encode per distinct mix per tick");
    assert_eq!(enc.encoders(), 4);
    // Skip the codec's start-up; compare tone amplitudes (Opus at 32 kbps keeps them within 15 %).
    let tail = |v: &[f32]| v[v.len() - 9600..].to_vec();
    let (shared, speaker) = (tail(&shared_pcm), tail(&speaker_pcm));
    for (s, &f) in FREQS.iter().enumerate().take(3) {
        let a = amplitude(&shared, f);
        assert!((a - 0.2).abs() < 0.03, "shared mix: tone {s} at {a}");
    }
    assert!(amplitude(&speaker, FREQS[0]) < 0.01, "p0 does not hear itself");
    assert!((amplitude(&speaker, FREQS[1]) - 0.2).abs() < 0.03);
}

#[test]
fn top_k_keeps_only_the_loudest() {
    let mut m = Mixer::new(MixerConfig { top_k: 2, ..Default::default() }, None).unwrap();
    for i in 0..5 {
        m.add(format!("p{i}"), Role::SourceAndListener).unwrap();
    }
    m.add("viewer", Role::Listener).unwrap();
    for (i, amp) in [0.05, 0.3, 0.1, 0.2, 0.02].into_iter().enumerate() {
        m.push(&format!("p{i}"), 0, &tone_frame(FREQS[i], amp, 0)).unwrap();
    }
    let t = m.tick(0);
    let mixed: Vec<String> = t.mixed_sources.iter().map(|s| s.to_string()).collect();
    assert_eq!(mixed, ["p1", "p3"]);
    let viewer = &t.groups.iter().find(|g| g.listeners.iter().any(|l| &**l == "viewer")).unwrap().pcm;
    assert!((amplitude(viewer, FREQS[1]) - 0.3).abs() < 0.003);
    assert!(amplitude(viewer, FREQS[2]) < 1e-3, "third loudest left out");
}
