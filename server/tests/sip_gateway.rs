//! The SIP gateway's transports and refusals, with raw SIP on UDP and TLS (openssl s_client as
//! the TLS client). Calls with media are tested with real phones in tests/e2e/test_sip.py.
#![allow(clippy::disallowed_methods)] // a test times its own waits against the real clock

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
    let (dir, cert, key) = common::self_signed("sip-tls", "127.0.0.1");
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

/// A SIP phone on raw sockets: its INVITE's SDP offers PCMU and H.264 (mode 1) on `video`
/// (RTCP on the next port).
struct FakePhone {
    sip: UdpSocket,
    video: UdpSocket,
    video_rtcp: UdpSocket,
    server: String,
}

impl FakePhone {
    fn new(server: &str) -> FakePhone {
        // An even RTP port with its RTCP neighbour free.
        loop {
            let video = UdpSocket::bind("127.0.0.1:0").unwrap();
            let port = video.local_addr().unwrap().port();
            if port % 2 == 1 {
                continue;
            }
            let Ok(video_rtcp) = UdpSocket::bind(("127.0.0.1", port + 1)) else { continue };
            for s in [&video, &video_rtcp] {
                s.set_read_timeout(Some(Duration::from_millis(100))).unwrap();
            }
            let sip = UdpSocket::bind("127.0.0.1:0").unwrap();
            sip.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
            return FakePhone { sip, video, video_rtcp, server: server.to_string() };
        }
    }

    /// INVITE, 200, ACK; returns where the server's video RTP and RTCP go.
    fn call(&self, number: &str) -> (std::net::SocketAddr, std::net::SocketAddr) {
        let vport = self.video.local_addr().unwrap().port();
        let sdp = format!(
            "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\nm=audio {} RTP/AVP 0\r\na=rtpmap:0 PCMU/8000\r\n\
m=video {vport} RTP/AVP 96\r\na=rtpmap:96 H264/90000\r\na=fmtp:96 packetization-mode=1;profile-level-id=42e01f\r\na=rtcp-fb:96 nack pli\r\n",
            vport + 10
        );
        let uri = format!("sip:{number}@{}", self.server);
        let invite = request("INVITE", &uri, "UDP", "Content-Type: application/sdp\r\n", &sdp);
        self.sip.send_to(invite.as_bytes(), &self.server).unwrap();
        let mut buf = [0u8; 4096];
        let ok = loop {
            let n = self.sip.recv(&mut buf).expect("an answer within 5 s");
            let text = String::from_utf8_lossy(&buf[..n]).to_string();
            if text.starts_with("SIP/2.0 200") {
                break text;
            }
            assert!(text.starts_with("SIP/2.0 1"), "{text}");
        };
        let header = |name: &str| ok.lines().find_map(|l| l.strip_prefix(&format!("{name}: "))).unwrap_or_default().to_string();
        let ack = format!(
            "ACK {uri} SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:40000;branch=z9hG4bK-ack{}\r\nFrom: {}\r\nTo: {}\r\nCall-ID: {}\r\nCSeq: {} ACK\r\nMax-Forwards: 70\r\nContent-Length: 0\r\n\r\n",
            rand_tag(),
            header("From"),
            header("To"),
            header("Call-ID"),
            header("CSeq").split_whitespace().next().unwrap_or("1")
        );
        self.sip.send_to(ack.as_bytes(), &self.server).unwrap();
        let body = &ok[ok.find("\r\n\r\n").unwrap() + 4..];
        let port: u16 =
            body.lines().find_map(|l| l.strip_prefix("m=video ")).and_then(|r| r.split_whitespace().next()?.parse().ok()).expect("a video line in the answer");
        (format!("127.0.0.1:{port}").parse().unwrap(), format!("127.0.0.1:{}", port + 1).parse().unwrap())
    }
}

/// Whether an H.264 RTP payload starts an IDR (single NAL, STAP-A or FU-A start).
fn starts_idr(payload: &[u8]) -> bool {
    match payload.first().map(|b| b & 0x1f) {
        Some(5) => true,
        Some(24) => {
            let mut i = 1;
            while i + 2 < payload.len() {
                let len = u16::from_be_bytes([payload[i], payload[i + 1]]) as usize;
                if payload[i + 2] & 0x1f == 5 {
                    return true;
                }
                i += 2 + len;
            }
            false
        }
        Some(28) => payload.len() > 1 && payload[1] & 0x80 != 0 && payload[1] & 0x1f == 5,
        _ => false,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keyframes_are_asked_both_ways_over_rtcp() {
    use mcu_codec::{EncoderConfig, VideoCodec, new_software_encoder};
    use mcu_media::{PixelFormat, Rgb, testsrc};
    use rtc::rtp::{codec::h264::H264Payloader, packetizer::Payloader};

    let (mut child, sip) = gateway(&[]).await;
    let phone = FakePhone::new(&sip);
    let (to_video, to_rtcp) = tokio::task::block_in_place(|| phone.call("1000"));

    // The phone sends H.264 without its first keyframe: the composite's decoder cannot start
    // and asks the phone for one (RTCP PLI on the phone's RTCP port).
    let mut enc = new_software_encoder(VideoCodec::H264, &EncoderConfig::realtime(300_000, 30.0)).unwrap();
    let mut frames = Vec::new();
    for i in 0..30u32 {
        let f = testsrc::frame(&testsrc::Pattern::Solid(Rgb(200, 30, 30)), PixelFormat::I420, 320, 240, Duration::from_millis(i as u64 * 33));
        frames.extend(enc.encode(&f).unwrap());
    }
    let mut payloader = H264Payloader::default();
    let (mut seq, mut got_pli, mut received) = (0u16, false, Vec::new());
    let mut buf = [0u8; 2048];
    let started = std::time::Instant::now();
    for (k, f) in frames.iter().enumerate().skip(1).cycle().take(60) {
        let payloads = payloader.payload(1200, &bytes::Bytes::from(f.data.clone())).unwrap();
        let n = payloads.len();
        for (i, p) in payloads.iter().enumerate() {
            seq = seq.wrapping_add(1);
            phone.video.send_to(&mcu_sfu::rtp::build(96, i + 1 == n, seq, k as u32 * 3000, 0x5050, p), to_video).unwrap();
        }
        // Paced like a camera: the RTCP socket's wait is the frame interval.
        phone.video_rtcp.set_read_timeout(Some(Duration::from_millis(33))).unwrap();
        if let Ok(n) = phone.video_rtcp.recv(&mut buf)
            && n >= 12
            && buf[1] == 206
            && buf[0] & 0x1f == 1
        {
            assert_eq!(u32::from_be_bytes([buf[8], buf[9], buf[10], buf[11]]), 0x5050, "the PLI names the phone's SSRC");
            got_pli = true;
        }
        // Meanwhile the phone's picture (the composite) arrives on its video port.
        phone.video.set_nonblocking(true).unwrap();
        while let Ok(n) = phone.video.recv(&mut buf) {
            received.push(buf[..n].to_vec());
        }
        phone.video.set_nonblocking(false).unwrap();
    }
    assert!(got_pli, "no PLI reached the phone in {:?}", started.elapsed());

    // The phone asks for a keyframe of its picture: the next IDR follows.
    let wait_picture = std::time::Instant::now();
    while received.is_empty() && wait_picture.elapsed() < Duration::from_secs(10) {
        if let Ok(n) = phone.video.recv(&mut buf) {
            received.push(buf[..n].to_vec());
        }
    }
    let ssrc = received.first().map(|p| u32::from_be_bytes([p[8], p[9], p[10], p[11]])).expect("the composite reaches the phone");
    // Drop what came before the request.
    phone.video.set_nonblocking(true).unwrap();
    while phone.video.recv(&mut buf).is_ok() {}
    phone.video.set_nonblocking(false).unwrap();
    let mut pli = vec![0x81, 206, 0, 2];
    pli.extend_from_slice(&0x5050u32.to_be_bytes());
    pli.extend_from_slice(&ssrc.to_be_bytes());
    phone.video_rtcp.send_to(&pli, to_rtcp).unwrap();
    let asked = std::time::Instant::now();
    let mut idr = false;
    while !idr && asked.elapsed() < Duration::from_secs(3) {
        if let Ok(n) = phone.video.recv(&mut buf)
            && n > 12
        {
            let cc = (buf[0] & 0x0f) as usize;
            let ext = if buf[0] & 0x10 != 0 { 4 + 4 * u16::from_be_bytes([buf[14 + cc * 4], buf[15 + cc * 4]]) as usize } else { 0 };
            idr = starts_idr(&buf[12 + cc * 4 + ext..n]);
        }
    }
    assert!(idr, "no IDR within 3 s of the phone's PLI");
    child.kill().await.unwrap();
}
