//! G.711 µ-law and A-law keep a 1013 Hz tone at 8 kHz, 0.5 full scale (1013 Hz does not divide
//! the rate, so the quantisation error is noise-like rather than periodic): the FFT peak stays
//! there (±1 Hz) and the spectral SNR is above 35 dB (8-bit companding noise is 35-39 dB below
//! a tone over a wide range of levels).

mod common;

use common::*;
use mcu_codec::audio::G711Law;

#[test]
fn mulaw_and_alaw_keep_a_1013hz_tone_above_35db() {
    let pcm = tone(1013.0, 8000, 1.0, 0.5);
    for law in [G711Law::MuLaw, G711Law::ALaw] {
        let bytes = law.encode(&pcm);
        assert_eq!(bytes.len(), pcm.len(), "one byte per sample");
        let out = law.decode(&bytes);
        let peak = fft_peak_hz(&out, 8000);
        let snr = tone_snr_db(&out, 8000, 1013.0, 0);
        eprintln!("{law:?}: peak {peak:.1} Hz, SNR {snr:.1} dB");
        assert!((peak - 1013.0).abs() < 1.0, "{law:?}: peak {peak:.1} Hz");
        assert!(snr > 35.0, "{law:?}: SNR {snr:.1} dB");
    }
}

#[test]
fn quiet_tones_keep_their_snr_thanks_to_companding() {
    // -30 dBFS: a linear 8-bit code would lose most of its SNR here; G.711 stays near 38 dB.
    let pcm = tone(1013.0, 8000, 1.0, 0.0316);
    for law in [G711Law::MuLaw, G711Law::ALaw] {
        let snr = tone_snr_db(&law.decode(&law.encode(&pcm)), 8000, 1013.0, 0);
        eprintln!("{law:?} at -30 dBFS: SNR {snr:.1} dB");
        assert!(snr > 30.0, "{law:?}: SNR {snr:.1} dB");
    }
}
