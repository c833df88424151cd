//! Room composites on this machine, CPU only: how many rooms of 4 senders (VP8 640×360 at 30
//! fps plus Opus) composited into 1280×720 at 30 fps (VP8 out) with one viewer each run in real
//! time, the server's CPU per room, and ffmpeg doing the media part of the same job (decode 4
//! VP8 streams, 2×2 grid into 1280×720, VP8 encode at 30 fps) from files in the same run.
//!
//! Every sender and viewer is a real `webrtc` 0.21 connection (ICE, DTLS, SRTP) in this process,
//! the server a separate `mcu serve --dev` (release, or `MCU_BIN`). Senders replay pre-encoded
//! media: one second of `mcu_media::testsrc` cards (a moving bar, a distinct colour each) encoded
//! with libvpx, and a 440 Hz tone encoded with Opus. A step passes when every room's viewer
//! receives ≥ 90 % of 30 frames/s.
//!
//! Run: `cargo build --release -p mcu-server && cargo bench -p mcu-benches --bench mcu_capacity -- --save`
//! (`--rooms 1,2,3,4`, `--seconds 10`, `--codec h264` for H.264 out and libx264 in the ffmpeg
//! job, `--paths cpu,gpu` for the same steps on each render and mix path in one run). With `--record` each room has no viewer but a server-side recording of its composite
//! (started over gRPC, H.264 + Opus with `--codec h264`); a step passes when every recording
//! holds ≥ 90 % of 30 frames per second of its duration (`ffprobe -count_packets`); results go
//! to `recording_capacity-*.md`.
#![allow(clippy::disallowed_methods)]

use std::{
    fmt::Write as _,
    io::Write as _,
    net::SocketAddr,
    path::Path,
    process::Command,
    sync::{Arc, atomic::Ordering},
    time::{Duration, Instant},
};

use anyhow::Context;
use mcu_benches::{
    cpu_time, ffmpeg_version, git_rev, machine,
    peers::{RxStats, add_media_tracks, http, opus_tone, peer, proc_cpu, replay, server_bin, signal, start_server_grpc},
    save_results, today,
};
use mcu_codec::VideoCodec;
use rtc::rtp_transceiver::{RTCRtpTransceiverDirection, RTCRtpTransceiverInit, rtp_sender::RtpCodecKind};
use tokio::sync::watch;
use webrtc::peer_connection::PeerConnection;

const FPS: u32 = 30;

fn write_ivf(path: &Path, frames: &[Vec<u8>], repeat: usize) -> std::io::Result<()> {
    let mut f = std::io::BufWriter::new(std::fs::File::create(path)?);
    let n = (frames.len() * repeat) as u32;
    f.write_all(b"DKIF")?;
    f.write_all(&0u16.to_le_bytes())?;
    f.write_all(&32u16.to_le_bytes())?;
    f.write_all(b"VP80")?;
    f.write_all(&640u16.to_le_bytes())?;
    f.write_all(&360u16.to_le_bytes())?;
    f.write_all(&FPS.to_le_bytes())?;
    f.write_all(&1u32.to_le_bytes())?;
    f.write_all(&n.to_le_bytes())?;
    f.write_all(&0u32.to_le_bytes())?;
    for (k, frame) in frames.iter().cycle().take(frames.len() * repeat).enumerate() {
        f.write_all(&(frame.len() as u32).to_le_bytes())?;
        f.write_all(&(k as u64).to_le_bytes())?;
        f.write_all(frame)?;
    }
    f.flush()
}

struct RoomLoad {
    peers: Vec<(Arc<dyn PeerConnection>, String)>,
    viewer: Arc<RxStats>,
}

async fn start_room(
    server: SocketAddr,
    r: usize,
    videos: &[Arc<Vec<Vec<u8>>>],
    audio: &Arc<Vec<Vec<u8>>>,
    stop: &watch::Receiver<bool>,
    with_viewer: bool,
) -> anyhow::Result<RoomLoad> {
    let mut peers = Vec::new();
    for (i, video) in videos.iter().enumerate() {
        let (pc, gathered) = peer(None).await?;
        // Distinct SSRCs per sender, as real clients pick them at random.
        let ssrcs = (0x1000_0000 + (r * 64 + i * 2) as u32, 0x1000_0001 + (r * 64 + i * 2) as u32);
        let (vt, at) = add_media_tracks(&pc, ssrcs).await?;
        let session = signal(&pc, gathered, server, &format!("/whip/room{r}?name=p{i}")).await?;
        tokio::spawn(replay(vt, at, ssrcs, video.clone(), audio.clone(), stop.clone()));
        peers.push((pc, session));
    }
    let viewer = Arc::new(RxStats::default());
    if !with_viewer {
        return Ok(RoomLoad { peers, viewer });
    }
    let (pc, gathered) = peer(Some(viewer.clone())).await?;
    let init = || Some(RTCRtpTransceiverInit { direction: RTCRtpTransceiverDirection::Recvonly, ..Default::default() });
    pc.add_transceiver_from_kind(RtpCodecKind::Video, init()).await?;
    pc.add_transceiver_from_kind(RtpCodecKind::Audio, init()).await?;
    let session = signal(&pc, gathered, server, &format!("/whep/room{r}")).await?;
    peers.push((pc, session));
    Ok(RoomLoad { peers, viewer })
}

struct Step {
    rooms: usize,
    min_fps: f64,
    server_cores: f64,
    loadgen_cores: f64,
}

/// `mcu record …` against the server: its standard output.
fn record_cli(grpc: &str, args: &[&str]) -> anyhow::Result<String> {
    let out = Command::new(server_bin()).arg("record").args(args).args(["--grpc", grpc]).output().context("running mcu record")?;
    anyhow::ensure!(out.status.success(), "mcu record {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// Frames per second of media in a recording's video track.
fn recorded_fps(path: &str) -> anyhow::Result<f64> {
    let out = Command::new("ffprobe")
        .args([
            "-v",
            "error",
            "-count_packets",
            "-select_streams",
            "v:0",
            "-show_entries",
            "stream=nb_read_packets:format=duration",
            "-of",
            "default=nw=1:nk=1",
            path,
        ])
        .output()
        .context("running ffprobe")?;
    let text = String::from_utf8_lossy(&out.stdout);
    let nums: Vec<f64> = text.split_whitespace().filter_map(|v| v.parse().ok()).collect();
    anyhow::ensure!(nums.len() == 2 && nums[1] > 0.0, "ffprobe of {path}: {text}");
    Ok(nums[0] / nums[1])
}

#[allow(clippy::too_many_arguments)]
async fn run_step(
    server: SocketAddr,
    grpc: &str,
    record: bool,
    pid: u32,
    rooms: usize,
    seconds: u64,
    videos: &[Arc<Vec<Vec<u8>>>],
    audio: &Arc<Vec<Vec<u8>>>,
) -> anyhow::Result<Step> {
    let (stop_tx, stop_rx) = watch::channel(false);
    let mut loads = Vec::new();
    for r in 0..rooms {
        loads.push(start_room(server, r, videos, audio, &stop_rx, !record).await?);
    }
    let mut recordings = Vec::new();
    if record {
        for r in 0..rooms {
            let out = record_cli(grpc, &["start", &format!("room{r}")])?;
            recordings.push(out.split_whitespace().next().unwrap_or_default().to_string());
        }
    }
    // Connections up, decoders past their first keyframe, canvases flowing.
    tokio::time::sleep(Duration::from_secs(5)).await;
    // Every sender's two tracks are in (a refused track would leave cheaper rooms).
    let (_, _, metrics) = http(server, "GET", "/metrics", "").await?;
    let tracks: u64 = metrics.lines().find_map(|l| l.strip_prefix("mcu_tracks ")).and_then(|v| v.trim().parse().ok()).unwrap_or(0);
    anyhow::ensure!(tracks == rooms as u64 * 8, "the server has {tracks} published tracks, not {} (4 senders × 2 per room)", rooms * 8);
    let f0: Vec<u64> = loads.iter().map(|l| l.viewer.video_frames.load(Ordering::Relaxed)).collect();
    let (srv0, me0, w0) = (proc_cpu(pid), cpu_time(false), Instant::now());
    tokio::time::sleep(Duration::from_secs(seconds)).await;
    let wall = w0.elapsed().as_secs_f64();
    let (srv1, me1) = (proc_cpu(pid), cpu_time(false));
    let mut min_fps = loads.iter().zip(&f0).map(|(l, f)| (l.viewer.video_frames.load(Ordering::Relaxed) - f) as f64 / wall).fold(f64::INFINITY, f64::min);
    if record {
        min_fps = f64::INFINITY;
        for id in &recordings {
            let out = record_cli(grpc, &["stop", id])?;
            let path =
                out.lines().find(|l| l.trim_start().starts_with("composite")).and_then(|l| l.split('\t').nth(1)).context("no composite file")?.to_string();
            min_fps = min_fps.min(recorded_fps(&path)?);
            let _ = std::fs::remove_file(&path);
        }
    }
    stop_tx.send_replace(true);
    for l in loads {
        for (pc, session) in l.peers {
            let _ = http(server, "DELETE", &session, "").await;
            let _ = pc.close().await;
        }
    }
    Ok(Step { rooms, min_fps, server_cores: (srv1 - srv0).as_secs_f64() / wall, loadgen_cores: (me1 - me0).as_secs_f64() / wall })
}

/// ffmpeg doing one room's media work for `seconds` of media: CPU seconds per media second.
/// With `h264`, libx264 `ultrafast`/`zerolatency` instead of libvpx. The inputs are decoded by
/// ffmpeg's own VP8 decoder (its default, and the server's since it decodes through libavcodec).
/// ffmpeg's command for the media part of one room from the files in `dir`; `paced`: inputs
/// read at their native rate (`-re`), so the job runs in real time as a room does.
fn ffmpeg_command(dir: &Path, seconds: u64, h264: bool, paced: bool) -> Command {
    let mut cmd = Command::new("ffmpeg");
    cmd.args(["-hide_banner", "-loglevel", "error", "-y"]);
    for i in 0..4 {
        if paced {
            cmd.arg("-re");
        }
        cmd.arg("-i").arg(dir.join(format!("in{i}.ivf")));
    }
    cmd.args(["-filter_complex", "[0:v][1:v][2:v][3:v]xstack=inputs=4:layout=0_0|w0_0|0_h0|w0_h0,scale=1280:720"]);
    if h264 {
        cmd.args(["-c:v", "libx264", "-preset", "ultrafast", "-tune", "zerolatency"]);
    } else {
        cmd.args(["-c:v", "libvpx", "-deadline", "realtime", "-cpu-used", "8"]);
    }
    cmd.args(["-b:v", "2M", "-r", "30", "-t"]).arg(seconds.to_string()).args(["-f", "null", "-"]);
    cmd
}

/// One room's media job flat out (as fast as ffmpeg goes): cores per second of media, wall time.
fn ffmpeg_room(dir: &Path, seconds: u64, h264: bool) -> anyhow::Result<(f64, f64)> {
    let before = cpu_time(true);
    let t0 = Instant::now();
    let status = ffmpeg_command(dir, seconds, h264, false).status().context("running ffmpeg")?;
    anyhow::ensure!(status.success(), "ffmpeg failed: {status}");
    let cpu = (cpu_time(true) - before).as_secs_f64();
    Ok((cpu / seconds as f64, t0.elapsed().as_secs_f64()))
}

/// `n` rooms' media jobs at once, each in real time (`-re`) as the server's rooms run: the
/// cores they take together and the slowest one's wall time (real time: about `seconds`).
///
/// A job paced to real time costs more CPU than the same job flat out on this VM: between
/// frames its vCPU idles and its caches go cold (`ENCODE_PACE` in `encode_breakdown`), as the
/// server's rooms do. This is the like-for-like reference for the server's rooms.
fn ffmpeg_rooms_paced(dir: &Path, n: usize, seconds: u64, h264: bool) -> anyhow::Result<(f64, f64)> {
    let before = cpu_time(true);
    let t0 = Instant::now();
    let mut children = (0..n).map(|_| ffmpeg_command(dir, seconds, h264, true).spawn().context("running ffmpeg")).collect::<anyhow::Result<Vec<_>>>()?;
    let mut slowest = 0f64;
    for c in &mut children {
        let status = c.wait()?;
        anyhow::ensure!(status.success(), "ffmpeg failed: {status}");
        slowest = slowest.max(t0.elapsed().as_secs_f64());
    }
    let cpu = (cpu_time(true) - before).as_secs_f64();
    Ok((cpu / seconds as f64, slowest))
}

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let arg = |name: &str| args.iter().position(|a| a == name).and_then(|i| args.get(i + 1)).cloned();
    let save = args.iter().any(|a| a == "--save");
    let seconds: u64 = arg("--seconds").and_then(|s| s.parse().ok()).unwrap_or(10);
    let steps: Vec<usize> = arg("--rooms").unwrap_or_else(|| "1,2,3,4".into()).split(',').filter_map(|s| s.parse().ok()).collect();
    let h264 = arg("--codec").is_some_and(|c| c.eq_ignore_ascii_case("h264"));
    let record = args.iter().any(|a| a == "--record");
    let (codec_name, encoder_desc, ffmpeg_encoder) = if h264 {
        ("h264", "H.264 (openh264, constrained baseline, 2 Mbps)", "libx264 `-preset ultrafast -tune zerolatency` 2 Mbps")
    } else {
        ("vp8", "VP8 (libvpx realtime, 2 Mbps)", "libvpx `-deadline realtime -cpu-used 8` 2 Mbps")
    };

    let videos: Vec<Arc<Vec<Vec<u8>>>> =
        (0..4).map(|i| mcu_benches::encode_card(VideoCodec::Vp8, i, 640, 360, 600_000, FPS).map(Arc::new)).collect::<anyhow::Result<_>>()?;
    let audio = Arc::new(opus_tone()?);
    let dir = std::env::temp_dir().join(format!("mcu-capacity-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    for (i, v) in videos.iter().enumerate() {
        write_ivf(&dir.join(format!("in{i}.ivf")), v, seconds as usize + 1)?;
    }
    let (ff_cpu, ff_wall) = ffmpeg_room(&dir, seconds, h264)?;
    println!("ffmpeg, one room's media work flat out: {ff_cpu:.2} cores per second of media ({seconds} s of media in {ff_wall:.1} s)");

    let rec_dir = dir.join("recordings");
    let rec_dir_arg = rec_dir.display().to_string();
    // --udp-port P: every connection through the server's one shared UDP port (its mux), as a
    // deployment behind a firewall runs; the viewers' packets then take the direct send path.
    let udp_port: Option<u16> = arg("--udp-port").and_then(|s| s.parse().ok());
    let rtc_udp = udp_port.map(|p| format!("127.0.0.1:{p}"));
    let mut extra = vec!["--mix-width", "1280", "--mix-height", "720", "--mix-fps", "30", "--mix-codec", codec_name, "--recording-dir", &rec_dir_arg];
    if let Some(a) = rtc_udp.as_deref() {
        extra.extend(["--rtc-udp", a]);
    }
    // --paths cpu,gpu: the same steps on each render and mix path, one server each, in one run
    // (a leading column names the path; ffmpeg's reference is measured once per step).
    let paths: Option<Vec<String>> = arg("--paths").map(|p| p.split(',').map(|s| s.trim().to_string()).collect());
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    let mut table = String::new();
    let lead = if paths.is_some() { "| path " } else { "" };
    if record {
        writeln!(
            table,
            "{lead}| rooms (4 senders + 1 recording each) | slowest recording fps | real time (≥ 27 fps) | server CPU (cores) | server CPU per room (cores) | load generator CPU (cores) | ffmpeg, as many rooms at once in real time: CPU per room (cores) | ffmpeg's slowest room: wall for {seconds} s | server ÷ ffmpeg per room |"
        )?;
    } else {
        writeln!(
            table,
            "{lead}| rooms (4 senders + 1 viewer each) | slowest viewer fps | real time (≥ 27 fps) | server CPU (cores) | server CPU per room (cores) | load generator CPU (cores) | ffmpeg, as many rooms at once in real time: CPU per room (cores) | ffmpeg's slowest room: wall for {seconds} s | server ÷ ffmpeg per room |"
        )?;
    }
    writeln!(table, "{}|---:|---:|---|---:|---:|---:|---:|---:|---:|", if paths.is_some() { "|---" } else { "" })?;
    let mut ffmpeg_steps: std::collections::HashMap<usize, (f64, f64)> = Default::default();
    let mut result = Ok(());
    for path in paths.clone().unwrap_or_else(|| vec![String::new()]) {
        let mut args = extra.clone();
        if !path.is_empty() {
            args.extend(["--render-path", path.as_str(), "--mix-path", path.as_str()]);
        }
        let (mut child, server, grpc) = start_server_grpc(&args)?;
        let pid = child.id();
        result = rt.block_on(async {
            for &n in &steps {
                let s = run_step(server, &grpc, record, pid, n, seconds, &videos, &audio).await?;
                // The same number of rooms' media jobs in ffmpeg, paced, while the server idles.
                tokio::time::sleep(Duration::from_secs(3)).await;
                let (ff_cores, ff_wall) = match ffmpeg_steps.get(&n) {
                    Some(v) => *v,
                    None => {
                        let dir = dir.clone();
                        let v = tokio::task::spawn_blocking(move || ffmpeg_rooms_paced(&dir, n, seconds, h264)).await??;
                        ffmpeg_steps.insert(n, v);
                        v
                    }
                };
                let per_room = s.server_cores / s.rooms as f64;
                let ff_per_room = ff_cores / n as f64;
                let line = format!(
                    "{}| {} | {:.1} | {} | {:.2} | {:.2} | {:.2} | {:.2} | {:.1} s | {:.2} |",
                    if path.is_empty() { String::new() } else { format!("| {path} ") },
                    s.rooms,
                    s.min_fps,
                    if s.min_fps >= 27.0 { "yes" } else { "no" },
                    s.server_cores,
                    per_room,
                    s.loadgen_cores,
                    ff_per_room,
                    ff_wall,
                    per_room / ff_per_room
                );
                println!("{line}");
                writeln!(table, "{line}")?;
                tokio::time::sleep(Duration::from_secs(7)).await;
            }
            anyhow::Ok(())
        });
        let _ = child.kill();
        let _ = child.wait();
        if result.is_err() {
            break;
        }
    }
    let _ = std::fs::remove_dir_all(&dir);
    result?;
    if save {
        let date = today();
        let mut md = String::new();
        let title = match (record, paths.is_some()) {
            (true, _) => "Composite recordings in real time (CPU only)",
            (false, true) => "Room composites in real time (MCU), by render and mix path",
            (false, false) => "Room composites in real time (MCU, CPU only)",
        };
        writeln!(md, "# {title}, {date}\n")?;
        writeln!(md, "- Machine: {}", machine())?;
        writeln!(md, "- Commit: {}", git_rev())?;
        writeln!(md, "- ffmpeg: {}", ffmpeg_version())?;
        writeln!(
            md,
            "- Command: `cargo build --release -p mcu-server && cargo bench -p mcu-benches --bench mcu_capacity -- --save --seconds {seconds} --rooms {} --codec {codec_name}{}{}{}`",
            arg("--rooms").unwrap_or_else(|| "1,2,3,4".into()),
            if record { " --record" } else { "" },
            udp_port.map(|p| format!(" --udp-port {p}")).unwrap_or_default(),
            paths.as_ref().map(|p| format!(" --paths {}", p.join(","))).unwrap_or_default()
        )?;
        if let Some(p) = &paths {
            writeln!(
                md,
                "- Paths: each of {} in turn, one server each (`--render-path P --mix-path P`): `gpu` draws the canvases with wgpu and mixes with the compute shader on this machine's adapter (lavapipe, Vulkan on the CPU, without a GPU), `cpu` with SIMD scaling and the CPU mixer. ffmpeg's reference is measured once per step.",
                p.join(", ")
            )?;
        }
        let out =
            if record { "a server-side recording of the composite (Matroska, started over gRPC; no viewer)" } else { "one WHEP viewer of `/whep/{room}`" };
        writeln!(
            md,
            "- Per room: 4 WHIP senders replaying VP8 640×360 at 30 fps (~600 kbps, libvpx) and Opus, {out}; the server composites 1280×720 at 30 fps (grid, CPU compositor), mixes, encodes {encoder_desc} and Opus. Server: a separate process, CPU from /proc; load generator (all senders and viewers, DTLS-SRTP included): this process, on the same 2 cores."
        )?;
        writeln!(
            md,
            "- ffmpeg, the media part of one room from files (4 × VP8 decode with ffmpeg's own decoder, xstack 2×2, scale to 1280×720, {ffmpeg_encoder}, 30 fps, no network, no audio): flat out, one job alone, **{ff_cpu:.2} cores per second of media** ({seconds} s of media in {ff_wall:.1} s wall). In each step's row, the same number of such jobs run at once, each reading its inputs in real time (`-re`) as a room receives them, while the server idles: the like-for-like reference for the server's rooms, which also run in real time.\n"
        )?;
        md.push_str(&table);
        let name = match (record, h264) {
            (true, _) => format!("recording_capacity-{codec_name}"),
            (false, h264) if paths.is_some() => format!("mcu_capacity-paths{}", if h264 { "-h264" } else { "" }),
            (false, true) => "mcu_capacity-h264".to_string(),
            (false, false) => "mcu_capacity".to_string(),
        };
        save_results(&name, &date, &md);
    }
    Ok(())
}
