//! Encoder CPU per frame for the MCU's typical picture (quick A/B while tuning the encoders):
//! `encode_breakdown [h264|vp8] [720|1080|360]`: a 2x2 grid of moving cards (four senders'
//! pictures, as the composite shows them) at 2 Mbps, 30 fps; CPU per frame, bitrate and PSNR.
#![allow(clippy::disallowed_methods)] // benchmarks time things: the clock is the point

use std::time::Duration;

use mcu_benches::cpu_time;
use mcu_codec::{Decoded, DecoderOptions, EncoderConfig, new_decoder, new_software_encoder, quality::psnr_y};
use mcu_media::{PixelFormat, VideoFrame, testsrc};

/// Four cards side by side and stacked, each a quarter of the picture.
fn grid(i: u32, w: u32, h: u32) -> VideoFrame {
    let pts = Duration::from_micros(i as u64 * 33_333);
    let mut out = VideoFrame::filled(PixelFormat::I420, w, h, mcu_media::Yuv { y: 16, u: 128, v: 128 }, pts);
    for q in 0..4u32 {
        let card = testsrc::frame(&testsrc::Pattern::Card { color: testsrc::palette(q as usize), label: 1000 * q + i }, PixelFormat::I420, w / 2, h / 2, pts);
        let (x0, y0) = ((q % 2) * w / 2, (q / 2) * h / 2);
        for p in 0..3 {
            let s = if p == 0 { 1 } else { 2 };
            let (src, dst) = (&card.planes[p], &mut out.planes[p]);
            for row in 0..(h / 2 / s) as usize {
                let d = (y0 / s) as usize + row;
                let (ds, ss) = (dst.stride, src.stride);
                let width = (w / 2 / s) as usize;
                dst.data[d * ds + (x0 / s) as usize..][..width].copy_from_slice(&src.data[row * ss..][..width]);
            }
        }
    }
    out
}

fn raw_frames(path: &std::path::Path, w: u32, h: u32) -> Vec<VideoFrame> {
    let data = std::fs::read(path).expect("reading ENCODE_RAW");
    let size = (w * h * 3 / 2) as usize;
    data.chunks_exact(size)
        .take(300)
        .enumerate()
        .map(|(i, c)| {
            let pts = Duration::from_micros(i as u64 * 33_333);
            let mut f = VideoFrame::filled(PixelFormat::I420, w, h, mcu_media::Yuv { y: 16, u: 128, v: 128 }, pts);
            let (y, rest) = c.split_at((w * h) as usize);
            let (u, v) = rest.split_at((w * h / 4) as usize);
            for (p, src) in [y, u, v].into_iter().enumerate() {
                let (pw, ph) = if p == 0 { (w as usize, h as usize) } else { (w as usize / 2, h as usize / 2) };
                let stride = f.planes[p].stride;
                for row in 0..ph {
                    f.planes[p].data[row * stride..][..pw].copy_from_slice(&src[row * pw..][..pw]);
                }
            }
            f
        })
        .collect()
}

fn main() {
    let (codec, w, h) = mcu_benches::breakdown_args();
    // `ENCODE_RAW=file.yuv`: 300 I420 frames of w×h from a file (the room's composite as ffmpeg
    // stacks the bench's decoded VP8 clips) instead of the synthetic grid.
    let frames: Vec<_> = match std::env::var_os("ENCODE_RAW") {
        Some(path) => raw_frames(std::path::Path::new(&path), w, h),
        None => (0..300u32).map(|i| grid(i, w, h)).collect(),
    };
    let mut enc = new_software_encoder(codec, &EncoderConfig::realtime(2_000_000, 30.0)).unwrap();
    let mut spent = Duration::ZERO;
    // `ENCODE_PACE=1`: one frame every 33 ms, the thread idle in between as a room's is. On
    // this VM the same frames then cost ~40 % more CPU each (2.43 -> 3.4-3.6 ms for openh264
    // at 720p, 2026-12-04): the idle vCPU's caches go cold. Flat out is the encoder's best case.
    let pace = std::env::var_os("ENCODE_PACE").is_some();
    let start = std::time::Instant::now();
    let mut units = Vec::new();
    for (i, f) in frames.iter().enumerate() {
        if pace {
            std::thread::sleep((start + Duration::from_micros(i as u64 * 33_333)).saturating_duration_since(std::time::Instant::now()));
        }
        let c0 = cpu_time(false);
        units.extend(enc.encode(f).unwrap());
        spent += cpu_time(false) - c0;
    }
    let cpu = spent.as_secs_f64() * 1000.0 / frames.len() as f64;
    let bytes: usize = units.iter().map(|u| u.data.len()).sum();
    let mut dec = new_decoder(codec, &DecoderOptions::default()).unwrap();
    let mut psnr = Vec::new();
    for (u, f) in units.iter().zip(&frames) {
        if let Ok(Decoded::Frame(d)) = dec.decode(&u.data, u.pts) {
            psnr.extend(psnr_y(f, &d));
        }
    }
    // PSNR of the mean squared error over all frames (a frame coded exactly has an infinite
    // PSNR of its own, which would swamp a mean of PSNRs).
    let mse = psnr.iter().map(|p| 255.0f64 * 255.0 / 10f64.powf(p / 10.0)).sum::<f64>() / psnr.len().max(1) as f64;
    let mean = 10.0 * (255.0f64 * 255.0 / mse).log10();
    println!("{codec} {w}x{h}: {cpu:.3} ms CPU per frame, {:.0} kbps, mean Y-PSNR {mean:.2} dB", bytes as f64 * 8.0 * 30.0 / frames.len() as f64 / 1000.0);
}
