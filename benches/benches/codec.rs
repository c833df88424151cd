//! Codec throughput on one core: encode and decode frames per second at 360p, 720p and 1080p
//! for H.264 (openh264), VP8 (libvpx) and AV1 (rav1e / dav1d), beside ffmpeg doing the same
//! in the same run: libx264 `ultrafast`/`zerolatency`, libvpx real-time and librav1e speed 10
//! encoding the same raw frames; ffmpeg's h264 and vp8 decoders and libdav1d decoding our
//! bitstreams. Decoding runs every decoder of a codec: the server's (`new_decoder`: FFmpeg's
//! libavcodec for H.264 and VP8, dav1d for AV1) and the fallbacks (openh264, libvpx). NVENC is measured when the benches are built with `--features mcu-codec/nvenc`
//! on a machine where it is present; otherwise its rows say "not measured here".
//!
//! `cargo bench -p mcu-benches --bench codec [-- --save] [-- --seconds S] [-- --sizes 360,720]`
//! With `--save` the tables are written to `benches/results/codec-<date>.md`.

#![allow(clippy::disallowed_methods)] // benchmarks time things: the clock is the point

use std::{
    fmt::Write as _,
    io::Write as _,
    path::{Path, PathBuf},
    process::{Command, Stdio},
    time::{Duration, Instant},
};

use mcu_benches::{cpu_time, ffmpeg_version, git_rev, machine, save_results, today};
use mcu_codec::{
    Decoded, DecoderOptions, EncodedFrame, EncoderConfig, VideoCodec, VideoDecoder, VideoEncoder, new_decoder, new_software_encoder,
    nvenc::{self, NvencStatus},
    quality::psnr_y,
    video::{H264Decoder, Vp8Decoder},
};
use mcu_media::{PixelFormat, VideoFrame, testsrc};

const FPS: f64 = 30.0;
/// Distinct source frames per size (cycled; the card's bar and digits move every frame).
const SOURCE_FRAMES: u32 = 60;

struct Size {
    name: &'static str,
    w: u32,
    h: u32,
    bitrate: u32,
}

const SIZES: [Size; 3] = [
    Size { name: "360p", w: 640, h: 360, bitrate: 800_000 },
    Size { name: "720p", w: 1280, h: 720, bitrate: 2_000_000 },
    Size { name: "1080p", w: 1920, h: 1080, bitrate: 4_000_000 },
];

/// Time per frame: wall and CPU (all threads of the process, or of ffmpeg).
#[derive(Clone, Copy)]
struct Measured {
    frames: u32,
    wall_ms: f64,
    cpu_ms: f64,
}

impl Measured {
    fn fps(&self) -> f64 {
        1000.0 / self.wall_ms
    }
}

fn pts(i: u32) -> Duration {
    Duration::from_micros((i as f64 * 1e6 / FPS).round() as u64)
}

fn sources(size: &Size) -> Vec<VideoFrame> {
    (0..SOURCE_FRAMES)
        .map(|i| {
            testsrc::frame(&testsrc::Pattern::Card { color: testsrc::palette(i as usize / 20), label: 1000 + i }, PixelFormat::I420, size.w, size.h, pts(i))
        })
        .collect()
}

fn write_raw(path: &Path, frames: &[VideoFrame]) {
    let mut f = std::fs::File::create(path).expect("raw file");
    for frame in frames {
        for p in &frame.planes {
            f.write_all(&p.data).expect("raw written");
        }
    }
}

/// Encodes frames (cycling the sources, pts increasing) for at least `seconds` and 60 frames.
fn encode_ours(enc: &mut dyn VideoEncoder, src: &[VideoFrame], seconds: f64) -> (Measured, Vec<EncodedFrame>) {
    let mut units = Vec::new();
    let (t0, c0) = (Instant::now(), cpu_time(false));
    let mut n = 0u32;
    while t0.elapsed().as_secs_f64() < seconds || n < 60 {
        let mut f = src[(n % SOURCE_FRAMES) as usize].clone();
        f.pts = pts(n);
        units.extend(enc.encode(&f).expect("encode"));
        n += 1;
    }
    units.extend(enc.flush().expect("flush"));
    let wall = t0.elapsed().as_secs_f64();
    let cpu = (cpu_time(false) - c0).as_secs_f64();
    (Measured { frames: n, wall_ms: wall * 1000.0 / n as f64, cpu_ms: cpu * 1000.0 / n as f64 }, units)
}

/// Decodes `units` once untimed for the mean Y-PSNR against the sources, then repeatedly
/// (a new decoder each pass, pts shifted) for at least `seconds`; returns the time per frame
/// and the PSNR.
/// Decoding is measured this many times on each side (ours, ffmpeg); the least CPU counts.
const DECODE_RUNS: u32 = 3;

fn decode_ours(make: &dyn Fn() -> Box<dyn VideoDecoder>, units: &[EncodedFrame], src: &[VideoFrame], seconds: f64) -> (Measured, f64) {
    let span = pts(units.len() as u32 + 1);
    let mut psnr_sum = 0.0;
    let mut psnr_n = 0;
    let mut dec = make();
    for u in units {
        if let Decoded::Frame(f) = dec.decode(&u.data, u.pts).expect("decode") {
            let i = (u.pts.as_secs_f64() * FPS).round() as u32 % SOURCE_FRAMES;
            psnr_sum += psnr_y(&src[i as usize], &f).unwrap_or(0.0).min(99.0);
            psnr_n += 1;
        }
    }
    drop(dec);
    let (t0, c0) = (Instant::now(), cpu_time(false));
    let mut n = 0u32;
    let mut pass = 1u32;
    while t0.elapsed().as_secs_f64() < seconds || pass == 1 {
        let mut dec = make();
        for u in units {
            std::hint::black_box(dec.decode(&u.data, u.pts + span * pass).expect("decode"));
            n += 1;
        }
        pass += 1;
    }
    let wall = t0.elapsed().as_secs_f64();
    let cpu = (cpu_time(false) - c0).as_secs_f64();
    (Measured { frames: n, wall_ms: wall * 1000.0 / n as f64, cpu_ms: cpu * 1000.0 / n as f64 }, psnr_sum / psnr_n.max(1) as f64)
}

fn run_ffmpeg(args: &[String], frames: u32) -> Option<Measured> {
    let (t0, c0) = (Instant::now(), cpu_time(true));
    let status = Command::new("ffmpeg").args(args).stdout(Stdio::null()).status().ok()?;
    let wall = t0.elapsed().as_secs_f64();
    let cpu = (cpu_time(true) - c0).as_secs_f64();
    if !status.success() {
        eprintln!("ffmpeg failed: ffmpeg {}", args.join(" "));
        return None;
    }
    Some(Measured { frames, wall_ms: wall * 1000.0 / frames as f64, cpu_ms: cpu * 1000.0 / frames as f64 })
}

fn args(s: &str) -> Vec<String> {
    s.split_whitespace().map(String::from).collect()
}

/// ffmpeg encoding `frames` of the raw file with one thread; returns time and bits/s.
fn ffmpeg_encode(raw: &Path, size: &Size, frames: u32, codec_args: &str, out: &Path) -> Option<(Measured, f64)> {
    let mut a = args("-hide_banner -loglevel error -nostdin -y -threads 1 -f rawvideo -pix_fmt yuv420p");
    a.extend(args(&format!("-s {}x{} -r {FPS} -stream_loop -1 -i", size.w, size.h)));
    a.push(raw.display().to_string());
    a.extend(args(&format!("-frames:v {frames} -threads 1 {codec_args} -b:v {}", size.bitrate)));
    a.push(out.display().to_string());
    let m = run_ffmpeg(&a, frames)?;
    let bytes = std::fs::metadata(out).map(|m| m.len()).unwrap_or(0);
    Some((m, bytes as f64 * 8.0 * FPS / frames as f64))
}

/// ffmpeg decoding a file of `frames` with one thread.
fn ffmpeg_decode(file: &Path, demux_and_decoder: &str, frames: u32) -> Option<Measured> {
    let mut a = args(&format!("-hide_banner -loglevel error -nostdin -threads 1 {demux_and_decoder} -i"));
    a.push(file.display().to_string());
    a.extend(args("-f null -"));
    run_ffmpeg(&a, frames)
}

/// Writes units as an IVF file (VP8/AV1) or a raw Annex-B stream (H.264). The caller repeats
/// the stream (it starts with a keyframe) so that ffmpeg's start-up, some tens of
/// milliseconds, stays out of its time per frame (`-stream_loop` does not loop raw H.264).
fn write_stream(path: &Path, codec: VideoCodec, units: &[EncodedFrame], size: &Size) {
    let mut f = std::fs::File::create(path).expect("stream file");
    if codec == VideoCodec::H264 {
        for u in units {
            f.write_all(&u.data).expect("written");
        }
        return;
    }
    let fourcc = if codec == VideoCodec::Vp8 { b"VP80" } else { b"AV01" };
    let mut h = Vec::with_capacity(32);
    h.extend_from_slice(b"DKIF");
    h.extend_from_slice(&0u16.to_le_bytes());
    h.extend_from_slice(&32u16.to_le_bytes());
    h.extend_from_slice(fourcc);
    h.extend_from_slice(&(size.w as u16).to_le_bytes());
    h.extend_from_slice(&(size.h as u16).to_le_bytes());
    h.extend_from_slice(&(FPS as u32).to_le_bytes());
    h.extend_from_slice(&1u32.to_le_bytes());
    h.extend_from_slice(&(units.len() as u32).to_le_bytes());
    h.extend_from_slice(&0u32.to_le_bytes());
    f.write_all(&h).expect("written");
    for (i, u) in units.iter().enumerate() {
        f.write_all(&(u.data.len() as u32).to_le_bytes()).expect("written");
        f.write_all(&(i as u64).to_le_bytes()).expect("written");
        f.write_all(&u.data).expect("written");
    }
}

struct Row {
    what: String,
    ours: Measured,
    theirs_name: String,
    theirs: Option<Measured>,
    note: String,
}

fn row_line(r: &Row) -> String {
    let (t_fps, t_cpu, ratio) = match r.theirs {
        Some(t) => (format!("{:.1}", t.fps()), format!("{:.2}", t.cpu_ms), format!("{:.2}", r.ours.cpu_ms / t.cpu_ms)),
        None => ("–".into(), "–".into(), "–".into()),
    };
    format!(
        "| {} | {:.1} | {:.2} | {:.2} | {} | {} | {} | {} | {} |",
        r.what,
        r.ours.fps(),
        r.ours.wall_ms,
        r.ours.cpu_ms,
        r.theirs_name,
        t_fps,
        t_cpu,
        ratio,
        r.note
    )
}

fn main() {
    let argv: Vec<String> = std::env::args().collect();
    let save = argv.iter().any(|a| a == "--save");
    let seconds: f64 = argv.iter().position(|a| a == "--seconds").and_then(|i| argv.get(i + 1)).and_then(|s| s.parse().ok()).unwrap_or(3.0);
    let only: Option<Vec<String>> =
        argv.iter().position(|a| a == "--sizes").and_then(|i| argv.get(i + 1)).map(|s| s.split(',').map(|x| format!("{x}p")).collect());
    let have_ffmpeg = Command::new("ffmpeg").arg("-version").stdout(Stdio::null()).status().is_ok_and(|s| s.success());
    let dir: PathBuf = std::env::temp_dir().join("mcu-bench-codec");
    std::fs::create_dir_all(&dir).expect("temp dir");

    let header = "| case | ours fps (wall) | ours ms/frame (wall) | ours CPU ms/frame | ffmpeg | ffmpeg fps (wall) | ffmpeg CPU ms/frame | CPU time ratio (ours/ffmpeg) | notes |\n|---|---:|---:|---:|---|---:|---:|---:|---|\n";
    let mut encode_table = String::from(header);
    let mut decode_table = String::from(header);
    let mut verdicts = Vec::new();

    for size in SIZES.iter().filter(|s| only.as_ref().is_none_or(|o| o.iter().any(|x| x == s.name))) {
        let src = sources(size);
        let raw = dir.join(format!("{}.yuv", size.name));
        write_raw(&raw, &src);
        for codec in [VideoCodec::H264, VideoCodec::Vp8, VideoCodec::Av1] {
            let mut config = EncoderConfig::realtime(size.bitrate, FPS);
            config.threads = 1;
            let mut enc = new_software_encoder(codec, &config).expect("encoder");
            let lib = enc.backend().to_string();
            let (ours, units) = encode_ours(enc.as_mut(), &src, seconds);
            let bps = units.iter().map(|u| u.data.len()).sum::<usize>() as f64 * 8.0 * FPS / units.len() as f64;
            let (ffmpeg_name, ffmpeg_args, ext) = match codec {
                VideoCodec::H264 => ("libx264 ultrafast zerolatency", "-c:v libx264 -preset ultrafast -tune zerolatency -f h264", "h264"),
                VideoCodec::Vp8 => ("libvpx realtime cpu-used 6", "-c:v libvpx -deadline realtime -cpu-used 6 -lag-in-frames 0 -f ivf", "ivf"),
                _ => ("librav1e speed 10 low latency", "-c:v librav1e -speed 10 -rav1e-params low_latency=true -f ivf", "ivf"),
            };
            let theirs = if have_ffmpeg { ffmpeg_encode(&raw, size, ours.frames, ffmpeg_args, &dir.join(format!("ffmpeg-{}.{ext}", size.name))) } else { None };
            let note = match theirs {
                Some((_, their_bps)) => format!("{:.0} vs {:.0} kbps", bps / 1000.0, their_bps / 1000.0),
                None => format!("{:.0} kbps", bps / 1000.0),
            };
            let r = Row { what: format!("{codec} encode {} ({lib})", size.name), ours, theirs_name: ffmpeg_name.into(), theirs: theirs.map(|t| t.0), note };
            println!("{}", row_line(&r));
            writeln!(encode_table, "{}", row_line(&r)).unwrap();
            if let (VideoCodec::H264, Some((t, _))) = (codec, theirs) {
                let ratio = r.ours.cpu_ms / t.cpu_ms;
                verdicts.push(format!(
                    "H.264 encode {}: {:.2} ms vs x264 ultrafast {:.2} ms of CPU per frame, {ratio:.2}× (target ≤ 1.5×: {}); {:.1}× real time at 30 fps on one core{}",
                    size.name,
                    r.ours.cpu_ms,
                    t.cpu_ms,
                    if ratio <= 1.5 { "met" } else { "NOT met" },
                    1000.0 / 30.0 / r.ours.cpu_ms,
                    if size.name == "720p" { if 1000.0 / 30.0 / r.ours.cpu_ms >= 8.0 { " (target ≥ 8×: met)" } else { " (target ≥ 8×: NOT met)" } } else { "" }
                ));
            }

            // Decode our bitstream with every decoder of the codec (the server's choice,
            // `new_decoder`, first), and ffmpeg decoding the same bitstream.
            let o = DecoderOptions::default();
            let decoders: Vec<Box<dyn Fn() -> Box<dyn VideoDecoder>>> = match codec {
                VideoCodec::H264 => vec![
                    Box::new(move || new_decoder(codec, &o).expect("decoder")),
                    Box::new(move || Box::new(H264Decoder::new(&o).expect("openh264")) as Box<dyn VideoDecoder>),
                ],
                VideoCodec::Vp8 => vec![
                    Box::new(move || new_decoder(codec, &o).expect("decoder")),
                    Box::new(move || Box::new(Vp8Decoder::new(&o).expect("libvpx")) as Box<dyn VideoDecoder>),
                ],
                _ => vec![Box::new(move || new_decoder(codec, &o).expect("decoder"))],
            };
            let (dec_name, dec_args) = match codec {
                VideoCodec::H264 => ("h264 (ffmpeg native)", "-f h264 -c:v h264"),
                VideoCodec::Vp8 => ("vp8 (ffmpeg native)", "-f ivf -c:v vp8"),
                _ => ("libdav1d", "-f ivf -c:v libdav1d"),
            };
            let mut theirs = None;
            for (k, make) in decoders.iter().enumerate() {
                let dec_lib = make().library();
                // Best of three for both sides: this VM's steal time comes in bursts that a
                // single short run (ffmpeg's is a fraction of a second) may or may not catch.
                let best = |a: Measured, b: Measured| if b.cpu_ms < a.cpu_ms { b } else { a };
                let (mut dec, psnr) = decode_ours(make.as_ref(), &units, &src, seconds / DECODE_RUNS as f64);
                for _ in 1..DECODE_RUNS {
                    dec = best(dec, decode_ours(make.as_ref(), &units, &src, seconds / DECODE_RUNS as f64).0);
                }
                if k == 0 && have_ffmpeg {
                    let stream = dir.join(format!("ours-{}-{codec}.{ext}", size.name));
                    let loops = dec.frames.max(600).div_ceil(units.len() as u32) as usize;
                    let repeated: Vec<EncodedFrame> = (0..loops).flat_map(|_| units.iter().cloned()).collect();
                    write_stream(&stream, codec, &repeated, size);
                    theirs = (0..DECODE_RUNS).filter_map(|_| ffmpeg_decode(&stream, dec_args, repeated.len() as u32)).reduce(best);
                }
                let role = if k == 0 { "" } else { ", fallback" };
                let r = Row {
                    what: format!("{codec} decode {} ({dec_lib}{role})", size.name),
                    ours: dec,
                    theirs_name: dec_name.into(),
                    theirs,
                    note: format!("mean Y-PSNR {psnr:.1} dB at {:.0} kbps", bps / 1000.0),
                };
                println!("{}", row_line(&r));
                writeln!(decode_table, "{}", row_line(&r)).unwrap();
                if let Some(t) = theirs {
                    let ratio = r.ours.cpu_ms / t.cpu_ms;
                    let verdict = if k > 0 {
                        "fallback decoder, not the target's".to_string()
                    } else if ratio <= 1.2 {
                        "target ≤ 1.2×: met".to_string()
                    } else {
                        "target ≤ 1.2×: NOT met".to_string()
                    };
                    verdicts.push(format!(
                        "{codec} decode {} ({dec_lib}): {:.2} ms vs ffmpeg {dec_name} {:.2} ms of CPU per frame, {ratio:.2}× ({verdict})",
                        size.name, r.ours.cpu_ms, t.cpu_ms
                    ));
                }
            }
        }
    }

    // NVENC: measured only where present.
    let mut nvenc_md = String::new();
    match nvenc::probe() {
        NvencStatus::Available(info) => {
            writeln!(nvenc_md, "NVENC on {} (driver API {}.{}), measured in this run:\n", info.device, info.driver_api.0, info.driver_api.1).unwrap();
            writeln!(nvenc_md, "| case | fps (wall) | ms/frame (wall) | CPU ms/frame |\n|---|---:|---:|---:|").unwrap();
            for size in SIZES.iter().filter(|s| only.as_ref().is_none_or(|o| o.iter().any(|x| x == s.name))) {
                let src = sources(size);
                for &codec in &info.codecs {
                    let Ok(mut enc) = nvenc::new_encoder(codec, &EncoderConfig::realtime(size.bitrate, FPS)) else { continue };
                    let (m, _) = encode_ours(enc.as_mut(), &src, seconds);
                    let line = format!("| NVENC {codec} encode {} | {:.1} | {:.2} | {:.2} |", size.name, m.fps(), m.wall_ms, m.cpu_ms);
                    println!("{line}");
                    writeln!(nvenc_md, "{line}").unwrap();
                }
            }
        }
        NvencStatus::Absent { reason } => {
            writeln!(nvenc_md, "**Not measured here** (NVENC not available: {reason}).\n").unwrap();
            writeln!(
                nvenc_md,
                "What `hardware.md` expects on NVENC-equipped GPUs, to be replaced by measurements (build the benches with \
                 `--features mcu-codec/nvenc` on such a machine and this section fills itself):\n"
            )
            .unwrap();
            writeln!(nvenc_md, "| GPU | codecs | expected | status |\n|---|---|---|---|").unwrap();
            for (gpu, codecs) in [
                ("L4", "H.264, HEVC, AV1"),
                ("L40S", "H.264, HEVC, AV1"),
                ("A10", "H.264, HEVC"),
                ("RTX 30 series", "H.264, HEVC"),
                ("RTX 40 series / RTX 4000/6000 Ada", "H.264, HEVC, AV1"),
            ] {
                writeln!(
                    nvenc_md,
                    "| {gpu} | {codecs} | on the order of tens of 720p30 H.264 streams per NVENC engine; encode off the CPU (CPU ms/frame ≈ the NV12 upload) | not measured here |"
                )
                .unwrap();
            }
            writeln!(nvenc_md, "| A100, H100, H200 | none | no NVENC: software encoders above | not measured here |").unwrap();
        }
    }
    println!("{nvenc_md}");
    for v in &verdicts {
        println!("{v}");
    }

    if save {
        let date = today();
        let mut md = String::new();
        writeln!(md, "# Codec throughput, {date}\n").unwrap();
        writeln!(md, "- Machine: {}", machine()).unwrap();
        writeln!(md, "- ffmpeg: {}", if have_ffmpeg { ffmpeg_version() } else { "not installed".into() }).unwrap();
        writeln!(md, "- Commit: {}", git_rev()).unwrap();
        writeln!(md, "- Command: `cargo bench -p mcu-benches --bench codec -- --save --seconds {seconds}`").unwrap();
        writeln!(
            md,
            "- What is timed: one thread each. Encode: frames of a moving card (gradient, a bar sweeping once a second, a frame counter in large digits; {SOURCE_FRAMES} distinct frames cycled) already in memory as I420, at 30 fps pts, CBR at 800 kbps (360p), 2 Mbps (720p), 4 Mbps (1080p); ours through `mcu_codec::VideoEncoder` (openh264 constrained baseline low complexity, libvpx VP8 real-time cpu-used -6, rav1e speed 10 low latency), ffmpeg reading the same raw frames from a file (`-threads 1`, to `-f null`-like files). Decode: our bitstreams, ours through `mcu_codec::VideoDecoder` into I420 `VideoFrame`s (every decoder of the codec: the server's first, libavcodec for H.264 and VP8 through our bindings, then the fallbacks openh264 and libvpx), ffmpeg with `-threads 1 ... -f null -`. CPU = user+system time of this process (ours) or of ffmpeg (its reading and parsing included); the ratio column compares CPU time per frame, lower is better for ours. Decode rows are the best (least CPU) of three runs on each side.\n"
        )
        .unwrap();
        writeln!(md, "## Encode\n").unwrap();
        md.push_str(&encode_table);
        writeln!(md, "\n## Decode\n").unwrap();
        md.push_str(&decode_table);
        writeln!(md, "\n## Against the targets\n").unwrap();
        for v in &verdicts {
            writeln!(md, "- {v}").unwrap();
        }
        writeln!(md, "\n## NVENC\n").unwrap();
        md.push_str(&nvenc_md);
        save_results("codec", &date, &md);
    }
}
