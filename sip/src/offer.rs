//! SDP offer/answer (RFC 3264) for plain RTP/AVP, as SIP phones and trunks speak it.
//!
//! [`parse_offer`] reads the offer with `rtc-sdp`'s parser and keeps what the gateway needs per
//! m-section: where to send RTP and RTCP, the direction, and the payload types in the offerer's
//! order of preference. [`negotiate`] picks one audio codec (the first offered of PCMU, PCMA,
//! Opus; telephone-event at the same clock rate) and one video codec (the first offered of
//! H.264 in packetization-mode 1 or 0 and VP8), and sizes the video from what the phone says
//! it can decode. [`answer_sdp`] writes the answer: one m-line per offered m-line, in order,
//! with port 0 for those refused (SRTP, data, a second audio line).

use std::{
    collections::HashMap,
    io::Cursor,
    net::{IpAddr, SocketAddr},
};

use rtc_sdp::{SessionDescription, description::media::MediaDescription};

/// Why an offer cannot be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum OfferError {
    /// The SDP parser refused it.
    #[error("malformed SDP: {0}")]
    Syntax(String),
    /// An m-section without a usable connection address.
    #[error("m-section {index} ({media}) has no connection address")]
    NoAddress {
        /// Its position.
        index: usize,
        /// audio, video, ...
        media: String,
    },
}

/// Why no call can be set up from an offer (SIP 488 Not Acceptable Here).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NegotiationError {
    /// No audio or video section with a codec the gateway speaks over plain RTP.
    #[error("no codec in common: the gateway speaks PCMU, PCMA, Opus, H.264 and VP8 over RTP/AVP")]
    NoCommonCodec,
}

/// Media direction, from the offerer's side or ours.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    /// Both ways.
    SendRecv,
    /// Only sends.
    SendOnly,
    /// Only receives.
    RecvOnly,
    /// Neither (hold).
    Inactive,
}

impl Direction {
    /// The answerer's direction for an offered one.
    pub fn reverse(self) -> Direction {
        match self {
            Direction::SendOnly => Direction::RecvOnly,
            Direction::RecvOnly => Direction::SendOnly,
            d => d,
        }
    }

    /// The SDP attribute.
    pub fn attribute(self) -> &'static str {
        match self {
            Direction::SendRecv => "sendrecv",
            Direction::SendOnly => "sendonly",
            Direction::RecvOnly => "recvonly",
            Direction::Inactive => "inactive",
        }
    }

    /// Media flows from the side with this direction.
    pub fn sends(self) -> bool {
        matches!(self, Direction::SendRecv | Direction::SendOnly)
    }

    /// Media flows to the side with this direction.
    pub fn receives(self) -> bool {
        matches!(self, Direction::SendRecv | Direction::RecvOnly)
    }
}

/// One offered payload type.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OfferedFormat {
    /// The payload type.
    pub pt: u8,
    /// Encoding name (`PCMU`, `H264`, ...), from `a=rtpmap` or the static table.
    pub name: String,
    /// Clock rate.
    pub clock_rate: u32,
    /// Channels (audio), 1 when not given.
    pub channels: u32,
    /// `a=fmtp` parameters, verbatim.
    pub fmtp: String,
}

/// One offered m-section.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OfferedMedia {
    /// `audio`, `video`, `application`, ...
    pub media: String,
    /// Transport protocol (`RTP/AVP`, `RTP/SAVP`, ...).
    pub proto: String,
    /// Where to send RTP (port 0: refused by the offerer).
    pub rtp: SocketAddr,
    /// Where to send RTCP (`a=rtcp`, else the next port; the RTP port with `a=rtcp-mux`).
    pub rtcp: SocketAddr,
    /// `a=rtcp-mux` offered.
    pub rtcp_mux: bool,
    /// The offerer's direction (`c=0.0.0.0` counts as inactive: old-style hold).
    pub direction: Direction,
    /// Payload types in order of preference.
    pub formats: Vec<OfferedFormat>,
    /// The first format token (echoed on a refused line).
    pub first_format: String,
}

/// What the gateway reads from an offer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Offer {
    /// Its m-sections, in order.
    pub media: Vec<OfferedMedia>,
}

fn static_format(pt: u8) -> Option<(&'static str, u32)> {
    match pt {
        0 => Some(("PCMU", 8000)),
        8 => Some(("PCMA", 8000)),
        9 => Some(("G722", 8000)),
        18 => Some(("G729", 8000)),
        _ => None,
    }
}

fn direction_of(attributes: &[rtc_sdp::description::common::Attribute]) -> Option<Direction> {
    attributes.iter().find_map(|a| match a.key.as_str() {
        "sendrecv" => Some(Direction::SendRecv),
        "sendonly" => Some(Direction::SendOnly),
        "recvonly" => Some(Direction::RecvOnly),
        "inactive" => Some(Direction::Inactive),
        _ => None,
    })
}

fn address_of(c: Option<&rtc_sdp::description::common::ConnectionInformation>) -> Option<IpAddr> {
    let c = c?;
    c.address.as_ref()?.address.split('/').next()?.parse().ok()
}

/// Reads an offer. Total over arbitrary text: malformed SDP is an error.
pub fn parse_offer(sdp: &str) -> Result<Offer, OfferError> {
    let desc = SessionDescription::unmarshal(&mut Cursor::new(sdp.as_bytes())).map_err(|e| OfferError::Syntax(e.to_string()))?;
    let session_addr = address_of(desc.connection_information.as_ref());
    let session_dir = direction_of(&desc.attributes).unwrap_or(Direction::SendRecv);
    let mut media = Vec::new();
    for (index, m) in desc.media_descriptions.iter().enumerate() {
        media.push(read_media(index, m, session_addr, session_dir)?);
    }
    Ok(Offer { media })
}

fn read_media(index: usize, m: &MediaDescription, session_addr: Option<IpAddr>, session_dir: Direction) -> Result<OfferedMedia, OfferError> {
    let name = &m.media_name;
    let port = u16::try_from(name.port.value).unwrap_or(0);
    let ip = address_of(m.connection_information.as_ref()).or(session_addr);
    let ip = match (ip, port) {
        (Some(ip), _) => ip,
        // A refused line needs no address.
        (None, 0) => IpAddr::from([0, 0, 0, 0]),
        (None, _) => return Err(OfferError::NoAddress { index, media: name.media.clone() }),
    };
    let mut direction = direction_of(&m.attributes).unwrap_or(session_dir);
    if ip.is_unspecified() && port != 0 {
        direction = Direction::Inactive;
    }
    let rtcp_mux = m.has_attribute("rtcp-mux");
    let rtcp = match m.attribute("rtcp").flatten() {
        Some(v) => {
            let mut parts = v.split_whitespace();
            let p = parts.next().and_then(|p| p.parse::<u16>().ok()).unwrap_or(port.wrapping_add(1));
            let addr = parts.nth(2).and_then(|a| a.parse::<IpAddr>().ok()).unwrap_or(ip);
            SocketAddr::new(addr, p)
        }
        None if rtcp_mux => SocketAddr::new(ip, port),
        None => SocketAddr::new(ip, port.wrapping_add(1)),
    };
    let described = m.codecs();
    let formats = name
        .formats
        .iter()
        .filter_map(|f| f.parse::<u8>().ok())
        .filter_map(|pt| match described.get(&pt) {
            Some(c) if !c.name.is_empty() => Some(OfferedFormat {
                pt,
                name: c.name.clone(),
                clock_rate: c.clock_rate,
                channels: c.encoding_parameters.parse().unwrap_or(1),
                fmtp: c.fmtp.clone(),
            }),
            _ => static_format(pt).map(|(n, rate)| OfferedFormat {
                pt,
                name: n.into(),
                clock_rate: rate,
                channels: 1,
                fmtp: described.get(&pt).map(|c| c.fmtp.clone()).unwrap_or_default(),
            }),
        })
        .collect();
    Ok(OfferedMedia {
        media: name.media.clone(),
        proto: name.protos.join("/"),
        rtp: SocketAddr::new(ip, port),
        rtcp,
        rtcp_mux,
        direction,
        formats,
        first_format: name.formats.first().cloned().unwrap_or_else(|| "0".into()),
    })
}

/// The audio codec chosen.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AudioCodec {
    /// G.711 µ-law, 8 kHz.
    Pcmu,
    /// G.711 A-law, 8 kHz.
    Pcma,
    /// Opus, 48 kHz (`channels` as offered: 2 for `opus/48000/2`).
    Opus,
}

impl AudioCodec {
    /// RTP clock rate.
    pub fn clock_rate(self) -> u32 {
        match self {
            AudioCodec::Pcmu | AudioCodec::Pcma => 8000,
            AudioCodec::Opus => 48000,
        }
    }
}

/// The video codec chosen.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum VideoCodecChoice {
    /// H.264; `mode` is the packetization-mode (0: single NAL units only).
    H264 {
        /// 0 or 1.
        mode: u8,
        /// The level the phone declared (profile-level-id's last byte; 0x1f when absent).
        level: u8,
    },
    /// VP8.
    Vp8,
}

/// The call's audio.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AudioChoice {
    /// Position of its m-line.
    pub index: usize,
    /// The codec.
    pub codec: AudioCodec,
    /// Its payload type (the offerer's).
    pub pt: u8,
    /// Channels in the rtpmap (Opus: 2 as browsers and phones write it).
    pub channels: u32,
    /// telephone-event's payload type at the codec's clock rate, if offered.
    pub dtmf_pt: Option<u8>,
    /// Where to send RTP.
    pub remote: SocketAddr,
    /// Where to send RTCP.
    pub remote_rtcp: SocketAddr,
    /// RTCP on the RTP port.
    pub rtcp_mux: bool,
    /// Our direction.
    pub direction: Direction,
}

/// The call's video.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VideoChoice {
    /// Position of its m-line.
    pub index: usize,
    /// The codec.
    pub codec: VideoCodecChoice,
    /// Its payload type (the offerer's).
    pub pt: u8,
    /// Where to send RTP.
    pub remote: SocketAddr,
    /// Where to send RTCP.
    pub remote_rtcp: SocketAddr,
    /// RTCP on the RTP port.
    pub rtcp_mux: bool,
    /// Our direction.
    pub direction: Direction,
    /// The picture the phone gets: the gateway's default size, or smaller when the phone
    /// declares it decodes less (`max-fs`, or the H.264 level's frame size).
    pub width: u32,
    /// Height.
    pub height: u32,
}

/// An accepted offer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Negotiated {
    /// The audio, if any.
    pub audio: Option<AudioChoice>,
    /// The video, if any.
    pub video: Option<VideoChoice>,
    /// The offer's m-lines (for the answer's refused lines).
    pub offered: Vec<OfferedMedia>,
}

fn fmtp_param<'a>(fmtp: &'a str, key: &str) -> Option<&'a str> {
    fmtp.split(';').map(str::trim).find_map(|kv| {
        let (k, v) = kv.split_once('=')?;
        k.trim().eq_ignore_ascii_case(key).then_some(v.trim())
    })
}

/// H.264's maximum frame size (macroblocks) per level_idc (H.264 Table A-1).
fn h264_level_max_fs(level: u8) -> u32 {
    match level {
        0..=10 => 99,
        11..=20 => 396,
        21 => 792,
        22 | 30 => 1620,
        31 => 3600,
        32 => 5120,
        40..=42 => 8192,
        _ => 8704,
    }
}

/// Canvas sizes offered to phones, largest first (16:9, then CIF and QCIF for old phones).
const SIZES: [(u32, u32); 6] = [(1280, 720), (960, 540), (640, 360), (352, 288), (320, 180), (176, 144)];

fn pick_size(default: (u32, u32), max_mbs: u32) -> (u32, u32) {
    let mbs = |(w, h): (u32, u32)| w.div_ceil(16) * h.div_ceil(16);
    SIZES.iter().copied().find(|&s| s.0 * s.1 <= default.0 * default.1 && mbs(s) <= max_mbs).unwrap_or((176, 144))
}

fn is_plain_rtp(proto: &str) -> bool {
    proto.eq_ignore_ascii_case("RTP/AVP") || proto.eq_ignore_ascii_case("RTP/AVPF")
}

/// Chooses the call's codecs. `video_size` is the picture sent to phones that can decode it.
pub fn negotiate(offer: &Offer, video_size: (u32, u32)) -> Result<Negotiated, NegotiationError> {
    let mut audio = None;
    let mut video = None;
    for (index, m) in offer.media.iter().enumerate() {
        if m.rtp.port() == 0 || !is_plain_rtp(&m.proto) {
            continue;
        }
        let direction = m.direction.reverse();
        if m.media == "audio" && audio.is_none() {
            let chosen = m.formats.iter().find_map(|f| {
                let codec = match f.name.to_ascii_uppercase().as_str() {
                    "PCMU" if f.clock_rate == 8000 => AudioCodec::Pcmu,
                    "PCMA" if f.clock_rate == 8000 => AudioCodec::Pcma,
                    "OPUS" if f.clock_rate == 48000 => AudioCodec::Opus,
                    _ => return None,
                };
                Some((codec, f))
            });
            if let Some((codec, f)) = chosen {
                let dtmf_pt = m.formats.iter().find(|t| t.name.eq_ignore_ascii_case("telephone-event") && t.clock_rate == codec.clock_rate()).map(|t| t.pt);
                audio = Some(AudioChoice {
                    index,
                    codec,
                    pt: f.pt,
                    channels: f.channels,
                    dtmf_pt,
                    remote: m.rtp,
                    remote_rtcp: m.rtcp,
                    rtcp_mux: m.rtcp_mux,
                    direction,
                });
            }
        } else if m.media == "video" && video.is_none() {
            let chosen = m.formats.iter().find_map(|f| match f.name.to_ascii_uppercase().as_str() {
                "H264" if f.clock_rate == 90000 => {
                    let mode = match fmtp_param(&f.fmtp, "packetization-mode") {
                        None | Some("0") => 0,
                        Some("1") => 1,
                        // Mode 2 (interleaved) is not spoken.
                        Some(_) => return None,
                    };
                    let level =
                        fmtp_param(&f.fmtp, "profile-level-id").filter(|p| p.len() == 6).and_then(|p| u8::from_str_radix(&p[4..6], 16).ok()).unwrap_or(0x1f);
                    let max_fs = fmtp_param(&f.fmtp, "max-fs").and_then(|v| v.parse::<u32>().ok());
                    let limit = max_fs.unwrap_or(0).max(h264_level_max_fs(level));
                    Some((VideoCodecChoice::H264 { mode, level }, f.pt, limit))
                }
                "VP8" if f.clock_rate == 90000 => {
                    let limit = fmtp_param(&f.fmtp, "max-fs").and_then(|v| v.parse::<u32>().ok()).unwrap_or(u32::MAX);
                    Some((VideoCodecChoice::Vp8, f.pt, limit))
                }
                _ => None,
            });
            if let Some((codec, pt, max_mbs)) = chosen {
                let (width, height) = pick_size(video_size, max_mbs);
                video = Some(VideoChoice { index, codec, pt, remote: m.rtp, remote_rtcp: m.rtcp, rtcp_mux: m.rtcp_mux, direction, width, height });
            }
        }
    }
    if audio.is_none() && video.is_none() {
        return Err(NegotiationError::NoCommonCodec);
    }
    Ok(Negotiated { audio, video, offered: offer.media.clone() })
}

/// Writes the answer: `ip` and the local RTP ports of the audio and video sections (RTCP on
/// the next port, or the same with rtcp-mux), `session` as the o= line's id and version.
pub fn answer_sdp(n: &Negotiated, ip: IpAddr, audio_port: u16, video_port: u16, session: u64, version: u64) -> String {
    let family = if ip.is_ipv4() { "IP4" } else { "IP6" };
    let mut s = format!("v=0\r\no=mcu {session} {version} IN {family} {ip}\r\ns=mcu\r\nc=IN {family} {ip}\r\nt=0 0\r\n");
    let mut names: HashMap<u8, String> = HashMap::new();
    for (index, m) in n.offered.iter().enumerate() {
        names.clear();
        if let Some(a) = n.audio.as_ref().filter(|a| a.index == index) {
            let mut pts = vec![a.pt];
            pts.extend(a.dtmf_pt);
            let list: Vec<String> = pts.iter().map(u8::to_string).collect();
            s += &format!("m=audio {audio_port} {} {}\r\n", m.proto, list.join(" "));
            match a.codec {
                AudioCodec::Pcmu => s += &format!("a=rtpmap:{} PCMU/8000\r\n", a.pt),
                AudioCodec::Pcma => s += &format!("a=rtpmap:{} PCMA/8000\r\n", a.pt),
                AudioCodec::Opus => {
                    s += &format!("a=rtpmap:{} opus/48000/{}\r\n", a.pt, a.channels.max(1));
                    s += &format!("a=fmtp:{} useinbandfec=1\r\n", a.pt);
                }
            }
            if let Some(te) = a.dtmf_pt {
                s += &format!("a=rtpmap:{te} telephone-event/{}\r\na=fmtp:{te} 0-15\r\n", a.codec.clock_rate());
            }
            s += "a=ptime:20\r\n";
            if a.rtcp_mux {
                s += "a=rtcp-mux\r\n";
            }
            s += &format!("a={}\r\n", a.direction.attribute());
        } else if let Some(v) = n.video.as_ref().filter(|v| v.index == index) {
            s += &format!("m=video {video_port} {} {}\r\n", m.proto, v.pt);
            match &v.codec {
                VideoCodecChoice::H264 { mode, level } => {
                    s += &format!("a=rtpmap:{} H264/90000\r\n", v.pt);
                    s += &format!("a=fmtp:{} profile-level-id=42e0{level:02x};packetization-mode={mode}\r\n", v.pt);
                }
                VideoCodecChoice::Vp8 => s += &format!("a=rtpmap:{} VP8/90000\r\n", v.pt),
            }
            s += &format!("a=rtcp-fb:{} nack pli\r\na=rtcp-fb:{} ccm fir\r\n", v.pt, v.pt);
            if v.rtcp_mux {
                s += "a=rtcp-mux\r\n";
            }
            s += &format!("a={}\r\n", v.direction.attribute());
        } else {
            let proto = if m.proto.is_empty() { "RTP/AVP" } else { m.proto.as_str() };
            s += &format!("m={} 0 {proto} {}\r\n", m.media, m.first_format);
        }
    }
    s
}

/// Payload types of the gateway's own offer (dial-out): PCMU, PCMA, Opus, telephone-event at
/// 8 and 48 kHz; H.264 in mode 1 and mode 0, VP8.
pub mod offer_pt {
    /// G.711 µ-law (static).
    pub const PCMU: u8 = 0;
    /// G.711 A-law (static).
    pub const PCMA: u8 = 8;
    /// Opus.
    pub const OPUS: u8 = 111;
    /// telephone-event/8000.
    pub const DTMF_8K: u8 = 101;
    /// telephone-event/48000.
    pub const DTMF_48K: u8 = 110;
    /// H.264 packetization-mode 1.
    pub const H264_MODE1: u8 = 96;
    /// H.264 packetization-mode 0.
    pub const H264_MODE0: u8 = 97;
    /// VP8.
    pub const VP8: u8 = 98;
}

/// The gateway's offer when it calls out: audio (G.711 first: what every phone and trunk
/// speaks) and, with `video`, H.264 (both modes) and VP8, sendrecv on `ip`'s ports (RTCP on the
/// next port).
pub fn offer_sdp(ip: IpAddr, audio_port: u16, video_port: Option<u16>, session: u64, version: u64) -> String {
    use offer_pt::*;
    let family = if ip.is_ipv4() { "IP4" } else { "IP6" };
    let mut s = format!("v=0\r\no=mcu {session} {version} IN {family} {ip}\r\ns=mcu\r\nc=IN {family} {ip}\r\nt=0 0\r\n");
    s += &format!("m=audio {audio_port} RTP/AVP {PCMU} {PCMA} {OPUS} {DTMF_8K} {DTMF_48K}\r\n");
    s += &format!("a=rtpmap:{PCMU} PCMU/8000\r\na=rtpmap:{PCMA} PCMA/8000\r\na=rtpmap:{OPUS} opus/48000/2\r\na=fmtp:{OPUS} useinbandfec=1\r\n");
    s +=
        &format!("a=rtpmap:{DTMF_8K} telephone-event/8000\r\na=fmtp:{DTMF_8K} 0-15\r\na=rtpmap:{DTMF_48K} telephone-event/48000\r\na=fmtp:{DTMF_48K} 0-15\r\n");
    s += "a=ptime:20\r\na=sendrecv\r\n";
    if let Some(port) = video_port {
        s += &format!("m=video {port} RTP/AVP {H264_MODE1} {H264_MODE0} {VP8}\r\n");
        s += &format!("a=rtpmap:{H264_MODE1} H264/90000\r\na=fmtp:{H264_MODE1} profile-level-id=42e01f;packetization-mode=1\r\n");
        s += &format!("a=rtpmap:{H264_MODE0} H264/90000\r\na=fmtp:{H264_MODE0} profile-level-id=42e01f;packetization-mode=0\r\n");
        s += &format!("a=rtpmap:{VP8} VP8/90000\r\n");
        for pt in [H264_MODE1, H264_MODE0, VP8] {
            s += &format!("a=rtcp-fb:{pt} nack pli\r\na=rtcp-fb:{pt} ccm fir\r\n");
        }
        s += "a=sendrecv\r\n";
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    /// baresip 1.0's offer (audio and video, H.264 mode 0 only).
    const BARESIP: &str = "v=0\r\no=- 1 2 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n\
m=audio 10000 RTP/AVP 96 0 8 101\r\na=rtpmap:96 opus/48000/2\r\na=fmtp:96 stereo=1;sprop-stereo=1\r\n\
a=rtpmap:0 PCMU/8000\r\na=rtpmap:8 PCMA/8000\r\na=rtpmap:101 telephone-event/8000\r\na=sendrecv\r\n\
m=video 10002 RTP/AVP 97\r\na=rtpmap:97 H264/90000\r\na=fmtp:97 packetization-mode=0;profile-level-id=42801e\r\n\
a=rtcp-fb:97 nack pli\r\na=sendrecv\r\n";

    #[test]
    fn a_phone_offering_opus_g711_and_h264_mode_0() {
        let offer = parse_offer(BARESIP).unwrap();
        assert_eq!(offer.media.len(), 2);
        assert_eq!(offer.media[0].rtp, "127.0.0.1:10000".parse().unwrap());
        assert_eq!(offer.media[0].rtcp, "127.0.0.1:10001".parse().unwrap());
        let n = negotiate(&offer, (640, 360)).unwrap();
        let a = n.audio.as_ref().unwrap();
        // The offerer's first choice it shares with us: Opus; no telephone-event at 48 kHz.
        assert_eq!((a.codec, a.pt, a.dtmf_pt, a.channels), (AudioCodec::Opus, 96, None, 2));
        let v = n.video.as_ref().unwrap();
        assert_eq!(v.codec, VideoCodecChoice::H264 { mode: 0, level: 0x1e });
        // Level 3 decodes 1620 macroblocks: 640x360 (920) fits.
        assert_eq!((v.width, v.height), (640, 360));
        let answer = answer_sdp(&n, "127.0.0.1".parse().unwrap(), 20000, 20002, 7, 1);
        assert!(answer.contains("m=audio 20000 RTP/AVP 96\r\na=rtpmap:96 opus/48000/2\r\n"), "{answer}");
        assert!(answer.contains("m=video 20002 RTP/AVP 97\r\n"), "{answer}");
        assert!(answer.contains("packetization-mode=0"), "{answer}");
        // The answer is valid SDP for the same parser.
        let back = parse_offer(&answer).unwrap();
        assert_eq!(back.media.len(), 2);
        assert_eq!(back.media[1].rtp.port(), 20002);
    }

    #[test]
    fn g711_with_dtmf_and_a_refused_srtp_video_line() {
        let sdp = "v=0\r\no=user1 53655765 2353687637 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n\
m=audio 6000 RTP/AVP 8 0 101\r\na=rtpmap:101 telephone-event/8000\r\na=fmtp:101 0-15\r\na=ptime:20\r\n\
m=video 6002 RTP/SAVP 96\r\na=rtpmap:96 H264/90000\r\n";
        let n = negotiate(&parse_offer(sdp).unwrap(), (640, 360)).unwrap();
        let a = n.audio.as_ref().unwrap();
        assert_eq!((a.codec, a.pt, a.dtmf_pt), (AudioCodec::Pcma, 8, Some(101)));
        assert!(n.video.is_none());
        let answer = answer_sdp(&n, "127.0.0.1".parse().unwrap(), 20000, 20002, 7, 1);
        assert!(answer.contains("m=audio 20000 RTP/AVP 8 101\r\n"), "{answer}");
        assert!(answer.contains("a=rtpmap:101 telephone-event/8000\r\n"), "{answer}");
        assert!(answer.contains("m=video 0 RTP/SAVP 96\r\n"), "{answer}");
    }

    #[test]
    fn hold_directions_and_old_style_hold() {
        let hold = BARESIP.replace("a=sendrecv", "a=sendonly");
        let n = negotiate(&parse_offer(&hold).unwrap(), (640, 360)).unwrap();
        assert_eq!(n.audio.unwrap().direction, Direction::RecvOnly);
        let old = BARESIP.replace("c=IN IP4 127.0.0.1", "c=IN IP4 0.0.0.0");
        let n = negotiate(&parse_offer(&old).unwrap(), (640, 360)).unwrap();
        assert_eq!(n.audio.unwrap().direction, Direction::Inactive);
    }

    #[test]
    fn a_cif_phone_gets_cif_and_rtcp_attributes_are_honoured() {
        let sdp = "v=0\r\no=- 1 1 IN IP4 10.0.0.2\r\ns=-\r\nc=IN IP4 10.0.0.2\r\nt=0 0\r\n\
m=video 7000 RTP/AVP 99\r\na=rtpmap:99 H264/90000\r\na=fmtp:99 profile-level-id=42000d;packetization-mode=1\r\na=rtcp:7005\r\n";
        let n = negotiate(&parse_offer(sdp).unwrap(), (1280, 720)).unwrap();
        let v = n.video.unwrap();
        assert_eq!((v.width, v.height), (352, 288));
        assert_eq!(v.codec, VideoCodecChoice::H264 { mode: 1, level: 0x0d });
        assert_eq!(v.remote_rtcp, "10.0.0.2:7005".parse().unwrap());
        assert!(n.audio.is_none());
    }

    #[test]
    fn nothing_in_common_and_malformed_offers_are_errors() {
        let g729 = "v=0\r\no=- 1 1 IN IP4 10.0.0.2\r\ns=-\r\nc=IN IP4 10.0.0.2\r\nt=0 0\r\nm=audio 7000 RTP/AVP 18\r\n";
        assert_eq!(negotiate(&parse_offer(g729).unwrap(), (640, 360)), Err(NegotiationError::NoCommonCodec));
        assert!(matches!(parse_offer("hello"), Err(OfferError::Syntax(_))));
        let no_addr = "v=0\r\no=- 1 1 IN IP4 10.0.0.2\r\ns=-\r\nt=0 0\r\nm=audio 7000 RTP/AVP 0\r\n";
        assert!(matches!(parse_offer(no_addr), Err(OfferError::NoAddress { .. })));
    }

    #[test]
    fn our_offer_reads_back_and_an_answer_to_it_negotiates() {
        let offer = offer_sdp("127.0.0.1".parse().unwrap(), 30000, Some(30002), 9, 1);
        let parsed = parse_offer(&offer).unwrap();
        assert_eq!(parsed.media.len(), 2);
        // What a phone answers: PCMU and H.264 mode 0 (it takes from our list).
        let answer = "v=0\r\no=- 5 5 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n\
m=audio 40000 RTP/AVP 0 101\r\na=rtpmap:0 PCMU/8000\r\na=rtpmap:101 telephone-event/8000\r\na=sendrecv\r\n\
m=video 40002 RTP/AVP 97\r\na=rtpmap:97 H264/90000\r\na=fmtp:97 profile-level-id=42e01f;packetization-mode=0\r\na=sendrecv\r\n";
        let n = negotiate(&parse_offer(answer).unwrap(), (640, 360)).unwrap();
        assert_eq!(n.audio.as_ref().map(|a| (a.codec, a.dtmf_pt)), Some((AudioCodec::Pcmu, Some(101))));
        assert_eq!(n.video.as_ref().map(|v| v.codec.clone()), Some(VideoCodecChoice::H264 { mode: 0, level: 0x1f }));
        let audio_only = offer_sdp("127.0.0.1".parse().unwrap(), 30000, None, 9, 1);
        assert_eq!(parse_offer(&audio_only).unwrap().media.len(), 1);
    }

    #[test]
    fn arbitrary_text_never_panics() {
        let mut seed = 0x1234_5678u64;
        for n in 0..3000 {
            let mut s = BARESIP.as_bytes().to_vec();
            for _ in 0..(n % 7 + 1) {
                seed = seed.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
                let at = (seed >> 33) as usize % s.len();
                s[at] = (seed >> 20) as u8;
            }
            s.truncate((seed >> 40) as usize % (s.len() + 1));
            if let Ok(o) = parse_offer(&String::from_utf8_lossy(&s))
                && let Ok(n) = negotiate(&o, (640, 360))
            {
                let _ = answer_sdp(&n, "127.0.0.1".parse().unwrap(), 1, 2, 3, 4);
            }
        }
    }
}
