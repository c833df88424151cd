//! Without an NVIDIA driver (this machine, CI), the NVENC probe says "absent" and why, and the
//! encoder selector falls back to the software encoders with one log line saying which and why.
//! These tests always run, with or without the `nvenc` feature.

use std::{
    io::Write,
    sync::{Arc, Mutex},
};

use mcu_codec::{
    Backend, EncoderConfig, EncoderPreference, EncoderSelector, VideoCodec,
    nvenc::{self, NvencStatus},
    select_encoder,
};

#[test]
fn a_missing_driver_library_is_reported_as_absent_with_its_name() {
    let status = nvenc::probe_libraries("libnvidia-encode-not-installed.so.1", "libcuda-not-installed.so.1");
    let NvencStatus::Absent { reason } = status else { panic!("a missing library cannot give NVENC: {status:?}") };
    eprintln!("absent: {reason}");
    if cfg!(feature = "nvenc") {
        assert!(reason.contains("libnvidia-encode-not-installed.so.1 could not be loaded"), "{reason}");
    } else {
        assert!(reason.contains("`nvenc` is off"), "{reason}");
    }
}

#[test]
fn the_probe_here_gives_a_status_with_a_reason_or_the_codecs() {
    match nvenc::probe() {
        NvencStatus::Absent { reason } => {
            eprintln!("NVENC not available: {reason}");
            assert!(reason.len() > 20, "a sentence, not a code: {reason}");
            if cfg!(feature = "nvenc") {
                assert!(reason.contains(nvenc::ENCODE_LIBRARY) || reason.contains("NVENC") || reason.contains("CUDA"), "{reason}");
            }
        }
        NvencStatus::Available(info) => {
            eprintln!("NVENC on {}: {:?}", info.device, info.codecs);
            assert!(!info.codecs.is_empty());
        }
    }
}

/// Collects what tracing writes.
#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[test]
fn without_nvenc_the_selector_logs_one_line_and_encodes_in_software() {
    let captured = Captured::default();
    let sink = captured.clone();
    let subscriber = tracing_subscriber::fmt().with_writer(move || sink.clone()).with_ansi(false).finish();
    let selector = tracing::subscriber::with_default(subscriber, || EncoderSelector::probe(EncoderPreference::Auto));
    let log = String::from_utf8(captured.0.lock().unwrap().clone()).unwrap();
    let lines: Vec<&str> = log.lines().filter(|l| l.contains("video encoders")).collect();
    eprintln!("{log}");
    assert_eq!(lines.len(), 1, "one line at start: {log}");
    let NvencStatus::Absent { reason } = selector.nvenc().clone() else {
        // A machine with a working NVENC: the line names it instead.
        assert!(lines[0].contains("NVENC on"), "{}", lines[0]);
        return;
    };
    assert!(lines[0].contains("software (openh264, libvpx, rav1e): NVENC not available: "), "{}", lines[0]);
    assert!(lines[0].contains(&reason), "the line says why: {}", lines[0]);
    for codec in [VideoCodec::H264, VideoCodec::Vp8, VideoCodec::Av1] {
        let chosen = selector.create(codec, &EncoderConfig::realtime(500_000, 30.0)).unwrap();
        assert!(matches!(chosen.backend, Backend::Software(_)), "{codec}: {:?}", chosen.backend);
        assert_eq!(chosen.encoder.codec(), codec);
        assert!(chosen.reason.contains(&reason), "{}", chosen.reason);
    }
    // HEVC exists only as NVENC; requiring NVENC fails with the reason.
    assert!(selector.create(VideoCodec::Hevc, &EncoderConfig::realtime(500_000, 30.0)).is_err());
    let strict = EncoderSelector::with_status(EncoderPreference::Nvenc, selector.nvenc().clone());
    let err = strict.create(VideoCodec::H264, &EncoderConfig::realtime(500_000, 30.0)).unwrap_err();
    assert!(err.to_string().contains(&reason), "{err}");
}

#[test]
fn select_encoder_returns_the_encoder_and_the_reason() {
    let chosen = select_encoder(VideoCodec::H264, &EncoderConfig::realtime(500_000, 30.0), EncoderPreference::Software).unwrap();
    assert_eq!(chosen.backend, Backend::Software("openh264"));
    assert_eq!(chosen.reason, "software encoders were requested");
}
