//! WebRTC sessions against `mcu serve` with offers from a real WebRTC stack:
//! - hybrid rooms: a WebSocket (SFU) participant is told when the room's composite appears (a
//!   viewer plays `POST /whep/{room}`) and when it goes away (the last viewer leaves and the
//!   idle composite stops);
//! - `--public-ips`: the answer announces the configured public address as a server-reflexive
//!   candidate (1:1 NAT), beside the host candidates.
#![allow(clippy::disallowed_methods)]

use std::{process::Stdio, sync::Arc, time::Duration};

use futures_util::{SinkExt, StreamExt};
use rtc::{
    media_stream::MediaStreamTrack,
    peer_connection::configuration::{interceptor_registry::register_default_interceptors, media_engine::MediaEngine, RTCConfigurationBuilder},
    rtp_transceiver::{
        rtp_sender::{RTCRtpCodec, RTCRtpCodingParameters, RTCRtpEncodingParameters, RtpCodecKind},
        RTCRtpTransceiverDirection, RTCRtpTransceiverInit,
    },
};
use serde_json::{json, Value};
use tokio::{
    io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader},
    sync::watch,
};
use tokio_tungstenite::{connect_async, tungstenite::Message};
use webrtc::{
    media_stream::track_local::{static_rtp::TrackLocalStaticRTP, TrackLocal},
    peer_connection::{PeerConnection, PeerConnectionBuilder, PeerConnectionEventHandler, RTCIceGatheringState, Registry},
};

struct Gathered(watch::Sender<bool>);

#[async_trait::async_trait]
impl PeerConnectionEventHandler for Gathered {
    async fn on_ice_gathering_state_change(&self, state: RTCIceGatheringState) {
        if state == RTCIceGatheringState::Complete {
            self.0.send_replace(true);
        }
    }
}

/// An audio+video offer from a real WebRTC stack, candidates included: sending two tracks
/// (`send`) or receiving (recvonly).
async fn offer(send: bool) -> (Arc<dyn PeerConnection>, String) {
    let mut engine = MediaEngine::default();
    engine.register_default_codecs().unwrap();
    let registry = register_default_interceptors(Registry::new(), &mut engine).unwrap();
    let (tx, mut rx) = watch::channel(false);
    let pc: Arc<dyn PeerConnection> = Arc::new(
        PeerConnectionBuilder::new()
            .with_configuration(RTCConfigurationBuilder::new().build())
            .with_media_engine(engine)
            .with_interceptor_registry(registry)
            .with_handler(Arc::new(Gathered(tx)))
            .with_runtime(webrtc::runtime::default_runtime().unwrap())
            .with_udp_addrs(vec!["127.0.0.1:0".to_string()])
            .build()
            .await
            .unwrap(),
    );
    for (kind, mime, rate, channels) in [(RtpCodecKind::Video, "video/VP8", 90000, 0), (RtpCodecKind::Audio, "audio/opus", 48000, 2)] {
        if send {
            let track = TrackLocalStaticRTP::new(MediaStreamTrack::new(
                "test".into(),
                format!("test-{mime}"),
                format!("test-{mime}"),
                kind,
                vec![RTCRtpEncodingParameters {
                    rtp_coding_parameters: RTCRtpCodingParameters { ssrc: Some(rate), ..Default::default() },
                    codec: RTCRtpCodec { mime_type: mime.into(), clock_rate: rate, channels, ..Default::default() },
                    ..Default::default()
                }],
            ));
            pc.add_track(Arc::new(track) as Arc<dyn TrackLocal>).await.unwrap();
        } else {
            pc.add_transceiver_from_kind(kind, Some(RTCRtpTransceiverInit { direction: RTCRtpTransceiverDirection::Recvonly, ..Default::default() })).await.unwrap();
        }
    }
    let offer = pc.create_offer(None).await.unwrap();
    pc.set_local_description(offer).await.unwrap();
    let _ = tokio::time::timeout(Duration::from_secs(5), rx.wait_for(|g| *g)).await;
    let sdp = pc.local_description().await.unwrap().sdp;
    (pc, sdp)
}

async fn http(base: &str, method: &str, path: &str, body: &str) -> (u16, String) {
    let mut s = tokio::net::TcpStream::connect(base).await.unwrap();
    let req = format!("{method} {path} HTTP/1.1\r\nHost: {base}\r\nContent-Type: application/sdp\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}", body.len());
    s.write_all(req.as_bytes()).await.unwrap();
    let mut buf = Vec::new();
    s.read_to_end(&mut buf).await.unwrap();
    let text = String::from_utf8_lossy(&buf).to_string();
    let status = text.split_whitespace().nth(1).and_then(|s| s.parse().ok()).unwrap();
    (status, text)
}

async fn next_of_type(ws: &mut tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>, ty: &str, within: Duration) -> Value {
    let deadline = tokio::time::Instant::now() + within;
    loop {
        let msg = tokio::time::timeout_at(deadline, ws.next()).await.unwrap_or_else(|_| panic!("no {ty} message within {within:?}")).unwrap().unwrap();
        if let Message::Text(t) = msg {
            let v: Value = serde_json::from_str(t.as_str()).unwrap();
            if v["type"] == ty {
                return v;
            }
        }
    }
}

/// `mcu serve --dev` on loopback with `extra` flags: the process and its HTTP address.
async fn server(extra: &[&str]) -> (tokio::process::Child, String) {
    let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_mcu"))
        .args(["serve", "--dev", "--http-listen", "127.0.0.1:0", "--rtc-udp", "127.0.0.1:0", "--log", "warn"])
        .args(extra)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let line = tokio::time::timeout(Duration::from_secs(20), lines.next_line()).await.unwrap().unwrap().unwrap();
    (child, line.strip_prefix("listening on http://").unwrap().to_string())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn websocket_participants_hear_when_the_composite_comes_and_goes() {
    let (mut child, base) = server(&["--mix-width", "320", "--mix-height", "180"]).await;

    let (mut ws, _) = connect_async(format!("ws://{base}/ws")).await.unwrap();
    ws.send(Message::Text(json!({"type": "join", "room": "hybrid", "identity": "sam"}).to_string().into())).await.unwrap();
    let joined = next_of_type(&mut ws, "joined", Duration::from_secs(5)).await;
    assert_eq!(joined["you"], "sam");

    // A bad offer is refused before any composite starts.
    let (status, _) = http(&base, "POST", "/whep/hybrid", "v=0\r\nnonsense\r\n").await;
    assert_eq!(status, 400);

    let (pc, sdp) = offer(false).await;
    let (status, response) = http(&base, "POST", "/whep/hybrid", &sdp).await;
    assert_eq!(status, 201, "{response}");
    let up = next_of_type(&mut ws, "mix_available", Duration::from_secs(5)).await;
    assert_eq!(up["available"], true);

    let location = response.lines().find_map(|l| l.strip_prefix("location: ").or_else(|| l.strip_prefix("Location: "))).unwrap().trim().to_string();
    let (status, _) = http(&base, "DELETE", &location, "").await;
    assert_eq!(status, 200);
    let _ = pc.close().await;
    // Nobody publishing, nobody watching: the composite stops after 5 s idle.
    let down = next_of_type(&mut ws, "mix_available", Duration::from_secs(15)).await;
    assert_eq!(down["available"], false);
    child.kill().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn answers_announce_the_configured_public_ip() {
    // A wildcard address gathers the machine's non-loopback interfaces: those get the mapping.
    let (mut child, base) = server(&["--public-ips", "203.0.113.7", "--rtc-udp", "0.0.0.0:0"]).await;
    let (pc, sdp) = offer(true).await;
    let (status, response) = http(&base, "POST", "/whip/nat?name=pat", &sdp).await;
    assert_eq!(status, 201, "{response}");
    let candidates: Vec<&str> = response.lines().filter(|l| l.starts_with("a=candidate:")).collect();
    assert!(candidates.iter().any(|c| c.contains(" 203.0.113.7 ") && c.contains("typ srflx")), "{candidates:#?}");
    assert!(candidates.iter().any(|c| c.contains(" 127.0.0.1 ") && c.contains("typ host")), "{candidates:#?}");
    let _ = pc.close().await;
    child.kill().await.unwrap();
}
