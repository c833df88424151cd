//! Whether an RTP payload starts a keyframe, per codec (the SFU switches layers and resumes
//! paused subscribers only there).

/// Codecs the forwarder understands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Codec {
    /// Opus or G.711: every packet stands alone.
    Audio,
    /// VP8 (RFC 7741).
    Vp8,
    /// H.264 (RFC 6184).
    H264,
    /// AV1 (AV1 RTP specification).
    Av1,
}

/// Whether `payload` is the first packet of a keyframe. Malformed payloads are not keyframes.
pub fn is_keyframe(codec: Codec, payload: &[u8]) -> bool {
    match codec {
        Codec::Audio => true,
        Codec::Vp8 => vp8(payload),
        Codec::H264 => h264(payload),
        Codec::Av1 => payload.first().is_some_and(|b| b & 0x08 != 0),
    }
}

fn vp8(p: &[u8]) -> bool {
    let Some(&b0) = p.first() else { return false };
    let start = b0 & 0x10 != 0;
    let partition = b0 & 0x0f;
    let mut i = 1;
    if b0 & 0x80 != 0 {
        let Some(&x) = p.get(i) else { return false };
        i += 1;
        if x & 0x80 != 0 {
            let Some(&pid) = p.get(i) else { return false };
            i += if pid & 0x80 != 0 { 2 } else { 1 };
        }
        if x & 0x40 != 0 {
            i += 1;
        }
        if x & 0x30 != 0 {
            i += 1;
        }
    }
    start && partition == 0 && p.get(i).is_some_and(|h| h & 0x01 == 0)
}

fn h264(p: &[u8]) -> bool {
    let Some(&b0) = p.first() else { return false };
    let key = |t: u8| t == 5 || t == 7;
    match b0 & 0x1f {
        24 => {
            // STAP-A: 16-bit sizes, then NAL units.
            let mut i = 1;
            while i + 2 < p.len() {
                let size = u16::from_be_bytes([p[i], p[i + 1]]) as usize;
                if size == 0 {
                    return false;
                }
                if p.get(i + 2).is_some_and(|n| key(n & 0x1f)) {
                    return true;
                }
                i += 2 + size;
            }
            false
        }
        28 => p.get(1).is_some_and(|fu| fu & 0x80 != 0 && key(fu & 0x1f)),
        t => key(t),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn detects_keyframes_per_codec() {
        // VP8: X, I with 15-bit picture id, S, partition 0, then a key frame header (P = 0).
        assert!(is_keyframe(Codec::Vp8, &[0x90, 0x80, 0x81, 0x23, 0x10, 0x02]));
        assert!(!is_keyframe(Codec::Vp8, &[0x90, 0x80, 0x81, 0x23, 0x11, 0x02]));
        assert!(!is_keyframe(Codec::Vp8, &[0x80, 0x80, 0x81, 0x23, 0x10]), "not a partition start");
        assert!(is_keyframe(Codec::H264, &[0x65, 0x88]));
        assert!(is_keyframe(Codec::H264, &[0x18, 0x00, 0x02, 0x67, 0x42, 0x00, 0x02, 0x68, 0xce]));
        assert!(is_keyframe(Codec::H264, &[0x7c, 0x85, 0x00]));
        assert!(!is_keyframe(Codec::H264, &[0x7c, 0x05, 0x00]), "FU-A continuation");
        assert!(!is_keyframe(Codec::H264, &[0x41, 0x9a]));
        assert!(is_keyframe(Codec::Av1, &[0x18]));
        assert!(!is_keyframe(Codec::Av1, &[0x10]));
        for c in [Codec::Vp8, Codec::H264, Codec::Av1] {
            assert!(!is_keyframe(c, &[]));
        }
    }
}
