//! A keyframe request makes the very next frame a keyframe, for every software encoder: the
//! encoder flags it, its bitstream says so (VP8 key frame tag, H.264 IDR with SPS/PPS, AV1
//! key frame with a sequence header), the frame after it is a delta frame again, and a fresh
//! decoder joining at that keyframe decodes it cleanly (as a new viewer or after a PLI).

mod common;

use common::*;
use mcu_codec::{Decoded, DecoderOptions, EncoderConfig, VideoCodec, bitstream, new_decoder, new_software_encoder};

fn check(codec: VideoCodec, is_key: fn(&[u8]) -> bool) {
    let mut enc = new_software_encoder(codec, &EncoderConfig::realtime(300_000, FPS)).unwrap();
    let frames: Vec<_> = (0..16).map(|i| card(i, W, H)).collect();
    let mut units = Vec::new();
    for (i, f) in frames.iter().enumerate() {
        if i == 10 {
            enc.request_keyframe();
        }
        units.extend(enc.encode(f).unwrap());
    }
    units.extend(enc.flush().unwrap());
    let keys: Vec<u32> = units.iter().filter(|u| u.keyframe).map(|u| (0..16).find(|&i| pts(i) == u.pts).unwrap()).collect();
    assert_eq!(keys, vec![0, 10], "{codec}: keyframes at the first frame and the one after the request");
    for u in &units {
        assert_eq!(is_key(&u.data), u.keyframe, "{codec}: bitstream and flag agree at pts {:?}", u.pts);
    }
    // A decoder that joins at the requested keyframe decodes it and what follows.
    let mut dec = new_decoder(codec, &DecoderOptions::default()).unwrap();
    let at = units.iter().position(|u| u.pts == pts(10)).unwrap();
    assert_eq!(dec.decode(&units[at - 1].data, units[at - 1].pts).unwrap(), Decoded::NeedKeyframe, "{codec}: a delta frame first");
    assert!(dec.needs_keyframe());
    let decoded = decode_all(dec.as_mut(), &units[at..]);
    assert!(!dec.needs_keyframe());
    let (mean, min) = psnr_stats(&frames, &decoded);
    eprintln!("{codec}: joined at the requested keyframe, {} frames, mean PSNR {mean:.1} dB, min {min:.1} dB", decoded.len());
    assert_eq!(decoded.len(), 6);
    assert!(min > 35.0, "{codec}: worst frame after joining {min:.1} dB");
}

#[test]
fn h264_keyframe_request_yields_an_idr_at_the_next_frame() {
    check(VideoCodec::H264, bitstream::h264_is_keyframe);
}

#[test]
fn vp8_keyframe_request_yields_a_key_frame_at_the_next_frame() {
    check(VideoCodec::Vp8, bitstream::vp8_is_keyframe);
}

#[test]
fn av1_keyframe_request_yields_a_key_frame_at_the_next_frame() {
    check(VideoCodec::Av1, bitstream::av1_is_keyframe);
}
