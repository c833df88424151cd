//! The direct send path of WHEP viewers: the SFU encrypts each forwarded packet with the
//! viewer's SRTP context and sends it on the shared UDP port itself.
//!
//! Through the `webrtc` crate a forwarded packet is handed to a task per track, parsed into a
//! packet structure, queued to the connection's driver task, moved through its handler
//! pipeline (interceptors, SRTP, ICE, each a queue) and sent: at 500 viewers that was most of
//! the server's CPU (`benches/results/fanout-*.md`). Here it is written once in the viewer's
//! payload type and extension ids, encrypted and sent, on the thread that forwarded it.
//!
//! The connection stays the `webrtc` crate's for everything else: ICE, DTLS, the RTCP the
//! viewer sends (NACKs reach the forwarder, which answers from its cache; PLI, FIR and REMB as
//! before). It sends no RTP or RTCP of its own for the viewer's tracks, so the SRTP state
//! (rollover counters, SRTCP indexes) of those SSRCs is ours alone. Sender reports for them
//! are ours too ([`DirectOut::reports`]).
//!
//! Available on the shared UDP port, for the two SRTP profiles `srtp_tap` recognises; without
//! either, a viewer's packets go through the crate as before.

use std::{
    collections::HashMap,
    net::SocketAddr,
    sync::{Arc, atomic::Ordering},
    time::{Duration, Instant, SystemTime},
};

use parking_lot::Mutex;

use mcu_sfu::{rtcp, rtp::RtpPacket};
use rtc::srtp::context::Context;

use crate::{
    counters::Counters,
    transport::{
        srtp_tap::KeyTap,
        udpmux::{MediaRoute, send_now},
    },
};

/// Sender reports per stream: one a second.
const REPORT_INTERVAL: Duration = Duration::from_secs(1);
/// Seconds from the NTP epoch (1900) to the Unix epoch.
const NTP_UNIX_OFFSET: u64 = 2_208_988_800;

/// What a connection brings for the direct path (from `rtc::RtcConfig::peer_connection`).
pub struct Direct {
    /// Its crypto provider, which saw its SRTP keys derived.
    pub tap: Arc<KeyTap>,
    /// Where its DTLS and SRTP go.
    pub route: Arc<MediaRoute>,
}

/// Why the direct path is not available for a connection.
#[derive(Debug, thiserror::Error)]
pub enum DirectError {
    /// The SRTP key derivation was not seen in a recognised shape.
    #[error("SRTP keys not recognised")]
    Keys,
    /// The connection has not sent DTLS yet.
    #[error("no media route yet")]
    Route,
    /// The SRTP context could not be built.
    #[error("SRTP context: {0}")]
    Srtp(String),
}

/// One viewer connection's direct sender.
pub struct DirectOut {
    route: Arc<MediaRoute>,
    state: Mutex<State>,
}

struct State {
    srtp: Context,
    /// The packet as the viewer gets it, before encryption (reused).
    plain: Vec<u8>,
    streams: HashMap<u32, Stream>,
    next_report: Option<Instant>,
}

/// What a sender report says of one SSRC.
struct Stream {
    clock_rate: u32,
    /// The newest RTP timestamp sent, and when.
    last: Option<(u32, Instant)>,
    packets: u32,
    octets: u32,
}

impl DirectOut {
    /// The sender of a connection that is up (its SRTP keys derived, DTLS sent).
    pub fn new(direct: &Direct) -> Result<DirectOut, DirectError> {
        let (local, _remote) = direct.tap.masters().ok_or(DirectError::Keys)?;
        direct.route.get().ok_or(DirectError::Route)?;
        let provider = webrtc::peer_connection::crypto::default_provider().map_err(|e| DirectError::Srtp(e.to_string()))?;
        let srtp = Context::new(&local.key, &local.salt, local.profile, None, None, provider.crypto()).map_err(|e| DirectError::Srtp(e.to_string()))?;
        Ok(DirectOut {
            route: direct.route.clone(),
            state: Mutex::new(State { srtp, plain: Vec::with_capacity(1500), streams: HashMap::new(), next_report: None }),
        })
    }

    /// Sends one forwarded packet (already carrying the viewer's SSRC, sequence number and
    /// timestamp) in payload type `pt` with extension ids `ext_ids` (publisher → viewer).
    /// A packet that cannot go (malformed, the socket full) is dropped and counted.
    pub fn send(&self, now: Instant, packet: &[u8], pt: u8, ext_ids: &[(u8, u8)], clock_rate: u32, counters: &Counters) {
        let Ok(parsed) = RtpPacket::parse(packet) else {
            counters.dropped_direct.fetch_add(1, Ordering::Relaxed);
            return;
        };
        let mut s = self.state.lock();
        let State { srtp, plain, streams, next_report } = &mut *s;
        mcu_sfu::rtp::write_for_subscriber(&parsed, pt, ext_ids, plain);
        let sealed = match srtp.encrypt_rtp(plain) {
            Ok(b) => b,
            Err(e) => {
                tracing::debug!(error = %e, "direct send: SRTP refused a packet");
                counters.dropped_direct.fetch_add(1, Ordering::Relaxed);
                return;
            }
        };
        let stream = match streams.get_mut(&parsed.ssrc) {
            Some(st) => st,
            None => streams.entry(parsed.ssrc).or_insert(Stream { clock_rate, last: None, packets: 0, octets: 0 }),
        };
        if stream.last.is_none_or(|(ts, _)| ts != parsed.timestamp) {
            stream.last = Some((parsed.timestamp, now));
        }
        stream.packets = stream.packets.wrapping_add(1);
        stream.octets = stream.octets.wrapping_add(parsed.payload_len as u32);
        next_report.get_or_insert(now + REPORT_INTERVAL);
        drop(s);
        match self.route.send(&sealed) {
            Ok(_) => {
                counters.sent.fetch_add(1, Ordering::Relaxed);
                counters.sent_direct.fetch_add(1, Ordering::Relaxed);
            }
            Err(e) => {
                tracing::trace!(error = %e, "direct send failed");
                counters.dropped_direct.fetch_add(1, Ordering::Relaxed);
            }
        }
    }

    /// Sends a sender report for each stream that has sent, when one is due.
    pub fn reports(&self, now: Instant, wall: SystemTime) {
        let mut s = self.state.lock();
        if s.next_report.is_none_or(|t| t > now) {
            return;
        }
        let Some((socket, dest)) = self.route.get() else { return };
        s.next_report = Some(now + REPORT_INTERVAL);
        let ntp = ntp_time(wall);
        let mut out = Vec::new();
        for (&ssrc, st) in &s.streams {
            let Some((ts, at)) = st.last else { continue };
            let rtp_time = ts.wrapping_add((now.saturating_duration_since(at).as_secs_f64() * st.clock_rate as f64) as u32);
            out.push(rtcp::sender_report(ssrc, ntp, rtp_time, st.packets, st.octets));
        }
        for sr in out {
            match s.srtp.encrypt_rtcp(&sr) {
                Ok(sealed) => {
                    let _ = send_now(&socket, &sealed, dest);
                }
                Err(e) => tracing::debug!(error = %e, "direct send: SRTCP refused a sender report"),
            }
        }
    }

    /// Where the packets go now.
    pub fn destination(&self) -> Option<SocketAddr> {
        self.route.get().map(|(_, d)| d)
    }
}

/// The 64-bit NTP timestamp of `wall`.
fn ntp_time(wall: SystemTime) -> u64 {
    let since = wall.duration_since(SystemTime::UNIX_EPOCH).unwrap_or_default();
    let secs = since.as_secs() + NTP_UNIX_OFFSET;
    let frac = ((since.subsec_nanos() as u64) << 32) / 1_000_000_000;
    secs << 32 | frac
}

#[cfg(test)]
mod tests {
    use super::*;
    use rtc::srtp::protection_profile::ProtectionProfile;

    #[test]
    fn ntp_time_of_the_unix_epoch_and_a_half_second() {
        assert_eq!(ntp_time(SystemTime::UNIX_EPOCH), NTP_UNIX_OFFSET << 32);
        assert_eq!(ntp_time(SystemTime::UNIX_EPOCH + Duration::from_millis(1500)), (NTP_UNIX_OFFSET + 1) << 32 | 1 << 31);
    }

    /// A viewer's packets and sender reports, received on a socket and decrypted with the
    /// keys the viewer would hold: payload type and extension ids are the viewer's, the sender
    /// report counts what was sent and extrapolates the timestamp.
    #[tokio::test]
    async fn packets_and_reports_reach_the_viewer_encrypted_with_its_keys() {
        let tap = KeyTap::new().unwrap();
        let profile = ProtectionProfile::AeadAes128Gcm;
        let (key, salt) = ([5u8; 16], [6u8; 12]);
        let _local = Context::new(&key, &salt, profile, None, None, webrtc::peer_connection::crypto::RTCCryptoProvider::crypto(&*tap)).unwrap();
        let _remote = Context::new(&[7; 16], &[8; 12], profile, None, None, webrtc::peer_connection::crypto::RTCCryptoProvider::crypto(&*tap)).unwrap();

        let viewer = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        viewer.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
        let server = Arc::new(tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap());
        let route = Arc::new(MediaRoute::default());
        let direct = Direct { tap, route: route.clone() };
        assert!(matches!(DirectOut::new(&direct), Err(DirectError::Route)), "no DTLS sent yet");
        route.note_for_test(&server, viewer.local_addr().unwrap());
        let out = DirectOut::new(&direct).unwrap();
        assert_eq!(out.destination(), Some(viewer.local_addr().unwrap()));

        let counters = Counters::default();
        // Publisher's packet: PT 100, audio level as extension 1 and a stray extension 5.
        let mut p = mcu_sfu::rtp::build(100, true, 4242, 90_000, 0xABCD, b"picture");
        p[0] |= 0x10;
        p.splice(12..12, [0xBE, 0xDE, 0, 2, 0x10, 0x85, 0x50, 0x01, 0, 0, 0, 0]);
        #[allow(clippy::disallowed_methods)] // the test plays the room's clock
        let t0 = Instant::now();
        out.send(t0, &p, 96, &[(1, 3)], 90_000, &counters);
        out.send(t0, b"not rtp", 96, &[], 90_000, &counters);
        assert_eq!((counters.sent_direct.load(Ordering::Relaxed), counters.dropped_direct.load(Ordering::Relaxed)), (1, 1));

        let provider = webrtc::peer_connection::crypto::default_provider().unwrap();
        let mut theirs = Context::new(&key, &salt, profile, None, None, provider.crypto()).unwrap();
        let mut buf = [0u8; 2048];
        let n = viewer.recv(&mut buf).unwrap();
        let plain = theirs.decrypt_rtp(&buf[..n]).unwrap();
        let r = RtpPacket::parse(&plain).unwrap();
        assert_eq!((r.payload_type, r.seq, r.timestamp, r.ssrc, r.marker), (96, 4242, 90_000, 0xABCD, true));
        assert_eq!(r.elements().collect::<Vec<_>>(), vec![(3, &[0x85][..])]);
        assert_eq!(r.payload(), b"picture");

        // No report before a second has passed; then one, 0.5 s of 90 kHz past the packet.
        out.reports(t0 + Duration::from_millis(500), SystemTime::now());
        out.reports(t0 + Duration::from_millis(1500), SystemTime::UNIX_EPOCH + Duration::from_secs(3));
        let n = viewer.recv(&mut buf).unwrap();
        let plain = theirs.decrypt_rtcp(&buf[..n]).unwrap();
        let sr = rtcp::parse(&plain).unwrap();
        assert_eq!(
            sr,
            vec![rtcp::RtcpPacket::SenderReport {
                ssrc: 0xABCD,
                ntp: (NTP_UNIX_OFFSET + 3) << 32,
                rtp_timestamp: 90_000 + 135_000,
                packets: 1,
                octets: 7,
                reports: vec![]
            }]
        );
    }
}
