//! Every decoder, fed random bytes, truncated frames and frames with damaged bytes, returns
//! an error or "need keyframe" (never a panic, never a picture from garbage), asks for a
//! keyframe, and decodes cleanly again from the next keyframe (Y-PSNR above 35 dB).

mod common;

use std::time::Duration;

use common::*;
use mcu_codec::{Decoded, DecoderOptions, VideoCodec, VideoDecoder, new_decoder};

/// Feeds garbage, checks what comes back, and returns the next pts to use.
/// `damaged_pictures_allowed`: a damaged real frame may still decode (to a damaged picture,
/// when the library notices nothing); random bytes must never produce a picture.
fn feed_garbage(dec: &mut dyn VideoDecoder, garbage: &[Vec<u8>], mut pts: Duration, damaged_pictures_allowed: bool) -> (Duration, usize) {
    let mut errors = 0;
    for g in garbage {
        pts += Duration::from_millis(1);
        match dec.decode(g, pts) {
            Err(_) => errors += 1,
            Ok(Decoded::NeedKeyframe | Decoded::NoPicture) => {}
            Ok(Decoded::Frame(_)) if damaged_pictures_allowed => {}
            Ok(other) => panic!("{:?} from {} bytes of garbage", other, g.len()),
        }
    }
    (pts, errors)
}

fn recovers(codec: VideoCodec, dec: &mut dyn VideoDecoder, after: Duration) {
    let (frames, units) = stream_with_two_keyframes(codec);
    // Shift the stream after the garbage so that pts keep increasing.
    let shifted: Vec<_> = units[20..].iter().map(|u| mcu_codec::EncodedFrame { pts: u.pts + after, ..u.clone() }).collect();
    let decoded = decode_all(dec, &shifted);
    assert!(!dec.needs_keyframe(), "{codec}: healthy after the keyframe");
    let sources: Vec<_> = frames[20..].iter().map(|f| mcu_media::VideoFrame { pts: f.pts + after, ..f.clone() }).collect();
    let (mean, min) = psnr_stats(&sources, &decoded);
    assert_eq!(decoded.len(), 10, "{codec}: every frame from the keyframe on");
    assert!(min > 35.0, "{codec}: after recovery worst frame {min:.1} dB (mean {mean:.1})");
}

fn random_input(codec: VideoCodec) {
    let mut dec = new_decoder(codec, &DecoderOptions::default()).unwrap();
    let (_, units) = stream_with_two_keyframes(codec);
    // Start healthy, so that garbage hits a decoder with references.
    let decoded = decode_all(dec.as_mut(), &units[..5]);
    assert_eq!(decoded.len(), 5);
    let mut garbage: Vec<Vec<u8>> = (0..300).map(|s| random_bytes(s, 1 + (s as usize * 37) % 3000)).collect();
    // Garbage that passes the cheap header checks, so that it reaches the library.
    for s in 0..50u32 {
        let mut g = random_bytes(1000 + s, 200 + s as usize * 20);
        match codec {
            VideoCodec::Vp8 => g[..6].copy_from_slice(&[s as u8 & 0xfe, 0x20, 0x00, 0x9d, 0x01, 0x2a]),
            VideoCodec::H264 => g[..5].copy_from_slice(&[0, 0, 0, 1, if s % 2 == 0 { 0x65 } else { 0x41 }]),
            VideoCodec::Av1 => {
                // A sequence header OBU (11 random bytes) and a frame OBU whose header says
                // "shown key frame", so that it is classified as a keyframe and reaches dav1d.
                g[..2].copy_from_slice(&[0x0a, 11]);
                g[13..16].copy_from_slice(&[0x32, 0x7f, 0x10]);
                g.truncate(15 + 127);
            }
            VideoCodec::Hevc => {}
        }
        garbage.push(g);
    }
    let (pts, errors) = feed_garbage(dec.as_mut(), &garbage, units[4].pts, false);
    eprintln!("{codec}: {errors} of {} random inputs returned an error", garbage.len());
    assert!(errors > 0, "{codec}: the library refused some garbage");
    assert!(dec.needs_keyframe(), "{codec}: after garbage the decoder asks for a keyframe");
    recovers(codec, dec.as_mut(), pts);
}

fn truncated_and_damaged_input(codec: VideoCodec) {
    let mut dec = new_decoder(codec, &DecoderOptions::default()).unwrap();
    let (_, units) = stream_with_two_keyframes(codec);
    decode_all(dec.as_mut(), &units[..5]);
    let key = &units[0].data;
    let delta = &units[6].data;
    let mut bad: Vec<Vec<u8>> = Vec::new();
    for len in [1, 2, 3, 5, 9, 10, 17, key.len() / 4, key.len() / 2, key.len() - 1] {
        bad.push(key[..len.min(key.len())].to_vec());
    }
    for len in [1, 3, delta.len() / 2, delta.len().saturating_sub(1).max(1)] {
        bad.push(delta[..len].to_vec());
    }
    for s in 0..20u32 {
        let mut d = if s % 2 == 0 { key.clone() } else { delta.clone() };
        let n = d.len();
        // Keep the headers, overwrite a run in the middle.
        let start = (n / 3).max(1).min(n - 1);
        for (i, b) in random_bytes(s, (n / 8).max(1)).into_iter().enumerate() {
            if start + i < n {
                d[start + i] = b;
            }
        }
        bad.push(d);
    }
    let (pts, errors) = feed_garbage(dec.as_mut(), &bad, units[4].pts, true);
    eprintln!("{codec}: {errors} of {} truncated or damaged frames returned an error", bad.len());
    assert!(errors > 0, "{codec}: truncation is noticed");
    // The decoder may have accepted the last damaged frame silently; report the loss as the
    // depacketizer would after damage, then the next keyframe must restore a clean picture.
    dec.report_loss();
    recovers(codec, dec.as_mut(), pts);
}

#[test]
fn vp8_decoder_survives_random_bytes_and_recovers_at_keyframe() {
    random_input(VideoCodec::Vp8);
}

#[test]
fn h264_decoder_survives_random_bytes_and_recovers_at_keyframe() {
    random_input(VideoCodec::H264);
}

#[test]
fn av1_decoder_survives_random_bytes_and_recovers_at_keyframe() {
    random_input(VideoCodec::Av1);
}

#[test]
fn vp8_decoder_survives_truncated_and_damaged_frames_and_recovers_at_keyframe() {
    truncated_and_damaged_input(VideoCodec::Vp8);
}

#[test]
fn h264_decoder_survives_truncated_and_damaged_frames_and_recovers_at_keyframe() {
    truncated_and_damaged_input(VideoCodec::H264);
}

#[test]
fn av1_decoder_survives_truncated_and_damaged_frames_and_recovers_at_keyframe() {
    truncated_and_damaged_input(VideoCodec::Av1);
}

#[test]
fn empty_input_is_an_error_that_changes_nothing() {
    for codec in [VideoCodec::Vp8, VideoCodec::H264, VideoCodec::Av1] {
        let mut dec = new_decoder(codec, &DecoderOptions::default()).unwrap();
        let (_, units) = stream_with_two_keyframes(codec);
        decode_all(dec.as_mut(), &units[..3]);
        assert!(dec.decode(&[], units[3].pts).is_err());
        assert!(!dec.needs_keyframe(), "{codec}: an empty unit is not damage");
        assert!(matches!(dec.decode(&units[3].data, units[3].pts), Ok(Decoded::Frame(_))));
    }
}
