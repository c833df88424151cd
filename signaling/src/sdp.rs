//! The few facts the server reads from an SDP offer or answer itself, beside the WebRTC stack's
//! full parser: how many m-sections send media (limits), the `a=extmap` ids (header-extension
//! forwarding), H.264's `packetization-mode` and the simulcast streams sent. Total functions over arbitrary text: a
//! malformed line is skipped, never a panic (fuzzed in `signaling/fuzz`).

/// m-sections (audio or video) of an offer that send media: not `a=recvonly`/`a=inactive`,
/// not rejected with port 0.
pub fn count_sending_sections(sdp: &str) -> usize {
    let mut count = 0;
    let mut in_media = false;
    let mut sends = true;
    for line in sdp.lines().map(str::trim) {
        if line.starts_with("m=") {
            if in_media && sends {
                count += 1;
            }
            in_media = line.starts_with("m=audio") || line.starts_with("m=video");
            sends = !line.starts_with("m=audio 0 ") && !line.starts_with("m=video 0 ");
        } else if in_media && (line == "a=recvonly" || line == "a=inactive") {
            sends = false;
        }
    }
    if in_media && sends {
        count += 1;
    }
    count
}

/// Every `a=extmap:<id>[/<direction>] <uri>` line: (id, uri). Ids outside 1..=255 are skipped.
pub fn extmaps(sdp: &str) -> Vec<(u8, &str)> {
    sdp.lines()
        .map(str::trim)
        .filter_map(|line| {
            let rest = line.strip_prefix("a=extmap:")?;
            let mut parts = rest.split_whitespace();
            let id = parts.next()?.split('/').next()?.parse::<u8>().ok().filter(|&id| id > 0)?;
            Some((id, parts.next()?))
        })
        .collect()
}

/// `packetization-mode` of an H.264 fmtp line (0 when absent, per RFC 6184).
pub fn packetization_mode(fmtp: &str) -> u8 {
    fmtp.split(';')
        .filter_map(|kv| kv.trim().split_once('='))
        .find(|(k, _)| k.eq_ignore_ascii_case("packetization-mode"))
        .and_then(|(_, v)| v.trim().parse().ok())
        .unwrap_or(0)
}

/// The simulcast streams a video m-section sends (`a=simulcast:send`, RFC 8853), lowest
/// quality first, from the first video m-section that has any. Each stream's first
/// alternative counts; a paused one (`~rid`) counts too, since it may start later.
///
/// The SDP does not say which rid is which quality, so the order follows the names most
/// clients use: `q`/`h`/`f` (quarter, half, full) and `l`/`m`/`h` or `low`/`mid`/`high`
/// sort by size; `0`, `1`, `2`… (and `r0`, `r1`…) by number; otherwise the offer's order is
/// taken as lowest first.
pub fn simulcast_send_rids(sdp: &str) -> Vec<String> {
    let mut in_video = false;
    for line in sdp.lines().map(str::trim) {
        if line.starts_with("m=") {
            in_video = line.starts_with("m=video");
            continue;
        }
        if !in_video {
            continue;
        }
        let Some(rest) = line.strip_prefix("a=simulcast:") else { continue };
        let mut words = rest.split_whitespace();
        while let Some(dir) = words.next() {
            let Some(list) = words.next() else { break };
            if dir != "send" {
                continue;
            }
            let rids: Vec<String> = list
                .split(';')
                .filter_map(|stream| stream.split(',').next())
                .map(|r| r.trim_start_matches('~'))
                .filter(|r| !r.is_empty() && r.len() <= 32)
                .map(String::from)
                .collect();
            if rids.is_empty() {
                continue;
            }
            return lowest_first(rids);
        }
    }
    Vec::new()
}

fn lowest_first(mut rids: Vec<String>) -> Vec<String> {
    const NAMED: [&[&str]; 3] = [&["q", "h", "f"], &["l", "m", "h"], &["low", "mid", "high"]];
    for names in NAMED {
        if rids.iter().all(|r| names.contains(&r.to_ascii_lowercase().as_str())) {
            rids.sort_by_key(|r| names.iter().position(|n| r.eq_ignore_ascii_case(n)));
            return rids;
        }
    }
    let number = |r: &String| r.trim_start_matches(|c: char| c.is_ascii_alphabetic()).parse::<u32>().ok();
    if rids.iter().all(|r| number(r).is_some()) {
        rids.sort_by_key(number);
    }
    rids
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sending_sections_are_counted() {
        let sdp = "v=0\r\nm=audio 9 UDP/TLS/RTP/SAVPF 111\r\na=sendrecv\r\nm=video 9 UDP/TLS/RTP/SAVPF 96\r\na=sendonly\r\nm=application 9 UDP/DTLS/SCTP webrtc-datachannel\r\n";
        assert_eq!(count_sending_sections(sdp), 2);
        let sdp = "v=0\r\nm=audio 9 UDP/TLS/RTP/SAVPF 111\r\na=recvonly\r\nm=video 0 UDP/TLS/RTP/SAVPF 96\r\n";
        assert_eq!(count_sending_sections(sdp), 0);
    }

    #[test]
    fn extmaps_and_modes() {
        let sdp = "a=extmap:1 urn:ietf:params:rtp-hdrext:ssrc-audio-level\r\na=extmap:3/recvonly urn:3gpp:video-orientation\r\na=extmap:0 x\r\na=extmap:999 y\r\na=extmap:\r\n";
        assert_eq!(extmaps(sdp), vec![(1, "urn:ietf:params:rtp-hdrext:ssrc-audio-level"), (3, "urn:3gpp:video-orientation")]);
        assert_eq!(packetization_mode("profile-level-id=42e01f;packetization-mode=1"), 1);
        assert_eq!(packetization_mode("profile-level-id=42e01f"), 0);
        assert_eq!(packetization_mode("packetization-mode=x"), 0);
    }

    #[test]
    fn simulcast_rids_lowest_first() {
        let offer = "m=audio 9 UDP/TLS/RTP/SAVPF 111\r\na=simulcast:send x;y\r\nm=video 9 UDP/TLS/RTP/SAVPF 96\r\na=rid:f send\r\na=rid:h send\r\na=rid:q send\r\na=simulcast:send f;h;~q\r\n";
        assert_eq!(simulcast_send_rids(offer), ["q", "h", "f"]);
        assert_eq!(simulcast_send_rids("m=video 9 X 96\r\na=simulcast:recv 1 send r2,r5;r0;r1\r\n"), ["r0", "r1", "r2"]);
        assert_eq!(simulcast_send_rids("m=video 9 X 96\r\na=simulcast:send hi;lo\r\n"), ["hi", "lo"]);
        assert_eq!(simulcast_send_rids("m=video 9 X 96\r\na=simulcast:send\r\na=simulcast:recv a;b\r\n"), Vec::<String>::new());
        assert_eq!(simulcast_send_rids("m=video 9 X 96\r\n"), Vec::<String>::new());
    }

    #[test]
    fn arbitrary_text_never_panics() {
        // A deterministic stream of junk SDP-ish lines (the fuzz target explores further).
        let mut x = 0x2545_f491_4f6c_dd1d_u64;
        let alphabet = b"m=audiovideo 0 9 a=extmap:/recvonlyinactive packetization-mode=;simulcast:send~,r\r\n\xff";
        for _ in 0..2000 {
            let len = (x % 200) as usize;
            let bytes: Vec<u8> = (0..len)
                .map(|_| {
                    x ^= x << 13;
                    x ^= x >> 7;
                    x ^= x << 17;
                    alphabet[(x % alphabet.len() as u64) as usize]
                })
                .collect();
            let text = String::from_utf8_lossy(&bytes);
            let _ = (count_sending_sections(&text), extmaps(&text), packetization_mode(&text), simulcast_send_rids(&text));
        }
    }
}
