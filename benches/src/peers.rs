//! Real WebRTC peers for the load generators of the transport benchmarks (`fanout`,
//! `mcu_capacity`): `webrtc` 0.21 connections on 127.0.0.1 that publish over WHIP and play over
//! WHEP against a separate `mcu serve` process, whose CPU time is read from `/proc`.
#![allow(clippy::disallowed_methods)]

use std::{
    io::{BufRead, BufReader},
    net::SocketAddr,
    process::{Child, Command, Stdio},
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
    time::{Duration, SystemTime},
};

use bytes::Bytes;
use mcu_codec::audio::{OpusChannels, OpusConfig, OpusEncoder};
use parking_lot::Mutex;

use anyhow::{Context, anyhow, bail};
use rtc::{
    media_stream::MediaStreamTrack,
    peer_connection::{
        configuration::{RTCConfigurationBuilder, interceptor_registry::register_default_interceptors, media_engine::MediaEngine},
        sdp::RTCSessionDescription,
    },
    rtp::{codec::vp8::Vp8Payloader, header::Header, packet::Packet, packetizer::Payloader},
    rtp_transceiver::rtp_sender::{RTCRtpCodec, RTCRtpCodingParameters, RTCRtpEncodingParameters, RtpCodecKind},
};
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::TcpStream,
    sync::watch,
};
use webrtc::{
    media_stream::{
        track_local::{TrackLocal, static_rtp::TrackLocalStaticRTP},
        track_remote::{TrackRemote, TrackRemoteEvent},
    },
    peer_connection::{PeerConnection, PeerConnectionBuilder, PeerConnectionEventHandler, RTCIceGatheringState, Registry},
};

/// Unix time in ns (the latency stamp carried in payloads).
pub fn unix_ns() -> u64 {
    SystemTime::now().duration_since(SystemTime::UNIX_EPOCH).map(|d| d.as_nanos() as u64).unwrap_or(0)
}

/// Minimal HTTP/1.1 request on loopback (the bench needs POST and DELETE only).
pub async fn http(addr: SocketAddr, method: &str, path: &str, body: &str) -> anyhow::Result<(u16, Vec<(String, String)>, String)> {
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
    /// Video packets, with their arrival time, for a caller that depacketizes them.
    video_tap: Option<tokio::sync::mpsc::UnboundedSender<(std::time::Instant, rtc::rtp::Packet)>>,
}

/// What a playing peer received.
#[derive(Default)]
pub struct RxStats {
    /// RTP packets of every track.
    pub packets: AtomicU64,
    /// Video packets with the marker bit: frames.
    pub video_frames: AtomicU64,
    /// Receive time minus the send time stamped at payload bytes 2..10, when `stamped`.
    pub latencies_us: Mutex<Vec<u32>>,
    /// Whether payloads carry send stamps.
    pub stamped: bool,
}

#[async_trait::async_trait]
impl PeerConnectionEventHandler for Handler {
    async fn on_ice_gathering_state_change(&self, state: RTCIceGatheringState) {
        if state == RTCIceGatheringState::Complete {
            self.gathered.send_replace(true);
        }
    }

    async fn on_track(&self, track: Arc<dyn TrackRemote>) {
        let video = track.kind().await == RtpCodecKind::Video;
        if let (Some(tap), true) = (self.video_tap.clone(), video) {
            tokio::spawn(async move {
                while let Some(evt) = track.poll().await {
                    if let TrackRemoteEvent::OnRtpPacket(p) = evt
                        && tap.send((std::time::Instant::now(), p)).is_err()
                    {
                        return;
                    }
                }
            });
            return;
        }
        let Some(stats) = self.stats.clone() else { return };
        tokio::spawn(async move {
            while let Some(evt) = track.poll().await {
                if let TrackRemoteEvent::OnRtpPacket(p) = evt {
                    stats.packets.fetch_add(1, Ordering::Relaxed);
                    if video && p.header.marker {
                        stats.video_frames.fetch_add(1, Ordering::Relaxed);
                    }
                    if stats.stamped && p.payload.len() >= 10 {
                        let sent = u64::from_be_bytes(p.payload[2..10].try_into().expect("8 bytes"));
                        let lat = unix_ns().saturating_sub(sent) / 1000;
                        stats.latencies_us.lock().push(lat.min(u32::MAX as u64) as u32);
                    }
                }
            }
        });
    }
}

/// A peer connection on 127.0.0.1 with the default codecs; `stats` collects what it plays.
pub async fn peer(stats: Option<Arc<RxStats>>) -> anyhow::Result<(Arc<dyn PeerConnection>, watch::Receiver<bool>)> {
    peer_with(stats, None).await
}

/// Like [`peer`]; the video packets it receives also go to `video_tap` with their arrival time.
pub async fn peer_with(
    stats: Option<Arc<RxStats>>,
    video_tap: Option<tokio::sync::mpsc::UnboundedSender<(std::time::Instant, rtc::rtp::Packet)>>,
) -> anyhow::Result<(Arc<dyn PeerConnection>, watch::Receiver<bool>)> {
    let mut engine = MediaEngine::default();
    engine.register_default_codecs()?;
    let registry = register_default_interceptors(Registry::new(), &mut engine)?;
    let (tx, rx) = watch::channel(false);
    let pc = PeerConnectionBuilder::new()
        .with_configuration(RTCConfigurationBuilder::new().build())
        .with_media_engine(engine)
        .with_interceptor_registry(registry)
        .with_handler(Arc::new(Handler { gathered: tx, stats, video_tap }))
        .with_runtime(webrtc::runtime::default_runtime().ok_or_else(|| anyhow!("no runtime"))?)
        .with_udp_addrs(vec!["127.0.0.1:0".to_string()])
        .build()
        .await?;
    Ok((Arc::new(pc), rx))
}

/// Offer → POST → answer. Returns the session path.
/// Offer → POST → answer; returns the session path (Location).
pub async fn signal(pc: &Arc<dyn PeerConnection>, mut gathered: watch::Receiver<bool>, server: SocketAddr, path: &str) -> anyhow::Result<String> {
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

/// A track this peer sends pre-packetized RTP on.
pub fn local_track(kind: RtpCodecKind, ssrc: u32, mime: &str, clock_rate: u32, channels: u16) -> Arc<TrackLocalStaticRTP> {
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

/// A VP8 and an Opus track added to `pc` for it to send, with these SSRCs (video, audio).
pub async fn add_media_tracks(pc: &Arc<dyn PeerConnection>, ssrcs: (u32, u32)) -> anyhow::Result<(Arc<TrackLocalStaticRTP>, Arc<TrackLocalStaticRTP>)> {
    let vt = local_track(RtpCodecKind::Video, ssrcs.0, "video/VP8", 90000, 0);
    let at = local_track(RtpCodecKind::Audio, ssrcs.1, "audio/opus", 48000, 2);
    pc.add_track(vt.clone() as Arc<dyn TrackLocal>).await?;
    pc.add_track(at.clone() as Arc<dyn TrackLocal>).await?;
    Ok((vt, at))
}

/// CPU time (user + system) of another process.
pub fn proc_cpu(pid: u32) -> Duration {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let after = stat.rsplit_once(')').map(|(_, r)| r).unwrap_or("");
    let f: Vec<&str> = after.split_whitespace().collect();
    let ticks: u64 = f.get(11).and_then(|v| v.parse().ok()).unwrap_or(0) + f.get(12).and_then(|v| v.parse().ok()).unwrap_or(0);
    #[allow(unsafe_code)]
    // SAFETY: sysconf has no preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as u64;
    Duration::from_nanos(ticks * 1_000_000_000 / hz)
}

/// Starts `mcu serve --dev` (release build, or `MCU_BIN`) on loopback with `extra` flags;
/// returns it and its HTTP address.
pub fn start_server(extra: &[&str]) -> anyhow::Result<(Child, SocketAddr)> {
    start_server_grpc(extra).map(|(c, http, _)| (c, http))
}

/// The server binary the benchmarks run (`MCU_BIN`, else the release build).
pub fn server_bin() -> String {
    std::env::var("MCU_BIN").unwrap_or_else(|_| concat!(env!("CARGO_MANIFEST_DIR"), "/../target/release/mcu").into())
}

/// Like [`start_server`], also returning the gRPC URL. Both listen lines are read, and stdout
/// keeps being drained, so the server never writes into a closed pipe.
pub fn start_server_grpc(extra: &[&str]) -> anyhow::Result<(Child, SocketAddr, String)> {
    let bin = server_bin();
    let mut child = Command::new(&bin)
        .args([
            "serve",
            "--dev",
            "--http-listen",
            "127.0.0.1:0",
            "--grpc-listen",
            "127.0.0.1:0",
            "--rtc-udp",
            "127.0.0.1:0",
            "--max-subscribers",
            "100000",
            "--log",
            "warn",
        ])
        .args(extra)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .with_context(|| format!("starting {bin} (build it: cargo build --release -p mcu-server)"))?;
    let out = child.stdout.take().ok_or_else(|| anyhow!("no stdout"))?;
    let mut reader = BufReader::new(out);
    let (mut line, mut grpc) = (String::new(), String::new());
    reader.read_line(&mut line)?;
    reader.read_line(&mut grpc)?;
    std::thread::spawn(move || std::io::copy(&mut reader, &mut std::io::sink()));
    let addr = line.trim().strip_prefix("listening on http://").ok_or_else(|| anyhow!("unexpected first line {line:?}"))?.parse()?;
    let grpc = grpc.trim().strip_prefix("grpc listening on ").ok_or_else(|| anyhow!("unexpected second line {grpc:?}"))?.to_string();
    Ok((child, addr, grpc))
}

/// One second of a 440 Hz tone as 20 ms stereo Opus packets.
pub fn opus_tone() -> anyhow::Result<Vec<Vec<u8>>> {
    opus_tone_at(8000.0)
}

/// One second of a 440 Hz tone of `amplitude` (of 32767; 0: silence, as a muted microphone
/// sends) as 20 ms stereo Opus packets.
pub fn opus_tone_at(amplitude: f64) -> anyhow::Result<Vec<Vec<u8>>> {
    let mut enc = OpusEncoder::new(OpusConfig::voice(OpusChannels::Stereo, 48_000))?;
    let mut out = Vec::new();
    for f in 0..50 {
        let pcm: Vec<i16> = (0..960)
            .flat_map(|k| {
                let t = (f * 960 + k) as f64 / 48_000.0;
                let v = ((2.0 * std::f64::consts::PI * 440.0 * t).sin() * amplitude) as i16;
                [v, v]
            })
            .collect();
        out.push(enc.encode(&pcm)?);
    }
    Ok(out)
}

/// Replays `video` (VP8 frames, payload type 96) at 30 fps and `audio` at 50 packets/s until `stop`.
pub async fn replay(
    video_track: Arc<TrackLocalStaticRTP>,
    audio_track: Arc<TrackLocalStaticRTP>,
    ssrcs: (u32, u32),
    video: Arc<Vec<Vec<u8>>>,
    audio: Arc<Vec<Vec<u8>>>,
    stop: watch::Receiver<bool>,
) {
    let mut payloader = Vp8Payloader::default();
    let mut vtick = tokio::time::interval(Duration::from_secs_f64(1.0 / 30.0));
    let mut atick = tokio::time::interval(Duration::from_millis(20));
    let (mut vseq, mut aseq, mut frame, mut apkt) = (0u16, 0u16, 0u32, 0u32);
    while !*stop.borrow() {
        tokio::select! {
            _ = vtick.tick() => {
                let data = Bytes::from(video[frame as usize % video.len()].clone());
                let Ok(payloads) = payloader.payload(1200, &data) else { continue };
                let n = payloads.len();
                for (i, p) in payloads.into_iter().enumerate() {
                    vseq = vseq.wrapping_add(1);
                    let header = Header { version: 2, payload_type: 96, marker: i + 1 == n, sequence_number: vseq, timestamp: frame * 3000, ssrc: ssrcs.0, ..Default::default() };
                    let _ = video_track.write_rtp(Packet { header, payload: p }).await;
                }
                frame += 1;
            }
            _ = atick.tick() => {
                aseq = aseq.wrapping_add(1);
                let payload = Bytes::from(audio[apkt as usize % audio.len()].clone());
                let header = Header { version: 2, payload_type: 111, sequence_number: aseq, timestamp: apkt * 960, ssrc: ssrcs.1, ..Default::default() };
                let _ = audio_track.write_rtp(Packet { header, payload }).await;
                apkt += 1;
            }
        }
    }
}
