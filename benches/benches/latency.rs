//! Added latency of the MCU: capture-to-display delay through the room composite minus the same
//! path through the SFU, p50/p95, with frame counters in the picture; and the time from a
//! composite viewer's WHEP POST to its first decoded frame.
//!
//! One publisher encodes live (VP8 640×360 at 30 fps) a card with its frame number drawn as 16
//! black/white blocks, and notes each frame's capture time. Two viewers play at once: the
//! publisher's forwarded track (`/whep/{room}/{name}`, SFU) and the room composite
//! (`/whep/{room}`, MCU: decode, composite 1280×720, encode). Each viewer depacketizes,
//! decodes (libvpx) and reads the frame number off the picture: display time minus capture
//! time is that frame's delay on that path. The MCU's added latency is the difference of the
//! two distributions. Everything runs on loopback in this process and a separate server.
//!
//! Run: `cargo build --release -p mcu-server && cargo bench -p mcu-benches --bench latency -- --save`
//! (`--seconds 20`, `--joins 5`).
#![allow(clippy::disallowed_methods)]

use std::{
    collections::HashMap,
    fmt::Write as _,
    net::SocketAddr,
    sync::Arc,
    time::{Duration, Instant},
};

use parking_lot::Mutex;

use bytes::Bytes;
use mcu_benches::{
    git_rev, machine,
    peers::{http, local_track, peer, peer_with, signal, start_server_grpc},
    save_results, today,
};
use mcu_codec::{Decoded, DecoderOptions, EncoderConfig, VideoCodec, new_decoder, new_software_encoder};
use mcu_media::{PixelFormat, Rgb, VideoFrame, testsrc};
use rtc::{
    media::io::sample_builder::SampleBuilder,
    rtp::{
        codec::vp8::{Vp8Packet, Vp8Payloader},
        header::Header,
        packet::Packet,
        packetizer::Payloader,
    },
    rtp_transceiver::{RTCRtpTransceiverDirection, RTCRtpTransceiverInit, rtp_sender::RtpCodecKind},
};
use tokio::sync::{mpsc, watch};
use webrtc::{media_stream::track_local::TrackLocal, peer_connection::PeerConnection};

const FPS: u32 = 30;
const W: u32 = 640;
const H: u32 = 360;
const BITS: u32 = 16;
/// Counter blocks: 16 squares of 32 px in a row, 8 px apart, at y 24.
const BLOCK: u32 = 32;
const STEP: u32 = 38;
const TOP: u32 = 24;
const LEFT: u32 = 16;

/// Draws `n` into the luma plane as white (1) and black (0) blocks.
fn stamp(frame: &mut VideoFrame, n: u32) {
    let stride = frame.planes[0].stride;
    for b in 0..BITS {
        let v = if n >> b & 1 == 1 { 235 } else { 16 };
        let x0 = LEFT + b * STEP;
        for y in TOP..TOP + BLOCK {
            let row = &mut frame.planes[0].data[y as usize * stride..];
            row[x0 as usize..(x0 + BLOCK) as usize].fill(v);
        }
    }
}

/// Reads the frame number back from a picture that shows the card scaled by `width / 640`.
fn read(frame: &VideoFrame) -> u32 {
    let scale = frame.width as f64 / W as f64;
    let mut n = 0;
    for b in 0..BITS {
        let cx = ((LEFT + b * STEP) as f64 + BLOCK as f64 / 2.0) * scale;
        let cy = (TOP as f64 + BLOCK as f64 / 2.0) * scale;
        if frame.yuv_at(cx as u32, cy as u32).y > 128 {
            n |= 1 << b;
        }
    }
    n
}

type Captures = Arc<Mutex<HashMap<u32, Instant>>>;

/// Encodes and sends the stamped card at 30 fps; notes each frame's capture time.
async fn publish(
    track: Arc<webrtc::media_stream::track_local::static_rtp::TrackLocalStaticRTP>,
    captures: Captures,
    stop: watch::Receiver<bool>,
) -> anyhow::Result<()> {
    // A keyframe a second: the SFU viewer joins mid-stream and this sender does not answer PLI.
    let mut enc = new_software_encoder(VideoCodec::Vp8, &EncoderConfig { keyframe_interval: FPS, ..EncoderConfig::realtime(800_000, FPS as f64) })?;
    let mut payloader = Vp8Payloader::default();
    let pattern = testsrc::Pattern::Card { color: Rgb(40, 120, 200), label: 1 };
    let mut tick = tokio::time::interval(Duration::from_secs_f64(1.0 / FPS as f64));
    let (mut seq, mut n) = (1u16, 0u32);
    while !*stop.borrow() {
        tick.tick().await;
        let pts = Duration::from_secs_f64(n as f64 / FPS as f64);
        let captured = Instant::now();
        let mut frame = testsrc::frame(&pattern, PixelFormat::I420, W, H, pts);
        stamp(&mut frame, n % (1 << BITS));
        captures.lock().insert(n % (1 << BITS), captured);
        let ts = n.wrapping_mul(90000 / FPS);
        for unit in enc.encode(&frame)? {
            let payloads = payloader.payload(1200, &Bytes::from(unit.data))?;
            let count = payloads.len();
            for (i, p) in payloads.into_iter().enumerate() {
                seq = seq.wrapping_add(1);
                let header =
                    Header { version: 2, payload_type: 96, sequence_number: seq, timestamp: ts, ssrc: 1, marker: i + 1 == count, ..Default::default() };
                let _ = track.write_rtp(Packet { header, payload: p }).await;
            }
        }
        n += 1;
    }
    Ok(())
}

/// What one viewer saw: each frame's delay (ms) and when its first frame was decoded.
#[derive(Default)]
struct Seen {
    delays_ms: Vec<f64>,
    first_frame: Option<Instant>,
}

/// Depacketizes and decodes a viewer's video; reads frame numbers.
async fn watch_video(mut rx: mpsc::UnboundedReceiver<(Instant, Packet)>, captures: Captures, seen: Arc<Mutex<Seen>>) {
    let mut builder = SampleBuilder::new(64, Vp8Packet::default(), 90000);
    let Ok(mut dec) = new_decoder(VideoCodec::Vp8, &DecoderOptions::default()) else { return };
    let mut pts = 0u64;
    while let Some((_, p)) = rx.recv().await {
        builder.push(Instant::now(), p);
        while let Some(sample) = builder.pop(Instant::now()) {
            pts += 1;
            let Ok(Decoded::Frame(f)) = dec.decode(&sample.data, Duration::from_millis(pts)) else { continue };
            let shown = Instant::now();
            let n = read(&f);
            let mut s = seen.lock();
            if std::env::var_os("LATENCY_DEBUG").is_some() {
                let at = captures.lock().get(&n).copied();
                eprintln!("{}x{} read {n} delay {:?}", f.width, f.height, at.map(|a| shown - a));
            }
            s.first_frame.get_or_insert(shown);
            if let Some(at) = captures.lock().get(&n) {
                s.delays_ms.push((shown - *at).as_secs_f64() * 1000.0);
            }
        }
    }
}

/// A viewer of `path`: its connection, session, and what it sees.
async fn viewer(server: SocketAddr, path: &str, captures: &Captures) -> anyhow::Result<(Arc<dyn PeerConnection>, String, Arc<Mutex<Seen>>, Instant)> {
    let (tx, rx) = mpsc::unbounded_channel();
    let seen = Arc::new(Mutex::new(Seen::default()));
    tokio::spawn(watch_video(rx, captures.clone(), seen.clone()));
    let (pc, gathered) = peer_with(None, Some(tx)).await?;
    let init = || Some(RTCRtpTransceiverInit { direction: RTCRtpTransceiverDirection::Recvonly, ..Default::default() });
    pc.add_transceiver_from_kind(RtpCodecKind::Video, init()).await?;
    let posted = Instant::now();
    let session = signal(&pc, gathered, server, path).await?;
    Ok((pc, session, seen, posted))
}

fn percentile(v: &mut [f64], p: f64) -> f64 {
    if v.is_empty() {
        return f64::NAN;
    }
    v.sort_by(|a, b| a.total_cmp(b));
    v[((v.len() - 1) as f64 * p).round() as usize]
}

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let arg = |name: &str| args.iter().position(|a| a == name).and_then(|i| args.get(i + 1)).cloned();
    let save = args.iter().any(|a| a == "--save");
    let seconds: u64 = arg("--seconds").and_then(|s| s.parse().ok()).unwrap_or(20);
    let joins: usize = arg("--joins").and_then(|s| s.parse().ok()).unwrap_or(5);
    let (mut child, server, _) = start_server_grpc(&["--mix-width", "1280", "--mix-height", "720", "--mix-fps", "30"])?;
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    let result = rt.block_on(async {
        let captures: Captures = Arc::default();
        let (stop_tx, stop_rx) = watch::channel(false);
        let (pc, gathered) = peer(None).await?;
        let track = local_track(RtpCodecKind::Video, 1, "video/VP8", 90000, 0);
        pc.add_track(track.clone() as Arc<dyn TrackLocal>).await?;
        let publisher = signal(&pc, gathered, server, "/whip/lat?name=cam").await?;
        tokio::spawn(publish(track, captures.clone(), stop_rx.clone()));
        tokio::time::sleep(Duration::from_secs(2)).await;

        // Time to the first composite frame: a viewer of a room whose composite is not running
        // yet, then viewers joining a running one.
        let mut cold = Vec::new();
        let (first_pc, first_session, first_seen, posted) = viewer(server, "/whep/lat", &captures).await?;
        for _ in 0..100 {
            if first_seen.lock().first_frame.is_some() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        if let Some(t) = first_seen.lock().first_frame {
            cold.push((t - posted).as_secs_f64() * 1000.0);
        }
        let mut warm = Vec::new();
        for _ in 0..joins {
            let (pc, session, seen, posted) = viewer(server, "/whep/lat", &captures).await?;
            for _ in 0..150 {
                if seen.lock().first_frame.is_some() {
                    break;
                }
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            if let Some(t) = seen.lock().first_frame {
                warm.push((t - posted).as_secs_f64() * 1000.0);
            }
            let _ = http(server, "DELETE", &session, "").await;
            let _ = pc.close().await;
        }

        // The two paths side by side.
        let (sfu_pc, sfu_session, sfu_seen, _) = viewer(server, "/whep/lat/cam", &captures).await?;
        tokio::time::sleep(Duration::from_secs(2)).await;
        first_seen.lock().delays_ms.clear();
        sfu_seen.lock().delays_ms.clear();
        tokio::time::sleep(Duration::from_secs(seconds)).await;
        let mut mcu = std::mem::take(&mut first_seen.lock().delays_ms);
        let mut sfu = std::mem::take(&mut sfu_seen.lock().delays_ms);
        stop_tx.send_replace(true);
        for (pc, s) in [(first_pc, first_session), (sfu_pc, sfu_session), (pc, publisher)] {
            let _ = http(server, "DELETE", &s, "").await;
            let _ = pc.close().await;
        }
        anyhow::Ok((
            percentile(&mut sfu.clone(), 0.5),
            percentile(&mut sfu, 0.95),
            sfu.len(),
            percentile(&mut mcu.clone(), 0.5),
            percentile(&mut mcu, 0.95),
            mcu.len(),
            cold,
            warm,
        ))
    });
    let _ = child.kill();
    let _ = child.wait();
    let (sfu50, sfu95, sfu_n, mcu50, mcu95, mcu_n, cold, mut warm) = result?;
    let mut table = String::new();
    writeln!(table, "| path | frames | p50 (ms) | p95 (ms) |")?;
    writeln!(table, "|---|---:|---:|---:|")?;
    writeln!(table, "| SFU (`/whep/lat/cam`: forwarded) | {sfu_n} | {sfu50:.1} | {sfu95:.1} |")?;
    writeln!(table, "| MCU (`/whep/lat`: decode, composite 1280×720, encode) | {mcu_n} | {mcu50:.1} | {mcu95:.1} |")?;
    writeln!(table, "| **added by the MCU** (MCU − SFU) | | **{:.1}** | **{:.1}** |", mcu50 - sfu50, mcu95 - sfu95)?;
    let cold_ms = cold.first().copied().unwrap_or(f64::NAN);
    let warm50 = percentile(&mut warm, 0.5);
    let warm_max = warm.iter().copied().fold(f64::NAN, f64::max);
    let joins_line = format!(
        "WHEP POST to first decoded composite frame: {cold_ms:.0} ms when the POST starts the composite; joining a running composite: p50 {warm50:.0} ms, max {warm_max:.0} ms over {} joins.",
        warm.len()
    );
    print!("{table}");
    println!("{joins_line}");
    if save {
        let date = today();
        let mut md = String::new();
        writeln!(md, "# Added latency of the MCU, and time to the first composite frame, {date}\n")?;
        writeln!(md, "- Machine: {}", machine())?;
        writeln!(md, "- Commit: {}", git_rev())?;
        writeln!(
            md,
            "- Command: `cargo build --release -p mcu-server && cargo bench -p mcu-benches --bench latency -- --save --seconds {seconds} --joins {joins}`"
        )?;
        writeln!(
            md,
            "- One WHIP publisher encoding live (VP8 640×360, 30 fps, libvpx realtime) a card with its frame number drawn as 16 black/white blocks; two viewers at once, each depacketizing and decoding (libvpx) and reading the number off the picture. Delay = decode time − capture time, same clock, loopback, everything on this 2-core machine (publisher, viewers and server).\n"
        )?;
        md.push_str(&table);
        writeln!(md, "\n{joins_line}")?;
        save_results("latency", &date, &md);
    }
    Ok(())
}
