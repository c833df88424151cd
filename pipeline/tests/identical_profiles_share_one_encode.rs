//! Viewers whose pictures and encode profiles are equal share one encode (video), and
//! listeners whose mixes are equal share one Opus encode (audio).
mod common;

use std::time::Duration;

use bytes::Bytes;
use common::*;
use mcu_codec::audio::{OpusChannels, OpusConfig, OpusEncoder};
use mcu_media::Rgb;
use mcu_mixer::Mixer;
use mcu_pipeline::{AudioEngine, AudioOutput, Listener, MixCodec, RoomView, TrackId, VideoProfile};
use std::sync::Arc;

#[test]
fn viewers_of_equal_pictures_and_profiles_share_one_video_encode() {
    let watched = Watched::default();
    let mut room = Room::new(Box::new(watched.clone()));
    room.publish(Publisher::new("alice", (160, 90), Rgb(30, 30, 200)));
    room.listener("a", 100, None);
    room.listener("b", 200, None);
    // The composite's own track, watched by a WHEP viewer.
    room.room_viewer(350);
    // A phone: another size, its own encode.
    let phone = VideoProfile { codec: MixCodec::Vp8, width: 160, height: 90, single_nal: false, bitrate: 150_000 };
    room.listener("phone", 400, Some(phone));
    room.run(2.0, &["alice"]);

    assert_eq!(*watched.opened.lock().unwrap(), 2, "one encoder for the room profile, one for the phone's");
    let frames = |ssrc| room.viewers.by_ssrc[&ssrc].frames.clone();
    let (a, b, whep, p) = (frames(100), frames(200), frames(350), frames(400));
    assert!(a.len() >= 15, "a received {} pictures", a.len());
    assert_eq!(a, b, "a and b receive the same encoded pictures");
    assert_eq!(a, whep, "and so do the composite track's viewers");
    assert!(p.len() >= 15 && p[0].1 != a[0].1, "the phone gets its own encode");
    let stats = room.engine.stats();
    assert_eq!(stats.encodes, stats.renders * 2, "two encodes per canvas pass, whatever the viewers: {stats:?}");
}

fn tone(freq: f64, frame: u64) -> Vec<i16> {
    (0..960).map(|k| ((2.0 * std::f64::consts::PI * freq * (frame * 960 + k) as f64 / 48_000.0).sin() * 8_000.0) as i16).collect()
}

#[test]
fn listeners_of_equal_mixes_share_one_opus_encode() {
    let t0 = origin();
    let config = config();
    let mut engine = AudioEngine::new(config, t0, Mixer::new(AudioEngine::mixer_config(), None).unwrap(), 3).unwrap();
    let alice: TrackId = Arc::from("alice/audio");
    let bob: TrackId = Arc::from("bob/audio");
    let listener = |name: &str, ssrc| Listener { name: name.into(), audio_ssrc: ssrc, video_ssrc: ssrc + 1, profile: None, video_watched: false, phone: false };
    // x and y only listen: they hear everyone, as the room mix does. Alice publishes and
    // listens: she hears everyone but herself.
    let view = RoomView {
        live_tracks: [alice.clone(), bob.clone()].into(),
        listeners: vec![listener("x", 10), listener("y", 20), listener("alice", 30)],
        room_ssrcs: (1, 2),
        room_audio_watched: true,
        ..RoomView::default()
    };
    let mut enc_a = OpusEncoder::new(OpusConfig::voice(OpusChannels::Mono, 32_000)).unwrap();
    let mut enc_b = OpusEncoder::new(OpusConfig::voice(OpusChannels::Mono, 32_000)).unwrap();
    let mut by_ssrc: std::collections::BTreeMap<u32, Vec<(u32, Vec<u8>)>> = Default::default();
    let ticks = 100u64;
    for f in 0..ticks {
        let now = t0 + Duration::from_millis(20 * f);
        engine.set_view(view.clone());
        engine.handle_packet(now, &alice, "alice", f as u16, Bytes::from(enc_a.encode(&tone(440.0, f)).unwrap()));
        engine.handle_packet(now, &bob, "bob", f as u16, Bytes::from(enc_b.encode(&tone(660.0, f)).unwrap()));
        engine.handle_timeout(now);
        while let Some(out) = engine.poll_output() {
            if let AudioOutput::Rtp(p) = out {
                let p = mcu_sfu::rtp::RtpPacket::parse(&p).unwrap();
                by_ssrc.entry(p.ssrc).or_default().push((p.timestamp, p.payload().to_vec()));
            }
        }
    }
    let stats = engine.stats();
    let (x, y, room, a) = (&by_ssrc[&10], &by_ssrc[&20], &by_ssrc[&2], &by_ssrc[&30]);
    assert_eq!(x.len() as u64, ticks, "a packet every tick");
    assert_eq!(x, y, "x and y hear one encode of the same mix");
    assert_eq!(x, room, "and so does the room mix's track");
    assert_ne!(x, a, "alice hears another mix (everyone but her)");
    // Two distinct mixes: two Opus encodes a tick for four listeners (one while the playout
    // buffers fill and everyone hears the same silence).
    assert!((ticks * 2 - 5..=ticks * 2).contains(&stats.encodes), "{} encodes in {ticks} ticks", stats.encodes);
    assert_eq!(stats.encoder_failures, 0);
}
