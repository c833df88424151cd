//! Decoder CPU per frame for one H.264 or VP8 stream (quick A/B while tuning the decoders):
//! `decode_breakdown [h264|vp8] [720|1080|360]`, our encoder's bitstream of a moving card.
#![allow(clippy::disallowed_methods)] // benchmarks time things: the clock is the point

use std::time::Duration;

use mcu_benches::cpu_time;
use mcu_codec::{
    DecoderOptions, EncoderConfig, VideoCodec, VideoDecoder, new_software_encoder,
    video::{AvH264Decoder, AvVp8Decoder, H264Decoder, Vp8Decoder},
};
use mcu_media::{PixelFormat, testsrc};

fn main() {
    let (codec, w, h) = mcu_benches::breakdown_args();
    let mut enc = new_software_encoder(codec, &EncoderConfig::realtime(2_000_000, 30.0)).unwrap();
    let mut units = Vec::new();
    for i in 0..120u32 {
        let p = testsrc::Pattern::Card { color: testsrc::palette(i as usize / 20), label: 1000 + i };
        units.extend(enc.encode(&testsrc::frame(&p, PixelFormat::I420, w, h, Duration::from_millis(33 * i as u64))).unwrap());
    }
    if codec == VideoCodec::H264 {
        // The same stream ten times over, for `ffmpeg -threads 1 -f h264 -i … -f null -`.
        let all: Vec<u8> = (0..10).flat_map(|_| units.iter().flat_map(|u| u.data.iter().copied())).collect();
        std::fs::write(std::env::temp_dir().join("decode_breakdown.h264"), all).unwrap();
    }
    let o = DecoderOptions::default();
    type Make<'a> = Box<dyn Fn() -> Box<dyn VideoDecoder> + 'a>;
    let makers: Vec<(&str, Make)> = match codec {
        VideoCodec::H264 => {
            vec![("libavcodec", Box::new(|| Box::new(AvH264Decoder::new(&o).unwrap()))), ("openh264", Box::new(|| Box::new(H264Decoder::new(&o).unwrap())))]
        }
        _ => vec![("libavcodec", Box::new(|| Box::new(AvVp8Decoder::new(&o).unwrap()))), ("libvpx", Box::new(|| Box::new(Vp8Decoder::new(&o).unwrap())))],
    };
    for (name, make) in makers {
        let c0 = cpu_time(false);
        let mut n = 0;
        for pass in 0..10u32 {
            let mut d = make();
            for u in &units {
                std::hint::black_box(d.decode(&u.data, u.pts + Duration::from_secs(10) * pass).unwrap());
                n += 1;
            }
        }
        println!("{codec} {w}x{h} {name}: {:.3} ms CPU per frame", (cpu_time(false) - c0).as_secs_f64() * 1000.0 / n as f64);
    }
}
