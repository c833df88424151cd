//! Arbitrary bytes as a SIP datagram: the parser and every accessor the gateway uses on an
//! INVITE must not panic.
#![no_main]

use libfuzzer_sys::fuzz_target;
use rsipstack::sip::{prelude::HeadersExt, SipMessage};

fuzz_target!(|data: &[u8]| {
    let Ok(SipMessage::Request(req)) = SipMessage::try_from(data) else { return };
    let _ = req.uri.user();
    let _ = req.uri.host().to_string();
    let _ = req.to_header().ok().and_then(|t| t.tag().ok().flatten());
    let _ = req.from_header().ok().and_then(|f| f.uri().ok());
    let _ = req.session_expires_header().map(|h| h.value().to_string());
    if let Some(h) = req.authorization_header() {
        let _ = rsipstack::sip::typed::Authorization::parse(h.value());
    }
    if let Ok(offer) = mcu_sip::parse_offer(&String::from_utf8_lossy(&req.body))
        && let Ok(n) = mcu_sip::negotiate(&offer, (640, 360))
    {
        let _ = mcu_sip::answer_sdp(&n, "127.0.0.1".parse().unwrap(), 1, 2, 3, 4);
    }
});
