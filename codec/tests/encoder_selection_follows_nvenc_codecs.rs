//! Given a probe result, the selector uses NVENC only for the codecs that GPU encodes and says
//! why it chose software for the others (e.g. AV1 on an Ampere GPU, VP8 anywhere).

use mcu_codec::{
    Backend, EncoderConfig, EncoderPreference, EncoderSelector, VideoCodec,
    nvenc::{NvencInfo, NvencStatus},
};

#[test]
fn codecs_the_gpu_lacks_are_encoded_in_software_with_the_reason() {
    let a10 = NvencStatus::Available(NvencInfo { device: "NVIDIA A10".into(), driver_api: (12, 2), codecs: vec![VideoCodec::H264, VideoCodec::Hevc] });
    let selector = EncoderSelector::with_status(EncoderPreference::Auto, a10);
    assert!(selector.summary().starts_with("NVENC on NVIDIA A10 for H.264, HEVC"), "{}", selector.summary());
    for codec in [VideoCodec::Av1, VideoCodec::Vp8] {
        let chosen = selector.create(codec, &EncoderConfig::realtime(500_000, 30.0)).unwrap();
        assert!(matches!(chosen.backend, Backend::Software(_)));
        assert_eq!(chosen.reason, format!("NVENC on NVIDIA A10 does not encode {codec}"));
    }
}

#[test]
fn software_preference_never_uses_nvenc() {
    let l4 = NvencStatus::Available(NvencInfo {
        device: "NVIDIA L4".into(),
        driver_api: (12, 2),
        codecs: vec![VideoCodec::H264, VideoCodec::Hevc, VideoCodec::Av1],
    });
    let selector = EncoderSelector::with_status(EncoderPreference::Software, l4);
    assert!(selector.summary().contains("as requested"));
    let chosen = selector.create(VideoCodec::H264, &EncoderConfig::realtime(500_000, 30.0)).unwrap();
    assert_eq!(chosen.backend, Backend::Software("openh264"));
}
