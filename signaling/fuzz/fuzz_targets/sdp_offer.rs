//! Arbitrary bytes as an SDP offer: the server's readers and rtc-sdp's parser must not panic.
#![no_main]

use libfuzzer_sys::fuzz_target;
use mcu_signaling::sdp::{count_sending_sections, extmaps, packetization_mode, simulcast_send_rids};

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let _ = count_sending_sections(&text);
    let _ = extmaps(&text);
    let _ = packetization_mode(&text);
    let _ = simulcast_send_rids(&text);
    let _ = rtc::sdp::description::session::SessionDescription::unmarshal(&mut std::io::Cursor::new(data));
});
