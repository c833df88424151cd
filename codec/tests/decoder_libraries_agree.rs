//! VP8 and H.264 each have two decoders: FFmpeg's (libavcodec, what `new_decoder` picks) and
//! libvpx / openh264 (the fallback for a libavcodec the bindings do not know). Both decode the
//! same stream to pictures above 35 dB against the source and within a level or two of each
//! other; both ask for a keyframe first and after a reported loss.

mod common;

use common::*;
use mcu_codec::{
    Decoded, DecoderOptions, VideoCodec, VideoDecoder, new_decoder,
    video::{AvH264Decoder, AvVp8Decoder, H264Decoder, Vp8Decoder},
};

fn both(codec: VideoCodec) -> [Box<dyn VideoDecoder>; 2] {
    let o = DecoderOptions::default();
    match codec {
        VideoCodec::Vp8 => [Box::new(AvVp8Decoder::new(&o).unwrap()), Box::new(Vp8Decoder::new(&o).unwrap())],
        VideoCodec::H264 => [Box::new(AvH264Decoder::new(&o).unwrap()), Box::new(H264Decoder::new(&o).unwrap())],
        other => unreachable!("{other}"),
    }
}

#[test]
fn new_decoder_picks_libavcodec_for_vp8_and_h264() {
    for codec in [VideoCodec::Vp8, VideoCodec::H264] {
        assert_eq!(new_decoder(codec, &DecoderOptions::default()).unwrap().library(), "libavcodec", "{codec}");
    }
    assert_eq!(new_decoder(VideoCodec::Av1, &DecoderOptions::default()).unwrap().library(), "dav1d");
}

#[test]
fn both_libraries_decode_the_same_pictures() {
    for codec in [VideoCodec::Vp8, VideoCodec::H264] {
        let (frames, units) = stream_with_two_keyframes(codec);
        let [mut av, mut native] = both(codec);
        let (a, b) = (decode_all(av.as_mut(), &units), decode_all(native.as_mut(), &units));
        assert_eq!((a.len(), b.len()), (units.len(), units.len()), "{codec}: every unit gives a picture");
        for (name, decoded) in [(av.library(), &a), (native.library(), &b)] {
            let (mean, min) = psnr_stats(&frames, decoded);
            assert!(min > 35.0, "{codec} via {name}: worst {min:.1} dB (mean {mean:.1})");
        }
        let worst = a
            .iter()
            .zip(&b)
            .flat_map(|(x, y)| x.planes.iter().zip(&y.planes))
            .flat_map(|(p, q)| p.data.iter().zip(&q.data))
            .map(|(s, t)| s.abs_diff(*t))
            .max()
            .unwrap();
        assert!(worst <= 2, "{codec}: {} and {} differ by up to {worst} levels", av.library(), native.library());
    }
}

#[test]
fn both_libraries_wait_for_a_keyframe_after_a_loss() {
    for codec in [VideoCodec::Vp8, VideoCodec::H264] {
        let (_, units) = stream_with_two_keyframes(codec);
        for mut dec in both(codec) {
            assert!(dec.needs_keyframe(), "{codec} {}: a new decoder waits for a keyframe", dec.library());
            assert_eq!(decode_all(dec.as_mut(), &units[..8]).len(), 8);
            dec.report_loss();
            assert_eq!(dec.decode(&units[9].data, units[9].pts).unwrap(), Decoded::NeedKeyframe, "{codec} {}", dec.library());
            assert!(matches!(dec.decode(&units[20].data, units[20].pts).unwrap(), Decoded::Frame(_)), "{codec} {}", dec.library());
        }
    }
}
