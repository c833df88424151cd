//! RTP packets (RFC 3550) with RFC 8285 header extensions: a zero-copy view for reading and
//! in-place rewriting of sequence number, timestamp and SSRC.

/// Why bytes are not an RTP packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum RtpError {
    /// Fewer bytes than the fixed header, CSRCs and extension need.
    #[error("RTP packet of {len} bytes is shorter than its header ({need} bytes)")]
    TooShort {
        /// Bytes present.
        len: usize,
        /// Bytes the header claims.
        need: usize,
    },
    /// Version is not 2.
    #[error("RTP version {0}, expected 2")]
    BadVersion(u8),
    /// The padding count exceeds the payload.
    #[error("RTP padding of {padding} bytes exceeds the {available} bytes after the header")]
    BadPadding {
        /// Claimed padding.
        padding: usize,
        /// Bytes after the header.
        available: usize,
    },
    /// RTCP's payload types (192–223 with the marker bit folded in) in an RTP slot.
    #[error("payload type {0} belongs to RTCP")]
    RtcpPayloadType(u8),
}

/// A parsed view of an RTP packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RtpPacket<'a> {
    /// The whole packet.
    pub raw: &'a [u8],
    /// Marker bit.
    pub marker: bool,
    /// Payload type.
    pub payload_type: u8,
    /// Sequence number.
    pub seq: u16,
    /// Timestamp.
    pub timestamp: u32,
    /// Synchronisation source.
    pub ssrc: u32,
    /// Offset of the payload in `raw`.
    pub payload_offset: usize,
    /// Payload length (padding excluded).
    pub payload_len: usize,
    /// Offset and length of the extension block's elements (after the 4-byte extension header)
    /// and its profile (0xBEDE one-byte, 0x100x two-byte).
    pub extension: Option<(u16, usize, usize)>,
}

impl<'a> RtpPacket<'a> {
    /// Parses `raw`; never panics.
    pub fn parse(raw: &'a [u8]) -> Result<RtpPacket<'a>, RtpError> {
        if raw.len() < 12 {
            return Err(RtpError::TooShort { len: raw.len(), need: 12 });
        }
        let version = raw[0] >> 6;
        if version != 2 {
            return Err(RtpError::BadVersion(version));
        }
        let padding = raw[0] & 0x20 != 0;
        let has_ext = raw[0] & 0x10 != 0;
        let csrcs = (raw[0] & 0x0f) as usize;
        let marker = raw[1] & 0x80 != 0;
        let payload_type = raw[1] & 0x7f;
        if (72..=95).contains(&payload_type) {
            return Err(RtpError::RtcpPayloadType(payload_type));
        }
        let seq = u16::from_be_bytes([raw[2], raw[3]]);
        let timestamp = u32::from_be_bytes([raw[4], raw[5], raw[6], raw[7]]);
        let ssrc = u32::from_be_bytes([raw[8], raw[9], raw[10], raw[11]]);
        let mut offset = 12 + 4 * csrcs;
        if raw.len() < offset {
            return Err(RtpError::TooShort { len: raw.len(), need: offset });
        }
        let mut extension = None;
        if has_ext {
            if raw.len() < offset + 4 {
                return Err(RtpError::TooShort { len: raw.len(), need: offset + 4 });
            }
            let profile = u16::from_be_bytes([raw[offset], raw[offset + 1]]);
            let words = u16::from_be_bytes([raw[offset + 2], raw[offset + 3]]) as usize;
            let start = offset + 4;
            let end = start + 4 * words;
            if raw.len() < end {
                return Err(RtpError::TooShort { len: raw.len(), need: end });
            }
            extension = Some((profile, start, 4 * words));
            offset = end;
        }
        let mut end = raw.len();
        if padding {
            let pad = *raw.last().expect("length checked above") as usize;
            if pad == 0 || pad > end - offset {
                return Err(RtpError::BadPadding { padding: pad, available: end - offset });
            }
            end -= pad;
        }
        Ok(RtpPacket { raw, marker, payload_type, seq, timestamp, ssrc, payload_offset: offset, payload_len: end - offset, extension })
    }

    /// The payload (padding excluded).
    pub fn payload(&self) -> &'a [u8] {
        &self.raw[self.payload_offset..self.payload_offset + self.payload_len]
    }

    /// The value of header extension `id` (RFC 8285, one- or two-byte form), if present.
    pub fn extension(&self, id: u8) -> Option<&'a [u8]> {
        let (profile, start, len) = self.extension?;
        let block = &self.raw[start..start + len];
        let mut i = 0;
        if profile == 0xBEDE {
            while i < block.len() {
                let b = block[i];
                if b == 0 {
                    i += 1;
                    continue;
                }
                let (eid, elen) = (b >> 4, (b & 0x0f) as usize + 1);
                if eid == 15 {
                    return None;
                }
                let value = block.get(i + 1..i + 1 + elen)?;
                if eid == id {
                    return Some(value);
                }
                i += 1 + elen;
            }
        } else if profile & 0xfff0 == 0x1000 {
            while i + 1 < block.len() {
                let (eid, elen) = (block[i], block[i + 1] as usize);
                if eid == 0 {
                    i += 1;
                    continue;
                }
                let value = block.get(i + 2..i + 2 + elen)?;
                if eid == id {
                    return Some(value);
                }
                i += 2 + elen;
            }
        }
        None
    }

    /// The header extensions (RFC 8285, one- or two-byte form) as (id, value), in order; a
    /// malformed block ends the list where it stops making sense.
    pub fn elements(&self) -> impl Iterator<Item = (u8, &'a [u8])> + 'a {
        let (profile, block) = match self.extension {
            Some((profile, start, len)) => (profile, &self.raw[start..start + len]),
            None => (0, &[][..]),
        };
        let two_byte = profile & 0xfff0 == 0x1000;
        let known = profile == 0xBEDE || two_byte;
        let mut i = if known { 0 } else { block.len() };
        std::iter::from_fn(move || {
            loop {
                let &b = block.get(i)?;
                if b == 0 {
                    i += 1;
                    continue;
                }
                let (id, at, len) = if two_byte { (b, i + 2, *block.get(i + 1)? as usize) } else { (b >> 4, i + 1, (b & 0x0f) as usize + 1) };
                if !two_byte && id == 15 {
                    return None;
                }
                let value = block.get(at..at + len)?;
                i = at + len;
                return Some((id, value));
            }
        })
    }

    /// RFC 6464 client-to-mixer audio level under extension `id`: (voice activity, -dBov).
    pub fn audio_level(&self, id: u8) -> Option<(bool, u8)> {
        let v = self.extension(id)?;
        let b = *v.first()?;
        Some((b & 0x80 != 0, b & 0x7f))
    }
}

/// Rewrites the sequence number, timestamp and SSRC of an RTP packet in place (the caller
/// parsed it first, so the fixed header is present).
pub fn rewrite_header(packet: &mut [u8], seq: u16, timestamp: u32, ssrc: u32) {
    packet[2..4].copy_from_slice(&seq.to_be_bytes());
    packet[4..8].copy_from_slice(&timestamp.to_be_bytes());
    packet[8..12].copy_from_slice(&ssrc.to_be_bytes());
}

/// Writes `packet` into `out` as one subscriber receives it: payload type `payload_type`,
/// header extensions renumbered by `ext_ids` (publisher id → subscriber id; an extension
/// without an entry is left out, since ids mean something only on their own connection), the
/// padding dropped. The extensions are written in the one-byte form when every id and value
/// fits it, in the two-byte form otherwise. Other header fields are kept.
pub fn write_for_subscriber(packet: &RtpPacket<'_>, payload_type: u8, ext_ids: &[(u8, u8)], out: &mut Vec<u8>) {
    let raw = packet.raw;
    let csrcs = (raw[0] & 0x0f) as usize;
    out.clear();
    out.reserve(raw.len());
    out.push(raw[0] & 0xc0 | raw[0] & 0x0f);
    out.push(raw[1] & 0x80 | payload_type & 0x7f);
    out.extend_from_slice(&raw[2..12 + 4 * csrcs]);
    let mapped = || packet.elements().filter_map(|(id, v)| ext_ids.iter().find(|(from, _)| *from == id).map(|&(_, to)| (to, v)));
    if mapped().next().is_some() {
        out[0] |= 0x10;
        let one_byte = mapped().all(|(id, v)| (1..=14).contains(&id) && (1..=16).contains(&v.len()));
        let start = out.len();
        out.extend_from_slice(if one_byte { &[0xBE, 0xDE, 0, 0] } else { &[0x10, 0x00, 0, 0] });
        for (id, v) in mapped() {
            if one_byte {
                out.push(id << 4 | (v.len() - 1) as u8);
            } else {
                out.extend_from_slice(&[id, v.len() as u8]);
            }
            out.extend_from_slice(v);
        }
        while !(out.len() - start).is_multiple_of(4) {
            out.push(0);
        }
        let words = ((out.len() - start - 4) / 4) as u16;
        out[start + 2..start + 4].copy_from_slice(&words.to_be_bytes());
    }
    out.extend_from_slice(packet.payload());
}

/// Builds an RTP packet (no CSRCs, no extensions) — for tests, RTX and generated media.
pub fn build(payload_type: u8, marker: bool, seq: u16, timestamp: u32, ssrc: u32, payload: &[u8]) -> Vec<u8> {
    let mut p = Vec::with_capacity(12 + payload.len());
    p.push(0x80);
    p.push((payload_type & 0x7f) | if marker { 0x80 } else { 0 });
    p.extend_from_slice(&seq.to_be_bytes());
    p.extend_from_slice(&timestamp.to_be_bytes());
    p.extend_from_slice(&ssrc.to_be_bytes());
    p.extend_from_slice(payload);
    p
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_header_extension_and_padding() {
        let mut p = vec![0xB0, 0xE0, 0x12, 0x34, 0, 0, 0x10, 0, 0xde, 0xad, 0xbe, 0xef];
        p[1] = 0x80 | 111; // marker, PT 111
        // One-byte extension block: id 1 (audio level, len 1) = 0x85 (voice, 5 dBov down).
        p.extend_from_slice(&[0xBE, 0xDE, 0x00, 0x01, 0x10, 0x85, 0x00, 0x00]);
        p.extend_from_slice(b"opus");
        p.extend_from_slice(&[0, 0, 3]); // 3 bytes of padding
        let r = RtpPacket::parse(&p).unwrap();
        assert!(r.marker);
        assert_eq!((r.payload_type, r.seq, r.timestamp, r.ssrc), (111, 0x1234, 0x1000, 0xdeadbeef));
        assert_eq!(r.payload(), b"opus");
        assert_eq!(r.audio_level(1), Some((true, 5)));
        assert_eq!(r.extension(2), None);
    }

    #[test]
    fn malformed_packets_are_errors() {
        assert!(matches!(RtpPacket::parse(&[0x80; 5]), Err(RtpError::TooShort { .. })));
        assert!(matches!(RtpPacket::parse(&[0x40; 12]), Err(RtpError::BadVersion(1))));
        let mut p = build(96, false, 1, 2, 3, b"x");
        p[0] |= 0x20;
        *p.last_mut().unwrap() = 200;
        assert!(matches!(RtpPacket::parse(&p), Err(RtpError::BadPadding { .. })));
        let mut p = build(96, false, 1, 2, 3, b"");
        p[0] |= 0x0f; // 15 CSRCs claimed
        assert!(matches!(RtpPacket::parse(&p), Err(RtpError::TooShort { .. })));
        let rtcp = [0x80, 200, 0, 6, 0, 0, 0, 1, 0, 0, 0, 0];
        assert!(matches!(RtpPacket::parse(&rtcp), Err(RtpError::RtcpPayloadType(72))));
    }

    #[test]
    fn a_subscriber_gets_its_payload_type_and_extension_ids() {
        // Marker, PT 100, one CSRC, one-byte extensions 1 (audio level) and 3 (orientation)
        // and 5 (not forwarded), 2 bytes of padding.
        let mut p = vec![0xB1, 0x80 | 100, 0, 7, 0, 0, 0, 9, 0, 0, 0, 5, 0xCC, 0xCC, 0xCC, 0xCC];
        p.extend_from_slice(&[0xBE, 0xDE, 0x00, 0x02, 0x10, 0x85, 0x30, 0x01, 0x50, 0x07, 0x00, 0x00]);
        p.extend_from_slice(b"frame");
        p.extend_from_slice(&[0, 2]);
        let r = RtpPacket::parse(&p).unwrap();
        assert_eq!(r.elements().collect::<Vec<_>>(), vec![(1, &[0x85][..]), (3, &[1][..]), (5, &[7][..])]);
        let mut out = Vec::new();
        write_for_subscriber(&r, 96, &[(1, 4), (3, 2)], &mut out);
        let w = RtpPacket::parse(&out).unwrap();
        assert!(w.marker);
        assert_eq!((w.payload_type, w.seq, w.timestamp, w.ssrc), (96, 7, 9, 5));
        assert_eq!(&out[12..16], &[0xCC; 4], "the CSRC is kept");
        assert_eq!(w.elements().collect::<Vec<_>>(), vec![(4, &[0x85][..]), (2, &[1][..])]);
        assert_eq!(w.payload(), b"frame");
        assert_eq!(out[0] & 0x20, 0, "no padding");
        assert_eq!(out.len() % 4, 1, "12 + 4 + 8 (one word of elements, padded) + 5");

        // Nothing mapped: no extension block at all.
        write_for_subscriber(&r, 96, &[], &mut out);
        let w = RtpPacket::parse(&out).unwrap();
        assert_eq!((w.extension, out[0] & 0x10), (None, 0));
        assert_eq!(w.payload(), b"frame");

        // An id above 14 needs the two-byte form.
        write_for_subscriber(&r, 96, &[(1, 20)], &mut out);
        let w = RtpPacket::parse(&out).unwrap();
        assert_eq!(w.extension.map(|e| e.0), Some(0x1000));
        assert_eq!(w.elements().collect::<Vec<_>>(), vec![(20, &[0x85][..])]);
    }

    #[test]
    fn rewriting_changes_only_the_three_fields() {
        let mut p = build(96, true, 10, 20, 30, b"payload");
        rewrite_header(&mut p, 11, 21, 31);
        let r = RtpPacket::parse(&p).unwrap();
        assert_eq!((r.seq, r.timestamp, r.ssrc, r.marker, r.payload()), (11, 21, 31, true, &b"payload"[..]));
    }
}
