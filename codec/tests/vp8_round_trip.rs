//! VP8 (libvpx real-time encode → libvpx decode) on a moving card (bar sweeping, frame counter
//! digits changing every frame), 320x180 at 30 fps, 200 kbps.
//!
//! Measured here: mean Y-PSNR 51.8 dB, worst frame 41.9 dB, 179 kbps.

mod common;

use common::*;
use mcu_codec::{DecoderOptions, EncoderConfig, VideoCodec, bitstream, new_decoder, new_software_encoder};

#[test]
fn vp8_card_at_200kbps_decodes_with_mean_psnr_above_45db_and_every_frame_above_38db() {
    let frames: Vec<_> = (0..60).map(|i| card(i, W, H)).collect();
    let mut enc = new_software_encoder(VideoCodec::Vp8, &EncoderConfig::realtime(200_000, FPS)).unwrap();
    let units = encode_all(enc.as_mut(), &frames);
    assert_eq!(units.len(), 60, "one frame out per frame in, none dropped");
    assert!(units[0].keyframe && bitstream::vp8_is_keyframe(&units[0].data));
    assert_eq!(bitstream::vp8_keyframe_size(&units[0].data), Some((W, H)));
    let mut dec = new_decoder(VideoCodec::Vp8, &DecoderOptions::default()).unwrap();
    let decoded = decode_all(dec.as_mut(), &units);
    assert_eq!(decoded.len(), 60);
    let (mean, min) = psnr_stats(&frames, &decoded);
    let kbps = bitrate_bps(&units) / 1000.0;
    eprintln!("VP8 200 kbps: mean PSNR {mean:.2} dB, min {min:.2} dB, {kbps:.0} kbps");
    assert!(mean > 45.0, "mean PSNR {mean:.2} dB");
    assert!(min > 38.0, "worst frame {min:.2} dB");
    assert!(kbps < 200.0 * 1.15, "{kbps:.0} kbps for a 200 kbps target");
}

#[test]
fn vp8_encodes_and_decodes_odd_sizes() {
    let frames: Vec<_> = (0..5).map(|i| card(i, 161, 91)).collect();
    let mut enc = new_software_encoder(VideoCodec::Vp8, &EncoderConfig::realtime(300_000, FPS)).unwrap();
    let units = encode_all(enc.as_mut(), &frames);
    let decoded = decode_all(new_decoder(VideoCodec::Vp8, &DecoderOptions::default()).unwrap().as_mut(), &units);
    assert_eq!((decoded[0].width, decoded[0].height), (161, 91));
    let (mean, _) = psnr_stats(&frames, &decoded);
    assert!(mean > 35.0, "mean PSNR {mean:.2} dB");
}
