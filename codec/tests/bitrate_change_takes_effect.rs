//! Run-time rate changes take effect: two seconds at 150 kbps, then 450 kbps, then 450 kbps at
//! 15 fps, on content whose size the rate controller decides (a moving card with luma noise).
//! The bitrate measured from the output sizes over the last second of each phase must be within
//! 25 % of the target, and at 15 fps each frame gets about twice the bytes.
//!
//! Measured here (kbps, last second of each phase; bytes per frame at 30 → 15 fps):
//! H.264 149 / 450 / 452, ×2.01; VP8 149 / 405 / 425, ×2.09; AV1 (a rate change restarts
//! rav1e's sequence with a keyframe) 151 / 456 / 461, ×2.02.

mod common;

use std::time::Duration;

use common::*;
use mcu_codec::{EncodedFrame, EncoderConfig, RateControl, VideoCodec, VideoEncoder, new_software_encoder};

fn run(enc: &mut dyn VideoEncoder, first: u32, n: u32, fps: f64, start: Duration) -> Vec<EncodedFrame> {
    let mut out = Vec::new();
    for i in 0..n {
        let mut f = noisy_card(first + i, W, H, 12);
        f.pts = start + Duration::from_secs_f64(i as f64 / fps);
        out.extend(enc.encode(&f).unwrap());
    }
    out
}

fn kbps(units: &[EncodedFrame], fps: f64) -> f64 {
    units.iter().map(|u| u.data.len()).sum::<usize>() as f64 * 8.0 * fps / units.len() as f64 / 1000.0
}

fn check(codec: VideoCodec) {
    let mut enc = new_software_encoder(codec, &EncoderConfig::realtime(150_000, 30.0)).unwrap();
    let mut all = run(enc.as_mut(), 0, 60, 30.0, Duration::ZERO);
    enc.set_rate(RateControl { bitrate_bps: 450_000, frame_rate: 30.0 }).unwrap();
    assert_eq!(enc.rate().bitrate_bps, 450_000);
    let phase2 = run(enc.as_mut(), 60, 60, 30.0, Duration::from_secs(2));
    enc.set_rate(RateControl { bitrate_bps: 450_000, frame_rate: 15.0 }).unwrap();
    let phase3 = run(enc.as_mut(), 120, 30, 15.0, Duration::from_secs(4));
    all.extend(phase2);
    all.extend(phase3);
    all.extend(enc.flush().unwrap());
    let in_range = |a: Duration, b: Duration| all.iter().filter(|u| u.pts >= a && u.pts < b).cloned().collect::<Vec<_>>();
    let s = Duration::from_secs;
    let (p1, p2, p3) = (in_range(s(1), s(2)), in_range(s(3), s(4)), in_range(s(5), s(6)));
    let (k1, k2, k3) = (kbps(&p1, 30.0), kbps(&p2, 30.0), kbps(&p3, 15.0));
    let per_frame = |u: &[EncodedFrame]| u.iter().map(|u| u.data.len()).sum::<usize>() as f64 / u.len() as f64;
    let ratio = per_frame(&p3) / per_frame(&p2);
    eprintln!("{codec}: {k1:.0} kbps at 150, {k2:.0} kbps at 450, {k3:.0} kbps at 450@15fps; bytes per frame ×{ratio:.2} at half the frame rate");
    assert!((k1 / 150.0 - 1.0).abs() < 0.25, "{codec}: {k1:.0} kbps for 150");
    assert!((k2 / 450.0 - 1.0).abs() < 0.25, "{codec}: {k2:.0} kbps for 450");
    assert!((k3 / 450.0 - 1.0).abs() < 0.25, "{codec}: {k3:.0} kbps for 450 at 15 fps");
    assert!((1.6..2.5).contains(&ratio), "{codec}: bytes per frame ×{ratio:.2} when the frame rate halves");
}

#[test]
fn h264_bitrate_and_frame_rate_changes_take_effect() {
    check(VideoCodec::H264);
}

#[test]
fn vp8_bitrate_and_frame_rate_changes_take_effect() {
    check(VideoCodec::Vp8);
}

#[test]
fn av1_bitrate_and_frame_rate_changes_take_effect() {
    check(VideoCodec::Av1);
}

#[test]
fn out_of_range_rates_are_refused_and_the_old_rate_stays() {
    for codec in [VideoCodec::H264, VideoCodec::Vp8, VideoCodec::Av1] {
        let mut enc = new_software_encoder(codec, &EncoderConfig::realtime(300_000, 30.0)).unwrap();
        assert!(enc.set_rate(RateControl { bitrate_bps: 0, frame_rate: 30.0 }).is_err());
        assert!(enc.set_rate(RateControl { bitrate_bps: 300_000, frame_rate: f64::NAN }).is_err());
        assert!(enc.set_rate(RateControl { bitrate_bps: 300_000, frame_rate: 0.0 }).is_err());
        assert_eq!(enc.rate(), RateControl { bitrate_bps: 300_000, frame_rate: 30.0 });
    }
}
