//! A decoder without a usable reference drops delta frames with "need keyframe" until the next
//! keyframe, then decodes cleanly: at the start of a stream, after a lost frame (reported by
//! the jitter buffer, or for H.264 noticed by openh264 from the frame-number gap), and after a
//! unit arrives out of order. A duplicate unit is refused without harm.

mod common;

use common::*;
use mcu_codec::{DecodeError, Decoded, DecoderOptions, VideoCodec, new_decoder};

const CODECS: [VideoCodec; 3] = [VideoCodec::Vp8, VideoCodec::H264, VideoCodec::Av1];

#[test]
fn a_stream_joined_mid_way_needs_a_keyframe_first() {
    for codec in CODECS {
        let (frames, units) = stream_with_two_keyframes(codec);
        let mut dec = new_decoder(codec, &DecoderOptions::default()).unwrap();
        assert!(dec.needs_keyframe(), "{codec}: a new decoder waits for a keyframe");
        for u in &units[5..20] {
            assert_eq!(dec.decode(&u.data, u.pts).unwrap(), Decoded::NeedKeyframe, "{codec}");
        }
        let decoded = decode_all(dec.as_mut(), &units[20..]);
        let (_, min) = psnr_stats(&frames, &decoded);
        assert!(decoded.len() == 10 && min > 35.0, "{codec}: {} frames, worst {min:.1} dB", decoded.len());
    }
}

#[test]
fn a_reported_loss_drops_delta_frames_until_the_next_keyframe() {
    for codec in CODECS {
        let (frames, units) = stream_with_two_keyframes(codec);
        let mut dec = new_decoder(codec, &DecoderOptions::default()).unwrap();
        assert_eq!(decode_all(dec.as_mut(), &units[..8]).len(), 8);
        // Unit 8 is lost; the jitter buffer says so.
        dec.report_loss();
        assert!(dec.needs_keyframe());
        for u in &units[9..20] {
            assert_eq!(dec.decode(&u.data, u.pts).unwrap(), Decoded::NeedKeyframe, "{codec} at {:?}", u.pts);
        }
        let decoded = decode_all(dec.as_mut(), &units[20..]);
        let (_, min) = psnr_stats(&frames, &decoded);
        assert!(decoded.len() == 10 && min > 35.0, "{codec}: {} frames, worst {min:.1} dB", decoded.len());
    }
}

#[test]
fn openh264_notices_an_unreported_missing_reference() {
    let (frames, units) = stream_with_two_keyframes(VideoCodec::H264);
    let mut dec: Box<dyn mcu_codec::VideoDecoder> = Box::new(mcu_codec::video::H264Decoder::new(&DecoderOptions::default()).unwrap());
    decode_all(dec.as_mut(), &units[..8]);
    // Unit 8 never arrives and nobody says so: frame_num jumps from 7 to 9.
    let r = dec.decode(&units[9].data, units[9].pts);
    assert!(matches!(r, Err(DecodeError::Corrupt { .. })), "{r:?}");
    assert!(dec.needs_keyframe());
    for u in &units[10..20] {
        assert_eq!(dec.decode(&u.data, u.pts).unwrap(), Decoded::NeedKeyframe);
    }
    let decoded = decode_all(dec.as_mut(), &units[20..]);
    let (_, min) = psnr_stats(&frames, &decoded);
    assert!(decoded.len() == 10 && min > 35.0, "{} frames, worst {min:.1} dB", decoded.len());
}

#[test]
fn a_unit_arriving_out_of_order_is_refused_and_the_decoder_waits_for_a_keyframe() {
    for codec in CODECS {
        let (frames, units) = stream_with_two_keyframes(codec);
        let mut dec = new_decoder(codec, &DecoderOptions::default()).unwrap();
        decode_all(dec.as_mut(), &units[..6]);
        // 7 overtakes 6: 7 is decoded (the decoder cannot know yet), then 6 is refused.
        let _ = dec.decode(&units[7].data, units[7].pts);
        let r = dec.decode(&units[6].data, units[6].pts);
        assert!(matches!(r, Err(DecodeError::OutOfOrder { .. })), "{codec}: {r:?}");
        assert!(dec.needs_keyframe(), "{codec}: the frames after 7 lack 6 as a reference");
        assert_eq!(dec.decode(&units[8].data, units[8].pts).unwrap(), Decoded::NeedKeyframe);
        for u in &units[9..20] {
            assert_eq!(dec.decode(&u.data, u.pts).unwrap(), Decoded::NeedKeyframe);
        }
        let decoded = decode_all(dec.as_mut(), &units[20..]);
        let (_, min) = psnr_stats(&frames, &decoded);
        assert!(decoded.len() == 10 && min > 35.0, "{codec}: {} frames, worst {min:.1} dB", decoded.len());
    }
}

#[test]
fn a_duplicate_unit_is_refused_without_harm() {
    for codec in CODECS {
        let (frames, units) = stream_with_two_keyframes(codec);
        let mut dec = new_decoder(codec, &DecoderOptions::default()).unwrap();
        decode_all(dec.as_mut(), &units[..6]);
        let r = dec.decode(&units[5].data, units[5].pts);
        assert!(matches!(r, Err(DecodeError::Duplicate { .. })), "{codec}: {r:?}");
        assert!(!dec.needs_keyframe());
        let decoded = decode_all(dec.as_mut(), &units[6..20]);
        let (_, min) = psnr_stats(&frames, &decoded);
        assert!(decoded.len() == 14 && min > 35.0, "{codec}: {} frames, worst {min:.1} dB", decoded.len());
    }
}
