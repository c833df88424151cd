//! Arbitrary bytes as a phone's SDP offer: parsing, negotiation and the answer must not panic.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(offer) = mcu_sip::parse_offer(&String::from_utf8_lossy(data))
        && let Ok(n) = mcu_sip::negotiate(&offer, (1280, 720))
    {
        let _ = mcu_sip::answer_sdp(&n, "127.0.0.1".parse().unwrap(), 20000, 20002, 1, 1);
    }
});
