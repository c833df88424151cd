//! Arbitrary bytes on the shared UDP port: reading a Binding request's recipient never panics.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Some(u) = mcu_sfu::stun::stun_request_ufrag(data) {
        assert!(!u.is_empty() && !u.contains(':'));
    }
});
