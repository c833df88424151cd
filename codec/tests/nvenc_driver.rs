//! NVENC against the real driver: encode H.264 (and HEVC, AV1 where the GPU has them), check
//! keyframe requests, rate changes and (H.264, AV1) decodability.
//!
//! The one conditional test of the crate: it runs only where `libnvidia-encode.so.1` loads
//! (a machine with an NVIDIA driver); elsewhere it returns at once and says so. Its counterpart
//! that always runs is `nvenc_probe_reports_why_absent.rs`.
#![cfg(feature = "nvenc")]

mod common;

use common::*;
use mcu_codec::{
    Backend, DecoderOptions, EncoderConfig, EncoderPreference, EncoderSelector, RateControl, VideoCodec, bitstream, new_decoder,
    nvenc::{self, NvencStatus},
};

fn driver_loads() -> bool {
    // SAFETY: loading the NVIDIA driver library runs its initialisers, as any NVENC user does.
    #[allow(unsafe_code)]
    let lib = unsafe { libloading::Library::new(nvenc::ENCODE_LIBRARY) };
    lib.is_ok()
}

#[test]
fn nvenc_encodes_every_codec_the_gpu_lists() {
    if !driver_loads() {
        eprintln!("skipped: {} does not load here (no NVIDIA driver)", nvenc::ENCODE_LIBRARY);
        return;
    }
    let info = match nvenc::probe() {
        NvencStatus::Available(info) => info,
        NvencStatus::Absent { reason } => {
            // A driver without a usable NVENC (A100/H100/H200, or too old): say why.
            eprintln!("driver present, NVENC absent: {reason}");
            assert!(reason.contains("NVENC") || reason.contains("CUDA") || reason.contains("API"), "{reason}");
            return;
        }
    };
    eprintln!("NVENC on {}: {:?}, driver API {:?}", info.device, info.codecs, info.driver_api);
    let selector = EncoderSelector::with_status(EncoderPreference::Nvenc, NvencStatus::Available(info.clone()));
    for &codec in &info.codecs {
        let mut chosen = selector.create(codec, &EncoderConfig::realtime(300_000, FPS)).unwrap();
        assert_eq!(chosen.backend, Backend::Nvenc);
        let enc = chosen.encoder.as_mut();
        let frames: Vec<_> = (0..60).map(|i| card(i, W, H)).collect();
        let mut units = Vec::new();
        for (i, f) in frames.iter().enumerate() {
            if i == 30 {
                enc.request_keyframe();
            }
            units.extend(enc.encode(f).unwrap());
        }
        units.extend(enc.flush().unwrap());
        assert_eq!(units.len(), 60, "{codec}: one unit per frame");
        let keys: Vec<usize> = units.iter().enumerate().filter(|(_, u)| u.keyframe).map(|(i, _)| i).collect();
        assert_eq!(keys, vec![0, 30], "{codec}: keyframes at the start and at the request");
        let kbps = bitrate_bps(&units[30..]) / 1000.0;
        eprintln!("{codec}: {kbps:.0} kbps for 300");
        match codec {
            VideoCodec::H264 | VideoCodec::Av1 => {
                if codec == VideoCodec::H264 {
                    assert!(units.iter().all(|u| bitstream::h264_is_keyframe(&u.data) == u.keyframe));
                    let [profile, constraints, _] = bitstream::h264_profile_level_id(&units[0].data).unwrap();
                    assert!(profile == 66 && constraints & 0x40 != 0, "constrained baseline");
                }
                let decoded = decode_all(new_decoder(codec, &DecoderOptions::default()).unwrap().as_mut(), &units);
                let (mean, min) = psnr_stats(&frames, &decoded);
                eprintln!("{codec}: NVENC → software decoder, mean PSNR {mean:.1} dB, min {min:.1} dB");
                assert!(min > 30.0, "{codec}: worst frame {min:.1} dB");
            }
            _ => assert!(units.iter().all(|u| !u.data.is_empty())),
        }
        // Rate changes are applied by reconfiguring the session.
        enc.set_rate(RateControl { bitrate_bps: 900_000, frame_rate: FPS }).unwrap();
        let more: Vec<_> = (60..120).flat_map(|i| enc.encode(&noisy_card(i, W, H, 12)).unwrap()).collect();
        let high = bitrate_bps(&more[30..]) / 1000.0;
        eprintln!("{codec}: {high:.0} kbps for 900 after the change");
        assert!(high > 600.0, "{codec}: {high:.0} kbps after raising to 900");
    }
}
