//! `mcu serve` refuses settings it cannot honour at start, with a message naming the flag,
//! rather than failing later (an automatic recording's own encode).

use std::process::Command;

fn serve(extra: &[&str]) -> (bool, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_mcu"))
        .args(["serve", "--dev", "--http-listen", "127.0.0.1:0", "--grpc-listen", "127.0.0.1:0", "--rtc-udp", "127.0.0.1:0", "--sip-listen", "off"])
        .args(extra)
        .env_remove("MCU_RECORD_CODEC")
        .env_remove("MCU_RECORD_SIZE")
        .env_remove("MCU_RECORD_BITRATE")
        .output()
        .unwrap();
    (out.status.success(), String::from_utf8_lossy(&out.stderr).into_owned())
}

#[test]
fn bad_automatic_recording_encodes_stop_the_server_at_start() {
    for (args, names) in [
        (&["--record-size", "641x360"][..], "--record-size"),
        (&["--record-size", "1280"][..], "--record-size"),
        (&["--record-codec", "vp9"][..], "--record-codec"),
        (&["--record-bitrate", "5"][..], "--record-bitrate"),
    ] {
        let (ok, err) = serve(args);
        assert!(!ok, "{args:?} should be refused");
        assert!(err.contains(names), "{args:?}: {err}");
    }
}

#[test]
fn a_shared_udp_port_in_use_stops_the_server_at_start() {
    let taken = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let port = taken.local_addr().unwrap().port();
    // A second --rtc-udp adds an address; its port (the only one not 0) becomes the shared one.
    let (ok, err) = serve(&["--rtc-udp", &format!("127.0.0.1:{port}")]);
    assert!(!ok, "the server started on a UDP port already in use");
    assert!(err.contains("--rtc-udp") && err.to_lowercase().contains("in use"), "{err}");
}
