//! Opus encoder CPU per 20 ms frame for a room mix (quick A/B while choosing the mix's
//! complexity): `opus_breakdown [bitrate_bps]`: 10 s of a mono mix (four tones, as the capacity
//! bench's senders send, plus a syllable-rate modulated noise, speech-like) encoded as VoIP at
//! each complexity 0..=10, and the SNR of the decoded mix against its input.
#![allow(clippy::disallowed_methods)] // benchmarks time things: the clock is the point

use mcu_benches::cpu_time;
use mcu_codec::audio::{OpusChannels, OpusConfig, OpusDecoder, OpusEncoder};

fn main() {
    let bitrate: u32 = std::env::args().nth(1).and_then(|s| s.parse().ok()).unwrap_or(32_000);
    let frames = 500usize;
    let mut seed = 0x2545_f491_u32;
    let pcm: Vec<i16> = (0..frames * 960)
        .map(|n| {
            let t = n as f64 / 48_000.0;
            let tones: f64 = [440.0, 554.0, 659.0, 880.0].iter().map(|f| (2.0 * std::f64::consts::PI * f * t).sin()).sum::<f64>() * 2_000.0;
            seed ^= seed << 13;
            seed ^= seed >> 17;
            seed ^= seed << 5;
            let noise = (seed as f64 / u32::MAX as f64 - 0.5) * 6_000.0 * (0.5 + 0.5 * (2.0 * std::f64::consts::PI * 4.0 * t).sin());
            (tones + noise) as i16
        })
        .collect();
    decode_costs(&pcm);
    for complexity in 0..=10u8 {
        let mut enc = OpusEncoder::new(OpusConfig { complexity, ..OpusConfig::voice(OpusChannels::Mono, bitrate) }).unwrap();
        let c0 = cpu_time(false);
        let packets: Vec<Vec<u8>> = pcm.chunks_exact(960).map(|f| enc.encode(f).unwrap()).collect();
        let ms = (cpu_time(false) - c0).as_secs_f64() * 1000.0 / frames as f64;
        let mut dec = OpusDecoder::new(OpusChannels::Mono).unwrap();
        let out: Vec<i16> = packets.iter().flat_map(|p| dec.decode(p).unwrap()).collect();
        // The decoder's output lags the input by the encoder's lookahead (6.5 ms: 312 samples).
        let lag = 312;
        let (mut sig, mut err) = (0f64, 0f64);
        for (a, b) in pcm.iter().zip(out.iter().skip(lag)) {
            sig += (*a as f64).powi(2);
            err += (*a as f64 - *b as f64).powi(2);
        }
        let bytes: usize = packets.iter().map(Vec::len).sum();
        println!(
            "complexity {complexity:2}: {ms:.3} ms CPU per 20 ms frame, {:.1} kbps, SNR {:.1} dB",
            bytes as f64 * 8.0 / (frames as f64 * 0.02) / 1000.0,
            10.0 * (sig / err.max(1.0)).log10()
        );
    }
}

/// Decoding a stereo stream (as the capacity bench's senders send, 48 kbps VoIP) to stereo,
/// as the room's audio thread does, or straight to mono, which the mix is.
fn decode_costs(pcm_mono: &[i16]) {
    let stereo: Vec<i16> = pcm_mono.iter().flat_map(|&s| [s, s / 2]).collect();
    let mut enc = OpusEncoder::new(OpusConfig::voice(OpusChannels::Stereo, 48_000)).unwrap();
    let packets: Vec<Vec<u8>> = stereo.chunks_exact(1920).map(|f| enc.encode(f).unwrap()).collect();
    for (name, channels) in [("stereo", OpusChannels::Stereo), ("mono", OpusChannels::Mono)] {
        let mut dec = OpusDecoder::new(channels).unwrap();
        let c0 = cpu_time(false);
        for p in &packets {
            std::hint::black_box(dec.decode(p).unwrap());
        }
        let ms = (cpu_time(false) - c0).as_secs_f64() * 1000.0 / packets.len() as f64;
        println!("decode a 48 kbps stereo stream to {name}: {ms:.3} ms CPU per 20 ms frame");
    }
}
