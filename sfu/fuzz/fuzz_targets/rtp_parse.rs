#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(p) = mcu_sfu::rtp::RtpPacket::parse(data) {
        let _ = p.payload();
        for id in 0..16 {
            let _ = p.extension(id);
        }
    }
});
