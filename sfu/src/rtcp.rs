//! RTCP (RFC 3550, RFC 4585, RFC 5104, REMB): parsing of compound packets and building of the
//! feedback the SFU sends (PLI, FIR, NACK, receiver reports).

/// Why bytes are not RTCP.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum RtcpError {
    /// Shorter than a header, or than the length a header claims.
    #[error("RTCP packet truncated: {len} bytes where {need} are needed")]
    Truncated {
        /// Bytes present.
        len: usize,
        /// Bytes needed.
        need: usize,
    },
    /// Version is not 2.
    #[error("RTCP version {0}, expected 2")]
    BadVersion(u8),
    /// A packet whose body is too short for its type.
    #[error("RTCP packet type {pt} with a body of {len} bytes is malformed")]
    Malformed {
        /// Packet type.
        pt: u8,
        /// Body length.
        len: usize,
    },
}

/// One reception report block.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReportBlock {
    /// The source reported on.
    pub ssrc: u32,
    /// Fraction lost since the last report, /256.
    pub fraction_lost: u8,
    /// Cumulative packets lost (24-bit signed).
    pub cumulative_lost: i32,
    /// Extended highest sequence number received.
    pub highest_seq: u32,
    /// Interarrival jitter (timestamp units).
    pub jitter: u32,
    /// Middle 32 bits of the last SR's NTP time.
    pub last_sr: u32,
    /// Delay since the last SR, 1/65536 s.
    pub delay_since_last_sr: u32,
}

/// One RTCP packet of a compound.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum RtcpPacket {
    /// Sender report.
    SenderReport {
        /// Sender.
        ssrc: u32,
        /// NTP timestamp.
        ntp: u64,
        /// RTP timestamp at `ntp`.
        rtp_timestamp: u32,
        /// Packets sent.
        packets: u32,
        /// Payload octets sent.
        octets: u32,
        /// Reception reports.
        reports: Vec<ReportBlock>,
    },
    /// Receiver report.
    ReceiverReport {
        /// Reporter.
        ssrc: u32,
        /// Reception reports.
        reports: Vec<ReportBlock>,
    },
    /// Picture loss indication.
    Pli {
        /// Who asks.
        sender: u32,
        /// The stream that needs a keyframe.
        media: u32,
    },
    /// Full intra request.
    Fir {
        /// Who asks.
        sender: u32,
        /// (stream, request sequence number) pairs.
        entries: Vec<(u32, u8)>,
    },
    /// Generic NACK.
    Nack {
        /// Who asks.
        sender: u32,
        /// The stream with losses.
        media: u32,
        /// Lost sequence numbers.
        lost: Vec<u16>,
    },
    /// Receiver estimated maximum bitrate.
    Remb {
        /// Who estimates.
        sender: u32,
        /// Estimate in bits per second.
        bitrate: u64,
        /// Streams it applies to.
        ssrcs: Vec<u32>,
    },
    /// Anything else (SDES, BYE, APP, transport-wide CC, …), kept by type.
    Other {
        /// Packet type.
        pt: u8,
        /// Feedback message type / report count field.
        fmt: u8,
    },
}

fn u32_at(b: &[u8], i: usize) -> u32 {
    u32::from_be_bytes([b[i], b[i + 1], b[i + 2], b[i + 3]])
}

fn reports(body: &[u8], count: usize, pt: u8) -> Result<Vec<ReportBlock>, RtcpError> {
    if body.len() < count * 24 {
        return Err(RtcpError::Malformed { pt, len: body.len() });
    }
    Ok((0..count)
        .map(|k| {
            let b = &body[k * 24..];
            let lost = u32_at(b, 4) & 0x00ff_ffff;
            ReportBlock {
                ssrc: u32_at(b, 0),
                fraction_lost: b[4],
                cumulative_lost: ((lost << 8) as i32) >> 8,
                highest_seq: u32_at(b, 8),
                jitter: u32_at(b, 12),
                last_sr: u32_at(b, 16),
                delay_since_last_sr: u32_at(b, 20),
            }
        })
        .collect())
}

/// Parses a compound RTCP packet; never panics. An error anywhere rejects the compound.
pub fn parse(mut raw: &[u8]) -> Result<Vec<RtcpPacket>, RtcpError> {
    let mut out = Vec::new();
    if raw.is_empty() {
        return Err(RtcpError::Truncated { len: 0, need: 4 });
    }
    while !raw.is_empty() {
        if raw.len() < 4 {
            return Err(RtcpError::Truncated { len: raw.len(), need: 4 });
        }
        let version = raw[0] >> 6;
        if version != 2 {
            return Err(RtcpError::BadVersion(version));
        }
        let fmt = raw[0] & 0x1f;
        let pt = raw[1];
        let len = (u16::from_be_bytes([raw[2], raw[3]]) as usize + 1) * 4;
        if raw.len() < len {
            return Err(RtcpError::Truncated { len: raw.len(), need: len });
        }
        let mut body = &raw[4..len];
        if raw[0] & 0x20 != 0 {
            let pad = *body.last().ok_or(RtcpError::Malformed { pt, len: 0 })? as usize;
            if pad == 0 || pad > body.len() {
                return Err(RtcpError::Malformed { pt, len: body.len() });
            }
            body = &body[..body.len() - pad];
        }
        let bad = || RtcpError::Malformed { pt, len: body.len() };
        let packet = match (pt, fmt) {
            (200, count) => {
                if body.len() < 24 {
                    return Err(bad());
                }
                RtcpPacket::SenderReport {
                    ssrc: u32_at(body, 0),
                    ntp: (u32_at(body, 4) as u64) << 32 | u32_at(body, 8) as u64,
                    rtp_timestamp: u32_at(body, 12),
                    packets: u32_at(body, 16),
                    octets: u32_at(body, 20),
                    reports: reports(&body[24..], count as usize, pt)?,
                }
            }
            (201, count) => {
                if body.len() < 4 {
                    return Err(bad());
                }
                RtcpPacket::ReceiverReport { ssrc: u32_at(body, 0), reports: reports(&body[4..], count as usize, pt)? }
            }
            (205, 1) => {
                if body.len() < 8 || !(body.len() - 8).is_multiple_of(4) {
                    return Err(bad());
                }
                let mut lost = Vec::new();
                for fci in body[8..].chunks_exact(4) {
                    let pid = u16::from_be_bytes([fci[0], fci[1]]);
                    let blp = u16::from_be_bytes([fci[2], fci[3]]);
                    lost.push(pid);
                    for bit in 0..16 {
                        if blp & (1 << bit) != 0 {
                            lost.push(pid.wrapping_add(bit + 1));
                        }
                    }
                }
                RtcpPacket::Nack { sender: u32_at(body, 0), media: u32_at(body, 4), lost }
            }
            (206, 1) => {
                if body.len() < 8 {
                    return Err(bad());
                }
                RtcpPacket::Pli { sender: u32_at(body, 0), media: u32_at(body, 4) }
            }
            (206, 4) => {
                if body.len() < 8 || !(body.len() - 8).is_multiple_of(8) {
                    return Err(bad());
                }
                let entries = body[8..].chunks_exact(8).map(|e| (u32_at(e, 0), e[4])).collect();
                RtcpPacket::Fir { sender: u32_at(body, 0), entries }
            }
            (206, 15) if body.len() >= 16 && &body[8..12] == b"REMB" => {
                let n = body[12] as usize;
                let exp = (body[13] >> 2) as u32;
                let mantissa = ((body[13] & 0x03) as u64) << 16 | (body[14] as u64) << 8 | body[15] as u64;
                if body.len() < 16 + 4 * n {
                    return Err(bad());
                }
                let ssrcs = (0..n).map(|k| u32_at(body, 16 + 4 * k)).collect();
                RtcpPacket::Remb { sender: u32_at(body, 0), bitrate: mantissa.checked_shl(exp).unwrap_or(u64::MAX), ssrcs }
            }
            _ => RtcpPacket::Other { pt, fmt },
        };
        out.push(packet);
        raw = &raw[len..];
    }
    Ok(out)
}

fn header(fmt: u8, pt: u8, words_after_header: usize) -> [u8; 4] {
    let len = (words_after_header as u16).to_be_bytes();
    [0x80 | (fmt & 0x1f), pt, len[0], len[1]]
}

/// A PLI asking `media` for a keyframe.
pub fn pli(sender: u32, media: u32) -> Vec<u8> {
    let mut p = header(1, 206, 2).to_vec();
    p.extend_from_slice(&sender.to_be_bytes());
    p.extend_from_slice(&media.to_be_bytes());
    p
}

/// A FIR asking `media` for a keyframe (request number `seq`).
pub fn fir(sender: u32, media: u32, seq: u8) -> Vec<u8> {
    let mut p = header(4, 206, 4).to_vec();
    p.extend_from_slice(&sender.to_be_bytes());
    p.extend_from_slice(&0u32.to_be_bytes());
    p.extend_from_slice(&media.to_be_bytes());
    p.extend_from_slice(&[seq, 0, 0, 0]);
    p
}

/// A generic NACK for `lost` sequence numbers of `media` (packed into PID + bitmask pairs).
pub fn nack(sender: u32, media: u32, lost: &[u16]) -> Vec<u8> {
    let mut sorted: Vec<u16> = lost.to_vec();
    sorted.sort_unstable();
    sorted.dedup();
    let mut fci: Vec<(u16, u16)> = Vec::new();
    for s in sorted {
        match fci.last_mut() {
            Some((pid, blp)) if s.wrapping_sub(*pid) >= 1 && s.wrapping_sub(*pid) <= 16 => *blp |= 1 << (s.wrapping_sub(*pid) - 1),
            _ => fci.push((s, 0)),
        }
    }
    let mut p = header(1, 205, 2 + fci.len()).to_vec();
    p.extend_from_slice(&sender.to_be_bytes());
    p.extend_from_slice(&media.to_be_bytes());
    for (pid, blp) in fci {
        p.extend_from_slice(&pid.to_be_bytes());
        p.extend_from_slice(&blp.to_be_bytes());
    }
    p
}

/// A sender report (no report blocks): `ntp` is the 64-bit NTP time of `rtp_time`.
pub fn sender_report(ssrc: u32, ntp: u64, rtp_time: u32, packets: u32, octets: u32) -> Vec<u8> {
    let mut p = header(0, 200, 6).to_vec();
    p.extend_from_slice(&ssrc.to_be_bytes());
    p.extend_from_slice(&ntp.to_be_bytes());
    p.extend_from_slice(&rtp_time.to_be_bytes());
    p.extend_from_slice(&packets.to_be_bytes());
    p.extend_from_slice(&octets.to_be_bytes());
    p
}

/// A receiver report from `sender` with a block per `(source, fraction lost /256)` (the other
/// fields zero).
pub fn receiver_report(sender: u32, blocks: &[(u32, u8)]) -> Vec<u8> {
    let mut p = header(blocks.len() as u8, 201, 1 + 6 * blocks.len()).to_vec();
    p.extend_from_slice(&sender.to_be_bytes());
    for (ssrc, fraction) in blocks {
        p.extend_from_slice(&ssrc.to_be_bytes());
        p.push(*fraction);
        p.extend_from_slice(&[0; 19]);
    }
    p
}

/// A REMB with `bitrate` for `ssrcs`.
pub fn remb(sender: u32, bitrate: u64, ssrcs: &[u32]) -> Vec<u8> {
    let mut exp = 0u32;
    let mut mantissa = bitrate;
    while mantissa > 0x3ffff {
        mantissa >>= 1;
        exp += 1;
    }
    let mut p = header(15, 206, 4 + ssrcs.len()).to_vec();
    p.extend_from_slice(&sender.to_be_bytes());
    p.extend_from_slice(&0u32.to_be_bytes());
    p.extend_from_slice(b"REMB");
    p.push(ssrcs.len() as u8);
    p.push(((exp as u8) << 2) | ((mantissa >> 16) as u8 & 0x03));
    p.extend_from_slice(&[(mantissa >> 8) as u8, mantissa as u8]);
    for s in ssrcs {
        p.extend_from_slice(&s.to_be_bytes());
    }
    p
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn feedback_round_trips() {
        let mut compound = pli(1, 2);
        compound.extend(nack(1, 2, &[100, 101, 103, 116, 117, 300]));
        compound.extend(fir(1, 2, 7));
        compound.extend(remb(1, 1_500_000, &[2, 3]));
        compound.extend(sender_report(9, 0x0102_0304_0506_0708, 90_000, 12, 3400));
        let parsed = parse(&compound).unwrap();
        assert_eq!(
            parsed[4],
            RtcpPacket::SenderReport { ssrc: 9, ntp: 0x0102_0304_0506_0708, rtp_timestamp: 90_000, packets: 12, octets: 3400, reports: vec![] }
        );
        assert_eq!(parsed[0], RtcpPacket::Pli { sender: 1, media: 2 });
        assert_eq!(parsed[1], RtcpPacket::Nack { sender: 1, media: 2, lost: vec![100, 101, 103, 116, 117, 300] });
        assert_eq!(parsed[2], RtcpPacket::Fir { sender: 1, entries: vec![(2, 7)] });
        match &parsed[3] {
            RtcpPacket::Remb { bitrate, ssrcs, .. } => {
                assert!((*bitrate as i64 - 1_500_000).abs() < 8, "{bitrate}");
                assert_eq!(ssrcs, &[2, 3]);
            }
            p => panic!("{p:?}"),
        }
    }

    #[test]
    fn nack_wraps_around_sequence_numbers() {
        let p = nack(1, 2, &[65535, 0, 1]);
        assert_eq!(parse(&p).unwrap(), vec![RtcpPacket::Nack { sender: 1, media: 2, lost: vec![0, 1, 65535] }]);
    }

    #[test]
    fn malformed_compounds_are_errors() {
        assert!(parse(&[]).is_err());
        assert!(matches!(parse(&[0x80, 201, 0, 5, 0, 0, 0, 1]), Err(RtcpError::Truncated { .. })));
        assert!(matches!(parse(&[0x40, 201, 0, 0]), Err(RtcpError::BadVersion(1))));
        // A receiver report claiming one block with no room for it.
        assert!(matches!(parse(&[0x81, 201, 0, 1, 0, 0, 0, 1]), Err(RtcpError::Malformed { pt: 201, .. })));
        // Unknown types pass as Other.
        assert_eq!(parse(&[0x81, 202, 0, 0]).unwrap(), vec![RtcpPacket::Other { pt: 202, fmt: 1 }]);
    }
}
