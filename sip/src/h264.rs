//! H.264 over RTP in packetization-mode 0 (RFC 6184 §6.2): every packet carries one whole NAL
//! unit, no aggregation, no fragmentation. Many SIP phones accept nothing else, so the encoder
//! feeding them keeps its slices under the MTU (openh264's size-limited slices).

/// The NAL units of an Annex-B access unit, without start codes, empty ones skipped.
pub fn nal_units(annexb: &[u8]) -> Vec<&[u8]> {
    let mut units = Vec::new();
    let mut start: Option<usize> = None;
    let mut i = 0;
    while i + 3 <= annexb.len() {
        if annexb[i] == 0 && annexb[i + 1] == 0 && annexb[i + 2] == 1 {
            if let Some(s) = start {
                // A 4-byte start code's leading zero belongs to it, not to the unit before.
                let mut end = i;
                while end > s && annexb[end - 1] == 0 {
                    end -= 1;
                }
                if end > s {
                    units.push(&annexb[s..end]);
                }
            }
            i += 3;
            start = Some(i);
        } else {
            i += 1;
        }
    }
    if let Some(s) = start
        && s < annexb.len()
    {
        units.push(&annexb[s..]);
    }
    units
}

/// Mode-0 payloads of an access unit: its NAL units, access unit delimiters dropped. A unit
/// longer than `mtu` is still sent whole (mode 0 cannot fragment); the caller counts it.
pub fn mode0_payloads(annexb: &[u8]) -> Vec<&[u8]> {
    nal_units(annexb).into_iter().filter(|n| n[0] & 0x1f != 9).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_on_three_and_four_byte_start_codes() {
        let au = [0, 0, 0, 1, 0x67, 1, 2, 0, 0, 1, 0x68, 3, 0, 0, 0, 1, 0x09, 0x10, 0, 0, 1, 0x65, 4, 5, 6];
        assert_eq!(nal_units(&au), vec![&[0x67, 1, 2][..], &[0x68, 3], &[0x09, 0x10], &[0x65, 4, 5, 6]]);
        assert_eq!(mode0_payloads(&au), vec![&[0x67, 1, 2][..], &[0x68, 3], &[0x65, 4, 5, 6]]);
    }

    #[test]
    fn garbage_gives_no_units_and_never_panics() {
        assert!(nal_units(&[]).is_empty());
        assert!(nal_units(&[0, 0]).is_empty());
        assert!(nal_units(&[0, 0, 1]).is_empty());
        assert_eq!(nal_units(&[1, 2, 3]).len(), 0);
    }
}
