//! H.264 (openh264 encode → openh264 decode) on a moving card (bar sweeping, frame counter
//! digits changing every frame), 320x180 at 30 fps, 200 kbps.
//!
//! Measured here: mean Y-PSNR 56.7 dB, worst frame 47.8 dB, 193 kbps.

mod common;

use common::*;
use mcu_codec::{DecoderOptions, EncoderConfig, VideoCodec, bitstream, new_decoder, new_software_encoder};
use mcu_media::PixelFormat;

#[test]
fn h264_card_at_200kbps_decodes_with_mean_psnr_above_45db_and_every_frame_above_40db() {
    let frames: Vec<_> = (0..60).map(|i| card(i, W, H)).collect();
    let mut enc = new_software_encoder(VideoCodec::H264, &EncoderConfig::realtime(200_000, FPS)).unwrap();
    let units = encode_all(enc.as_mut(), &frames);
    assert_eq!(units.len(), 60, "one access unit per frame, none skipped");
    let mut dec = new_decoder(VideoCodec::H264, &DecoderOptions::default()).unwrap();
    let decoded = decode_all(dec.as_mut(), &units);
    assert_eq!(decoded.len(), 60);
    let (mean, min) = psnr_stats(&frames, &decoded);
    let kbps = bitrate_bps(&units) / 1000.0;
    eprintln!("H.264 200 kbps: mean PSNR {mean:.2} dB, min {min:.2} dB, {kbps:.0} kbps");
    assert!(mean > 45.0, "mean PSNR {mean:.2} dB");
    assert!(min > 40.0, "worst frame {min:.2} dB");
    assert!(kbps < 200.0 * 1.15, "{kbps:.0} kbps for a 200 kbps target");
}

#[test]
fn h264_output_is_constrained_baseline_with_sps_and_pps_before_each_idr() {
    let mut enc = new_software_encoder(VideoCodec::H264, &EncoderConfig::realtime(300_000, FPS)).unwrap();
    let first = enc.encode(&card(0, W, H)).unwrap().remove(0);
    assert!(first.keyframe);
    let types: Vec<u8> = bitstream::h264_nal_types(&first.data).collect();
    let sps = types.iter().position(|&t| t == 7).expect("SPS in the first unit");
    let pps = types.iter().position(|&t| t == 8).expect("PPS in the first unit");
    let idr = types.iter().position(|&t| t == 5).expect("IDR in the first unit");
    assert!(sps < idr && pps < idr, "parameter sets precede the IDR: {types:?}");
    let [profile, constraints, _level] = bitstream::h264_profile_level_id(&first.data).unwrap();
    assert_eq!(profile, 66, "baseline profile_idc");
    assert_ne!(constraints & 0x40, 0, "constraint_set1_flag: constrained baseline (profile-level-id 42c0xx/42e0xx)");
    // A P frame carries no parameter sets; a requested IDR carries them again.
    let p = enc.encode(&card(1, W, H)).unwrap().remove(0);
    assert!(!p.keyframe && !bitstream::h264_nal_types(&p.data).any(|t| t == 7 || t == 5));
    enc.request_keyframe();
    let k = enc.encode(&card(2, W, H)).unwrap().remove(0);
    let types: Vec<u8> = bitstream::h264_nal_types(&k.data).collect();
    assert!(k.keyframe && types.contains(&7) && types.contains(&8) && types.contains(&5), "{types:?}");
}

#[test]
fn h264_nv12_input_encodes_like_i420_input() {
    let i420: Vec<_> = (0..10).map(|i| card(i, W, H)).collect();
    let nv12: Vec<_> = i420.iter().map(|f| f.converted(PixelFormat::Nv12)).collect();
    let config = EncoderConfig::realtime(300_000, FPS);
    let a = encode_all(new_software_encoder(VideoCodec::H264, &config).unwrap().as_mut(), &i420);
    let b = encode_all(new_software_encoder(VideoCodec::H264, &config).unwrap().as_mut(), &nv12);
    assert_eq!(a, b, "the same picture in either layout gives the same bitstream");
}
