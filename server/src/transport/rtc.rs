//! WebRTC peer connections (the `webrtc` crate, 0.21): the codecs we negotiate, the interceptor
//! chain, and the addresses ICE offers.
//!
//! Every connection gets the same media engine: Opus (and G.711 for gateways), VP8, H.264
//! (packetization-mode 1 and 0, baseline and constrained baseline) and AV1, each video codec with
//! NACK, PLI, FIR and REMB feedback (retransmissions on the media SSRC: see `media_engine`). The answerer keeps the offerer's order of
//! preference (JSEP), so a browser that prefers H.264 gets H.264.
//!
//! Inbound RTCP stops inside the interceptors unless one marks it for the application;
//! [`FeedbackTap`] marks keyframe requests and REMB, which the SFU acts on (NACKs are answered by
//! the NACK responder interceptor from its own send cache, receiver reports feed its statistics).

use std::{
    collections::VecDeque,
    net::SocketAddr,
    sync::Arc,
    time::{Duration, Instant},
};

use rtc::{
    interceptor::{Attribute, Interceptor, Packet, Registry, SenderReportBuilder, Slot, StreamInfo, TaggedPacket},
    peer_connection::{
        configuration::{
            RTCConfigurationBuilder,
            interceptor_registry::register_default_interceptors,
            media_engine::{MIME_TYPE_AV1, MIME_TYPE_H264, MIME_TYPE_OPUS, MIME_TYPE_PCMA, MIME_TYPE_PCMU, MIME_TYPE_VP8, MediaEngine},
            setting_engine::SettingEngineBuilder,
        },
        transport::RTCIceServer,
    },
    rtcp::{
        payload_feedbacks::{
            full_intra_request::FullIntraRequest, picture_loss_indication::PictureLossIndication,
            receiver_estimated_maximum_bitrate::ReceiverEstimatedMaximumBitrate,
        },
        receiver_report::ReceiverReport,
        sender_report::SenderReport,
        transport_feedbacks::transport_layer_nack::TransportLayerNack,
    },
    rtp_transceiver::rtp_sender::{RTCPFeedback, RTCRtpCodec, RTCRtpCodecParameters, RTCRtpHeaderExtensionCapability, RtpCodecKind},
    sansio::Protocol,
    shared::error::Error,
};
use webrtc::peer_connection::{PeerConnection, PeerConnectionBuilder, PeerConnectionEventHandler};

use mcu_sfu::keyframe::Codec;

/// Transport settings shared by every connection.
#[derive(Debug, Clone)]
pub struct RtcConfig {
    /// UDP addresses each connection binds (port 0: an ephemeral port per connection). A
    /// wildcard address gathers every interface except loopback.
    pub udp_addrs: Vec<SocketAddr>,
    /// STUN/TURN servers handed to the ICE agent (and, in answers, used for relay candidates).
    pub ice_servers: Vec<RTCIceServer>,
    /// A connection with no traffic for 5 s is disconnected; after this long more, failed (and
    /// its session ends, as if the client had sent DELETE).
    pub ice_failed_timeout: Duration,
    /// Public addresses of a 1:1 NAT (cloud VMs): announced as server-reflexive candidates
    /// beside the host ones (see [`RtcConfig::announce`]).
    pub public_ips: Vec<String>,
    /// One UDP port for every connection, when an address names a port (see `udpmux`).
    pub mux: Option<Arc<crate::transport::udpmux::UdpMux>>,
    /// WHEP viewers' forwarded media is encrypted and sent by the SFU itself on the shared
    /// port (`fastpath`), not through the `webrtc` crate's per-connection pipeline.
    pub direct_send: bool,
}

impl RtcConfig {
    /// Settings from the server's flags. Dev mode adds a loopback address so clients on the same
    /// machine (which never gather 127.0.0.1 themselves) can connect.
    ///
    /// An address with a port other than 0 means one UDP port for every connection: the
    /// first such port is shared (on every IP the connections use, loopback included in dev
    /// mode) and each connection's own socket only names it to its ICE agent.
    pub fn new(addrs: &[SocketAddr], dev: bool, ice_servers: Vec<RTCIceServer>, ice_failed_timeout: Duration, public_ips: Vec<String>) -> RtcConfig {
        let mux = addrs.iter().map(|a| a.port()).find(|&p| p != 0).map(crate::transport::udpmux::UdpMux::new);
        let mut udp_addrs: Vec<SocketAddr> = addrs.iter().map(|a| if mux.is_some() { SocketAddr::new(a.ip(), 0) } else { *a }).collect();
        if dev && !udp_addrs.iter().any(|a| a.ip().is_loopback()) {
            udp_addrs.push(SocketAddr::from(([127, 0, 0, 1], 0)));
        }
        udp_addrs.dedup();
        RtcConfig { udp_addrs, ice_servers, ice_failed_timeout, public_ips, mux, direct_send: true }
    }

    /// Binds the shared UDP port on the configured addresses now (a port in use is an error at
    /// start, not at the first connection). Needs the tokio runtime.
    pub fn start(&self) -> std::io::Result<()> {
        if let Some(mux) = &self.mux {
            for a in &self.udp_addrs {
                if !a.ip().is_unspecified() {
                    mux.bind(a.ip())?;
                }
            }
        }
        Ok(())
    }

    /// A new peer connection with our codecs and interceptors, reporting to `handler`.
    ///
    /// A connection that only sends ([`Media::SendOnly`]: a WHEP viewer) gets only the sender
    /// reports interceptor, and its NACKs go to the application: the SFU's forwarder answers
    /// them from its own cache. The interceptors for media it would receive (NACK generator,
    /// receiver reports, TWCC feedback) would only move each outgoing packet through their
    /// queues. The SDP is the same either way (the media engine gets every feedback type and
    /// header extension from the default set).
    ///
    /// On the shared UDP port, a send-only connection also comes with what the direct send path
    /// needs ([`crate::transport::fastpath::Direct`]): its SRTP keys (its own crypto provider records their
    /// derivation) and where its media goes. Its forwarded packets then bypass the crate.
    pub async fn peer_connection(
        &self,
        handler: Arc<dyn PeerConnectionEventHandler>,
        media: Media,
    ) -> anyhow::Result<(Arc<dyn PeerConnection>, Option<crate::transport::fastpath::Direct>)> {
        let mut engine = media_engine()?;
        let defaults = register_default_interceptors(Registry::new(), &mut engine)?;
        let registry = if media == Media::SendOnly { Registry::new().with(Slot::SenderReport, SenderReportBuilder::new().build()) } else { defaults };
        // Application-most slot: every other interceptor has seen the RTCP first.
        let registry = registry.with(Slot::from(14_000), FeedbackTap { nacks: media == Media::SendOnly, ..FeedbackTap::default() });
        let config = RTCConfigurationBuilder::new().with_ice_servers(self.ice_servers.clone()).build();
        let mut runtime = webrtc::runtime::default_runtime().ok_or_else(|| anyhow::anyhow!("webrtc built without a runtime"))?;
        let mut settings =
            SettingEngineBuilder::new().with_ice_timeouts(Some(Duration::from_secs(5)), Some(self.ice_failed_timeout), Some(Duration::from_secs(2)));
        let mut direct = None;
        if let Some(mux) = &self.mux {
            // Its own ufrag lets the mux route the peer's connectivity checks to it.
            let (rt, ufrag, pwd, route) = mux.runtime(runtime);
            runtime = rt;
            settings = settings.with_ice_credentials(ufrag, pwd);
            if media == Media::SendOnly && self.direct_send {
                let tap = crate::transport::srtp_tap::KeyTap::new().map_err(|e| anyhow::anyhow!("crypto provider: {e}"))?;
                settings = settings.with_crypto_provider(tap.clone()).with_srtp_protection_profiles(crate::transport::srtp_tap::PROFILES.to_vec());
                direct = Some(crate::transport::fastpath::Direct { tap, route });
            }
        }
        let settings = settings.build();
        let pc = PeerConnectionBuilder::new()
            .with_configuration(config)
            .with_setting_engine(settings)
            .with_media_engine(engine)
            .with_interceptor_registry(registry)
            .with_handler(handler)
            .with_runtime(runtime)
            .with_udp_addrs(self.udp_addrs.iter().map(|a| a.to_string()).collect())
            .build()
            .await?;
        Ok((Arc::new(pc), direct))
    }
}

/// Which way a connection's media flows, for the interceptors it needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Media {
    /// It only sends (a WHEP viewer).
    SendOnly,
    /// It receives, or receives and sends (a WHIP publisher, an MCU participant).
    Receives,
}

impl RtcConfig {
    /// Our SDP with a server-reflexive candidate on each public IP for every non-loopback host
    /// candidate (same port: a 1:1 NAT forwards it). The `webrtc` crate's own 1:1 NAT setting is
    /// not wired into its gathering in 0.21, so the answer says it.
    pub fn announce(&self, sdp: &str) -> String {
        // Host candidates on the shared port first (the srflx ones below take their port).
        let muxed;
        let sdp = match &self.mux {
            Some(mux) => {
                muxed = mux.announce(sdp);
                muxed.as_str()
            }
            None => sdp,
        };
        if self.public_ips.is_empty() {
            return sdp.to_string();
        }
        let mut out = String::with_capacity(sdp.len() + 256);
        for line in sdp.split_inclusive('\n') {
            out.push_str(line);
            let Some(c) = line.trim_end().strip_prefix("a=candidate:") else { continue };
            let f: Vec<&str> = c.split_whitespace().collect();
            // foundation component transport priority address port "typ" host ...
            if f.len() < 8 || f[6] != "typ" || f[7] != "host" {
                continue;
            }
            let Ok(ip) = f[4].parse::<std::net::IpAddr>() else { continue };
            if ip.is_loopback() {
                continue;
            }
            let priority = f[3].parse::<u32>().unwrap_or(0) >> 1;
            for (k, public) in self.public_ips.iter().enumerate() {
                out.push_str(&format!(
                    "a=candidate:{}{} {} {} {} {} {} typ srflx raddr {} rport {}\r\n",
                    f[0],
                    900 + k,
                    f[1],
                    f[2],
                    priority,
                    public,
                    f[5],
                    f[4],
                    f[5]
                ));
            }
        }
        out
    }
}

fn fb(typ: &str, parameter: &str) -> RTCPFeedback {
    RTCPFeedback { typ: typ.into(), parameter: parameter.into() }
}

fn codec(mime: &str, clock_rate: u32, channels: u16, fmtp: &str, feedback: Vec<RTCPFeedback>, payload_type: u8) -> RTCRtpCodecParameters {
    RTCRtpCodecParameters {
        rtp_codec: RTCRtpCodec { mime_type: mime.into(), clock_rate, channels, sdp_fmtp_line: fmtp.into(), rtcp_feedback: feedback },
        payload_type,
    }
}

/// Opus as every connection negotiates it (the media engine's entry without its feedback):
/// the codec of tracks the server publishes itself (the composite's mixes, SIP legs' audio).
pub fn opus_track_codec() -> RTCRtpCodec {
    RTCRtpCodec { mime_type: MIME_TYPE_OPUS.into(), clock_rate: 48000, channels: 2, sdp_fmtp_line: OPUS_FMTP.into(), ..Default::default() }
}

/// Opus' format parameters: 10 ms packets allowed, in-band FEC on.
const OPUS_FMTP: &str = "minptime=10;useinbandfec=1";

/// The codecs every connection offers or accepts.
pub fn media_engine() -> Result<MediaEngine, Error> {
    let mut m = MediaEngine::default();
    for c in [
        codec(MIME_TYPE_OPUS, 48000, 2, OPUS_FMTP, vec![fb("transport-cc", "")], 111),
        codec(MIME_TYPE_PCMU, 8000, 0, "", vec![], 0),
        codec(MIME_TYPE_PCMA, 8000, 0, "", vec![], 8),
    ] {
        m.register_codec(c, RtpCodecKind::Audio)?;
    }
    let video_fb = || vec![fb("goog-remb", ""), fb("ccm", "fir"), fb("nack", ""), fb("nack", "pli")];
    let h264 = |mode: u8, profile: &str| format!("level-asymmetry-allowed=1;packetization-mode={mode};profile-level-id={profile}");
    // No RTX: rtc-interceptor 0.21's NACK generator records arrivals by the media SSRC only, so
    // a packet repaired on an RTX stream still counts as missing and is NACKed again every
    // 100 ms (measured: ~40 retransmissions per lost packet). Without RTX, retransmissions come
    // on the media SSRC and close the gap.
    for c in [
        codec(MIME_TYPE_VP8, 90000, 0, "", video_fb(), 96),
        codec(MIME_TYPE_H264, 90000, 0, &h264(1, "42e01f"), video_fb(), 102),
        codec(MIME_TYPE_H264, 90000, 0, &h264(0, "42e01f"), video_fb(), 104),
        codec(MIME_TYPE_H264, 90000, 0, &h264(1, "42001f"), video_fb(), 106),
        codec(MIME_TYPE_H264, 90000, 0, &h264(0, "42001f"), video_fb(), 108),
        codec(MIME_TYPE_AV1, 90000, 0, "", video_fb(), 45),
    ] {
        m.register_codec(c, RtpCodecKind::Video)?;
    }
    for (uri, kind) in FORWARDED_EXTENSIONS {
        m.register_header_extension(RTCRtpHeaderExtensionCapability { uri: uri.to_string() }, *kind, None)?;
    }
    Ok(m)
}

/// RTP header extensions the SFU passes from publisher to subscribers (their ids rewritten to
/// each subscriber's): audio levels (RFC 6464), rotation, and the colour space, without which
/// AV1 and VP9 pictures decode with the wrong matrix.
pub const FORWARDED_EXTENSIONS: &[(&str, RtpCodecKind)] = &[
    ("urn:ietf:params:rtp-hdrext:ssrc-audio-level", RtpCodecKind::Audio),
    ("urn:3gpp:video-orientation", RtpCodecKind::Video),
    ("http://www.webrtc.org/experiments/rtp-hdrext/color-space", RtpCodecKind::Video),
];

/// `a=extmap` ids of an SDP whose URI is one we forward: id → URI.
pub fn forwarded_extmap(sdp: &str) -> std::collections::HashMap<u8, &'static str> {
    mcu_signaling::sdp::extmaps(sdp).into_iter().filter_map(|(id, uri)| FORWARDED_EXTENSIONS.iter().find(|(u, _)| *u == uri).map(|(u, _)| (id, *u))).collect()
}

/// The forwarder's codec family for a negotiated MIME type, if we forward it.
pub fn codec_family(mime: &str) -> Option<Codec> {
    let m = mime.to_ascii_lowercase();
    match m.as_str() {
        "video/vp8" => Some(Codec::Vp8),
        "video/h264" => Some(Codec::H264),
        "video/av1" => Some(Codec::Av1),
        "audio/opus" | "audio/pcmu" | "audio/pcma" => Some(Codec::Audio),
        _ => None,
    }
}

pub use mcu_signaling::sdp::packetization_mode;

/// Marks inbound keyframe requests (PLI, FIR), REMB and receiver and sender reports for the
/// application: the SFU forwards the first upstream (throttled), chooses layers by the second,
/// and the composite's encoders follow the second and the losses the reports carry (a peer
/// that also sends, such as a browser MCU participant, reports inside its sender reports). A
/// compound reaches the track its first packet names: a sender report with report blocks
/// reaches the track it reports on, one without stays with the peer's own track (ignored).
///
/// On a send-only connection NACKs go to the application too: the forwarder answers them.
#[derive(Default)]
pub struct FeedbackTap {
    read: VecDeque<TaggedPacket>,
    write: VecDeque<TaggedPacket>,
    nacks: bool,
}

fn wanted(p: &dyn rtc::rtcp::Packet, nacks: bool) -> bool {
    let a = p.as_any();
    a.is::<PictureLossIndication>()
        || a.is::<FullIntraRequest>()
        || a.is::<ReceiverEstimatedMaximumBitrate>()
        || a.is::<ReceiverReport>()
        || a.is::<SenderReport>()
        || (nacks && a.is::<TransportLayerNack>())
}

impl Protocol<TaggedPacket, TaggedPacket, ()> for FeedbackTap {
    type Rout = TaggedPacket;
    type Wout = TaggedPacket;
    type Eout = ();
    type Error = Error;
    type Time = Instant;

    fn handle_read(&mut self, mut msg: TaggedPacket) -> Result<(), Error> {
        if let Packet::Rtcp(packets) = &msg.message.packet {
            let keep: Vec<Box<dyn rtc::rtcp::Packet>> = packets.iter().filter(|p| wanted(p.as_ref(), self.nacks)).cloned().collect();
            if keep.is_empty() {
                return Ok(());
            }
            msg.message.packet = Packet::Rtcp(keep);
            msg.message.add(Attribute::DeliverToApplication);
        }
        self.read.push_back(msg);
        Ok(())
    }

    fn poll_read(&mut self) -> Option<TaggedPacket> {
        self.read.pop_front()
    }

    fn handle_write(&mut self, msg: TaggedPacket) -> Result<(), Error> {
        self.write.push_back(msg);
        Ok(())
    }

    fn poll_write(&mut self) -> Option<TaggedPacket> {
        self.write.pop_front()
    }
}

impl Interceptor for FeedbackTap {
    fn bind_local_stream(&mut self, _info: &StreamInfo) {}
    fn unbind_local_stream(&mut self, _info: &StreamInfo) {}
    fn bind_remote_stream(&mut self, _info: &StreamInfo) {}
    fn unbind_remote_stream(&mut self, _info: &StreamInfo) {}
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codec_families() {
        assert_eq!(codec_family("video/H264"), Some(Codec::H264));
        assert_eq!(codec_family("video/VP9"), None);
    }

    #[test]
    fn public_ips_become_srflx_candidates_of_non_loopback_hosts() {
        let cfg = RtcConfig::new(&[], false, vec![], Duration::from_secs(15), vec!["203.0.113.7".into()]);
        let sdp = "m=audio 9 UDP/TLS/RTP/SAVPF 111\r\na=candidate:1 1 udp 2130706431 10.0.0.5 40000 typ host\r\na=candidate:2 1 udp 2130706431 127.0.0.1 40001 typ host\r\n";
        let out = cfg.announce(sdp);
        assert!(out.contains("a=candidate:1900 1 udp 1065353215 203.0.113.7 40000 typ srflx raddr 10.0.0.5 rport 40000\r\n"), "{out}");
        assert_eq!(out.matches("typ srflx").count(), 1);
        assert_eq!(RtcConfig::new(&[], false, vec![], Duration::from_secs(15), vec![]).announce(sdp), sdp);
    }

    #[test]
    fn extmap_keeps_forwarded_uris() {
        let sdp = "a=extmap:1 urn:ietf:params:rtp-hdrext:ssrc-audio-level\r\na=extmap:3/recvonly urn:3gpp:video-orientation\r\na=extmap:4 http://www.webrtc.org/experiments/rtp-hdrext/abs-send-time\r\n";
        let m = forwarded_extmap(sdp);
        assert_eq!(m.len(), 2);
        assert_eq!(m[&1], "urn:ietf:params:rtp-hdrext:ssrc-audio-level");
        assert_eq!(m[&3], "urn:3gpp:video-orientation");
    }
}
