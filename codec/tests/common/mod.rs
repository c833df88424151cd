//! Helpers shared by the codec scenario tests: synthetic content, bitstream statistics, tones.
#![allow(dead_code)]

use std::time::Duration;

use mcu_codec::{Decoded, EncodedFrame, VideoDecoder, VideoEncoder, quality::psnr_y};
use mcu_media::{PixelFormat, VideoFrame, testsrc};

/// Test size: small enough that the whole suite stays fast in the dev profile.
pub const W: u32 = 320;
/// Test height.
pub const H: u32 = 180;
/// Frame rate of the synthetic streams.
pub const FPS: f64 = 30.0;

/// The pts of frame `i` at [`FPS`].
pub fn pts(i: u32) -> Duration {
    Duration::from_micros((i as f64 * 1e6 / FPS).round() as u64)
}

/// Frame `i` of a moving card (gradient, digits, a bar sweeping once a second).
pub fn card(i: u32, w: u32, h: u32) -> VideoFrame {
    testsrc::frame(&testsrc::Pattern::Card { color: testsrc::palette(2), label: 1000 + i }, PixelFormat::I420, w, h, pts(i))
}

/// Frame `i` of a card with moving deterministic noise on the luma (amplitude ±`amp`): content
/// on which an encoder can spend any bitrate, so that rate control is what limits the size.
pub fn noisy_card(i: u32, w: u32, h: u32, amp: i32) -> VideoFrame {
    let mut f = card(i, w, h);
    let mut state = 0x9e37_79b9u32 ^ i.wrapping_mul(0x85eb_ca6b);
    for p in f.planes[0].data.iter_mut() {
        state ^= state << 13;
        state ^= state >> 17;
        state ^= state << 5;
        let n = (state % (2 * amp as u32 + 1)) as i32 - amp;
        *p = (*p as i32 + n).clamp(16, 235) as u8;
    }
    f
}

/// Encodes `frames` and returns every unit, flushed.
pub fn encode_all(enc: &mut dyn VideoEncoder, frames: &[VideoFrame]) -> Vec<EncodedFrame> {
    let mut out = Vec::new();
    for f in frames {
        out.extend(enc.encode(f).expect("encode"));
    }
    out.extend(enc.flush().expect("flush"));
    out
}

/// Decodes `units` and returns the pictures by pts.
pub fn decode_all(dec: &mut dyn VideoDecoder, units: &[EncodedFrame]) -> Vec<VideoFrame> {
    let mut out = Vec::new();
    for u in units {
        match dec.decode(&u.data, u.pts).expect("decode") {
            Decoded::Frame(f) => out.push(f),
            Decoded::NoPicture => {}
            other => panic!("unexpected {other:?} at pts {:?}", u.pts),
        }
    }
    out
}

/// Mean and minimum Y-PSNR of decoded pictures against the sources with the same pts.
pub fn psnr_stats(sources: &[VideoFrame], decoded: &[VideoFrame]) -> (f64, f64) {
    assert!(!decoded.is_empty(), "nothing decoded");
    let mut sum = 0.0;
    let mut min = f64::INFINITY;
    for d in decoded {
        let s = sources.iter().find(|s| s.pts == d.pts).expect("a source frame for every decoded pts");
        let p = psnr_y(s, d).expect("same size").min(99.0);
        sum += p;
        min = min.min(p);
    }
    (sum / decoded.len() as f64, min)
}

/// Bits per second of `units` over the time they span at [`FPS`].
pub fn bitrate_bps(units: &[EncodedFrame]) -> f64 {
    let bytes: usize = units.iter().map(|u| u.data.len()).sum();
    bytes as f64 * 8.0 * FPS / units.len() as f64
}

/// A sine tone: `seconds` of `freq` Hz at `rate` Hz, amplitude `amp` (of i16 full scale),
/// generated with dasp's signal module.
pub fn tone(freq: f64, rate: u32, seconds: f64, amp: f64) -> Vec<i16> {
    use dasp::{Sample, Signal, signal};
    let n = (rate as f64 * seconds) as usize;
    signal::rate(rate as f64).const_hz(freq).sine().take(n).map(|s| ((s * amp) as f32).to_sample::<i16>()).collect()
}

/// Frequency (Hz) of the largest FFT bin of `x` (first power-of-two samples, windowed).
pub fn fft_peak_hz(x: &[i16], rate: u32) -> f64 {
    let n = x.len().next_power_of_two() / if x.len().is_power_of_two() { 1 } else { 2 };
    let mags = fft_magnitudes(&x[..n]);
    let (bin, _) = mags.iter().enumerate().skip(1).take(n / 2 - 1).fold((0, 0.0), |b, (i, &m)| if m > b.1 { (i, m) } else { b });
    bin as f64 * rate as f64 / n as f64
}

/// Magnitudes of the radix-2 FFT of `x` (length a power of two) after a 4-term
/// Blackman-Harris window (sidelobes below -92 dB, so that leakage does not pass for noise).
pub fn fft_magnitudes(x: &[i16]) -> Vec<f64> {
    let n = x.len();
    assert!(n.is_power_of_two());
    let mut re: Vec<f64> = x
        .iter()
        .enumerate()
        .map(|(i, &s)| {
            let a = 2.0 * std::f64::consts::PI * i as f64 / n as f64;
            s as f64 * (0.35875 - 0.48829 * a.cos() + 0.14128 * (2.0 * a).cos() - 0.01168 * (3.0 * a).cos())
        })
        .collect();
    let mut im = vec![0.0; n];
    // Bit-reversal permutation.
    let mut j = 0;
    for i in 1..n {
        let mut bit = n >> 1;
        while j & bit != 0 {
            j ^= bit;
            bit >>= 1;
        }
        j |= bit;
        if i < j {
            re.swap(i, j);
            im.swap(i, j);
        }
    }
    let mut len = 2;
    while len <= n {
        let ang = -2.0 * std::f64::consts::PI / len as f64;
        for start in (0..n).step_by(len) {
            for k in 0..len / 2 {
                let (wr, wi) = ((ang * k as f64).cos(), (ang * k as f64).sin());
                let (a, b) = (start + k, start + k + len / 2);
                let (tr, ti) = (re[b] * wr - im[b] * wi, re[b] * wi + im[b] * wr);
                re[b] = re[a] - tr;
                im[b] = im[a] - ti;
                re[a] += tr;
                im[a] += ti;
            }
        }
        len <<= 1;
    }
    re.iter().zip(&im).map(|(r, i)| (r * r + i * i).sqrt()).collect()
}

/// Spectral SNR (dB) of a tone: energy within ±6 FFT bins of `freq` over the energy of every
/// other bin above 20 Hz (noise, distortion, aliases). Uses the first power-of-two samples
/// after skipping `skip` (codec start-up).
pub fn tone_snr_db(x: &[i16], rate: u32, freq: f64, skip: usize) -> f64 {
    let x = &x[skip.min(x.len())..];
    let n = if x.len().is_power_of_two() { x.len() } else { x.len().next_power_of_two() / 2 };
    let mags = fft_magnitudes(&x[..n]);
    let bin = (freq * n as f64 / rate as f64).round() as usize;
    let low = (20.0 * n as f64 / rate as f64).ceil() as usize;
    let (mut sig, mut noise) = (0.0, 0.0);
    for (i, m) in mags.iter().enumerate().take(n / 2).skip(low) {
        if i.abs_diff(bin) <= 6 {
            sig += m * m;
        } else {
            noise += m * m;
        }
    }
    10.0 * (sig / noise.max(1e-12)).log10()
}

/// RMS of samples, as a fraction of full scale.
pub fn rms(x: &[i16]) -> f64 {
    (x.iter().map(|&s| (s as f64 / 32768.0).powi(2)).sum::<f64>() / x.len().max(1) as f64).sqrt()
}

/// Every other sample starting at `channel` of an interleaved stereo stream.
pub fn channel(x: &[i16], channel: usize) -> Vec<i16> {
    x.iter().skip(channel).step_by(2).copied().collect()
}

/// Interleaves two mono streams.
pub fn interleave(l: &[i16], r: &[i16]) -> Vec<i16> {
    l.iter().zip(r).flat_map(|(&a, &b)| [a, b]).collect()
}

/// A 30-frame stream of `codec` at 300 kbps with keyframes at frames 0 and 20 (requested).
pub fn stream_with_two_keyframes(codec: mcu_codec::VideoCodec) -> (Vec<VideoFrame>, Vec<EncodedFrame>) {
    let frames: Vec<_> = (0..30).map(|i| card(i, W, H)).collect();
    let mut enc = mcu_codec::new_software_encoder(codec, &mcu_codec::EncoderConfig::realtime(300_000, FPS)).expect("encoder");
    let mut units = Vec::new();
    for (i, f) in frames.iter().enumerate() {
        if i == 20 {
            enc.request_keyframe();
        }
        units.extend(enc.encode(f).expect("encode"));
    }
    units.extend(enc.flush().expect("flush"));
    assert_eq!(units.iter().filter(|u| u.keyframe).count(), 2);
    (frames, units)
}

/// Deterministic pseudo-random bytes.
pub fn random_bytes(seed: u32, len: usize) -> Vec<u8> {
    let mut state = seed.wrapping_mul(0x9e37_79b9) | 1;
    (0..len)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 17;
            state ^= state << 5;
            (state >> 24) as u8
        })
        .collect()
}
