//! Arbitrary packets into the Opus decoder (mono and stereo), with FEC and concealment calls.
#![no_main]

use libfuzzer_sys::fuzz_target;
use mcu_codec::audio::{OpusChannels, OpusDecoder};

#[path = "units.rs"]
mod units;

fuzz_target!(|data: &[u8]| {
    let channels = if data.first().is_some_and(|b| b & 1 == 1) { OpusChannels::Stereo } else { OpusChannels::Mono };
    let Ok(mut dec) = OpusDecoder::new(channels) else { return };
    for (packet, lost) in units::units(data.get(1..).unwrap_or_default()) {
        if lost {
            let _ = dec.decode_fec(packet, 960);
            let _ = dec.conceal(480);
        } else {
            let _ = dec.decode(packet);
        }
    }
});
