//! Classrooms in real time on this machine: how many classrooms of 16 students, each student an
//! MCU participant who publishes VP8 640×360 at 30 fps plus Opus and receives a 640×360 30 fps
//! picture of the 15 others (the room option everyone-but-me: 16 personal canvases, 16 encodes
//! per frame) and its own mix, run in real time, and the server's CPU per classroom.
//!
//! Every student is a real `webrtc` 0.21 connection (ICE, DTLS, SRTP) in this process (`POST
//! /mcu/class{n}?name=s{i}`), the server a separate `mcu serve --dev --everyone-but-me` (release,
//! or `MCU_BIN`) with a 640×360 canvas. Students replay pre-encoded media: one second of
//! `mcu_media::testsrc` cards (a distinct colour each) encoded with libvpx, and a tone. A step
//! passes when every student receives ≥ 90 % of 30 frames/s.
//!
//! Run: `cargo build --release -p mcu-server && cargo bench -p mcu-benches --bench classroom -- --save`
//! (`--classrooms 1,2`, `--students 16`, `--talkers 1` students who speak (a tone; the others
//! send silence, so the mixer's speech gate leaves them out), `--seconds 10`, `--codec vp8|h264` for the canvases'
//! encode, `--bitrate 600000` per canvas, `--encode-threads N` for the server, `--render-path
//! cpu|gpu`).
#![allow(clippy::disallowed_methods)]

use std::{
    fmt::Write as _,
    net::SocketAddr,
    sync::{Arc, atomic::Ordering},
    time::{Duration, Instant},
};

use mcu_benches::{
    cpu_time, git_rev, machine,
    peers::{RxStats, add_media_tracks, http, opus_tone_at, peer, proc_cpu, replay, signal, start_server},
    save_results, today,
};
use mcu_codec::VideoCodec;
use tokio::sync::watch;
use webrtc::peer_connection::PeerConnection;

const FPS: u32 = 30;

/// One second of packets: a student who speaks (a tone), and one whose microphone sends silence.
type Sounds = (Arc<Vec<Vec<u8>>>, Arc<Vec<Vec<u8>>>);

struct Student {
    pc: Arc<dyn PeerConnection>,
    session: String,
    rx: Arc<RxStats>,
}

async fn start_classroom(
    server: SocketAddr,
    c: usize,
    students: usize,
    videos: &[Arc<Vec<Vec<u8>>>],
    audio: &Sounds,
    talkers: usize,
    stop: &watch::Receiver<bool>,
) -> anyhow::Result<Vec<Student>> {
    let mut out = Vec::new();
    for i in 0..students {
        let rx = Arc::new(RxStats::default());
        let (pc, gathered) = peer(Some(rx.clone())).await?;
        let ssrcs = (0x2000_0000 + (c * 256 + i * 2) as u32, 0x2000_0001 + (c * 256 + i * 2) as u32);
        // Sent and received on the same connection: the MCU participant's picture and mix come
        // back on these transceivers.
        let (vt, at) = add_media_tracks(&pc, ssrcs).await?;
        let session = signal(&pc, gathered, server, &format!("/mcu/class{c}?name=s{i:02}")).await?;
        // The first `talkers` students speak (a tone); the others' microphones send silence.
        let sound = if i < talkers { audio.0.clone() } else { audio.1.clone() };
        tokio::spawn(replay(vt, at, ssrcs, videos[i % videos.len()].clone(), sound, stop.clone()));
        out.push(Student { pc, session, rx });
    }
    Ok(out)
}

struct Step {
    classrooms: usize,
    min_fps: f64,
    median_fps: f64,
    server_cores: f64,
    loadgen_cores: f64,
}

#[allow(clippy::too_many_arguments)]
async fn run_step(
    server: SocketAddr,
    pid: u32,
    classrooms: usize,
    students: usize,
    talkers: usize,
    seconds: u64,
    videos: &[Arc<Vec<Vec<u8>>>],
    audio: &Sounds,
) -> anyhow::Result<Step> {
    let (stop_tx, stop_rx) = watch::channel(false);
    let mut all: Vec<Student> = Vec::new();
    for c in 0..classrooms {
        all.extend(start_classroom(server, c, students, videos, audio, talkers, &stop_rx).await?);
    }
    // Connections up, decoders past their first keyframe, the personal canvases flowing.
    tokio::time::sleep(Duration::from_secs(6)).await;
    let (_, _, metrics) = http(server, "GET", "/metrics", "").await?;
    let tracks: u64 = metrics.lines().find_map(|l| l.strip_prefix("mcu_tracks ")).and_then(|v| v.trim().parse().ok()).unwrap_or(0);
    anyhow::ensure!(
        tracks >= (classrooms * students * 2) as u64,
        "the server has {tracks} published tracks, fewer than the students' {}",
        classrooms * students * 2
    );
    let f0: Vec<u64> = all.iter().map(|s| s.rx.video_frames.load(Ordering::Relaxed)).collect();
    let (srv0, me0, w0) = (proc_cpu(pid), cpu_time(false), Instant::now());
    tokio::time::sleep(Duration::from_secs(seconds)).await;
    let wall = w0.elapsed().as_secs_f64();
    let (srv1, me1) = (proc_cpu(pid), cpu_time(false));
    let mut fps: Vec<f64> = all.iter().zip(&f0).map(|(s, f)| (s.rx.video_frames.load(Ordering::Relaxed) - f) as f64 / wall).collect();
    fps.sort_by(f64::total_cmp);
    stop_tx.send_replace(true);
    for s in all {
        let _ = http(server, "DELETE", &s.session, "").await;
        let _ = s.pc.close().await;
    }
    Ok(Step {
        classrooms,
        min_fps: fps.first().copied().unwrap_or(0.0),
        median_fps: fps.get(fps.len() / 2).copied().unwrap_or(0.0),
        server_cores: (srv1 - srv0).as_secs_f64() / wall,
        loadgen_cores: (me1 - me0).as_secs_f64() / wall,
    })
}

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let arg = |name: &str| args.iter().position(|a| a == name).and_then(|i| args.get(i + 1)).cloned();
    let save = args.iter().any(|a| a == "--save");
    let seconds: u64 = arg("--seconds").and_then(|s| s.parse().ok()).unwrap_or(10);
    let students: usize = arg("--students").and_then(|s| s.parse().ok()).unwrap_or(16);
    let steps: Vec<usize> = arg("--classrooms").unwrap_or_else(|| "1,2".into()).split(',').filter_map(|s| s.parse().ok()).collect();
    let codec = arg("--codec").unwrap_or_else(|| "vp8".into()).to_ascii_lowercase();
    let bitrate = arg("--bitrate").unwrap_or_else(|| "600000".into());
    let encode_threads = arg("--encode-threads").unwrap_or_else(|| "0".into());
    let render_path = arg("--render-path").unwrap_or_else(|| "cpu".into());

    let videos: Vec<Arc<Vec<Vec<u8>>>> =
        (0..students).map(|i| mcu_benches::encode_card(VideoCodec::Vp8, i, 640, 360, 600_000, FPS).map(Arc::new)).collect::<anyhow::Result<_>>()?;
    let talkers: usize = arg("--talkers").and_then(|s| s.parse().ok()).unwrap_or(1);
    let audio = (Arc::new(opus_tone_at(8000.0)?), Arc::new(opus_tone_at(0.0)?));
    let extra = [
        "--mix-width",
        "640",
        "--mix-height",
        "360",
        "--mix-fps",
        "30",
        "--mix-codec",
        &codec,
        "--mix-video-bitrate",
        &bitrate,
        "--everyone-but-me",
        "--encode-threads",
        &encode_threads,
        "--render-path",
        &render_path,
        "--max-participants",
        "100",
    ];
    let (mut child, server) = start_server(&extra)?;
    let pid = child.id();
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    let mut table = String::new();
    writeln!(
        table,
        "| classrooms ({students} students each) | slowest student fps | median student fps | real time (≥ 27 fps) | server CPU (cores) | server CPU per classroom (cores) | load generator CPU (cores) |"
    )?;
    writeln!(table, "|---:|---:|---:|---|---:|---:|---:|")?;
    let result = rt.block_on(async {
        for &n in &steps {
            let s = run_step(server, pid, n, students, talkers, seconds, &videos, &audio).await?;
            let line = format!(
                "| {} | {:.1} | {:.1} | {} | {:.2} | {:.2} | {:.2} |",
                s.classrooms,
                s.min_fps,
                s.median_fps,
                if s.min_fps >= 27.0 { "yes" } else { "no" },
                s.server_cores,
                s.server_cores / s.classrooms as f64,
                s.loadgen_cores
            );
            println!("{line}");
            writeln!(table, "{line}")?;
            tokio::time::sleep(Duration::from_secs(7)).await;
        }
        anyhow::Ok(())
    });
    let _ = child.kill();
    let _ = child.wait();
    result?;
    if save {
        let date = today();
        let mut md = String::new();
        writeln!(md, "# Classrooms in real time (everyone but me, {render_path} render path), {date}\n")?;
        writeln!(md, "- Machine: {}", machine())?;
        writeln!(md, "- Commit: {}", git_rev())?;
        writeln!(
            md,
            "- Command: `cargo build --release -p mcu-server && cargo bench -p mcu-benches --bench classroom -- --save --seconds {seconds} --classrooms {} --students {students} --talkers {talkers} --codec {codec} --bitrate {bitrate} --encode-threads {encode_threads} --render-path {render_path}`",
            arg("--classrooms").unwrap_or_else(|| "1,2".into())
        )?;
        writeln!(
            md,
            "- Per classroom: {students} MCU participants (`POST /mcu/class{{n}}`), each replaying VP8 640×360 at 30 fps (~600 kbps, libvpx) and Opus ({talkers} of them a tone, the others silence) and receiving, on the same connection, a 640×360 30 fps picture of the others ({codec}, {bitrate} bps) and its own mix; the server (`--everyone-but-me`, `--encode-threads {encode_threads}`, 0: one per core) decodes {students} inputs, draws {students} personal canvases and encodes each once per frame. Server: a separate process, CPU from /proc; load generator (every student's connection, DTLS-SRTP included): this process, on the same cores.\n"
        )?;
        md.push_str(&table);
        save_results(&format!("classroom-{codec}-{render_path}-{talkers}talking"), &date, &md);
    }
    Ok(())
}
