//! SFU fan-out over real WebRTC: one publisher (≈1.5 Mbps of VP8-shaped video at 33 fps plus
//! 50 packets/s of Opus-sized audio) fanned out to 10, 100 and 500 WHEP subscribers on
//! loopback. Every peer is a real `webrtc` (0.21) connection: ICE, DTLS, SRTP.
//!
//! The server is a separate process (`target/release/mcu serve --dev`, or `MCU_BIN`); its CPU
//! time is read from `/proc/PID/stat`, the load generator's (this process: publisher and every
//! subscriber) from `getrusage`, so the two are reported apart. Latency: every packet carries
//! its send time (Unix ns) in its payload; a subscriber notes receive time minus send time.
//!
//! Run: `cargo build --release -p mcu-server && cargo bench -p mcu-benches --bench fanout -- --save`
//! (`--subs 10,100`, `--seconds 10`).
#![allow(clippy::disallowed_methods)]

use std::{
    fmt::Write as _,
    io::{BufRead, BufReader},
    net::SocketAddr,
    process::{Child, Command, Stdio},
    sync::{
        atomic::{AtomicU64, Ordering},
        Arc, Mutex,
    },
    time::{Duration, Instant, SystemTime},
};

use anyhow::{anyhow, bail, Context};
use mcu_benches::{cpu_time, git_rev, machine, save_results, today};
use rtc::{
    media_stream::MediaStreamTrack,
    peer_connection::{
        configuration::{interceptor_registry::register_default_interceptors, media_engine::MediaEngine, RTCConfigurationBuilder},
        sdp::RTCSessionDescription,
    },
    rtp::{header::Header, packet::Packet},
    rtp_transceiver::{
        rtp_sender::{RTCRtpCodec, RTCRtpCodingParameters, RTCRtpEncodingParameters, RtpCodecKind},
        RTCRtpTransceiverDirection, RTCRtpTransceiverInit,
    },
};
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::TcpStream,
    sync::watch,
};
use webrtc::{
    media_stream::{
        track_local::{static_rtp::TrackLocalStaticRTP, TrackLocal},
        track_remote::{TrackRemote, TrackRemoteEvent},
    },
    peer_connection::{PeerConnection, PeerConnectionBuilder, PeerConnectionEventHandler, RTCIceGatheringState, Registry},
};

const VIDEO_PACKET: usize = 1100;
const VIDEO_BITRATE: usize = 1_500_000;
const FPS: usize = 33;
const AUDIO_PACKET: usize = 120;

fn unix_ns() -> u64 {
    SystemTime::now().duration_since(SystemTime::UNIX_EPOCH).map(|d| d.as_nanos() as u64).unwrap_or(0)
}

/// Minimal HTTP/1.1 request on loopback (the bench needs POST and DELETE only).
async fn http(addr: SocketAddr, method: &str, path: &str, body: &str) -> anyhow::Result<(u16, Vec<(String, String)>, String)> {
    let mut s = TcpStream::connect(addr).await?;
    let req = format!(
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/sdp\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    s.write_all(req.as_bytes()).await?;
    let mut buf = Vec::new();
    s.read_to_end(&mut buf).await?;
    let text = String::from_utf8_lossy(&buf).to_string();
    let (head, body) = text.split_once("\r\n\r\n").ok_or_else(|| anyhow!("no HTTP header end"))?;
    let mut lines = head.lines();
    let status: u16 = lines.next().and_then(|l| l.split_whitespace().nth(1)).and_then(|s| s.parse().ok()).ok_or_else(|| anyhow!("no status"))?;
    let headers = lines.filter_map(|l| l.split_once(':')).map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_string())).collect();
    Ok((status, headers, body.to_string()))
}

struct Handler {
    gathered: watch::Sender<bool>,
    stats: Option<Arc<RxStats>>,
}

#[derive(Default)]
struct RxStats {
    packets: AtomicU64,
    latencies_us: Mutex<Vec<u32>>,
}

#[async_trait::async_trait]
impl PeerConnectionEventHandler for Handler {
    async fn on_ice_gathering_state_change(&self, state: RTCIceGatheringState) {
        if state == RTCIceGatheringState::Complete {
            self.gathered.send_replace(true);
        }
    }

    async fn on_track(&self, track: Arc<dyn TrackRemote>) {
        let Some(stats) = self.stats.clone() else { return };
        tokio::spawn(async move {
            while let Some(evt) = track.poll().await {
                if let TrackRemoteEvent::OnRtpPacket(p) = evt {
                    stats.packets.fetch_add(1, Ordering::Relaxed);
                    if p.payload.len() >= 10 {
                        let sent = u64::from_be_bytes(p.payload[2..10].try_into().expect("8 bytes"));
                        let lat = unix_ns().saturating_sub(sent) / 1000;
                        stats.latencies_us.lock().expect("not poisoned").push(lat.min(u32::MAX as u64) as u32);
                    }
                }
            }
        });
    }
}

async fn peer(stats: Option<Arc<RxStats>>) -> anyhow::Result<(Arc<dyn PeerConnection>, watch::Receiver<bool>)> {
    let mut engine = MediaEngine::default();
    engine.register_default_codecs()?;
    let registry = register_default_interceptors(Registry::new(), &mut engine)?;
    let (tx, rx) = watch::channel(false);
    let pc = PeerConnectionBuilder::new()
        .with_configuration(RTCConfigurationBuilder::new().build())
        .with_media_engine(engine)
        .with_interceptor_registry(registry)
        .with_handler(Arc::new(Handler { gathered: tx, stats }))
        .with_runtime(webrtc::runtime::default_runtime().ok_or_else(|| anyhow!("no runtime"))?)
        .with_udp_addrs(vec!["127.0.0.1:0".to_string()])
        .build()
        .await?;
    Ok((Arc::new(pc), rx))
}

/// Offer → POST → answer. Returns the session path.
async fn signal(pc: &Arc<dyn PeerConnection>, mut gathered: watch::Receiver<bool>, server: SocketAddr, path: &str) -> anyhow::Result<String> {
    let offer = pc.create_offer(None).await?;
    pc.set_local_description(offer).await?;
    let _ = tokio::time::timeout(Duration::from_secs(5), gathered.wait_for(|g| *g)).await;
    let sdp = pc.local_description().await.ok_or_else(|| anyhow!("no offer"))?.sdp;
    let (status, headers, body) = http(server, "POST", path, &sdp).await?;
    if status != 201 {
        bail!("POST {path}: {status} {body}");
    }
    pc.set_remote_description(RTCSessionDescription::answer(body)?).await?;
    headers.into_iter().find(|(k, _)| k == "location").map(|(_, v)| v).ok_or_else(|| anyhow!("no Location"))
}

fn local_track(kind: RtpCodecKind, ssrc: u32, mime: &str, clock_rate: u32, channels: u16) -> Arc<TrackLocalStaticRTP> {
    Arc::new(TrackLocalStaticRTP::new(MediaStreamTrack::new(
        "bench".into(),
        format!("bench-{ssrc}"),
        format!("bench-{ssrc}"),
        kind,
        vec![RTCRtpEncodingParameters {
            rtp_coding_parameters: RTCRtpCodingParameters { ssrc: Some(ssrc), ..Default::default() },
            codec: RTCRtpCodec { mime_type: mime.into(), clock_rate, channels, ..Default::default() },
            ..Default::default()
        }],
    )))
}

/// Sends the publisher's packets until `stop`; each payload carries its send time.
async fn send_media(video: Arc<TrackLocalStaticRTP>, audio: Arc<TrackLocalStaticRTP>, stop: watch::Receiver<bool>, sent: Arc<AtomicU64>) {
    let per_frame = VIDEO_BITRATE / 8 / FPS / VIDEO_PACKET;
    // 10 ms ticks: audio every 2nd (50/s), a video frame every 3rd (33.3 fps).
    let mut tick = tokio::time::interval(Duration::from_millis(10));
    let (mut vseq, mut aseq, mut frame, mut n) = (0u16, 0u16, 0u32, 0u64);
    while !*stop.borrow() {
        tick.tick().await;
        n += 1;
        if n % 2 == 0 {
            let mut payload = vec![0u8; AUDIO_PACKET];
            payload[2..10].copy_from_slice(&unix_ns().to_be_bytes());
            aseq = aseq.wrapping_add(1);
            let header = Header { version: 2, payload_type: 111, sequence_number: aseq, timestamp: (n as u32) * 480, ssrc: 2, ..Default::default() };
            let _ = audio.write_rtp(Packet { header, payload: payload.into() }).await;
            sent.fetch_add(1, Ordering::Relaxed);
        }
        if n % 3 == 0 {
            frame += 1;
            for i in 0..per_frame {
                let mut payload = vec![0u8; VIDEO_PACKET];
                // VP8 descriptor: S=1 on the first packet; VP8 header byte 0: keyframe.
                payload[0] = if i == 0 { 0x10 } else { 0x00 };
                payload[1] = 0x00;
                payload[2..10].copy_from_slice(&unix_ns().to_be_bytes());
                vseq = vseq.wrapping_add(1);
                let header = Header { version: 2, payload_type: 96, marker: i + 1 == per_frame, sequence_number: vseq, timestamp: frame * 3000, ssrc: 1, ..Default::default() };
                let _ = video.write_rtp(Packet { header, payload: payload.into() }).await;
                sent.fetch_add(1, Ordering::Relaxed);
            }
        }
    }
}

fn proc_cpu(pid: u32) -> Duration {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let after = stat.rsplit_once(')').map(|(_, r)| r).unwrap_or("");
    let f: Vec<&str> = after.split_whitespace().collect();
    let ticks: u64 = f.get(11).and_then(|v| v.parse().ok()).unwrap_or(0) + f.get(12).and_then(|v| v.parse().ok()).unwrap_or(0);
    #[allow(unsafe_code)]
    // SAFETY: sysconf has no preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as u64;
    Duration::from_nanos(ticks * 1_000_000_000 / hz)
}

fn start_server() -> anyhow::Result<(Child, SocketAddr)> {
    let bin = std::env::var("MCU_BIN").unwrap_or_else(|_| concat!(env!("CARGO_MANIFEST_DIR"), "/../target/release/mcu").into());
    let mut child = Command::new(&bin)
        .args(["serve", "--dev", "--http-listen", "127.0.0.1:0", "--rtc-udp", "127.0.0.1:0", "--max-subscribers", "100000", "--log", "warn"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .with_context(|| format!("starting {bin} (build it: cargo build --release -p mcu-server)"))?;
    let out = child.stdout.take().ok_or_else(|| anyhow!("no stdout"))?;
    let mut line = String::new();
    BufReader::new(out).read_line(&mut line)?;
    let addr = line.trim().strip_prefix("listening on http://").ok_or_else(|| anyhow!("unexpected first line {line:?}"))?.parse()?;
    Ok((child, addr))
}

fn percentile(sorted: &[u32], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    sorted[((sorted.len() - 1) as f64 * p).round() as usize] as f64 / 1000.0
}

struct Row {
    subs: usize,
    in_pps: f64,
    out_pps: f64,
    server_cores: f64,
    loadgen_cores: f64,
    p50: f64,
    p99: f64,
    delivered: f64,
}

async fn run_case(server: SocketAddr, pid: u32, subs: usize, seconds: u64) -> anyhow::Result<Row> {
    let (stop_tx, stop_rx) = watch::channel(false);
    // The publisher.
    let (publ, gathered) = peer(None).await?;
    let video = local_track(RtpCodecKind::Video, 1, "video/VP8", 90000, 0);
    let audio = local_track(RtpCodecKind::Audio, 2, "audio/opus", 48000, 2);
    publ.add_track(video.clone() as Arc<dyn TrackLocal>).await?;
    publ.add_track(audio.clone() as Arc<dyn TrackLocal>).await?;
    let pub_session = signal(&publ, gathered, server, "/whip/bench?name=pub").await?;
    let sent = Arc::new(AtomicU64::new(0));
    let sender = tokio::spawn(send_media(video, audio, stop_rx, sent.clone()));
    tokio::time::sleep(Duration::from_millis(500)).await;

    // The subscribers.
    let stats = Arc::new(RxStats::default());
    let mut peers = Vec::new();
    for i in 0..subs {
        let (pc, gathered) = peer(Some(stats.clone())).await?;
        let init = || Some(RTCRtpTransceiverInit { direction: RTCRtpTransceiverDirection::Recvonly, ..Default::default() });
        pc.add_transceiver_from_kind(RtpCodecKind::Video, init()).await?;
        pc.add_transceiver_from_kind(RtpCodecKind::Audio, init()).await?;
        let session = signal(&pc, gathered, server, &format!("/whep/bench/pub?name=sub{i}")).await?;
        peers.push((pc, session));
    }
    // Let every connection come up and reach steady state.
    let want = subs as u64 * 100;
    let t0 = Instant::now();
    while stats.packets.load(Ordering::Relaxed) < want && t0.elapsed() < Duration::from_secs(30) {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    tokio::time::sleep(Duration::from_secs(2)).await;

    stats.latencies_us.lock().expect("not poisoned").clear();
    let (rx0, tx0, srv0, me0, w0) = (stats.packets.load(Ordering::Relaxed), sent.load(Ordering::Relaxed), proc_cpu(pid), cpu_time(false), Instant::now());
    tokio::time::sleep(Duration::from_secs(seconds)).await;
    let (rx1, tx1, srv1, me1, wall) = (stats.packets.load(Ordering::Relaxed), sent.load(Ordering::Relaxed), proc_cpu(pid), cpu_time(false), w0.elapsed().as_secs_f64());

    stop_tx.send_replace(true);
    let _ = sender.await;
    for (pc, session) in peers {
        let _ = http(server, "DELETE", &session, "").await;
        let _ = pc.close().await;
    }
    let _ = http(server, "DELETE", &pub_session, "").await;
    let _ = publ.close().await;

    let mut lat = std::mem::take(&mut *stats.latencies_us.lock().expect("not poisoned"));
    lat.sort_unstable();
    let in_pps = (tx1 - tx0) as f64 / wall;
    let out_pps = (rx1 - rx0) as f64 / wall;
    Ok(Row {
        subs,
        in_pps,
        out_pps,
        server_cores: (srv1 - srv0).as_secs_f64() / wall,
        loadgen_cores: (me1 - me0).as_secs_f64() / wall,
        p50: percentile(&lat, 0.5),
        p99: percentile(&lat, 0.99),
        delivered: out_pps / (in_pps * subs as f64),
    })
}

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let arg = |name: &str| args.iter().position(|a| a == name).and_then(|i| args.get(i + 1)).cloned();
    let save = args.iter().any(|a| a == "--save");
    let seconds: u64 = arg("--seconds").and_then(|s| s.parse().ok()).unwrap_or(10);
    let subs: Vec<usize> = arg("--subs").unwrap_or_else(|| "10,100,500".into()).split(',').filter_map(|s| s.parse().ok()).collect();
    let (mut child, server) = start_server()?;
    let pid = child.id();
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    let mut table = String::new();
    writeln!(table, "| subscribers | packets in/s | packets out/s (received) | delivered | server CPU (cores) | server packets/s per core | server CPU per subscriber (% of a core) | load generator CPU (cores) | fan-out latency p50 / p99 (ms) |")?;
    writeln!(table, "|---:|---:|---:|---:|---:|---:|---:|---:|---:|")?;
    let result = rt.block_on(async {
        for &n in &subs {
            let r = run_case(server, pid, n, seconds).await?;
            let line = format!(
                "| {} | {:.0} | {:.0} | {:.1} % | {:.2} | {:.0} | {:.3} | {:.2} | {:.1} / {:.1} |",
                r.subs,
                r.in_pps,
                r.out_pps,
                r.delivered * 100.0,
                r.server_cores,
                r.out_pps / r.server_cores.max(1e-9),
                r.server_cores * 100.0 / r.subs as f64,
                r.loadgen_cores,
                r.p50,
                r.p99
            );
            println!("{line}");
            writeln!(table, "{line}")?;
            tokio::time::sleep(Duration::from_secs(2)).await;
        }
        anyhow::Ok(())
    });
    let _ = child.kill();
    let _ = child.wait();
    result?;
    if save {
        let date = today();
        let mut md = String::new();
        writeln!(md, "# SFU fan-out over real WebRTC, {date}\n")?;
        writeln!(md, "- Machine: {}", machine())?;
        writeln!(md, "- Commit: {}", git_rev())?;
        writeln!(md, "- Command: `cargo build --release -p mcu-server && cargo bench -p mcu-benches --bench fanout -- --save --seconds {seconds} --subs {}`", arg("--subs").unwrap_or_else(|| "10,100,500".into()))?;
        writeln!(md, "- Server: `mcu serve --dev` (release), its own process; CPU from /proc/PID/stat. Load generator: this bench, one process holding the publisher and every subscriber (webrtc 0.21: ICE, DTLS, SRTP on each), CPU from getrusage. Both share the machine's 2 cores, so the load generator's CPU is time the server could not use.")?;
        writeln!(md, "- Publisher: {} kbps of VP8-shaped video ({FPS} fps, {VIDEO_PACKET}-byte packets) plus 50 packets/s of {AUDIO_PACKET}-byte Opus-shaped audio. Latency: send time stamped into each payload, read by the subscriber: publisher SRTP + server + subscriber SRTP and scheduling.\n", VIDEO_BITRATE / 1000)?;
        md.push_str(&table);
        save_results("fanout", &date, &md);
    }
    Ok(())
}
