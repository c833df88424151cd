//! What the server's integration tests share: a server process on loopback, plain HTTP
//! requests, and offers from a real WebRTC stack.
#![allow(clippy::disallowed_methods, dead_code)]

use std::{process::Stdio, sync::Arc, time::Duration};

use rtc::{
    media_stream::MediaStreamTrack,
    peer_connection::configuration::{RTCConfigurationBuilder, interceptor_registry::register_default_interceptors, media_engine::MediaEngine},
    rtp_transceiver::{
        RTCRtpTransceiverDirection, RTCRtpTransceiverInit,
        rtp_sender::{RTCRtpCodec, RTCRtpCodingParameters, RTCRtpEncodingParameters, RtpCodecKind},
    },
};
use tokio::{
    io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader},
    sync::watch,
};
use webrtc::{
    media_stream::track_local::{TrackLocal, static_rtp::TrackLocalStaticRTP},
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
pub async fn offer(send: bool) -> (Arc<dyn PeerConnection>, String) {
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
            pc.add_transceiver_from_kind(kind, Some(RTCRtpTransceiverInit { direction: RTCRtpTransceiverDirection::Recvonly, ..Default::default() }))
                .await
                .unwrap();
        }
    }
    let offer = pc.create_offer(None).await.unwrap();
    pc.set_local_description(offer).await.unwrap();
    let _ = tokio::time::timeout(Duration::from_secs(5), rx.wait_for(|g| *g)).await;
    let sdp = pc.local_description().await.unwrap().sdp;
    (pc, sdp)
}

pub async fn http(base: &str, method: &str, path: &str, body: &str) -> (u16, String) {
    let mut s = tokio::net::TcpStream::connect(base).await.unwrap();
    let req = format!(
        "{method} {path} HTTP/1.1\r\nHost: {base}\r\nContent-Type: application/sdp\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    s.write_all(req.as_bytes()).await.unwrap();
    let mut buf = Vec::new();
    s.read_to_end(&mut buf).await.unwrap();
    let text = String::from_utf8_lossy(&buf).to_string();
    let status = text.split_whitespace().nth(1).and_then(|s| s.parse().ok()).unwrap();
    (status, text)
}

/// `mcu serve` on loopback (`--dev` unless `extra` has `--no-dev`) with `extra` flags: the
/// process, its HTTP address (host:port) and its gRPC URL.
pub async fn server(extra: &[&str]) -> (tokio::process::Child, String, String) {
    let (child, http, grpc, _) = server_lines(extra, 0).await;
    (child, http, grpc)
}

/// Like [`server`], also returning the `more` listen lines printed after the first two (e.g.
/// `sip listening on udp+tcp ADDR`).
#[allow(dead_code)]
pub async fn server_lines(extra: &[&str], more: usize) -> (tokio::process::Child, String, String, Vec<String>) {
    let dev = !extra.contains(&"--no-dev");
    let extra: Vec<&str> = extra.iter().copied().filter(|a| *a != "--no-dev").collect();
    let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_mcu"))
        .args(["serve", "--http-listen", "127.0.0.1:0", "--grpc-listen", "127.0.0.1:0", "--rtc-udp", "127.0.0.1:0"])
        .args(["--log", &std::env::var("MCU_TEST_SERVER_LOG").ok().filter(|v| v != "1").unwrap_or_else(|| "warn".into())])
        .args(if dev { &["--dev"][..] } else { &[][..] })
        // No SIP gateway on the default 5060 unless a test asks for one (tests run side by side).
        .args(if extra.contains(&"--sip-listen") { &[][..] } else { &["--sip-listen", "off"][..] })
        .args(&extra)
        .stdout(Stdio::piped())
        // MCU_TEST_SERVER_LOG=1 shows the servers' logs (debugging a test).
        .stderr(if std::env::var_os("MCU_TEST_SERVER_LOG").is_some() { Stdio::inherit() } else { Stdio::null() })
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let mut next = async || tokio::time::timeout(Duration::from_secs(20), lines.next_line()).await.unwrap().unwrap().unwrap();
    let http = next().await.strip_prefix("listening on http://").unwrap().to_string();
    let grpc = next().await.strip_prefix("grpc listening on ").unwrap().to_string();
    let mut rest = Vec::new();
    for _ in 0..more {
        rest.push(next().await);
    }
    (child, http, grpc, rest)
}

/// A self-signed EC certificate and key (PEM files in a fresh temp directory) made with the
/// openssl CLI, for `name` (also its subjectAltName, DNS or IP).
#[allow(dead_code)]
pub fn self_signed(tag: &str, name: &str) -> (std::path::PathBuf, std::path::PathBuf, std::path::PathBuf) {
    let dir = std::env::temp_dir().join(format!("mcu-{tag}-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let (cert, key) = (dir.join("cert.pem"), dir.join("key.pem"));
    let san = if name.parse::<std::net::IpAddr>().is_ok() { format!("subjectAltName=IP:{name}") } else { format!("subjectAltName=DNS:{name},IP:127.0.0.1") };
    let made = std::process::Command::new("openssl")
        .args(["req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes", "-days", "1", "-subj", &format!("/CN={name}")])
        .args(["-addext", &san, "-addext", "basicConstraints=critical,CA:FALSE", "-keyout"])
        .arg(&key)
        .arg("-out")
        .arg(&cert)
        .output()
        .unwrap();
    assert!(made.status.success(), "{}", String::from_utf8_lossy(&made.stderr));
    (dir, cert, key)
}
