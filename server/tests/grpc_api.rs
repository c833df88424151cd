//! The gRPC control API over a real socket with the generated tonic client: every validation
//! path answers its code and names its field, credentials are checked (API key, admin JWTs,
//! forged and expired tokens), and `WatchEvents` delivers a room's events in order.
//! (tests/e2e/test_grpc.py drives the same API from Python's grpcio with live media.)
#![allow(clippy::disallowed_methods)]

mod common;

use std::time::Duration;

use common::{http, offer, server};
use mcu_api::v1::{
    self, audio_service_client::AudioServiceClient, event_service_client::EventServiceClient, layout_service_client::LayoutServiceClient,
    room_service_client::RoomServiceClient,
};
use tonic::{Code, Request, transport::Channel};

async fn channel(url: &str) -> Channel {
    Channel::from_shared(url.to_string()).unwrap().connect().await.unwrap()
}

fn with<T>(msg: T, key: &'static str, value: &str) -> Request<T> {
    let mut r = Request::new(msg);
    r.metadata_mut().insert(key, value.parse().unwrap());
    r
}

fn grid(gap: u32) -> v1::Layout {
    v1::Layout { kind: Some(v1::layout::Kind::Grid(v1::Grid { columns: 0, rows: 0, gap })), ..Default::default() }
}

fn set_layout(room: &str, layout: v1::Layout) -> v1::SetLayoutRequest {
    v1::SetLayoutRequest { room: room.into(), viewer: String::new(), layout: Some(layout) }
}

#[track_caller]
fn refused<T: std::fmt::Debug>(r: Result<tonic::Response<T>, tonic::Status>, code: Code, field: &str) {
    let e = r.expect_err("the call should be refused");
    assert_eq!(e.code(), code, "{e:?}");
    assert!(e.message().starts_with(field), "message {:?} should name {field:?}", e.message());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_bad_request_gets_its_code_and_names_its_field() {
    let (mut child, _, grpc) = server(&[]).await;
    let ch = channel(&grpc).await;
    let (mut rooms, mut layouts, mut audio) = (RoomServiceClient::new(ch.clone()), LayoutServiceClient::new(ch.clone()), AudioServiceClient::new(ch));

    let create = |name: &str| v1::CreateRoomRequest { name: name.into(), options: None, layout: None };
    refused(rooms.create_room(create("")).await, Code::InvalidArgument, "name");
    refused(rooms.create_room(create("a b")).await, Code::InvalidArgument, "name");
    refused(rooms.create_room(create("_mix")).await, Code::InvalidArgument, "name");
    refused(rooms.create_room(create(&"x".repeat(200))).await, Code::InvalidArgument, "name");
    let mut bad_layout = create("r2");
    bad_layout.layout = Some(grid(999));
    refused(rooms.create_room(bad_layout).await, Code::InvalidArgument, "layout.grid.gap");
    let made = rooms.create_room(create("r")).await.unwrap().into_inner();
    assert!(made.persistent);
    assert!(matches!(made.layout.and_then(|l| l.kind), Some(v1::layout::Kind::Grid(_))), "a new room shows the grid");
    refused(rooms.create_room(create("r")).await, Code::AlreadyExists, "room");
    refused(rooms.get_room(v1::GetRoomRequest { room: "nope".into() }).await, Code::NotFound, "no room");
    refused(rooms.get_room(v1::GetRoomRequest { room: String::new() }).await, Code::InvalidArgument, "room");
    refused(rooms.mute_track(v1::MuteTrackRequest { room: "r".into(), track_id: "ghost/video-0".into(), muted: true }).await, Code::NotFound, "no track");
    refused(rooms.mute_track(v1::MuteTrackRequest { room: "r".into(), track_id: String::new(), muted: true }).await, Code::InvalidArgument, "track_id");
    refused(rooms.remove_participant(v1::RemoveParticipantRequest { room: "r".into(), participant: "ghost".into() }).await, Code::NotFound, "no participant");

    // Layouts: each bad field by its path; nothing applies.
    let custom = |w: u32| v1::Layout {
        kind: Some(v1::layout::Kind::Custom(v1::Custom {
            tiles: vec![v1::CustomTile { participant: "a".into(), width: w, height: 10, ..Default::default() }],
        })),
        ..Default::default()
    };
    let mut bad_colour = grid(0);
    bad_colour.background = Some(v1::Color { r: 0, g: 300, b: 0 });
    let mut bad_transition = grid(0);
    bad_transition.transition = Some(v1::Transition { duration_ms: 20_000, easing: 0 });
    let mut bad_tile = grid(0);
    bad_tile.tile = Some(v1::TileOptions { border_width: 100, ..Default::default() });
    let bad_strip = v1::Layout {
        kind: Some(v1::layout::Kind::Presentation(v1::Presentation { presenter: String::new(), strip: Some(v1::Strip { side: 9, size: 0.2, gap: 0 }) })),
        ..Default::default()
    };
    for (layout, field) in [
        (v1::Layout::default(), "layout.kind"),
        (grid(257), "layout.grid.gap"),
        (custom(0), "layout.custom.tiles[0].width"),
        (bad_colour, "layout.background.g"),
        (bad_transition, "layout.transition.duration_ms"),
        (bad_tile, "layout.tile.border_width"),
        (bad_strip, "layout.presentation.strip.side"),
    ] {
        refused(layouts.set_layout(set_layout("r", layout)).await, Code::InvalidArgument, field);
    }
    refused(layouts.set_layout(v1::SetLayoutRequest { room: "r".into(), viewer: String::new(), layout: None }).await, Code::InvalidArgument, "layout");
    refused(layouts.set_layout(set_layout("nope", grid(0))).await, Code::NotFound, "no room");
    let mut personal = set_layout("r", grid(0));
    personal.viewer = "x".repeat(200);
    refused(layouts.set_layout(personal).await, Code::InvalidArgument, "viewer");
    let current = layouts.get_layout(v1::GetLayoutRequest { room: "r".into(), viewer: String::new() }).await.unwrap().into_inner();
    assert_eq!(current.kind, Some(v1::layout::Kind::Grid(v1::Grid { columns: 0, rows: 0, gap: 0 })), "refused layouts left the room as it was");
    let mut speaker = v1::Layout { kind: Some(v1::layout::Kind::ActiveSpeaker(v1::ActiveSpeaker { strip: None })), ..Default::default() };
    speaker.spotlight = "alice".into();
    layouts.set_layout(set_layout("r", speaker)).await.unwrap();
    let current = layouts.get_layout(v1::GetLayoutRequest { room: "r".into(), viewer: String::new() }).await.unwrap().into_inner();
    assert!(matches!(current.kind, Some(v1::layout::Kind::ActiveSpeaker(_))));
    assert_eq!(current.spotlight, "alice");

    // Audio: an update with one bad edit applies none of them.
    use v1::gain_edit::Change;
    let edit = |l: &str, s: &str, c: Change| v1::GainEdit { listener: l.into(), source: s.into(), change: Some(c) };
    let update = |edits| v1::UpdateAudioMatrixRequest { room: "r".into(), edits };
    refused(
        audio.update_audio_matrix(update(vec![edit("", "bob", Change::Mute(true)), edit("a", "b", Change::Gain(9.0))])).await,
        Code::InvalidArgument,
        "edits[1].gain",
    );
    refused(audio.update_audio_matrix(update(vec![edit("a", "a", Change::Gain(0.5))])).await, Code::InvalidArgument, "edits[0].source");
    refused(
        audio.update_audio_matrix(update(vec![v1::GainEdit { listener: "a".into(), source: "b".into(), change: None }])).await,
        Code::InvalidArgument,
        "edits[0].change",
    );
    assert!(audio.get_audio_matrix(v1::GetAudioMatrixRequest { room: "r".into() }).await.unwrap().into_inner().gains.is_empty());
    let m = audio.update_audio_matrix(update(vec![edit("", "bob", Change::Mute(true)), edit("carol", "bob", Change::Gain(2.0))])).await.unwrap().into_inner();
    let gains: Vec<(String, String, f32)> = m.gains.into_iter().map(|g| (g.listener, g.source, g.gain)).collect();
    assert_eq!(gains, [(String::new(), "bob".into(), 0.0), ("carol".into(), "bob".into(), 2.0)]);
    let m = audio.update_audio_matrix(update(vec![edit("", "bob", Change::Reset(true))])).await.unwrap().into_inner();
    assert_eq!(m.gains.len(), 1, "reset removes exactly that edit");
    refused(audio.set_top_k(v1::SetTopKRequest { room: "r".into(), top_k: 65 }).await, Code::InvalidArgument, "top_k");
    assert_eq!(audio.set_top_k(v1::SetTopKRequest { room: "r".into(), top_k: 3 }).await.unwrap().into_inner().top_k, 3);

    // Deleting: gone afterwards.
    rooms.delete_room(v1::DeleteRoomRequest { room: "r".into() }).await.unwrap();
    refused(rooms.get_room(v1::GetRoomRequest { room: "r".into() }).await, Code::NotFound, "no room");
    child.kill().await.unwrap();
}

fn token(secret: &str, room: &str, grants: &[&str], ttl: &str) -> String {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_mcu"))
        .args(["token", "--room", room, "--identity", "op", "--ttl", ttl])
        .args(grants)
        .env("MCU_JWT_SECRET", secret)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).unwrap().trim().to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn credentials_are_checked_on_every_call() {
    let secret = "a-test-secret-that-is-at-least-32-bytes-long";
    let (mut child, _, grpc) = server(&["--no-dev", "--jwt-secret", secret, "--api-key", "k3y"]).await;
    let mut rooms = RoomServiceClient::new(channel(&grpc).await);
    let get = |room: &str| v1::GetRoomRequest { room: room.into() };
    let list = v1::ListRoomsRequest {};

    let e = rooms.list_rooms(list).await.unwrap_err();
    assert_eq!(e.code(), Code::Unauthenticated, "no credential: {e:?}");
    assert_eq!(rooms.list_rooms(with(list, "x-api-key", "wrong")).await.unwrap_err().code(), Code::Unauthenticated);
    rooms.create_room(with(v1::CreateRoomRequest { name: "r".into(), options: None, layout: None }, "x-api-key", "k3y")).await.unwrap();
    rooms.create_room(with(v1::CreateRoomRequest { name: "other".into(), options: None, layout: None }, "x-api-key", "k3y")).await.unwrap();
    assert_eq!(rooms.list_rooms(with(list, "x-api-key", "k3y")).await.unwrap().into_inner().rooms.len(), 2);

    let bearer = |t: &str| format!("Bearer {t}");
    let admin_r = token(secret, "r", &["--admin"], "1h");
    assert_eq!(rooms.get_room(with(get("r"), "authorization", &bearer(&admin_r))).await.unwrap().into_inner().name, "r");
    let e = rooms.get_room(with(get("other"), "authorization", &bearer(&admin_r))).await.unwrap_err();
    assert_eq!(e.code(), Code::PermissionDenied, "another room's admin: {e:?}");
    assert_eq!(rooms.list_rooms(with(list, "authorization", &bearer(&admin_r))).await.unwrap_err().code(), Code::PermissionDenied, "listing needs room *");
    let publisher = token(secret, "r", &["--publish", "--subscribe"], "1h");
    assert_eq!(rooms.get_room(with(get("r"), "authorization", &bearer(&publisher))).await.unwrap_err().code(), Code::PermissionDenied);
    let operator = token(secret, "*", &["--admin"], "1h");
    assert_eq!(rooms.list_rooms(with(list, "authorization", &bearer(&operator))).await.unwrap().into_inner().rooms.len(), 2);
    let forged = token("another-secret-that-is-at-least-32-bytes-long", "*", &["--admin"], "1h");
    assert_eq!(rooms.list_rooms(with(list, "authorization", &bearer(&forged))).await.unwrap_err().code(), Code::Unauthenticated);
    assert_eq!(rooms.list_rooms(with(list, "authorization", "Bearer not.a.jwt")).await.unwrap_err().code(), Code::Unauthenticated);
    let expiring = token(secret, "*", &["--admin"], "1s");
    tokio::time::sleep(Duration::from_millis(2100)).await;
    let e = rooms.list_rooms(with(list, "authorization", &bearer(&expiring))).await.unwrap_err();
    assert_eq!(e.code(), Code::Unauthenticated, "expired: {e:?}");
    // The event stream is guarded too.
    let mut events = EventServiceClient::new(channel(&grpc).await);
    assert_eq!(events.watch_events(v1::WatchEventsRequest { room: "r".into() }).await.unwrap_err().code(), Code::Unauthenticated);
    child.kill().await.unwrap();
}

fn describe(e: &v1::RoomEvent) -> String {
    use v1::room_event::Event;
    match e.event.as_ref().unwrap() {
        Event::ParticipantJoined(j) => format!("joined {}", j.participant),
        Event::ParticipantLeft(l) => format!("left {}", l.participant),
        Event::TrackPublished(t) => format!("track {}", t.participant),
        Event::ActiveSpeakerChanged(s) => format!("speaker {}", s.participant),
        Event::LayoutChanged(_) => "layout".into(),
        Event::CompositeChanged(c) => format!("composite {}", c.running),
        Event::TrackMuted(_) => "muted".into(),
        Event::RoomClosed(_) => "closed".into(),
        Event::RecordingChanged(_) => "recording".into(),
        Event::DtmfReceived(d) => format!("dtmf {} {}", d.participant, d.digit),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watch_events_delivers_a_rooms_events_in_order() {
    let (mut child, base, grpc) = server(&[]).await;
    let ch = channel(&grpc).await;
    let mut rooms = RoomServiceClient::new(ch.clone());
    let mut events = EventServiceClient::new(ch.clone());
    assert_eq!(events.watch_events(v1::WatchEventsRequest { room: "ev".into() }).await.unwrap_err().code(), Code::NotFound);
    rooms.create_room(v1::CreateRoomRequest { name: "ev".into(), options: None, layout: None }).await.unwrap();
    rooms.create_room(v1::CreateRoomRequest { name: "elsewhere".into(), options: None, layout: None }).await.unwrap();
    let mut stream = events.watch_events(v1::WatchEventsRequest { room: "ev".into() }).await.unwrap().into_inner();

    // Two publishers come and go; another room's layout changes (not this stream's business);
    // this room's layout changes; the room is deleted.
    let (pa, sdp) = offer(true).await;
    let (status, answer) = http(&base, "POST", "/whip/ev?name=ann", &sdp).await;
    assert_eq!(status, 201, "{answer}");
    let location = answer.lines().find_map(|l| l.strip_prefix("location: ").or_else(|| l.strip_prefix("Location: "))).unwrap().trim().to_string();
    assert_eq!(http(&base, "DELETE", &location, "").await.0, 200);
    let _ = pa.close().await;
    let (pb, sdp) = offer(true).await;
    assert_eq!(http(&base, "POST", "/whip/ev?name=ben", &sdp).await.0, 201);
    let mut layouts = LayoutServiceClient::new(ch);
    layouts.set_layout(set_layout("elsewhere", grid(2))).await.unwrap();
    layouts.set_layout(set_layout("ev", grid(4))).await.unwrap();
    rooms.delete_room(v1::DeleteRoomRequest { room: "ev".into() }).await.unwrap();
    let _ = pb.close().await;

    let mut seen = Vec::new();
    let mut last_seq = 0;
    while let Ok(Some(e)) = tokio::time::timeout(Duration::from_secs(10), stream.message()).await.map(|r| r.unwrap()) {
        assert_eq!(e.room, "ev");
        assert!(e.sequence > last_seq, "sequence numbers increase");
        last_seq = e.sequence;
        seen.push(describe(&e));
    }
    // Media never flowed (the offers carry no samples), so no track or speaker events.
    assert_eq!(seen, ["joined ann", "left ann", "joined ben", "layout", "left ben", "closed"], "the stream ends after the room closes");
    child.kill().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_a_certificate_the_api_is_served_over_tls_only() {
    let (dir, cert, key) = common::self_signed("grpc-tls", "localhost");
    let (mut child, _, grpc) = server(&["--grpc-tls-cert", cert.to_str().unwrap(), "--grpc-tls-key", key.to_str().unwrap()]).await;
    let url = grpc.strip_prefix("https://").map(|a| format!("https://{a}")).expect("the listen line says https");
    let tls = tonic::transport::ClientTlsConfig::new()
        .ca_certificate(tonic::transport::Certificate::from_pem(std::fs::read(&cert).unwrap()))
        .domain_name("localhost");
    let ch = Channel::from_shared(url.clone()).unwrap().tls_config(tls).unwrap().connect().await.unwrap();
    let made = RoomServiceClient::new(ch).create_room(v1::CreateRoomRequest { name: "secure".into(), options: None, layout: None }).await.unwrap();
    assert_eq!(made.into_inner().name, "secure");
    // Plaintext HTTP/2 to the TLS port gets no answer.
    let plain = Channel::from_shared(url.replace("https://", "http://")).unwrap().connect_timeout(Duration::from_secs(3)).timeout(Duration::from_secs(3));
    let refused = match plain.connect().await {
        Err(_) => true,
        Ok(ch) => RoomServiceClient::new(ch).list_rooms(v1::ListRoomsRequest {}).await.is_err(),
    };
    assert!(refused, "plaintext calls must fail on a TLS port");
    child.kill().await.unwrap();
    let _ = std::fs::remove_dir_all(&dir);
}

fn cli(grpc: &str, args: &[&str]) -> (bool, String) {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_mcu"))
        .args(args)
        .args(["--grpc", grpc])
        .env_remove("RUST_BACKTRACE")
        .env_remove("RUST_LIB_BACKTRACE")
        .output()
        .unwrap();
    (out.status.success(), format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr)))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_operator_commands_mirror_the_api() {
    let (mut child, _, grpc) = server(&[]).await;
    assert!(cli(&grpc, &["room", "create", "ops", "--max-participants", "3"]).0);
    let (ok, listed) = cli(&grpc, &["room", "list"]);
    assert!(ok && listed.starts_with("ops\tparticipants=0\tsubscribers=0\tcomposite=false\tpersistent=true"), "{listed}");
    assert!(cli(&grpc, &["layout", "set", "ops", "custom", "--tile", "alice:0,0,1280x720", "--tile", "bob:960,540,320x180,1", "--background", "#102030"]).0);
    let mut layouts = LayoutServiceClient::new(channel(&grpc).await);
    let got = layouts.get_layout(v1::GetLayoutRequest { room: "ops".into(), viewer: String::new() }).await.unwrap().into_inner();
    let Some(v1::layout::Kind::Custom(c)) = got.kind else { panic!("custom layout expected: {got:?}") };
    assert_eq!(c.tiles.iter().map(|t| (t.participant.as_str(), t.x, t.width, t.z)).collect::<Vec<_>>(), [("alice", 0, 1280, 0), ("bob", 960, 320, 1)]);
    assert_eq!(got.background, Some(v1::Color { r: 0x10, g: 0x20, b: 0x30 }));
    assert!(cli(&grpc, &["layout", "set", "ops", "grid", "--viewer", "alice", "--hide-self"]).0);
    let mine = layouts.get_layout(v1::GetLayoutRequest { room: "ops".into(), viewer: "alice".into() }).await.unwrap().into_inner();
    assert!(mine.hide_self && matches!(mine.kind, Some(v1::layout::Kind::Grid(_))), "{mine:?}");
    assert!(cli(&grpc, &["layout", "clear", "ops", "alice"]).0);
    let mine = layouts.get_layout(v1::GetLayoutRequest { room: "ops".into(), viewer: "alice".into() }).await.unwrap().into_inner();
    assert!(matches!(mine.kind, Some(v1::layout::Kind::Custom(_))), "alice sees the room's layout again");
    assert!(cli(&grpc, &["audio", "mute", "ops", "bob", "--listener", "alice"]).0);
    let (ok, matrix) = cli(&grpc, &["audio", "matrix", "ops"]);
    assert!(ok && matrix.trim() == "alice\tbob\t0", "{matrix}");
    let (ok, err) = cli(&grpc, &["layout", "set", "ops", "grid", "--gap", "999"]);
    assert!(!ok && err.contains("InvalidArgument") && err.contains("layout.grid.gap"), "{err}");
    let (ok, err) = cli(&grpc, &["room", "get", "nope"]);
    assert!(!ok && err.contains("NotFound"), "{err}");
    assert!(cli(&grpc, &["room", "delete", "ops"]).0);
    child.kill().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn recordings_start_stop_and_refuse_what_they_cannot_do() {
    use v1::recording_service_client::RecordingServiceClient;
    let dir = std::env::temp_dir().join(format!("mcu-grpc-rec-{}", std::process::id()));
    let (mut child, _, grpc) = server(&["--recording-dir", dir.to_str().unwrap(), "--mix-width", "320", "--mix-height", "180"]).await;
    let ch = channel(&grpc).await;
    let (mut rooms, mut rec, mut events) = (RoomServiceClient::new(ch.clone()), RecordingServiceClient::new(ch.clone()), EventServiceClient::new(ch));
    let start = |room: &str, filename: &str| v1::StartRecordingRequest { room: room.into(), tracks: false, filename: filename.into(), video: None };
    refused(rec.start_recording(start("nope", "")).await, Code::NotFound, "no room");
    rooms.create_room(v1::CreateRoomRequest { name: "rec".into(), options: None, layout: None }).await.unwrap();
    refused(rec.start_recording(start("rec", "../escape")).await, Code::InvalidArgument, "filename");
    refused(rec.start_recording(start("rec", ".hidden")).await, Code::InvalidArgument, "filename");
    refused(rec.stop_recording(v1::StopRecordingRequest { recording_id: "feedface".into() }).await, Code::NotFound, "no recording");
    refused(rec.stop_recording(v1::StopRecordingRequest { recording_id: String::new() }).await, Code::InvalidArgument, "recording_id");
    // A recording's own encode: sizes even and within 64x64..3840x2160, bitrates 100k..50M, known codecs.
    let with = |video: v1::RecordingVideo| v1::StartRecordingRequest { video: Some(video), ..start("rec", "") };
    let video = |codec: v1::RecordingCodec, width: u32, height: u32, bitrate_bps: u32| v1::RecordingVideo { codec: codec as i32, width, height, bitrate_bps };
    refused(rec.start_recording(with(video(v1::RecordingCodec::H264, 641, 360, 0))).await, Code::InvalidArgument, "video.width");
    refused(rec.start_recording(with(video(v1::RecordingCodec::H264, 32, 360, 0))).await, Code::InvalidArgument, "video.width");
    refused(rec.start_recording(with(video(v1::RecordingCodec::Vp8, 1280, 4320, 0))).await, Code::InvalidArgument, "video.height");
    refused(rec.start_recording(with(video(v1::RecordingCodec::Av1, 640, 360, 99_999))).await, Code::InvalidArgument, "video.bitrate_bps");
    refused(
        rec.start_recording(with(v1::RecordingVideo { codec: 9, ..video(v1::RecordingCodec::Vp8, 640, 360, 0) })).await,
        Code::InvalidArgument,
        "video.codec",
    );

    // An empty room records its (empty) canvas and room mix; stopping finishes the file.
    let mut stream = events.watch_events(v1::WatchEventsRequest { room: "rec".into() }).await.unwrap().into_inner();
    let started = rec.start_recording(start("rec", "empty-room")).await.unwrap().into_inner();
    assert_eq!(started.state, v1::RecordingState::Active as i32);
    assert_eq!(started.files.len(), 1);
    assert!(started.files[0].path.ends_with("empty-room.webm"), "{:?}", started.files[0].path);
    tokio::time::sleep(Duration::from_secs(2)).await;
    let listed = rec.list_recordings(v1::ListRecordingsRequest { room: "rec".into() }).await.unwrap().into_inner().recordings;
    assert_eq!(listed.iter().map(|r| r.id.as_str()).collect::<Vec<_>>(), [started.id.as_str()]);
    let stopped = rec.stop_recording(v1::StopRecordingRequest { recording_id: started.id.clone() }).await.unwrap().into_inner();
    assert_eq!(stopped.state, v1::RecordingState::Stopped as i32);
    let file = &stopped.files[0];
    assert_eq!(file.state, v1::RecordingState::Stopped as i32, "{file:?}");
    assert!(file.duration_ms >= 1000 && file.bytes > 1000, "{file:?}");
    assert_eq!(std::fs::metadata(&file.path).unwrap().len(), file.bytes);
    let mut states = Vec::new();
    while states.len() < 2 {
        let e = tokio::time::timeout(Duration::from_secs(10), stream.message()).await.unwrap().unwrap().unwrap();
        if let Some(v1::room_event::Event::RecordingChanged(c)) = e.event {
            states.push(c.recording.unwrap().state);
        }
    }
    assert_eq!(states, [v1::RecordingState::Active as i32, v1::RecordingState::Stopped as i32]);
    child.kill().await.unwrap();
    let _ = std::fs::remove_dir_all(&dir);

    // A directory that cannot be written: refused up front, and the server goes on.
    let (mut child, _, grpc) = server(&["--recording-dir", "/proc/mcu-no-such-dir/rec"]).await;
    let ch = channel(&grpc).await;
    let (mut rooms, mut rec) = (RoomServiceClient::new(ch.clone()), RecordingServiceClient::new(ch));
    rooms.create_room(v1::CreateRoomRequest { name: "rec".into(), options: None, layout: None }).await.unwrap();
    refused(rec.start_recording(start("rec", "")).await, Code::FailedPrecondition, "the recording directory /proc/mcu-no-such-dir/rec");
    assert_eq!(rooms.get_room(v1::GetRoomRequest { room: "rec".into() }).await.unwrap().into_inner().name, "rec");
    child.kill().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_sip_dial_plan_is_edited_over_the_api() {
    use mcu_api::v1::sip_service_client::SipServiceClient;
    let (mut child, _base, grpc) = server(&["--sip-listen", "127.0.0.1:0", "--sip-route", "1000=class-a"]).await;
    let mut sip = SipServiceClient::new(channel(&grpc).await);
    let routes = |r: v1::ListSipRoutesResponse| r.routes.into_iter().map(|r| format!("{}={}", r.number, r.room)).collect::<Vec<_>>();
    assert_eq!(routes(sip.list_sip_routes(v1::ListSipRoutesRequest {}).await.unwrap().into_inner()), ["1000=class-a"]);
    sip.set_sip_route(v1::SipRoute { number: "2000".into(), room: "class-b".into() }).await.unwrap();
    assert_eq!(routes(sip.list_sip_routes(v1::ListSipRoutesRequest {}).await.unwrap().into_inner()), ["1000=class-a", "2000=class-b"]);
    let e = sip.set_sip_route(v1::SipRoute { number: "20 00".into(), room: "x".into() }).await.unwrap_err();
    assert_eq!(e.code(), Code::InvalidArgument, "{e:?}");
    sip.delete_sip_route(v1::DeleteSipRouteRequest { number: "2000".into() }).await.unwrap();
    assert_eq!(sip.delete_sip_route(v1::DeleteSipRouteRequest { number: "2000".into() }).await.unwrap_err().code(), Code::NotFound);
    assert!(sip.list_sip_calls(v1::ListSipCallsRequest { room: String::new() }).await.unwrap().into_inner().calls.is_empty());
    let e = sip.dial_sip(v1::DialSipRequest { room: "class-a".into(), uri: "not a uri".into(), name: String::new() }).await.unwrap_err();
    assert_eq!(e.code(), Code::InvalidArgument, "{e:?}");
    let e = sip.dial_sip(v1::DialSipRequest { room: "bad room!".into(), uri: "sip:a@127.0.0.1".into(), name: String::new() }).await.unwrap_err();
    assert_eq!(e.code(), Code::InvalidArgument, "{e:?}");
    child.kill().await.unwrap();

    // Without the gateway the service says so.
    let (mut child, _base, grpc) = server(&[]).await;
    let mut sip = SipServiceClient::new(channel(&grpc).await);
    assert_eq!(sip.list_sip_routes(v1::ListSipRoutesRequest {}).await.unwrap_err().code(), Code::FailedPrecondition);
    child.kill().await.unwrap();
}
