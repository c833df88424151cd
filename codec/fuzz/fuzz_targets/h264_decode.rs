//! Arbitrary access units into the H264 decoder: errors and "need keyframe" are fine, panics
//! and crashes are bugs.
#![no_main]

use libfuzzer_sys::fuzz_target;

#[path = "units.rs"]
mod units;

fuzz_target!(|data: &[u8]| {
    units::run(mcu_codec::VideoCodec::H264, data);
});
