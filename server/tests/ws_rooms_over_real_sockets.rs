//! `mcu serve --dev` on 127.0.0.1: two real WebSocket clients join a room at /ws, see each
//! other's presence and chat; malformed JSON gets a 400 error; a client whose socket drops
//! without a goodbye is announced as gone. Without --dev and without a key the server refuses
//! to start.

use std::{process::Stdio, time::Duration};

use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio_tungstenite::{connect_async, tungstenite::Message};

type Ws = tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

async fn next_json(ws: &mut Ws) -> Value {
    loop {
        let msg = tokio::time::timeout(Duration::from_secs(5), ws.next()).await.expect("a message within 5 s").expect("open").expect("ok");
        if let Message::Text(t) = msg {
            return serde_json::from_str(t.as_str()).expect("server sends JSON");
        }
    }
}

async fn send(ws: &mut Ws, v: Value) {
    ws.send(Message::Text(v.to_string().into())).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_clients_meet_chat_and_part() {
    let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_mcu"))
        .args(["serve", "--dev", "--http-listen", "127.0.0.1:0", "--grpc-listen", "127.0.0.1:0", "--log", "warn"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let line = tokio::time::timeout(Duration::from_secs(20), lines.next_line()).await.unwrap().unwrap().unwrap();
    let base = line.strip_prefix("listening on http://").expect("address line").to_string();
    let health = tokio::net::TcpStream::connect(&base).await;
    assert!(health.is_ok());
    let url = format!("ws://{base}/ws");

    let (mut alice, _) = connect_async(&url).await.unwrap();
    send(&mut alice, json!({"type": "join", "room": "class", "identity": "alice"})).await;
    let joined = next_json(&mut alice).await;
    assert_eq!((joined["type"].as_str(), joined["you"].as_str()), (Some("joined"), Some("alice")));

    let (mut bob, _) = connect_async(&url).await.unwrap();
    send(&mut bob, json!({"type": "join", "room": "class", "identity": "bob"})).await;
    let joined = next_json(&mut bob).await;
    assert_eq!(joined["participants"][0]["id"], "alice");
    let seen = next_json(&mut alice).await;
    assert_eq!((seen["type"].as_str(), seen["participant"]["id"].as_str()), (Some("participant_joined"), Some("bob")));

    send(&mut bob, json!({"type": "chat", "text": "hi alice"})).await;
    let chat = next_json(&mut alice).await;
    assert_eq!((chat["from"].as_str(), chat["text"].as_str()), (Some("bob"), Some("hi alice")));

    bob.send(Message::Text("{oops".into())).await.unwrap();
    let err = next_json(&mut bob).await;
    assert_eq!((err["type"].as_str(), err["code"].as_u64()), (Some("error"), Some(400)));

    // Bob vanishes: the TCP connection drops without a close frame.
    drop(bob);
    let left = next_json(&mut alice).await;
    assert_eq!((left["type"].as_str(), left["id"].as_str()), (Some("participant_left"), Some("bob")));
    child.kill().await.unwrap();
}

#[test]
fn without_dev_mode_or_a_key_the_server_refuses_to_start() {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_mcu"))
        .args(["serve", "--http-listen", "127.0.0.1:0", "--grpc-listen", "127.0.0.1:0", "--log", "warn"])
        .env_remove("MCU_JWT_SECRET")
        .env_remove("MCU_DEV")
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("no token key configured"));
}
