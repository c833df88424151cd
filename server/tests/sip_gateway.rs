//! The SIP gateway's transports and refusals, with raw SIP on UDP and TLS (openssl s_client as
//! the TLS client). Calls with media are tested with real phones in tests/e2e/test_sip.py.

mod common;

use std::{net::UdpSocket, process::Stdio, time::Duration};

use common::server_lines;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

fn free_tcp_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// Starts a server with the gateway and returns it with its SIP UDP address.
async fn gateway(extra: &[&str]) -> (tokio::process::Child, String) {
    let mut args = vec!["--sip-listen", "127.0.0.1:0", "--sip-route", "1000=class-a"];
    args.extend_from_slice(extra);
    let (child, _, _, lines) = server_lines(&args, 1).await;
    let sip = lines[0].strip_prefix("sip listening on udp+tcp ").expect("the SIP listen line").to_string();
    (child, sip)
}

fn request(method: &str, uri: &str, transport: &str, extra: &str, body: &str) -> String {
    format!(
        "{method} {uri} SIP/2.0\r\nVia: SIP/2.0/{transport} 127.0.0.1:40000;branch=z9hG4bK-{}\r\nFrom: <sip:t@127.0.0.1>;tag=1\r\nTo: <{uri}>\r\n\
Call-ID: {}@test\r\nCSeq: 1 {method}\r\nMax-Forwards: 70\r\nContact: <sip:t@127.0.0.1:40000>\r\n{extra}Content-Length: {}\r\n\r\n{body}",
        rand_tag(),
        rand_tag(),
        body.len()
    )
}

fn rand_tag() -> String {
    static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);
    format!("{}-{:x}", std::process::id(), NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed))
}

/// Sends `msg` over UDP and returns the first final (non-1xx) response's status line.
fn udp_exchange(to: &str, msg: &str) -> String {
    let sock = UdpSocket::bind("127.0.0.1:0").unwrap();
    sock.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    sock.send_to(msg.as_bytes(), to).unwrap();
    let mut buf = [0u8; 4096];
    loop {
        let n = sock.recv(&mut buf).expect("a response within 5 s");
        let text = String::from_utf8_lossy(&buf[..n]).to_string();
        if !text.starts_with("SIP/2.0 1") {
            return text;
        }
    }
}

const OFFER: &str = "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\nm=audio 40010 RTP/AVP 0\r\na=rtpmap:0 PCMU/8000\r\n";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refusals_name_their_reason() {
    let (mut child, sip) = gateway(&[]).await;
    let uri = |n: &str| format!("sip:{n}@{sip}");
    // Unknown number.
    let r = udp_exchange(&sip, &request("INVITE", &uri("9999"), "UDP", "Content-Type: application/sdp\r\n", OFFER));
    assert!(r.starts_with("SIP/2.0 404"), "{r}");
    // No codec in common (G.729 only).
    let g729 = OFFER.replace("RTP/AVP 0\r\na=rtpmap:0 PCMU/8000", "RTP/AVP 18\r\na=rtpmap:18 G729/8000");
    let r = udp_exchange(&sip, &request("INVITE", &uri("1000"), "UDP", "Content-Type: application/sdp\r\n", &g729));
    assert!(r.starts_with("SIP/2.0 488"), "{r}");
    // A session timer below RFC 4028's minimum.
    let r = udp_exchange(&sip, &request("INVITE", &uri("1000"), "UDP", "Session-Expires: 30\r\nContent-Type: application/sdp\r\n", OFFER));
    assert!(r.starts_with("SIP/2.0 422") && r.contains("Min-SE: 90"), "{r}");
    // A CSeq of another method: 400 before the stack sees it.
    let bad = request("INVITE", &uri("1000"), "UDP", "", OFFER).replace("CSeq: 1 INVITE", "CSeq: 1 BYE");
    let r = udp_exchange(&sip, &bad);
    assert!(r.starts_with("SIP/2.0 400"), "{r}");
    // OPTIONS outside a dialog: 200.
    let r = udp_exchange(&sip, &request("OPTIONS", &uri("1000"), "UDP", "", ""));
    assert!(r.starts_with("SIP/2.0 200"), "{r}");
    child.kill().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn inbound_calls_are_challenged_when_users_are_configured() {
    let (mut child, sip) = gateway(&["--sip-users", "alice:secret"]).await;
    let r = udp_exchange(&sip, &request("INVITE", &format!("sip:1000@{sip}"), "UDP", "Content-Type: application/sdp\r\n", OFFER));
    assert!(r.starts_with("SIP/2.0 401"), "{r}");
    assert!(r.contains("WWW-Authenticate: Digest realm=\"mcu\", nonce=\""), "{r}");
    child.kill().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sip_over_tls_answers() {
    let dir = std::env::temp_dir().join(format!("mcu-sip-tls-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let (cert, key) = (dir.join("cert.pem"), dir.join("key.pem"));
    let made = std::process::Command::new("openssl")
        .args(["req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes", "-days", "1", "-subj", "/CN=127.0.0.1", "-keyout"])
        .arg(&key)
        .arg("-out")
        .arg(&cert)
        .output()
        .unwrap();
    assert!(made.status.success(), "{}", String::from_utf8_lossy(&made.stderr));
    let tls = format!("127.0.0.1:{}", free_tcp_port());
    let (mut child, _) = gateway(&["--sip-tls-listen", &tls, "--sip-tls-cert", cert.to_str().unwrap(), "--sip-tls-key", key.to_str().unwrap()]).await;
    let msg = request("OPTIONS", &format!("sip:1000@{tls}"), "TLS", "", "");
    let mut answer = String::new();
    for _ in 0..20 {
        let mut client = tokio::process::Command::new("openssl")
            .args(["s_client", "-quiet", "-connect", &tls])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .unwrap();
        let mut stdin = client.stdin.take().unwrap();
        stdin.write_all(msg.as_bytes()).await.unwrap();
        let mut out = client.stdout.take().unwrap();
        let mut buf = vec![0u8; 2048];
        if let Ok(Ok(n)) = tokio::time::timeout(Duration::from_secs(3), out.read(&mut buf)).await {
            answer = String::from_utf8_lossy(&buf[..n]).to_string();
        }
        drop(stdin);
        let _ = client.kill().await;
        if !answer.is_empty() {
            break;
        }
        // The TLS listener binds when the stack serves: give it a moment.
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert!(answer.starts_with("SIP/2.0 200 OK") && answer.contains("Via: SIP/2.0/TLS"), "{answer:?}");
    child.kill().await.unwrap();
    let _ = std::fs::remove_dir_all(dir);
}
