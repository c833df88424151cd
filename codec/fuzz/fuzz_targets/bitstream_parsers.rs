//! Arbitrary bytes into the header parsers, G.711 and the resampler.
#![no_main]

use libfuzzer_sys::fuzz_target;
use mcu_codec::{audio::{G711Law, Resampler}, bitstream};

fuzz_target!(|data: &[u8]| {
    let _ = bitstream::vp8_keyframe_size(data);
    let _ = bitstream::h264_is_keyframe(data);
    let _ = bitstream::h264_profile_level_id(data);
    let _ = bitstream::h264_sps_size(data);
    let _ = bitstream::av1_is_keyframe(data);
    let _ = bitstream::av1_obus(data).count();
    let _ = bitstream::av1_sequence_info(data);
    let _ = bitstream::av1c_record(data);
    for law in [G711Law::MuLaw, G711Law::ALaw] {
        assert_eq!(law.decode(data).len(), data.len());
    }
    let samples: Vec<i16> = data.chunks_exact(2).map(|c| i16::from_le_bytes([c[0], c[1]])).collect();
    if let Ok(mut r) = Resampler::new(48_000, 8_000, 1 + (data.len() % 2)) {
        let _ = r.process(&samples);
    }
});
