//! RFC 4733 telephone events (DTMF): a 4-byte payload (event, E bit, volume, duration); the end
//! packet is sent three times and every packet of one key press shares the RTP timestamp.

/// One key press, reported once at its end.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DtmfEvent {
    /// `0`-`9`, `*`, `#`, `A`-`D`.
    pub digit: char,
    /// How long it was held, in RTP clock units.
    pub duration: u16,
}

/// The key of an RFC 4733 event code (0-15); other events (flash, tones) are not keys.
pub fn digit(event: u8) -> Option<char> {
    match event {
        0..=9 => Some((b'0' + event) as char),
        10 => Some('*'),
        11 => Some('#'),
        12..=15 => Some((b'A' + event - 12) as char),
        _ => None,
    }
}

/// Reports each key press once, from the first end packet of its timestamp.
#[derive(Debug, Default)]
pub struct DtmfDetector {
    last_ended: Option<u32>,
}

impl DtmfDetector {
    /// A detector that has seen nothing.
    pub fn new() -> DtmfDetector {
        DtmfDetector::default()
    }

    /// One telephone-event packet's payload and RTP timestamp: the key press it ends, if any.
    /// Short payloads and non-key events are ignored.
    pub fn push(&mut self, rtp_timestamp: u32, payload: &[u8]) -> Option<DtmfEvent> {
        let [event, flags, d0, d1, ..] = *payload else { return None };
        let end = flags & 0x80 != 0;
        if !end || self.last_ended == Some(rtp_timestamp) {
            return None;
        }
        self.last_ended = Some(rtp_timestamp);
        Some(DtmfEvent { digit: digit(event)?, duration: u16::from_be_bytes([d0, d1]) })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_key_press_is_reported_once_at_its_end() {
        let mut d = DtmfDetector::new();
        // '5' held: three progress packets, then the end packet three times.
        for dur in [160u16, 320, 480] {
            assert_eq!(d.push(8000, &[5, 10, (dur >> 8) as u8, dur as u8]), None);
        }
        let end = [5, 0x80 | 10, 0x02, 0x80];
        assert_eq!(d.push(8000, &end), Some(DtmfEvent { digit: '5', duration: 640 }));
        assert_eq!(d.push(8000, &end), None);
        assert_eq!(d.push(8000, &end), None);
        // The next press, '#', has a new timestamp.
        assert_eq!(d.push(9600, &[11, 0x80, 0, 160]), Some(DtmfEvent { digit: '#', duration: 160 }));
    }

    #[test]
    fn short_payloads_and_non_keys_are_ignored() {
        let mut d = DtmfDetector::new();
        assert_eq!(d.push(1, &[]), None);
        assert_eq!(d.push(1, &[5, 0x80]), None);
        assert_eq!(d.push(2, &[16, 0x80, 0, 1]), None);
        assert_eq!(digit(12), Some('A'));
        assert_eq!(digit(10), Some('*'));
    }
}
