//! Helpers shared by the bench binaries: CPU time, machine description, result files.

use std::{path::PathBuf, process::Command, time::Duration};

pub mod peers;

/// CPU time (user + system) consumed so far by this process (`children = false`) or by its
/// waited-for children (`children = true`).
pub fn cpu_time(children: bool) -> Duration {
    // SAFETY: getrusage only writes into the struct we pass.
    #[allow(unsafe_code)]
    let ru = unsafe {
        let mut ru: libc::rusage = std::mem::zeroed();
        libc::getrusage(if children { libc::RUSAGE_CHILDREN } else { libc::RUSAGE_SELF }, &mut ru);
        ru
    };
    let tv = |t: libc::timeval| Duration::from_secs(t.tv_sec as u64) + Duration::from_micros(t.tv_usec as u64);
    tv(ru.ru_utime) + tv(ru.ru_stime)
}

fn first_line(cmd: &str, args: &[&str]) -> String {
    Command::new(cmd)
        .args(args)
        .output()
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .and_then(|s| s.lines().next().map(str::to_string))
        .unwrap_or_else(|| format!("{cmd}: not found"))
}

/// CPU model, core count, memory, kernel: the machine a result was measured on.
pub fn machine() -> String {
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let model = cpuinfo.lines().find(|l| l.starts_with("model name")).and_then(|l| l.split(':').nth(1)).map(str::trim).unwrap_or("unknown CPU").to_string();
    let cores = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(0);
    let mem = std::fs::read_to_string("/proc/meminfo")
        .unwrap_or_default()
        .lines()
        .next()
        .unwrap_or("")
        .split_whitespace()
        .nth(1)
        .and_then(|kb| kb.parse::<u64>().ok())
        .map(|kb| format!("{:.0} GiB", kb as f64 / 1048576.0))
        .unwrap_or_default();
    format!("{model}, {cores} cores, {mem}, {}", first_line("uname", &["-sr"]))
}

/// `ffmpeg -version`'s first line.
pub fn ffmpeg_version() -> String {
    first_line("ffmpeg", &["-version"])
}

/// The commit being measured (short hash), or "uncommitted".
pub fn git_rev() -> String {
    let rev = first_line("git", &["rev-parse", "--short", "HEAD"]);
    let dirty = Command::new("git").args(["status", "--porcelain", "--untracked-files=no"]).output().map(|o| !o.stdout.is_empty()).unwrap_or(false);
    if dirty { format!("{rev}+changes") } else { rev }
}

/// `benches/results/` in the workspace.
pub fn results_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("results")
}

/// Today's date (`YYYY-MM-DD`, from `date`), for result file names and headings.
pub fn today() -> String {
    first_line("date", &["+%Y-%m-%d"])
}

/// Writes `benches/results/{name}-{date}.md` and says where.
pub fn save_results(name: &str, date: &str, markdown: &str) {
    let path = results_dir().join(format!("{name}-{date}.md"));
    std::fs::write(&path, markdown).expect("benches/results is writable");
    println!("saved {}", path.display());
}

/// One second (`fps` frames, keyframe first) of participant `i`'s `mcu_media::testsrc` card
/// (its palette colour, its number, a moving bar) encoded with `codec` at `width`×`height`.
pub fn encode_card(codec: mcu_codec::VideoCodec, i: usize, width: u32, height: u32, bitrate: u32, fps: u32) -> anyhow::Result<Vec<Vec<u8>>> {
    use mcu_media::{PixelFormat, testsrc};
    let mut enc = mcu_codec::new_software_encoder(codec, &mcu_codec::EncoderConfig::realtime(bitrate, fps as f64))?;
    let pattern = testsrc::Pattern::Card { color: testsrc::palette(i), label: i as u32 };
    let mut out = Vec::new();
    for n in 0..fps {
        let pts = Duration::from_secs_f64(n as f64 / fps as f64);
        if n == 0 {
            enc.request_keyframe();
        }
        for unit in enc.encode(&testsrc::frame(&pattern, PixelFormat::I420, width, height, pts))? {
            out.push(unit.data);
        }
    }
    anyhow::ensure!(out.len() == fps as usize, "{codec} returned {} frames for {fps}", out.len());
    Ok(out)
}

/// The codec and picture size of the `*_breakdown` examples' command line:
/// `[h264|vp8] [720|1080|360]` (H.264 and 1280x720 when left out).
pub fn breakdown_args() -> (mcu_codec::VideoCodec, u32, u32) {
    let codec = match std::env::args().nth(1).as_deref() {
        Some("vp8") => mcu_codec::VideoCodec::Vp8,
        _ => mcu_codec::VideoCodec::H264,
    };
    let (w, h) = match std::env::args().nth(2).as_deref() {
        Some("1080") => (1920, 1080),
        Some("360") => (640, 360),
        _ => (1280, 720),
    };
    (codec, w, h)
}
