//! The one fact the server reads from STUN itself: whom a Binding request is for, so that
//! one UDP port can serve every connection (the server's UDP mux routes a peer's first
//! connectivity check by it). Total over arbitrary bytes (fuzzed).

/// The recipient's ufrag of a STUN Binding request (USERNAME is `recipient:sender`).
/// `None` for anything else, malformed input included.
pub fn stun_request_ufrag(data: &[u8]) -> Option<&str> {
    if data.len() < 20 || data[0..2] != [0x00, 0x01] || data[4..8] != [0x21, 0x12, 0xA4, 0x42] {
        return None;
    }
    let len = u16::from_be_bytes([data[2], data[3]]) as usize;
    let body = data.get(20..20 + len)?;
    let mut at = 0;
    while at + 4 <= body.len() {
        let typ = u16::from_be_bytes([body[at], body[at + 1]]);
        let alen = u16::from_be_bytes([body[at + 2], body[at + 3]]) as usize;
        let value = body.get(at + 4..at + 4 + alen)?;
        if typ == 0x0006 {
            let name = std::str::from_utf8(value).ok()?;
            return name.split(':').next().filter(|u| !u.is_empty());
        }
        at += 4 + alen.div_ceil(4) * 4;
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn binding_request(username: &str) -> Vec<u8> {
        let mut attr = vec![0x00, 0x06];
        attr.extend_from_slice(&(username.len() as u16).to_be_bytes());
        attr.extend_from_slice(username.as_bytes());
        while attr.len() % 4 != 0 {
            attr.push(0);
        }
        // A PRIORITY attribute first, so USERNAME is not the first one.
        let mut body = vec![0x00, 0x24, 0x00, 0x04, 1, 2, 3, 4];
        body.extend_from_slice(&attr);
        let mut msg = vec![0x00, 0x01];
        msg.extend_from_slice(&(body.len() as u16).to_be_bytes());
        msg.extend_from_slice(&[0x21, 0x12, 0xA4, 0x42]);
        msg.extend_from_slice(&[7; 12]);
        msg.extend_from_slice(&body);
        msg
    }

    #[test]
    fn binding_requests_name_their_recipient() {
        assert_eq!(stun_request_ufrag(&binding_request("srvUfrag:peer")), Some("srvUfrag"));
        assert_eq!(stun_request_ufrag(&binding_request("abc:defg1")), Some("abc"));
        // A response (0x0101), DTLS, RTP and junk are not routable by ufrag.
        let mut response = binding_request("x:y");
        response[0] = 0x01;
        assert_eq!(stun_request_ufrag(&response), None);
        assert_eq!(stun_request_ufrag(&[22, 254, 253, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]), None);
        assert_eq!(stun_request_ufrag(&[0x80, 96, 0, 1]), None);
        // Truncated and lying lengths.
        let full = binding_request("srv:peer");
        for cut in 0..full.len() {
            let _ = stun_request_ufrag(&full[..cut]);
        }
        let mut lying = full.clone();
        lying[2] = 0xff;
        assert_eq!(stun_request_ufrag(&lying), None);
        let mut x = 0x9e37_79b9_7f4a_7c15_u64;
        for _ in 0..5000 {
            let mut m = full.clone();
            for _ in 0..3 {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                let i = (x % m.len() as u64) as usize;
                m[i] = (x >> 32) as u8;
            }
            let _ = stun_request_ufrag(&m);
        }
    }
}
