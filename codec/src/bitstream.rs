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

/// Reads Exp-Golomb coded fields from an RBSP (emulation prevention bytes already removed).
pub(crate) struct Bits<'a> {
    pub(crate) data: &'a [u8],
    pub(crate) pos: usize,
}

impl Bits<'_> {
    pub(crate) fn bit(&mut self) -> Option<u32> {
        let byte = *self.data.get(self.pos / 8)?;
        let b = (byte >> (7 - self.pos % 8)) & 1;
        self.pos += 1;
        Some(b as u32)
    }

    pub(crate) fn bits(&mut self, n: u32) -> Option<u32> {
        (0..n).try_fold(0u32, |acc, _| Some(acc << 1 | self.bit()?))
    }

    /// ue(v); values past 2^32 - 2 are refused.
    pub(crate) fn ue(&mut self) -> Option<u32> {
        let mut zeros = 0;
        while self.bit()? == 0 {
            zeros += 1;
            if zeros > 31 {
                return None;
            }
        }
        Some(((1u64 << zeros) - 1 + self.bits(zeros)? as u64).min(u32::MAX as u64) as u32)
    }

    pub(crate) fn se(&mut self) -> Option<i64> {
        let k = self.ue()? as i64;
        Some(if k % 2 == 1 { (k + 1) / 2 } else { -(k / 2) })
    }
}

/// A NAL unit's payload with emulation prevention bytes (00 00 03) removed.
pub(crate) fn rbsp(nal: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(nal.len());
    let mut zeros = 0;
    for &b in nal {
        if zeros >= 2 && b == 3 {
            zeros = 0;
            continue;
        }
        zeros = if b == 0 { zeros + 1 } else { 0 };
        out.push(b);
    }
    out
}

/// The fields of an H.264 sequence parameter set (§7.3.2.1.1) this crate reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct H264Sps {
    pub profile: u32,
    pub log2_max_frame_num: u32,
    pub pic_order_cnt_type: u32,
    /// 0 unless `pic_order_cnt_type` is 0.
    pub log2_max_poc_lsb: u32,
    /// Luma width and height before cropping.
    pub width: u32,
    pub height: u32,
}

/// The first SPS of an access unit, as far as [`H264Sps`] goes; `None` without one or when it
/// cannot be read.
pub(crate) fn h264_sps(data: &[u8]) -> Option<H264Sps> {
    let sps = rbsp(annexb_nal_units(data).find(|n| n[0] & 0x1f == h264_nal::SPS)?);
    let mut r = Bits { data: sps.get(1..)?, pos: 0 };
    let profile = r.bits(8)?;
    r.bits(16)?; // constraint flags, level
    r.ue()?; // seq_parameter_set_id
    if matches!(profile, 100 | 110 | 122 | 244 | 44 | 83 | 86 | 118 | 128 | 138 | 139 | 134 | 135) {
        let chroma_format = r.ue()?;
        if chroma_format == 3 {
            r.bit()?;
        }
        r.ue()?; // bit_depth_luma_minus8
        r.ue()?; // bit_depth_chroma_minus8
        r.bit()?; // qpprime_y_zero_transform_bypass
        if r.bit()? == 1 {
            for i in 0..if chroma_format == 3 { 12 } else { 8 } {
                if r.bit()? == 1 {
                    let size = if i < 6 { 16 } else { 64 };
                    let (mut last, mut next) = (8i64, 8i64);
                    for _ in 0..size {
                        if next != 0 {
                            next = (last + r.se()? + 256) % 256;
                        }
                        last = if next == 0 { last } else { next };
                    }
                }
            }
        }
    }
    let log2_max_frame_num = r.ue()?.checked_add(4)?;
    let pic_order_cnt_type = r.ue()?;
    let mut log2_max_poc_lsb = 0;
    match pic_order_cnt_type {
        0 => log2_max_poc_lsb = r.ue()?.checked_add(4)?,
        1 => {
            r.bit()?;
            r.se()?;
            r.se()?;
            for _ in 0..r.ue()?.min(255) {
                r.se()?;
            }
        }
        _ => {}
    }
    r.ue()?; // max_num_ref_frames
    r.bit()?; // gaps_in_frame_num_value_allowed
    let width_mbs = r.ue()? as u64 + 1;
    let height_units = r.ue()? as u64 + 1;
    let frame_mbs_only = r.bit()? as u64;
    let (w, h) = (width_mbs * 16, (2 - frame_mbs_only) * height_units * 16);
    let (width, height) = (w.min(u32::MAX as u64) as u32, h.min(u32::MAX as u64) as u32);
    Some(H264Sps { profile, log2_max_frame_num, pic_order_cnt_type, log2_max_poc_lsb, width, height })
}

/// The picture size (luma width, height, before cropping) the first SPS of an access unit
/// announces (H.264 §7.3.2.1.1). `None` without an SPS or when it cannot be read; a caller uses
/// it to refuse pictures too large to decode before the decoder allocates them.
pub fn h264_sps_size(data: &[u8]) -> Option<(u32, u32)> {
    h264_sps(data).map(|s| (s.width, s.height))
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

/// What `av1C` (AV1 in ISOBMFF/Matroska, §2.3) takes from a sequence header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Av1SequenceInfo {
    /// `seq_profile`.
    pub profile: u8,
    /// `seq_level_idx[0]`.
    pub level: u8,
    /// `seq_tier[0]`.
    pub tier: u8,
    /// `high_bitdepth`.
    pub high_bitdepth: bool,
    /// `twelve_bit`.
    pub twelve_bit: bool,
    /// `mono_chrome`.
    pub monochrome: bool,
    /// `subsampling_x`.
    pub subsampling_x: bool,
    /// `subsampling_y`.
    pub subsampling_y: bool,
    /// `chroma_sample_position`.
    pub chroma_sample_position: u8,
}

/// Reads a sequence header OBU's payload (AV1 §5.5) up to its colour config.
pub fn av1_sequence_info(payload: &[u8]) -> Option<Av1SequenceInfo> {
    let mut b = Bits { data: payload, pos: 0 };
    let profile = b.bits(3)? as u8;
    if profile > 2 {
        return None;
    }
    let _still_picture = b.bit()?;
    let reduced = b.bit()? == 1;
    let (level, tier);
    let mut decoder_model_info = false;
    let mut buffer_delay_length = 0;
    if reduced {
        level = b.bits(5)? as u8;
        tier = 0;
    } else {
        if b.bit()? == 1 {
            // timing_info
            b.bits(32)?;
            b.bits(32)?;
            if b.bit()? == 1 {
                // num_ticks_per_picture_minus_1, uvlc
                let mut zeros = 0;
                while b.bit()? == 0 {
                    zeros += 1;
                    if zeros >= 32 {
                        return None;
                    }
                }
                b.bits(zeros)?;
            }
            decoder_model_info = b.bit()? == 1;
            if decoder_model_info {
                buffer_delay_length = b.bits(5)? + 1;
                b.bits(32)?;
                b.bits(5)?;
                b.bits(5)?;
            }
        }
        let initial_display_delay = b.bit()? == 1;
        let points = b.bits(5)? + 1;
        let (mut first_level, mut first_tier) = (0, 0);
        for i in 0..points {
            b.bits(12)?;
            let l = b.bits(5)? as u8;
            let t = if l > 7 { b.bit()? as u8 } else { 0 };
            if i == 0 {
                (first_level, first_tier) = (l, t);
            }
            if decoder_model_info && b.bit()? == 1 {
                b.bits(buffer_delay_length)?;
                b.bits(buffer_delay_length)?;
                b.bit()?;
            }
            if initial_display_delay && b.bit()? == 1 {
                b.bits(4)?;
            }
        }
        (level, tier) = (first_level, first_tier);
    }
    let width_bits = b.bits(4)? + 1;
    let height_bits = b.bits(4)? + 1;
    b.bits(width_bits)?;
    b.bits(height_bits)?;
    if !reduced && b.bit()? == 1 {
        b.bits(4)?;
        b.bits(3)?;
    }
    b.bits(3)?; // 128x128 superblocks, filter intra, intra edge filter
    if !reduced {
        b.bits(4)?; // interintra, masked compound, warped motion, dual filter
        let order_hint = b.bit()? == 1;
        if order_hint {
            b.bits(2)?; // jnt comp, ref frame mvs
        }
        let force_screen_content_tools = if b.bit()? == 1 { 2 } else { b.bit()? };
        if force_screen_content_tools > 0 && b.bit()? == 0 {
            b.bit()?;
        }
        if order_hint {
            b.bits(3)?;
        }
    }
    b.bits(3)?; // superres, cdef, restoration
    // color_config (§5.5.2)
    let high_bitdepth = b.bit()? == 1;
    let twelve_bit = profile == 2 && high_bitdepth && b.bit()? == 1;
    let monochrome = profile != 1 && b.bit()? == 1;
    let (mut primaries, mut transfer, mut matrix) = (2, 2, 2);
    if b.bit()? == 1 {
        primaries = b.bits(8)?;
        transfer = b.bits(8)?;
        matrix = b.bits(8)?;
    }
    let (subsampling_x, subsampling_y, mut chroma_sample_position) = if monochrome {
        b.bit()?;
        (true, true, 0)
    } else if primaries == 1 && transfer == 13 && matrix == 0 {
        (false, false, 0)
    } else {
        b.bit()?; // color_range
        let (x, y) = match profile {
            0 => (true, true),
            1 => (false, false),
            _ if twelve_bit => {
                let x = b.bit()? == 1;
                (x, x && b.bit()? == 1)
            }
            _ => (true, false),
        };
        (x, y, 0)
    };
    if !monochrome && subsampling_x && subsampling_y && !(primaries == 1 && transfer == 13 && matrix == 0) {
        chroma_sample_position = b.bits(2)? as u8;
    }
    Some(Av1SequenceInfo { profile, level, tier, high_bitdepth, twelve_bit, monochrome, subsampling_x, subsampling_y, chroma_sample_position })
}

/// The `AV1CodecConfigurationRecord` (`av1C`) for a temporal unit holding a sequence header:
/// four bytes from the header's fields, then the sequence header OBU itself (as Matroska's
/// `V_AV1` CodecPrivate wants). `None` without a readable sequence header.
pub fn av1c_record(temporal_unit: &[u8]) -> Option<Vec<u8>> {
    let seq = av1_obus(temporal_unit).map_while(|o| o).find(|o| o.kind == av1_obu::SEQUENCE_HEADER)?;
    let i = av1_sequence_info(seq.payload)?;
    let flag = |v: bool, shift: u8| (v as u8) << shift;
    let mut out = vec![
        0x81, // marker, version 1
        i.profile << 5 | i.level,
        flag(i.tier == 1, 7)
            | flag(i.high_bitdepth, 6)
            | flag(i.twelve_bit, 5)
            | flag(i.monochrome, 4)
            | flag(i.subsampling_x, 3)
            | flag(i.subsampling_y, 2)
            | i.chroma_sample_position,
        0, // no initial presentation delay
    ];
    // The OBU again, with a size field (configOBUs are low-overhead format).
    out.push(av1_obu::SEQUENCE_HEADER << 3 | 0x02);
    let mut size = seq.payload.len();
    loop {
        let byte = (size & 0x7f) as u8;
        size >>= 7;
        out.push(if size > 0 { byte | 0x80 } else { byte });
        if size == 0 {
            break;
        }
    }
    out.extend_from_slice(seq.payload);
    Some(out)
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// An SPS (baseline, POC type 0) for a picture of `w_mbs` × `h_mbs` macroblocks, written
    /// bit by bit with Exp-Golomb codes.
    pub(crate) fn sps(w_mbs: u32, h_mbs: u32) -> Vec<u8> {
        let mut bits: Vec<u8> = Vec::new();
        let mut put = |v: u32, n: u32| (0..n).rev().for_each(|k| bits.push((v >> k & 1) as u8));
        let ue = |v: u32, put: &mut dyn FnMut(u32, u32)| {
            let x = v + 1;
            let len = 32 - x.leading_zeros();
            put(0, len - 1);
            put(x, len);
        };
        put(66, 8);
        put(0xc0, 8);
        put(31, 8);
        ue(0, &mut put); // sps id
        ue(0, &mut put); // log2_max_frame_num_minus4
        ue(0, &mut put); // poc type 0
        ue(0, &mut put); // log2_max_poc_lsb_minus4
        ue(1, &mut put); // max_num_ref_frames
        put(0, 1);
        ue(w_mbs - 1, &mut put);
        ue(h_mbs - 1, &mut put);
        put(1, 1); // frame_mbs_only
        put(1, 1); // direct_8x8_inference
        put(0, 1); // no cropping
        put(0, 1); // no VUI
        put(1, 1); // rbsp stop bit
        while !bits.len().is_multiple_of(8) {
            bits.push(0);
        }
        let mut out = vec![0, 0, 0, 1, 0x67];
        out.extend(bits.chunks(8).map(|c| c.iter().fold(0u8, |a, b| a << 1 | b)));
        out
    }

    #[test]
    fn sps_sizes() {
        assert_eq!(h264_sps_size(&sps(80, 45)), Some((1280, 720)));
        assert_eq!(h264_sps_size(&sps(512, 512)), Some((8192, 8192)));
        assert_eq!(h264_sps_size(&[0, 0, 1, 0x67]), None, "truncated");
        assert_eq!(h264_sps_size(&[0, 0, 1, 0x67, 0x42, 0xc0, 0x1f, 0x00]), None, "an Exp-Golomb code running off the end");
        assert_eq!(h264_sps_size(&[0, 0, 1, 0x65, 0x88]), None, "no SPS");
    }

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
