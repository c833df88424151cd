//! WebRTC sessions against `mcu serve` with offers from a real WebRTC stack:
//! - hybrid rooms: a WebSocket (SFU) participant is told when the room's composite appears (a
//!   viewer plays `POST /whep/{room}`) and when it goes away (the last viewer leaves and the
//!   idle composite stops);
//! - `--public-ips`: the answer announces the configured public address as a server-reflexive
//!   candidate (1:1 NAT), beside the host candidates.
#![allow(clippy::disallowed_methods)]

mod common;

use std::time::Duration;

use common::{http, offer, server};
use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio_tungstenite::{connect_async, tungstenite::Message};

async fn next_of_type(
    ws: &mut tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>,
    ty: &str,
    within: Duration,
) -> Value {
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn websocket_participants_hear_when_the_composite_comes_and_goes() {
    let (mut child, base, _) = server(&["--mix-width", "320", "--mix-height", "180"]).await;

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
    let (mut child, base, _) = server(&["--public-ips", "203.0.113.7", "--rtc-udp", "0.0.0.0:0"]).await;
    let (pc, sdp) = offer(true).await;
    let (status, response) = http(&base, "POST", "/whip/nat?name=pat", &sdp).await;
    assert_eq!(status, 201, "{response}");
    let candidates: Vec<&str> = response.lines().filter(|l| l.starts_with("a=candidate:")).collect();
    assert!(candidates.iter().any(|c| c.contains(" 203.0.113.7 ") && c.contains("typ srflx")), "{candidates:#?}");
    assert!(candidates.iter().any(|c| c.contains(" 127.0.0.1 ") && c.contains("typ host")), "{candidates:#?}");
    let _ = pc.close().await;
    child.kill().await.unwrap();
}
