#![no_main]
use std::time::{Duration, Instant};

use libfuzzer_sys::fuzz_target;
use mcu_sfu::{Codec, Forwarder, ForwarderConfig};

fuzz_target!(|data: &[u8]| {
    let mut f = Forwarder::new(ForwarderConfig::default());
    let _ = f.publish("t", Codec::Vp8, 90_000, &[(1, 100_000), (2, 500_000)]);
    let start = Instant::now();
    let _ = f.subscribe(start, 1, "t", 9, Some((10, 97)));
    // First byte picks the channel for each chunk: RTP from the publisher or subscriber RTCP.
    for (i, chunk) in data.chunks(64).enumerate() {
        let now = start + Duration::from_millis(i as u64 * 10);
        if chunk.first().is_some_and(|b| b & 1 == 0) {
            let _ = f.handle_rtp(now, &chunk[1..]);
        } else if !chunk.is_empty() {
            let _ = f.handle_subscriber_rtcp(now, 1, &chunk[1..]);
        }
        f.handle_timeout(now);
        while f.poll_output().is_some() {}
    }
});
