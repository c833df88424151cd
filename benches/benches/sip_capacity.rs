//! SIP calls on this machine, CPU only: how many concurrent SIP video calls (H.264 CIF in at
//! 30 fps + G.711, the room composite out as H.264 at 640×360 30 fps + G.711) run in real time,
//! and how many audio-only calls (G.711 both ways, each hearing everyone but itself); the
//! server's CPU per call.
//!
//! The phones are in this process: each registers nothing, sends an INVITE through `rsipstack`
//! (the gateway's offer builder `mcu_sip::offer_sdp`, video off for audio-only calls), then
//! replays pre-encoded media over plain RTP: one second of `mcu_media::testsrc` cards encoded
//! with openh264 at CIF (keyframe first, FU-A), and a 440 Hz tone as PCMU. Calls are grouped in
//! rooms of 4 (a four-party SIP conference per room). A step passes when every phone receives
//! ≥ 90 % of 30 video frames/s (video calls) and ≥ 90 % of 50 audio packets/s.
//!
//! Run: `cargo build --release -p mcu-server && cargo bench -p mcu-benches --bench sip_capacity -- --save`
//! (`--calls 4,8,12` video steps, `--audio-calls 20,40,80` audio-only steps, `--seconds 10`).
#![allow(clippy::disallowed_methods)]

use std::{
    fmt::Write as _,
    io::{BufRead, BufReader},
    net::{IpAddr, SocketAddr},
    process::{Child, Command, Stdio},
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
    time::{Duration, Instant},
};

use anyhow::{Context, anyhow};
use bytes::Bytes;
use mcu_benches::{
    cpu_time, git_rev, machine,
    peers::{proc_cpu, server_bin},
    save_results, today,
};
use mcu_codec::{VideoCodec, audio::G711Law};
use rsipstack::{
    EndpointBuilder,
    dialog::{dialog_layer::DialogLayer, invitation::InviteOption},
    transport::{TransportLayer, udp::UdpConnection},
};
use rtc::rtp::{codec::h264::H264Payloader, packetizer::Payloader};
use tokio::{net::UdpSocket, sync::watch};
use tokio_util::sync::CancellationToken;

const FPS: u32 = 30;
const ROOM_SIZE: usize = 4;

/// One second of a 440 Hz tone as 20 ms PCMU packets.
fn encode_tone() -> Vec<Vec<u8>> {
    (0..50)
        .map(|f| {
            let pcm: Vec<i16> = (0..160).map(|k| ((2.0 * std::f64::consts::PI * 440.0 * (f * 160 + k) as f64 / 8000.0).sin() * 8000.0) as i16).collect();
            G711Law::MuLaw.encode(&pcm)
        })
        .collect()
}

/// `mcu serve` with SIP on a free port and `routes`; returns it and the SIP address.
fn start_server(routes: &str) -> anyhow::Result<(Child, SocketAddr)> {
    let bin = server_bin();
    let mut child = Command::new(&bin)
        .args(["serve", "--dev", "--http-listen", "127.0.0.1:0", "--grpc-listen", "127.0.0.1:0", "--rtc-udp", "127.0.0.1:0", "--log", "warn"])
        .args(["--sip-listen", "127.0.0.1:0", "--sip-route", routes, "--sip-video-size", "640x360", "--sip-rtp-timeout", "60s"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .with_context(|| format!("starting {bin} (build it: cargo build --release -p mcu-server)"))?;
    let mut reader = BufReader::new(child.stdout.take().ok_or_else(|| anyhow!("no stdout"))?);
    let mut sip = None;
    for _ in 0..3 {
        let mut line = String::new();
        reader.read_line(&mut line)?;
        if let Some(addr) = line.trim().strip_prefix("sip listening on udp+tcp ") {
            sip = Some(addr.parse()?);
        }
    }
    std::thread::spawn(move || std::io::copy(&mut reader, &mut std::io::sink()));
    Ok((child, sip.ok_or_else(|| anyhow!("the server printed no SIP address"))?))
}

#[derive(Default)]
struct Received {
    video_frames: AtomicU64,
    audio_packets: AtomicU64,
}

struct Phones {
    dialogs: DialogLayer,
    state: rsipstack::dialog::dialog::DialogStateSender,
    local: SocketAddr,
    cancel: CancellationToken,
}

async fn phones() -> anyhow::Result<Phones> {
    let cancel = CancellationToken::new();
    let transport = TransportLayer::new(cancel.clone());
    let udp = UdpConnection::create_connection("127.0.0.1:0".parse()?, None, Some(cancel.child_token())).await?;
    let local = udp.get_addr().get_socketaddr()?;
    transport.add_transport(udp.into());
    let endpoint = EndpointBuilder::new().with_cancel_token(cancel.clone()).with_transport_layer(transport).build();
    let dialogs = DialogLayer::new(endpoint.inner.clone());
    let (state, mut rx) = dialogs.new_dialog_state_channel();
    tokio::spawn(async move { endpoint.serve().await });
    tokio::spawn(async move { while rx.recv().await.is_some() {} });
    Ok(Phones { dialogs, state, local, cancel })
}

/// One phone: INVITE `number`, then send and count media until `stop`.
#[allow(clippy::too_many_arguments)]
async fn call(
    phones: &Phones,
    server: SocketAddr,
    number: &str,
    index: usize,
    video: Option<Arc<Vec<Vec<u8>>>>,
    tone: Arc<Vec<Vec<u8>>>,
    rx: Arc<Received>,
    stop: watch::Receiver<bool>,
) -> anyhow::Result<rsipstack::dialog::invite_dialog::InviteDialog> {
    let ip: IpAddr = "127.0.0.1".parse()?;
    let audio = Arc::new(UdpSocket::bind((ip, 0)).await?);
    let vsock = Arc::new(UdpSocket::bind((ip, 0)).await?);
    let offer = mcu_sip::offer_sdp(ip, audio.local_addr()?.port(), video.as_ref().map(|_| vsock.local_addr().map(|a| a.port()).unwrap_or(0)), index as u64, 1);
    let me: rsipstack::sip::Uri = format!("sip:phone{index}@{}", phones.local).as_str().try_into()?;
    let option = InviteOption {
        caller: me.clone(),
        callee: format!("sip:{number}@{server}").as_str().try_into()?,
        contact: me,
        content_type: Some("application/sdp".into()),
        offer: Some(offer.into_bytes()),
        ..Default::default()
    };
    let (dialog, response) = phones.dialogs.do_invite(option, phones.state.clone()).await?;
    let response = response.ok_or_else(|| anyhow!("no answer"))?;
    anyhow::ensure!(response.status_code.kind() == rsipstack::sip::StatusCodeKind::Successful, "call refused: {}", response.status_code);
    let answer = mcu_sip::negotiate(&mcu_sip::parse_offer(&String::from_utf8_lossy(&response.body))?, (640, 360))?;
    let a = answer.audio.clone().ok_or_else(|| anyhow!("no audio in the answer"))?;
    // Receivers.
    for (sock, is_video) in [(audio.clone(), false), (vsock.clone(), true)] {
        let (rx, stop) = (rx.clone(), stop.clone());
        tokio::spawn(async move {
            let mut buf = vec![0u8; 2048];
            while !*stop.borrow() {
                let Ok(Ok((n, _))) = tokio::time::timeout(Duration::from_millis(200), sock.recv_from(&mut buf)).await else { continue };
                if n < 12 || (192..=223).contains(&buf[1]) {
                    continue;
                }
                if is_video {
                    if buf[1] & 0x80 != 0 {
                        rx.video_frames.fetch_add(1, Ordering::Relaxed);
                    }
                } else {
                    rx.audio_packets.fetch_add(1, Ordering::Relaxed);
                }
            }
        });
    }
    // Senders.
    let v = answer.video.clone();
    tokio::spawn(async move {
        let mut payloader = H264Payloader::default();
        let mut vtick = tokio::time::interval(Duration::from_secs_f64(1.0 / FPS as f64));
        let mut atick = tokio::time::interval(Duration::from_millis(20));
        let (mut vseq, mut aseq, mut frame, mut apkt) = (0u16, 0u16, 0u32, 0u32);
        while !*stop.borrow() {
            tokio::select! {
                _ = vtick.tick() => {
                    let (Some(video), Some(v)) = (&video, &v) else { continue };
                    let data = Bytes::from(video[frame as usize % video.len()].clone());
                    let Ok(payloads) = payloader.payload(1200, &data) else { continue };
                    let n = payloads.len();
                    for (i, p) in payloads.iter().enumerate() {
                        vseq = vseq.wrapping_add(1);
                        let _ = vsock.send_to(&mcu_sfu::rtp::build(v.pt, i + 1 == n, vseq, frame * 3000, 7, p), v.remote).await;
                    }
                    frame += 1;
                }
                _ = atick.tick() => {
                    aseq = aseq.wrapping_add(1);
                    let _ = audio.send_to(&mcu_sfu::rtp::build(a.pt, false, aseq, apkt * 160, 8, &tone[apkt as usize % tone.len()]), a.remote).await;
                    apkt += 1;
                }
            }
        }
    });
    Ok(dialog)
}

struct Step {
    calls: usize,
    slowest_fps: f64,
    slowest_audio: f64,
    server_cores: f64,
    generator_cores: f64,
}

async fn run_step(
    server: SocketAddr,
    pid: u32,
    calls: usize,
    with_video: bool,
    seconds: u64,
    cards: &[Arc<Vec<Vec<u8>>>],
    tone: &Arc<Vec<Vec<u8>>>,
) -> anyhow::Result<Step> {
    let phones = phones().await?;
    let (stop_tx, stop) = watch::channel(false);
    let mut received = Vec::new();
    let mut dialogs = Vec::new();
    for k in 0..calls {
        let rx = Arc::new(Received::default());
        let number = format!("{}", 1000 + k / ROOM_SIZE);
        let video = with_video.then(|| cards[k % cards.len()].clone());
        dialogs.push(call(&phones, server, &number, k, video, tone.clone(), rx.clone(), stop.clone()).await?);
        received.push(rx);
    }
    // Warm up (keyframes, jitter buffers), then measure.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let before: Vec<(u64, u64)> = received.iter().map(|r| (r.video_frames.load(Ordering::Relaxed), r.audio_packets.load(Ordering::Relaxed))).collect();
    let (cpu0, own0, t0) = (proc_cpu(pid), cpu_time(false), Instant::now());
    tokio::time::sleep(Duration::from_secs(seconds)).await;
    let wall = t0.elapsed().as_secs_f64();
    let (cpu1, own1) = (proc_cpu(pid), cpu_time(false));
    let rates: Vec<(f64, f64)> = received
        .iter()
        .zip(&before)
        .map(|(r, (v0, a0))| ((r.video_frames.load(Ordering::Relaxed) - v0) as f64 / wall, (r.audio_packets.load(Ordering::Relaxed) - a0) as f64 / wall))
        .collect();
    let _ = stop_tx.send(true);
    for d in dialogs {
        let _ = d.bye().await;
    }
    phones.cancel.cancel();
    tokio::time::sleep(Duration::from_secs(7)).await;
    Ok(Step {
        calls,
        slowest_fps: rates.iter().map(|r| r.0).fold(f64::MAX, f64::min),
        slowest_audio: rates.iter().map(|r| r.1).fold(f64::MAX, f64::min),
        server_cores: (cpu1 - cpu0).as_secs_f64() / wall,
        generator_cores: (own1 - own0).as_secs_f64() / wall,
    })
}

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let arg = |name: &str| args.iter().position(|a| a == name).and_then(|i| args.get(i + 1)).cloned();
    let save = args.iter().any(|a| a == "--save");
    let seconds: u64 = arg("--seconds").and_then(|s| s.parse().ok()).unwrap_or(10);
    let list =
        |v: Option<String>, d: &str| -> Vec<usize> { v.unwrap_or_else(|| d.into()).split(',').filter_map(|s| s.parse().ok()).filter(|&n| n > 0).collect() };
    let video_steps = list(arg("--calls"), "4,8,12");
    let audio_steps = list(arg("--audio-calls"), "20,40,80");
    let cards: Vec<Arc<Vec<Vec<u8>>>> =
        (0..ROOM_SIZE).map(|i| mcu_benches::encode_card(VideoCodec::H264, i, 352, 288, 400_000, FPS).map(Arc::new)).collect::<anyhow::Result<_>>()?;
    let tone = Arc::new(encode_tone());
    let most = video_steps.iter().chain(&audio_steps).max().copied().unwrap_or(4);
    let routes: Vec<String> = (0..most.div_ceil(ROOM_SIZE)).map(|r| format!("{}=sip-room-{r}", 1000 + r)).collect();
    let (mut child, server) = start_server(&routes.join(","))?;
    let pid = child.id();
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    let mut table = String::new();
    writeln!(
        table,
        "| calls (rooms of 4) | media | slowest phone: video fps | slowest phone: audio packets/s | real time (≥ 27 fps, ≥ 45 pkt/s) | server CPU (cores) | per call (cores) | load generator CPU (cores) |"
    )?;
    writeln!(table, "|---:|---|---:|---:|---|---:|---:|---:|")?;
    let result = rt.block_on(async {
        for (with_video, steps) in [(true, &video_steps), (false, &audio_steps)] {
            for &n in steps {
                let s = run_step(server, pid, n, with_video, seconds, &cards, &tone).await?;
                let ok = (!with_video || s.slowest_fps >= 27.0) && s.slowest_audio >= 45.0;
                let line = format!(
                    "| {} | {} | {} | {:.1} | {} | {:.2} | {:.3} | {:.2} |",
                    s.calls,
                    if with_video { "H.264 CIF in, 640×360 out + G.711" } else { "G.711 only" },
                    if with_video { format!("{:.1}", s.slowest_fps) } else { "–".into() },
                    s.slowest_audio,
                    if ok { "yes" } else { "no" },
                    s.server_cores,
                    s.server_cores / s.calls as f64,
                    s.generator_cores
                );
                println!("{line}");
                writeln!(table, "{line}")?;
            }
        }
        anyhow::Ok(())
    });
    let _ = child.kill();
    let _ = child.wait();
    result?;
    let md = format!(
        "# SIP calls: capacity and CPU per call\n\nMachine: {}\nCommit: {}\nCommand: `cargo build --release -p mcu-server && cargo bench -p mcu-benches --bench sip_capacity -- --save`\n\n\
Phones in the benchmark process (rsipstack UAC, plain RTP), the server `mcu serve --dev` (release) with its SIP gateway; rooms of 4 phones; each phone hears the other three (G.711 µ-law, transcoded through Opus in the room) and, in video calls, receives the room composite (openh264, 640×360, 30 fps, 800 kbit/s, shared by the room's phones) while sending H.264 CIF at 30 fps. {seconds} s measured after 3 s of warm-up; CPU from /proc.\n\n{table}",
        machine(),
        git_rev()
    );
    if save {
        save_results("sip_capacity", &today(), &md);
    }
    Ok(())
}
