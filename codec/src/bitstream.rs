//! Header-level parsing of VP8, H.264 and AV1 access units: keyframe or not, parameter sets,
//! profile. Never decodes pictures; every function accepts arbitrary bytes.

/// True if `data` is a VP8 key frame (RFC 6386 §9.1: frame tag bit 0 clear, start code
/// `9d 01 2a`, and room for the dimensions).
pub fn vp8_is_keyframe(data: &[u8]) -> bool {
    data.len() >= 10 && data[0] & 1 == 0 && data[3..6] == [0x9d, 0x01, 0x2a]
}

/// The width and height in a VP8 key frame header.
pub fn vp8_keyframe_size(data: &[u8]) -> Option<(u32, u32)> {
    if !vp8_is_keyframe(data) {
        return None;
    }
    let w = u16::from_le_bytes([data[6], data[7]]) & 0x3fff;
    let h = u16::from_le_bytes([data[8], data[9]]) & 0x3fff;
    Some((w as u32, h as u32))
}

/// H.264 NAL unit types this crate cares about.
pub mod h264_nal {
    /// Coded slice of a non-IDR picture.
    pub const SLICE: u8 = 1;
    /// Coded slice of an IDR picture.
    pub const IDR: u8 = 5;
    /// Supplemental enhancement information.
    pub const SEI: u8 = 6;
    /// Sequence parameter set.
    pub const SPS: u8 = 7;
    /// Picture parameter set.
    pub const PPS: u8 = 8;
    /// Access unit delimiter.
    pub const AUD: u8 = 9;
}

/// The NAL units of an Annex-B byte stream, without start codes. Bytes before the first
/// start code are skipped.
pub fn annexb_nal_units(data: &[u8]) -> impl Iterator<Item = &[u8]> {
    // Positions just after each start code (00 00 01, also matching 00 00 00 01).
    let mut starts = Vec::new();
    let mut i = 0;
    while i + 3 <= data.len() {
        if data[i] == 0 && data[i + 1] == 0 && data[i + 2] == 1 {
            starts.push(i + 3);
            i += 3;
        } else {
            i += 1;
        }
    }
    let ends: Vec<usize> = starts
        .iter()
        .skip(1)
        .map(|&s| {
            // Trim the start code (3 bytes) and a leading zero of a 4-byte one, and trailing zeros.
            let mut e = s - 3;
            while e > 0 && data[e - 1] == 0 {
                e -= 1;
            }
            e
        })
        .chain(std::iter::once(data.len()))
        .collect();
    starts.into_iter().zip(ends).filter(|(s, e)| e > s).map(move |(s, e)| &data[s..e])
}

/// The type (low five bits of the header byte) of each NAL unit in an Annex-B access unit.
pub fn h264_nal_types(data: &[u8]) -> impl Iterator<Item = u8> + '_ {
    annexb_nal_units(data).map(|n| n[0] & 0x1f)
}

/// True if the access unit holds an IDR slice.
pub fn h264_is_keyframe(data: &[u8]) -> bool {
    h264_nal_types(data).any(|t| t == h264_nal::IDR)
}

/// `profile_idc`, constraint flags byte and `level_idc` of the first SPS in the access unit:
/// the three bytes of SDP's `profile-level-id` (e.g. `42 e0 1f` = constrained baseline 3.1).
pub fn h264_profile_level_id(data: &[u8]) -> Option<[u8; 3]> {
    let sps = annexb_nal_units(data).find(|n| n[0] & 0x1f == h264_nal::SPS)?;
    Some([*sps.get(1)?, *sps.get(2)?, *sps.get(3)?])
}

/// AV1 OBU types (AV1 spec §6.2.2).
pub mod av1_obu {
    /// Sequence header.
    pub const SEQUENCE_HEADER: u8 = 1;
    /// Temporal delimiter.
    pub const TEMPORAL_DELIMITER: u8 = 2;
    /// Frame header.
    pub const FRAME_HEADER: u8 = 3;
    /// Tile group.
    pub const TILE_GROUP: u8 = 4;
    /// Metadata.
    pub const METADATA: u8 = 5;
    /// Frame (header and tile group).
    pub const FRAME: u8 = 6;
}

/// One OBU of a low-overhead bitstream: type and payload.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Obu<'a> {
    /// `obu_type`.
    pub kind: u8,
    /// The payload after the header (and size field).
    pub payload: &'a [u8],
}

fn leb128(data: &[u8]) -> Option<(u64, usize)> {
    let mut value = 0u64;
    for i in 0..8 {
        let b = *data.get(i)?;
        value |= ((b & 0x7f) as u64) << (7 * i);
        if b & 0x80 == 0 {
            return Some((value, i + 1));
        }
    }
    None
}

/// The OBUs of a temporal unit; stops at the first malformed one (`None` for that item).
pub fn av1_obus(data: &[u8]) -> impl Iterator<Item = Option<Obu<'_>>> {
    let mut rest = data;
    let mut failed = false;
    std::iter::from_fn(move || {
        if rest.is_empty() || failed {
            return None;
        }
        let parsed = (|| {
            let header = *rest.first()?;
            if header & 0x80 != 0 {
                return None; // forbidden bit
            }
            let kind = (header >> 3) & 0x0f;
            let ext = header & 0x04 != 0;
            let has_size = header & 0x02 != 0;
            let mut pos = 1 + ext as usize;
            let size = if has_size {
                let (v, n) = leb128(rest.get(pos..)?)?;
                pos += n;
                usize::try_from(v).ok()?
            } else {
                rest.len().checked_sub(pos)?
            };
            let payload = rest.get(pos..pos.checked_add(size)?)?;
            Some((Obu { kind, payload }, pos + size))
        })();
        match parsed {
            Some((obu, used)) => {
                rest = &rest[used..];
                Some(Some(obu))
            }
            None => {
                failed = true;
                Some(None)
            }
        }
    })
}

/// True if the temporal unit holds a shown key frame (a frame header with
/// `show_existing_frame = 0`, `frame_type = KEY_FRAME`) and a sequence header.
///
/// Assumes `reduced_still_picture_header = 0`, true of every real-time video stream.
pub fn av1_is_keyframe(data: &[u8]) -> bool {
    let mut seq = false;
    let mut key = false;
    for obu in av1_obus(data) {
        let Some(obu) = obu else { return false };
        match obu.kind {
            av1_obu::SEQUENCE_HEADER => seq = true,
            av1_obu::FRAME | av1_obu::FRAME_HEADER => {
                if let Some(&b) = obu.payload.first() {
                    let show_existing = b & 0x80 != 0;
                    let frame_type = (b >> 5) & 0x03;
                    key |= !show_existing && frame_type == 0;
                }
            }
            _ => {}
        }
    }
    seq && key
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn annexb_splits_three_and_four_byte_start_codes() {
        let au = [0, 0, 0, 1, 0x67, 0x42, 0xe0, 0x1f, 0, 0, 1, 0x68, 3, 0, 0, 0, 1, 0x65, 4, 5];
        let nals: Vec<&[u8]> = annexb_nal_units(&au).collect();
        assert_eq!(nals, vec![&[0x67, 0x42, 0xe0, 0x1f][..], &[0x68, 3][..], &[0x65, 4, 5][..]]);
        assert!(h264_is_keyframe(&au));
        assert_eq!(h264_profile_level_id(&au), Some([0x42, 0xe0, 0x1f]));
        assert!(!h264_is_keyframe(&au[..17]));
    }

    #[test]
    fn garbage_is_never_a_keyframe_and_never_panics() {
        for len in 0..64 {
            let data: Vec<u8> = (0..len).map(|i| (i * 37 + 11) as u8).collect();
            assert!(!vp8_is_keyframe(&data[..len.min(5)]));
            let _ = h264_is_keyframe(&data);
            let _ = av1_is_keyframe(&data);
            let _ = av1_obus(&data).count();
        }
    }

    #[test]
    fn leb128_reads_multi_byte_sizes() {
        assert_eq!(leb128(&[0x80, 0x01]), Some((128, 2)));
        assert_eq!(leb128(&[0x05]), Some((5, 1)));
        assert_eq!(leb128(&[0x80]), None);
    }
}
