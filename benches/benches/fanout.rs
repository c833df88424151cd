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
//! (`--subs 10,100`, `--seconds 10`; `--udp-port 7882`: the server shares one UDP port).
#![allow(clippy::disallowed_methods)]

use std::{
    fmt::Write as _,
    net::SocketAddr,
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
    time::{Duration, Instant},
};

use mcu_benches::{
    cpu_time, git_rev, machine,
    peers::{RxStats, http, local_track, peer, proc_cpu, signal, start_server, unix_ns},
    save_results, today,
};
use rtc::{
    rtp::{header::Header, packet::Packet},
    rtp_transceiver::{RTCRtpTransceiverDirection, RTCRtpTransceiverInit, rtp_sender::RtpCodecKind},
};
use tokio::sync::watch;
use webrtc::media_stream::track_local::{TrackLocal, static_rtp::TrackLocalStaticRTP};

const VIDEO_PACKET: usize = 1100;
const VIDEO_BITRATE: usize = 1_500_000;
const FPS: usize = 33;
const AUDIO_PACKET: usize = 120;

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
                let header = Header {
                    version: 2,
                    payload_type: 96,
                    marker: i + 1 == per_frame,
                    sequence_number: vseq,
                    timestamp: frame * 3000,
                    ssrc: 1,
                    ..Default::default()
                };
                let _ = video.write_rtp(Packet { header, payload: payload.into() }).await;
                sent.fetch_add(1, Ordering::Relaxed);
            }
        }
    }
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
    /// The server's own count of packets written to viewers per second, and of packets it
    /// dropped (every reason of `mcu_rtp_dropped_packets_total`), over the same window.
    server_sent_pps: f64,
    server_dropped_pps: f64,
}

/// The sum of the samples of `/metrics` whose name (labels included) starts with `prefix`.
fn metric_sum(text: &str, prefix: &str) -> f64 {
    text.lines().filter(|l| l.starts_with(prefix)).filter_map(|l| l.rsplit_once(' ')).filter_map(|(_, v)| v.parse::<f64>().ok()).sum()
}

/// The server's sent and dropped packet counters.
async fn server_counts(server: SocketAddr) -> (f64, f64) {
    match http(server, "GET", "/metrics", "").await {
        Ok((200, _, text)) => (metric_sum(&text, "mcu_rtp_sent_packets_total "), metric_sum(&text, "mcu_rtp_dropped_packets_total{")),
        _ => (f64::NAN, f64::NAN),
    }
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
    let stats = Arc::new(RxStats { stamped: true, ..RxStats::default() });
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

    stats.latencies_us.lock().clear();
    let (sent0, dropped0) = server_counts(server).await;
    let (rx0, tx0, srv0, me0, w0) = (stats.packets.load(Ordering::Relaxed), sent.load(Ordering::Relaxed), proc_cpu(pid), cpu_time(false), Instant::now());
    tokio::time::sleep(Duration::from_secs(seconds)).await;
    let (rx1, tx1, srv1, me1, wall) =
        (stats.packets.load(Ordering::Relaxed), sent.load(Ordering::Relaxed), proc_cpu(pid), cpu_time(false), w0.elapsed().as_secs_f64());
    let (sent1, dropped1) = server_counts(server).await;

    stop_tx.send_replace(true);
    let _ = sender.await;
    for (pc, session) in peers {
        let _ = http(server, "DELETE", &session, "").await;
        let _ = pc.close().await;
    }
    let _ = http(server, "DELETE", &pub_session, "").await;
    let _ = publ.close().await;

    let mut lat = std::mem::take(&mut *stats.latencies_us.lock());
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
        server_sent_pps: (sent1 - sent0) / wall,
        server_dropped_pps: (dropped1 - dropped0) / wall,
    })
}

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let arg = |name: &str| args.iter().position(|a| a == name).and_then(|i| args.get(i + 1)).cloned();
    let save = args.iter().any(|a| a == "--save");
    let seconds: u64 = arg("--seconds").and_then(|s| s.parse().ok()).unwrap_or(10);
    let subs: Vec<usize> = arg("--subs").unwrap_or_else(|| "10,100,500".into()).split(',').filter_map(|s| s.parse().ok()).collect();
    // --udp-port P: every connection through the server's one shared UDP port (its mux).
    let udp_port: Option<u16> = arg("--udp-port").and_then(|s| s.parse().ok());
    let rtc_udp = udp_port.map(|p| format!("127.0.0.1:{p}"));
    let mut extra: Vec<&str> = rtc_udp.as_deref().map(|a| vec!["--rtc-udp", a]).unwrap_or_default();
    // --no-direct-send: viewers' packets through the webrtc crate's pipeline (for an A/B).
    let direct = !args.iter().any(|a| a == "--no-direct-send");
    if !direct {
        extra.extend(["--rtc-direct-send", "false"]);
    }
    let (mut child, server) = start_server(&extra)?;
    let pid = child.id();
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    let mut table = String::new();
    writeln!(
        table,
        "| subscribers | packets in/s | packets out/s (received) | delivered | server CPU (cores) | server packets/s per core | server CPU per subscriber (% of a core) | load generator CPU (cores) | fan-out latency p50 / p99 (ms) | server: sent/s, dropped/s |"
    )?;
    writeln!(table, "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")?;
    let result = rt.block_on(async {
        for &n in &subs {
            let r = run_case(server, pid, n, seconds).await?;
            let line = format!(
                "| {} | {:.0} | {:.0} | {:.1} % | {:.2} | {:.0} | {:.3} | {:.2} | {:.1} / {:.1} | {:.0}, {:.1} |",
                r.subs,
                r.in_pps,
                r.out_pps,
                r.delivered * 100.0,
                r.server_cores,
                r.out_pps / r.server_cores.max(1e-9),
                r.server_cores * 100.0 / r.subs as f64,
                r.loadgen_cores,
                r.p50,
                r.p99,
                r.server_sent_pps,
                r.server_dropped_pps
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
        let mux = udp_port.is_some();
        writeln!(md, "# SFU fan-out over real WebRTC{}, {date}\n", if mux { ", one UDP port for every connection" } else { "" })?;
        writeln!(md, "- Machine: {}", machine())?;
        writeln!(md, "- Commit: {}", git_rev())?;
        writeln!(
            md,
            "- Command: `cargo build --release -p mcu-server && cargo bench -p mcu-benches --bench fanout -- --save --seconds {seconds} --subs {}{}{}`",
            arg("--subs").unwrap_or_else(|| "10,100,500".into()),
            udp_port.map(|p| format!(" --udp-port {p}")).unwrap_or_default(),
            if direct { "" } else { " --no-direct-send" }
        )?;
        writeln!(
            md,
            "- Server: `mcu serve --dev{}{}` (release), its own process; CPU from /proc/PID/stat. Load generator: this bench, one process holding the publisher and every subscriber (webrtc 0.21: ICE, DTLS, SRTP on each), CPU from getrusage. Both share the machine's 2 cores, so the load generator's CPU is time the server could not use.",
            rtc_udp.as_deref().map(|a| format!(" --rtc-udp {a}")).unwrap_or_default(),
            if direct { "" } else { " --rtc-direct-send false" }
        )?;
        writeln!(
            md,
            "- Publisher: {} kbps of VP8-shaped video ({FPS} fps, {VIDEO_PACKET}-byte packets) plus 50 packets/s of {AUDIO_PACKET}-byte Opus-shaped audio. Latency: send time stamped into each payload, read by the subscriber: publisher SRTP + server + subscriber SRTP and scheduling.\n",
            VIDEO_BITRATE / 1000
        )?;
        md.push_str(&table);
        save_results(if mux { "fanout-mux" } else { "fanout" }, &date, &md);
    }
    Ok(())
}
