//! Splits fuzzer input into access units: each unit is a 2-byte little-endian length and that
//! many bytes (the last unit takes what is left). A length with the top bit set also reports a
//! loss before the unit, so that the fuzzer explores the decoders' keyframe-waiting states.
#![allow(dead_code)] // each target uses part of this module

use std::time::Duration;

use mcu_codec::{Decoded, DecoderOptions, VideoCodec, VideoDecoder};
use mcu_media::PixelFormat;

pub fn units(mut data: &[u8]) -> impl Iterator<Item = (&[u8], bool)> {
    std::iter::from_fn(move || {
        if data.len() < 2 {
            return None;
        }
        let raw = u16::from_le_bytes([data[0], data[1]]);
        let (loss, len) = (raw & 0x8000 != 0, (raw & 0x7fff) as usize);
        let len = len.min(data.len() - 2);
        let unit = &data[2..2 + len];
        data = &data[2 + len..];
        Some((unit, loss))
    })
}

pub fn run(codec: VideoCodec, data: &[u8]) {
    let format = if data.first().is_some_and(|b| b & 1 == 1) { PixelFormat::Nv12 } else { PixelFormat::I420 };
    let Ok(mut dec) = mcu_codec::new_decoder(codec, &DecoderOptions { format, threads: 1 }) else { return };
    feed(dec.as_mut(), data.get(1..).unwrap_or_default());
}

fn feed(dec: &mut dyn VideoDecoder, data: &[u8]) {
    for (i, (unit, loss)) in units(data).enumerate() {
        if loss {
            dec.report_loss();
        }
        if let Ok(Decoded::Frame(f)) = dec.decode(unit, Duration::from_millis(33 * i as u64 + 1)) {
            f.validate().expect("decoders return consistent frames");
        }
    }
}
