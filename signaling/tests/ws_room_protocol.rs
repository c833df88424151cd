//! The WebSocket room protocol as two or three clients see it: joining, presence, tracks,
//! selective subscription with layer caps, chat (room and private), peer-to-peer signal relay,
//! a vanished client, the MCU-mix notice, and every refusal with its code.

use mcu_signaling::{
    auth::{Claims, Grants, Keys},
    room::{ConnId, Hub, Limits, Outbox, ServerMessage},
};
use serde_json::json;

const NOW: u64 = 1_800_000_000;

fn dev_hub() -> Hub {
    Hub::new(Keys::new(), true, Limits::default())
}

fn send(hub: &mut Hub, conn: ConnId, msg: serde_json::Value) -> Outbox {
    hub.handle(conn, &msg.to_string(), NOW)
}

fn to(out: &Outbox, conn: ConnId) -> Vec<&ServerMessage> {
    out.iter().filter(|(c, _)| *c == conn).map(|(_, m)| m).collect()
}

fn error_code(out: &Outbox, conn: ConnId) -> Option<u16> {
    to(out, conn).iter().find_map(|m| match m {
        ServerMessage::Error { code, .. } => Some(*code),
        _ => None,
    })
}

fn join(hub: &mut Hub, conn: ConnId, who: &str) -> Outbox {
    send(hub, conn, json!({"type": "join", "room": "class", "identity": who}))
}

#[test]
fn presence_tracks_chat_and_signals() {
    let mut hub = dev_hub();
    let out = join(&mut hub, 1, "alice");
    assert!(matches!(to(&out, 1)[0], ServerMessage::Joined { you, participants, .. } if you == "alice" && participants.is_empty()));
    send(&mut hub, 1, json!({"type": "publish", "track": {"track_id": "cam", "kind": "video", "layers": 3}}));
    // Bob sees Alice and her track on joining; Alice hears that Bob joined.
    let out = join(&mut hub, 2, "bob");
    match to(&out, 2)[0] {
        ServerMessage::Joined { participants, .. } => {
            assert_eq!(participants.len(), 1);
            assert_eq!(participants[0].tracks[0].track_id, "cam");
        }
        m => panic!("{m:?}"),
    }
    assert!(matches!(to(&out, 1)[0], ServerMessage::ParticipantJoined { participant } if participant.id == "bob"));
    // Bob publishes; only Alice is told.
    let out = send(&mut hub, 2, json!({"type": "publish", "track": {"track_id": "mic", "kind": "audio", "layers": 1}}));
    assert_eq!(out.len(), 1);
    assert!(matches!(&out[0], (1, ServerMessage::TrackPublished { participant, track }) if participant == "bob" && track.track_id == "mic"));
    // Bob subscribes to Alice's camera at its top layer, then caps it at layer 0.
    let out = send(&mut hub, 2, json!({"type": "subscribe", "participant": "alice", "track_ids": ["cam"]}));
    assert_eq!(to(&out, 2), vec![&ServerMessage::Subscriptions { tracks: vec![("alice".into(), "cam".into(), 2)] }]);
    send(&mut hub, 2, json!({"type": "set_layer", "participant": "alice", "track_id": "cam", "max_layer": 0}));
    assert_eq!(hub.subscriptions("class", "bob"), vec![("alice".into(), "cam".into(), 0)]);
    // Chat to the room reaches the others; private chat only its recipient.
    join(&mut hub, 3, "carol");
    let out = send(&mut hub, 1, json!({"type": "chat", "text": "hello"}));
    assert_eq!(out.len(), 2);
    assert!(out.iter().all(|(c, m)| *c != 1 && matches!(m, ServerMessage::Chat { private: false, .. })));
    let out = send(&mut hub, 1, json!({"type": "chat", "text": "psst", "to": "carol"}));
    assert_eq!(out, vec![(3, ServerMessage::Chat { from: "alice".into(), text: "psst".into(), private: true })]);
    // A P2P offer is relayed untouched to one peer.
    let offer = json!({"sdp": "v=0...", "type": "offer"});
    let out = send(&mut hub, 2, json!({"type": "signal", "to": "carol", "payload": offer}));
    assert_eq!(out, vec![(3, ServerMessage::Signal { from: "bob".into(), payload: offer })]);
    // Alice's connection vanishes: the others are told, Bob's subscription to her ends.
    let out = hub.disconnect(1);
    assert_eq!(out.len(), 2);
    assert!(out.iter().all(|(_, m)| *m == ServerMessage::ParticipantLeft { id: "alice".into() }));
    assert!(hub.subscriptions("class", "bob").is_empty());
    // The MCU mix appears: everyone left is told, once.
    assert_eq!(hub.set_mix_available("class", true).len(), 2);
    assert!(hub.set_mix_available("class", true).is_empty());
}

#[test]
fn refusals_carry_codes_and_change_nothing() {
    let mut hub = Hub::new(Keys::new(), true, Limits { max_participants: 2, max_tracks: 1, max_message_bytes: 300, max_chat_chars: 5, ..Limits::default() });
    assert_eq!(error_code(&hub.handle(1, "{not json", NOW), 1), Some(400));
    assert_eq!(error_code(&send(&mut hub, 1, json!({"type": "dance"})), 1), Some(400));
    assert_eq!(error_code(&send(&mut hub, 1, json!({"type": "chat", "text": "hi"})), 1), Some(400), "not joined");
    assert_eq!(error_code(&hub.handle(1, &"x".repeat(400), NOW), 1), Some(413));
    join(&mut hub, 1, "a");
    assert_eq!(error_code(&join(&mut hub, 2, "a"), 2), Some(409), "identity taken");
    join(&mut hub, 2, "b");
    assert_eq!(error_code(&join(&mut hub, 3, "c"), 3), Some(429), "room full");
    send(&mut hub, 1, json!({"type": "publish", "track": {"track_id": "t1", "kind": "video", "layers": 1}}));
    assert_eq!(error_code(&send(&mut hub, 1, json!({"type": "publish", "track": {"track_id": "t1", "kind": "video", "layers": 1}})), 1), Some(409));
    assert_eq!(error_code(&send(&mut hub, 1, json!({"type": "publish", "track": {"track_id": "t2", "kind": "audio", "layers": 1}})), 1), Some(429));
    assert_eq!(error_code(&send(&mut hub, 2, json!({"type": "subscribe", "participant": "a", "track_ids": ["nope"]})), 2), Some(404));
    assert_eq!(error_code(&send(&mut hub, 2, json!({"type": "subscribe", "participant": "zed", "track_ids": []})), 2), Some(404));
    assert_eq!(error_code(&send(&mut hub, 2, json!({"type": "chat", "text": "too long"})), 2), Some(413));
    assert_eq!(error_code(&send(&mut hub, 2, json!({"type": "signal", "to": "zed", "payload": {}})), 2), Some(404));
    assert_eq!(error_code(&send(&mut hub, 2, json!({"type": "unpublish", "track_id": "x"})), 2), Some(404));
    // Nothing of that changed the room.
    let p = hub.participants("class");
    assert_eq!(p.len(), 2);
    assert_eq!(p[0].tracks.len(), 1);
    assert!(hub.subscriptions("class", "b").is_empty());
}

#[test]
fn tokens_decide_identity_and_room_when_auth_is_on() {
    let secret = b"0123456789abcdef0123456789abcdef";
    let keys = Keys::new().with_hs256(secret).unwrap();
    let token = |room: &str| {
        keys.mint(&Claims {
            sub: "teacher".into(),
            room: room.into(),
            name: Some("Ms T".into()),
            grants: Grants { subscribe: true, publish: true, admin: false },
            iat: NOW,
            nbf: None,
            exp: NOW + 60,
        })
        .unwrap()
    };
    let mut hub = Hub::new(keys.clone(), false, Limits::default());
    assert_eq!(error_code(&send(&mut hub, 1, json!({"type": "join", "room": "class", "identity": "x"})), 1), Some(401), "no token");
    assert_eq!(error_code(&send(&mut hub, 1, json!({"type": "join", "room": "class", "token": "garbage"})), 1), Some(401));
    assert_eq!(error_code(&send(&mut hub, 1, json!({"type": "join", "room": "class", "token": token("other")})), 1), Some(403));
    let out = send(&mut hub, 1, json!({"type": "join", "room": "class", "token": token("class"), "identity": "ignored"}));
    assert!(matches!(to(&out, 1)[0], ServerMessage::Joined { you, .. } if you == "teacher"));
    assert_eq!(hub.participants("class")[0].name, "Ms T");
}

#[test]
fn mutated_messages_never_panic() {
    let mut hub = dev_hub();
    join(&mut hub, 1, "a");
    join(&mut hub, 2, "b");
    let samples = [
        json!({"type": "publish", "track": {"track_id": "t", "kind": "video", "layers": 2}}).to_string(),
        json!({"type": "subscribe", "participant": "a", "track_ids": ["t"]}).to_string(),
        json!({"type": "set_layer", "participant": "a", "track_id": "t", "max_layer": 9}).to_string(),
        json!({"type": "chat", "text": "hé", "to": "a"}).to_string(),
        json!({"type": "signal", "to": "a", "payload": {"x": [1, 2, {"y": null}]}}).to_string(),
        json!({"type": "join", "room": "r2"}).to_string(),
    ];
    let mut s = 99u64;
    let mut rnd = || {
        s = s.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        (s >> 33) as usize
    };
    let mut errors = 0;
    for k in 0..5000 {
        let mut bytes = samples[k % samples.len()].clone().into_bytes();
        for _ in 0..1 + rnd() % 3 {
            let i = rnd() % bytes.len();
            bytes[i] = (rnd() % 128) as u8;
        }
        let text = String::from_utf8_lossy(&bytes).into_owned();
        let conn = 1 + (k % 2) as u64;
        errors += hub.handle(conn, &text, NOW).iter().filter(|(c, m)| *c == conn && matches!(m, ServerMessage::Error { .. })).count();
    }
    assert!(errors > 2000, "{errors}");
    assert!(hub.participants("class").len() <= 2);
}

#[test]
fn media_sessions_are_participants_and_choices_reach_the_server() {
    use mcu_signaling::room::{Kind, MediaChange, TrackInfo};
    let mut hub = dev_hub();
    // A WHIP publisher with no socket: the server tells the hub about it and its tracks.
    assert!(hub.media_track("class", "cam", TrackInfo { track_id: "video-0".into(), kind: Kind::Video, layers: 3 }).is_empty());
    hub.media_track("class", "cam", TrackInfo { track_id: "audio-1".into(), kind: Kind::Audio, layers: 1 });
    let out = join(&mut hub, 1, "viewer");
    match to(&out, 1)[0] {
        ServerMessage::Joined { participants, .. } => {
            assert_eq!(participants.len(), 1);
            assert_eq!(participants[0].id, "cam");
            assert_eq!(participants[0].tracks.iter().map(|t| (t.track_id.as_str(), t.layers)).collect::<Vec<_>>(), vec![("video-0", 3), ("audio-1", 1)]);
        }
        m => panic!("{m:?}"),
    }
    // A socket-less participant cannot be messaged.
    assert_eq!(error_code(&send(&mut hub, 1, json!({"type": "chat", "text": "hi", "to": "cam"})), 1), Some(409));
    // Subscribing to both, then to audio only (the list replaces), then capping the video.
    send(&mut hub, 1, json!({"type": "subscribe", "participant": "cam", "track_ids": ["video-0", "audio-1"]}));
    let change = |track: &str, max_layer: Option<u8>| MediaChange::Track {
        room: "class".into(),
        viewer: "viewer".into(),
        publisher: "cam".into(),
        track: track.into(),
        max_layer,
    };
    assert_eq!(hub.take_media_changes(), vec![change("video-0", Some(2)), change("audio-1", Some(0))]);
    send(&mut hub, 1, json!({"type": "subscribe", "participant": "cam", "track_ids": ["audio-1"]}));
    assert_eq!(hub.take_media_changes(), vec![change("video-0", None), change("audio-1", Some(0))]);
    send(&mut hub, 1, json!({"type": "subscribe", "participant": "cam", "track_ids": ["video-0", "audio-1"]}));
    hub.take_media_changes();
    send(&mut hub, 1, json!({"type": "set_layer", "participant": "cam", "track_id": "video-0", "max_layer": 0}));
    send(&mut hub, 1, json!({"type": "unsubscribe", "participant": "cam", "track_id": "audio-1"}));
    assert_eq!(hub.take_media_changes(), vec![change("video-0", Some(0)), change("audio-1", None)]);
    assert!(hub.take_media_changes().is_empty());
    // The viewer's socket joins its own media participant: one participant, not two.
    let out = hub.media_track("class", "viewer", TrackInfo { track_id: "video-0".into(), kind: Kind::Video, layers: 1 });
    assert!(out.is_empty(), "nobody else has a socket: {out:?}");
    assert_eq!(hub.participants("class").len(), 2);
    // A media track cannot be withdrawn over the socket.
    assert_eq!(error_code(&send(&mut hub, 1, json!({"type": "unpublish", "track_id": "video-0"})), 1), Some(409));
    // The socket goes: its choices lapse, but its media track keeps it in the room.
    hub.disconnect(1);
    assert_eq!(hub.take_media_changes(), vec![MediaChange::Forget { room: "class".into(), viewer: "viewer".into() }]);
    assert_eq!(hub.participants("class").len(), 2);
    // A new socket sees both; when the publisher's session ends it is told it left.
    let out = join(&mut hub, 2, "other");
    assert!(matches!(to(&out, 2)[0], ServerMessage::Joined { participants, .. } if participants.len() == 2));
    let out = hub.media_left("class", "cam");
    assert_eq!(to(&out, 2), vec![&ServerMessage::ParticipantLeft { id: "cam".into() }]);
    assert_eq!(hub.participants("class").len(), 2);
    let out = hub.media_left("class", "viewer");
    assert_eq!(to(&out, 2), vec![&ServerMessage::ParticipantLeft { id: "viewer".into() }]);
    assert_eq!(hub.participants("class").len(), 1);
}
