//! Decoders return the layout the compositor asks for: NV12 output holds the same picture as
//! I420 output (same samples, interleaved chroma).

mod common;

use common::*;
use mcu_codec::{DecoderOptions, VideoCodec, new_decoder};
use mcu_media::PixelFormat;

#[test]
fn nv12_output_is_the_i420_picture_interleaved() {
    for codec in [VideoCodec::Vp8, VideoCodec::H264, VideoCodec::Av1] {
        let (_, units) = stream_with_two_keyframes(codec);
        let i420 = decode_all(new_decoder(codec, &DecoderOptions::default()).unwrap().as_mut(), &units[..5]);
        let options = DecoderOptions { format: PixelFormat::Nv12, ..Default::default() };
        let nv12 = decode_all(new_decoder(codec, &options).unwrap().as_mut(), &units[..5]);
        for (a, b) in i420.iter().zip(&nv12) {
            assert_eq!(a.format, PixelFormat::I420);
            assert_eq!(b.format, PixelFormat::Nv12);
            b.validate().unwrap();
            assert_eq!(&a.converted(PixelFormat::Nv12), b, "{codec} at {:?}", a.pts);
        }
    }
}

#[test]
fn multithreaded_decoders_return_the_same_pictures() {
    for codec in [VideoCodec::Vp8, VideoCodec::Av1] {
        let (_, units) = stream_with_two_keyframes(codec);
        let one = decode_all(new_decoder(codec, &DecoderOptions::default()).unwrap().as_mut(), &units);
        let options = DecoderOptions { threads: 2, ..Default::default() };
        let two = decode_all(new_decoder(codec, &options).unwrap().as_mut(), &units);
        assert_eq!(one, two, "{codec}");
    }
}
