#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(p) = mcu_sfu::rtp::RtpPacket::parse(data) {
        let _ = p.payload();
        for id in 0..16 {
            let _ = p.extension(id);
        }
        let _ = p.elements().count();
        // The direct send path's rewrite: always a packet that parses, same payload.
        let mut out = Vec::new();
        mcu_sfu::rtp::write_for_subscriber(&p, 96, &[(1, 3), (2, 15), (3, 200)], &mut out);
        let w = mcu_sfu::rtp::RtpPacket::parse(&out).expect("rewritten packets parse");
        assert_eq!(w.payload(), p.payload());
    }
});
