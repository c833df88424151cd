//! Encoders refuse frames they cannot encode with an error (never a panic) and keep working:
//! inconsistent planes, pts that do not increase, sizes the codec does not take.

mod common;

use std::time::Duration;

use common::*;
use mcu_codec::{EncodeError, EncoderConfig, OpenError, VideoCodec, new_software_encoder};

#[test]
fn bad_frames_are_errors_and_the_encoder_carries_on() {
    for codec in [VideoCodec::H264, VideoCodec::Vp8, VideoCodec::Av1] {
        let mut enc = new_software_encoder(codec, &EncoderConfig::realtime(300_000, FPS)).unwrap();
        enc.encode(&card(0, W, H)).unwrap();
        let mut short = card(1, W, H);
        short.planes[1].data.truncate(10);
        assert!(matches!(enc.encode(&short), Err(EncodeError::InvalidFrame { .. })), "{codec}");
        let mut same_pts = card(1, W, H);
        same_pts.pts = Duration::ZERO;
        assert!(matches!(enc.encode(&same_pts), Err(EncodeError::NonIncreasingPts { .. })), "{codec}");
        let tiny = mcu_media::VideoFrame::filled(mcu_media::PixelFormat::I420, 8, 8, mcu_media::Rgb(9, 9, 9).to_yuv(), pts(1));
        let r = enc.encode(&tiny);
        if codec != VideoCodec::Vp8 {
            assert!(matches!(r, Err(EncodeError::UnsupportedSize { .. })), "{codec}: {r:?}");
        }
        let mut units = Vec::new();
        for i in 2..8 {
            units.extend(enc.encode(&card(i, W, H)).unwrap());
        }
        units.extend(enc.flush().unwrap());
        assert!(!units.is_empty(), "{codec}: still encoding");
    }
}

#[test]
fn h264_refuses_odd_sizes() {
    let mut enc = new_software_encoder(VideoCodec::H264, &EncoderConfig::realtime(300_000, FPS)).unwrap();
    let r = enc.encode(&card(0, 161, 90));
    assert!(matches!(r, Err(EncodeError::UnsupportedSize { width: 161, .. })), "{r:?}");
}

#[test]
fn a_size_change_restarts_the_stream_with_a_keyframe() {
    for codec in [VideoCodec::H264, VideoCodec::Vp8, VideoCodec::Av1] {
        let mut enc = new_software_encoder(codec, &EncoderConfig::realtime(300_000, FPS)).unwrap();
        let mut units = Vec::new();
        for i in 0..6 {
            let (w, h) = if i < 3 { (W, H) } else { (W / 2, H / 2) };
            units.extend(enc.encode(&card(i, w, h)).unwrap());
        }
        units.extend(enc.flush().unwrap());
        let keys: Vec<bool> = units.iter().map(|u| u.keyframe).collect();
        assert_eq!(keys, [true, false, false, true, false, false], "{codec}");
    }
}

#[test]
fn no_software_hevc_encoder_and_rates_out_of_range_are_refused_at_creation() {
    assert!(matches!(new_software_encoder(VideoCodec::Hevc, &EncoderConfig::realtime(300_000, FPS)), Err(OpenError::Unsupported { .. })));
    assert!(matches!(new_software_encoder(VideoCodec::Vp8, &EncoderConfig::realtime(1, FPS)), Err(OpenError::Rate { .. })));
}
