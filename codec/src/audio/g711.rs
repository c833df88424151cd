//! G.711 (ITU-T G.711): µ-law (PCMU, RTP payload type 0) and A-law (PCMA, type 8), 8 kHz
//! mono, one byte per sample. Stateless: every byte sequence decodes.

/// Which companding law.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum G711Law {
    /// µ-law (PCMU), North America and Japan.
    MuLaw,
    /// A-law (PCMA), elsewhere.
    ALaw,
}

impl G711Law {
    /// Encodes 16-bit linear samples, one byte each.
    pub fn encode(self, pcm: &[i16]) -> Vec<u8> {
        match self {
            G711Law::MuLaw => pcm.iter().map(|&s| linear_to_ulaw(s)).collect(),
            G711Law::ALaw => pcm.iter().map(|&s| linear_to_alaw(s)).collect(),
        }
    }

    /// Decodes bytes to 16-bit linear samples.
    pub fn decode(self, bytes: &[u8]) -> Vec<i16> {
        match self {
            G711Law::MuLaw => bytes.iter().map(|&b| ulaw_to_linear(b)).collect(),
            G711Law::ALaw => bytes.iter().map(|&b| alaw_to_linear(b)).collect(),
        }
    }

    /// The static RTP payload type (RFC 3551).
    pub fn payload_type(self) -> u8 {
        match self {
            G711Law::MuLaw => 0,
            G711Law::ALaw => 8,
        }
    }
}

const ULAW_BIAS: i32 = 0x84;
const ULAW_CLIP: i32 = 32635;

/// One sample to µ-law (the classic Sun/CCITT reference algorithm, 14-bit magnitude).
pub fn linear_to_ulaw(sample: i16) -> u8 {
    let mut s = sample as i32;
    let sign = if s < 0 {
        s = -s;
        0x80
    } else {
        0
    };
    s = s.min(ULAW_CLIP) + ULAW_BIAS;
    // Segment: position of the highest set bit of bits 7..14 (s >= BIAS, so one is set).
    let exponent = (31 - (((s >> 7) & 0xff) as u32).max(1).leading_zeros()) as i32;
    let mantissa = (s >> (exponent + 3)) & 0x0f;
    !(sign | (exponent << 4) | mantissa) as u8
}

/// One µ-law byte to a linear sample.
pub fn ulaw_to_linear(byte: u8) -> i16 {
    let b = !byte as i32;
    let sign = b & 0x80;
    let exponent = (b >> 4) & 0x07;
    let mantissa = b & 0x0f;
    let magnitude = (((mantissa << 3) + ULAW_BIAS) << exponent) - ULAW_BIAS;
    (if sign != 0 { -magnitude } else { magnitude }) as i16
}

/// One sample to A-law (13-bit magnitude, even bits inverted).
pub fn linear_to_alaw(sample: i16) -> u8 {
    let s = sample as i32;
    let (sign, mag) = if s >= 0 { (0x80, s >> 3) } else { (0x00, (-s - 1) >> 3) };
    let mag = mag.min(0x0fff);
    let byte = if mag < 32 {
        (mag >> 1) as u8
    } else {
        // Segment 1..7 from the highest set bit (bit 5 → 1 … bit 11 → 7).
        let seg = (31 - (mag as u32).leading_zeros()) as i32 - 4;
        let mantissa = (mag >> seg) & 0x0f;
        ((seg << 4) | mantissa) as u8
    };
    (byte | sign) ^ 0x55
}

/// One A-law byte to a linear sample.
pub fn alaw_to_linear(byte: u8) -> i16 {
    let b = (byte ^ 0x55) as i32;
    let seg = (b >> 4) & 0x07;
    let mantissa = b & 0x0f;
    let mag = if seg == 0 { (mantissa << 4) + 8 } else { ((mantissa << 4) + 0x108) << (seg - 1) };
    (if b & 0x80 != 0 { mag } else { -mag }) as i16
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_byte_round_trips_through_linear() {
        // Decoding then re-encoding is the identity on the code space (except µ-law's two zeros).
        for b in 0..=255u8 {
            assert_eq!(linear_to_alaw(alaw_to_linear(b)), b, "A-law byte {b:#04x}");
            let back = linear_to_ulaw(ulaw_to_linear(b));
            assert!(back == b || (b == 0x7f && back == 0xff), "µ-law byte {b:#04x} came back as {back:#04x}");
        }
    }

    #[test]
    fn known_values_match_g711() {
        assert_eq!(linear_to_ulaw(0), 0xff);
        assert_eq!(linear_to_ulaw(-1), 0x7f);
        assert_eq!(linear_to_ulaw(i16::MAX), 0x80);
        assert_eq!(linear_to_ulaw(i16::MIN), 0x00);
        assert_eq!(ulaw_to_linear(0x80), 32124);
        assert_eq!(linear_to_alaw(0), 0xd5);
        assert_eq!(linear_to_alaw(i16::MAX), 0xaa);
        assert_eq!(alaw_to_linear(0xd5), 8);
        assert_eq!(alaw_to_linear(0x2a), -32256);
    }
}
