//! The SFU media plane: WebRTC sessions (WHIP publishers, WHEP subscribers) wired to one
//! sans-IO [`Forwarder`] per room.
//!
//! A publisher's tracks feed the room's forwarder from the task that reads them; the forwarder's
//! output goes to each subscriber track through a bounded queue drained by that track's own
//! writer task, so a subscriber that stops reading fills only its own queue: its packets are
//! dropped and counted, the forwarder pauses it (resuming at a keyframe once it drains), and
//! nobody else waits. Keyframe requests travel the other way, throttled by the forwarder.

use std::{
    collections::HashMap,
    sync::{
        Arc, Weak,
        atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering},
    },
    time::{Duration, Instant},
};

use parking_lot::Mutex;

use bytes::Bytes;
use mcu_sfu::forwarder::{Forwarder, ForwarderConfig, ForwarderStats, Output, SubscriberId, TrackId};
use rtc::{
    media_stream::MediaStreamTrack,
    peer_connection::sdp::RTCSessionDescription,
    rtcp::payload_feedbacks::picture_loss_indication::PictureLossIndication,
    rtp_transceiver::rtp_sender::{RTCRtpCodec, RTCRtpCodingParameters, RTCRtpEncodingParameters, RtpCodecKind},
    shared::marshal::{Marshal, Unmarshal},
};
use tokio::sync::mpsc;
use webrtc::{
    media_stream::{
        track_local::{TrackLocal, TrackLocalEvent, static_rtp::TrackLocalStaticRTP},
        track_remote::{TrackRemote, TrackRemoteEvent},
    },
    peer_connection::{PeerConnection, PeerConnectionEventHandler, RTCIceGatheringState, RTCPeerConnectionState},
};

use mcu_signaling::sdp::count_sending_sections;

use crate::{
    events::{EventKind, Events, TrackInfo},
    mcu::{MIX, McuConfig},
    rtc::{RtcConfig, codec_family, forwarded_extmap, packetization_mode},
    tap::{Offered, Tap},
};
use mcu_sfu::keyframe::Codec;

/// Packets queued per subscriber track before its packets are dropped.
const SINK_QUEUE: usize = 512;
/// Keyframe requests to the composite's own encoders at most this often (publishers: 500 ms).
const COMPOSITE_PLI_INTERVAL: Duration = Duration::from_millis(100);
/// How long an answer waits for ICE gathering (host candidates come at once).
const GATHER_TIMEOUT: Duration = Duration::from_secs(3);

/// Why a WHIP/WHEP request is refused; each maps to an HTTP status.
#[derive(Debug, thiserror::Error)]
pub enum SessionError {
    /// The offer is not usable SDP, or offers nothing we can use.
    #[error("bad offer: {0}")]
    BadOffer(String),
    /// A configured limit.
    #[error("{0}")]
    Limit(String),
    /// No such room, participant or session.
    #[error("{0}")]
    NotFound(String),
    /// The name is taken in this room.
    #[error("{0}")]
    Conflict(String),
    /// No codec in common.
    #[error("{0}")]
    NotAcceptable(String),
    /// Our side failed.
    #[error("internal error: {0}")]
    Internal(String),
}

impl SessionError {
    /// The HTTP status.
    pub fn status(&self) -> u16 {
        match self {
            SessionError::BadOffer(_) => 400,
            SessionError::NotFound(_) => 404,
            SessionError::Conflict(_) => 409,
            SessionError::NotAcceptable(_) => 406,
            SessionError::Limit(_) => 429,
            SessionError::Internal(_) => 500,
        }
    }
}

fn internal(e: impl std::fmt::Display) -> SessionError {
    SessionError::Internal(e.to_string())
}

/// Limits on what clients may create.
#[derive(Debug, Clone, Copy)]
pub struct SfuLimits {
    /// Rooms at once.
    pub max_rooms: usize,
    /// Participants (publishers) per room.
    pub max_participants: usize,
    /// Tracks per publisher.
    pub max_tracks: usize,
    /// Subscriber sessions per room.
    pub max_subscribers: usize,
}

/// Counters the metrics endpoint reads, beside the forwarders' own.
#[derive(Default)]
pub struct Counters {
    /// Packets received from publishers.
    pub received: AtomicU64,
    /// Bytes received from publishers.
    pub received_bytes: AtomicU64,
    /// Packets dropped because a subscriber's queue was full.
    pub dropped_queue_full: AtomicU64,
    /// Packets of a publisher's second and further simulcast layers (not forwarded yet).
    pub dropped_simulcast: AtomicU64,
    /// Packets sent on subscriber connections.
    pub sent: AtomicU64,
    /// Of those, packets the SFU encrypted and sent itself (`fastpath`).
    pub sent_direct: AtomicU64,
    /// Packets the direct send path dropped (malformed, refused by SRTP, socket full).
    pub dropped_direct: AtomicU64,
    /// Keyframe requests received from subscribers.
    pub keyframe_requests: AtomicU64,
    /// Sessions refused (bad offer, limits, auth).
    pub refused: AtomicU64,
    /// Keyframe requests the composite's decoders sent to publishers.
    pub composite_plis: AtomicU64,
    /// Packets not copied to a composite that was behind (its tap queue full).
    pub dropped_composite: AtomicU64,
    /// Audio packets the composite's playout buffers dropped: late (their tick had passed),
    /// duplicated, or dropped to bring the delay back to the target.
    pub dropped_audio_playout: AtomicU64,
    /// 20 ms audio frames the composite concealed (lost or not arrived in time at their tick).
    pub audio_concealed: AtomicU64,
    /// The composite's encoders that failed (to open, or to encode): video canvases and audio
    /// mixes. The canvas or mix stops; the room goes on.
    pub mix_encoder_failures: AtomicU64,
}

/// A published track.
#[derive(Clone)]
pub struct PublishedTrack {
    /// Room-unique id: `participant/kind-n`.
    pub id: TrackId,
    /// Audio or video.
    pub kind: RtpCodecKind,
    /// What the publisher negotiated.
    pub codec: RTCRtpCodec,
    /// The publisher's ids of the header extensions we forward.
    pub extmap: Arc<HashMap<u8, &'static str>>,
    /// Set by an operator: the track's packets are neither forwarded nor mixed.
    pub muted: Arc<AtomicBool>,
    /// Simulcast layers (1 without; the composite subscribes to one of several through the
    /// forwarder).
    pub layers: u8,
}

impl PublishedTrack {
    /// The track as the control API shows it.
    pub fn info(&self) -> TrackInfo {
        TrackInfo {
            id: self.id.to_string(),
            kind: if self.kind == RtpCodecKind::Audio { "audio" } else { "video" },
            codec: self.codec.mime_type.clone(),
            muted: self.muted.load(Ordering::Relaxed),
            layers: self.layers,
        }
    }
}

pub(crate) struct Participant {
    pub(crate) session: String,
    /// An MCU participant (also receives its own mix).
    pub(crate) mcu: bool,
    extmap: Arc<HashMap<u8, &'static str>>,
    expected_tracks: usize,
    pub(crate) tracks: Vec<PublishedTrack>,
    /// The rids of its simulcast video, lowest first (empty without simulcast).
    simulcast: Vec<String>,
}

struct SinkEntry {
    sub: SubscriberId,
    tx: mpsc::Sender<Bytes>,
    /// The subscriber's payload type, extension ids (publisher → subscriber) and clock rate,
    /// for the direct send path.
    pt: u8,
    ext_ids: Arc<[(u8, u8)]>,
    clock_rate: u32,
    /// Set once the connection is up and its keys known: packets bypass `tx` and the
    /// `webrtc` crate (`fastpath`).
    direct: Option<Arc<crate::fastpath::DirectOut>>,
}

/// One room's forwarding state.
struct Media {
    fwd: Forwarder,
    /// Subscriber track queues, by the SSRC the forwarder writes.
    sinks: HashMap<u32, SinkEntry>,
    /// Subscribers paused for a full queue, rechecked by the room's timer.
    backlogged: HashMap<SubscriberId, Vec<u32>>,
    /// Keyframe requests to each publisher track.
    feedback: HashMap<TrackId, mpsc::UnboundedSender<u32>>,
    /// Each published track's SSRC.
    ssrcs: HashMap<TrackId, u32>,
    /// The composite's subscriptions to simulcast tracks (one layer of each, switched at
    /// keyframes by the forwarder like any subscriber's), by the SSRC it writes.
    taps: HashMap<u32, TapSink>,
    /// WHEP sessions by subscriber: who views, and the tracks wired (track, SSRC written).
    viewers: HashMap<SubscriberId, Viewer>,
    /// What viewers chose over the WebSocket (viewer, track) → `None`: not received,
    /// `Some(layer)`: received up to that simulcast layer.
    choices: HashMap<(String, TrackId), Option<usize>>,
}

struct Viewer {
    name: String,
    wired: Vec<(TrackId, u32)>,
    /// Forwarding started (the connection is up).
    started: bool,
}

/// Where the forwarder's packets for the composite's subscription to a simulcast track go.
struct TapSink {
    sub: SubscriberId,
    track: PublishedTrack,
    participant: String,
    /// The highest layer the composite wants (the smallest that fills its tile).
    cap: usize,
}

/// A room of the SFU.
pub struct Room {
    /// Its name.
    pub name: String,
    media: Mutex<Media>,
    participants: Mutex<HashMap<String, Participant>>,
    subscribers: AtomicU64,
    counters: Arc<Counters>,
    /// Copies of every publisher packet for the room composite, while it runs.
    mcu_tap: Mutex<Option<Arc<Tap>>>,
    /// The composite's video and audio SSRCs, while it runs.
    mix: Mutex<Option<(u32, u32)>>,
    /// MCU participants (`POST /mcu/{room}`): each hears its own mix and sees its canvas on
    /// tracks of its own (audio SSRC, video SSRC).
    listeners: Mutex<HashMap<String, (u32, u32)>>,
    /// MCU participants whose picture is encoded otherwise than the room's (SIP phones).
    view_profiles: Mutex<HashMap<String, crate::mcu::VideoProfile>>,
    /// MCU participants that are SIP legs (their mixes end up as narrowband G.711 mostly).
    gateway_legs: Mutex<std::collections::HashSet<String>>,
    /// Keyframe requests to the composite's encoders (by the SSRC asked), while it runs.
    mix_keyframes: Mutex<Option<mpsc::UnboundedSender<u32>>>,
    /// Created through the control API: stays when empty, until deleted.
    pub(crate) persistent: AtomicBool,
    /// Set when the room is deleted: its composite stops at once.
    pub(crate) closed: AtomicBool,
    /// Participants at most (0: the server's limit).
    pub(crate) max_participants: AtomicUsize,
    /// What operators set: the composite's layout and the audio gain matrix.
    control: Mutex<Control>,
    /// Bumped on every change of `control`, so the composite copies it only then.
    control_version: AtomicU64,
    /// The server's event stream.
    pub(crate) events: Arc<Events>,
    /// Recordings running in this room.
    recordings: Mutex<Vec<Arc<crate::record::Session>>>,
    /// Bumped when `recordings` changes, so the composite copies the list only then.
    recordings_version: AtomicU64,
}

/// Operator settings of a room (the engine's).
pub use mcu_pipeline::Control;

impl Room {
    /// The server's counters (shared by every room).
    pub fn counters(&self) -> &Counters {
        &self.counters
    }

    fn new(name: &str, counters: Arc<Counters>, events: Arc<Events>) -> Arc<Room> {
        Arc::new(Room {
            name: name.into(),
            media: Mutex::new(Media {
                // WHEP viewers' NACKs are answered from the forwarder's cache (about 3 s of a
                // 1.5 Mbit/s video); MCU participants' by their connections' NACK responders.
                fwd: Forwarder::new(ForwarderConfig { retransmit_cache: 512, ..ForwarderConfig::default() }),
                sinks: HashMap::new(),
                backlogged: HashMap::new(),
                feedback: HashMap::new(),
                ssrcs: HashMap::new(),
                taps: HashMap::new(),
                viewers: HashMap::new(),
                choices: HashMap::new(),
            }),
            mcu_tap: Mutex::new(None),
            mix: Mutex::new(None),
            listeners: Mutex::default(),
            view_profiles: Mutex::default(),
            gateway_legs: Mutex::default(),
            mix_keyframes: Mutex::default(),
            persistent: AtomicBool::new(false),
            closed: AtomicBool::new(false),
            max_participants: AtomicUsize::new(0),
            control: Mutex::default(),
            control_version: AtomicU64::new(1),
            events,
            recordings: Mutex::default(),
            recordings_version: AtomicU64::new(1),
            participants: Mutex::default(),
            subscribers: AtomicU64::new(0),
            counters,
        })
    }

    fn lock(&self) -> parking_lot::MutexGuard<'_, Media> {
        self.media.lock()
    }

    /// Runs the forwarder on one input and delivers what it produces.
    fn drive(&self, now: Instant, f: impl FnOnce(&mut Forwarder, Instant)) {
        let mut m = self.lock();
        f(&mut m.fwd, now);
        self.flush(&mut m, now);
    }

    fn flush(&self, m: &mut Media, now: Instant) {
        while let Some(out) = m.fwd.poll_output() {
            match out {
                Output::Rtp { to, packet } => {
                    let ssrc = u32::from_be_bytes([packet[8], packet[9], packet[10], packet[11]]);
                    if let Some(t) = m.taps.get(&ssrc) {
                        self.tap(&t.track, &t.participant, &packet);
                        continue;
                    }
                    let Some(sink) = m.sinks.get(&ssrc) else { continue };
                    debug_assert_eq!(sink.sub, to);
                    if let Some(direct) = &sink.direct {
                        direct.send(now, &packet, sink.pt, &sink.ext_ids, sink.clock_rate, &self.counters);
                        continue;
                    }
                    match sink.tx.try_send(Bytes::from(packet)) {
                        Ok(()) => {}
                        Err(mpsc::error::TrySendError::Full(_)) => {
                            self.counters.dropped_queue_full.fetch_add(1, Ordering::Relaxed);
                            let entry = m.backlogged.entry(to).or_default();
                            if !entry.contains(&ssrc) {
                                entry.push(ssrc);
                            }
                            m.fwd.set_backlog(now, to, usize::MAX);
                        }
                        Err(mpsc::error::TrySendError::Closed(_)) => {}
                    }
                }
                Output::PublisherRtcp { track, packet } => {
                    if packet.len() >= 12
                        && let Some(tx) = m.feedback.get(&track)
                    {
                        let _ = tx.send(u32::from_be_bytes([packet[8], packet[9], packet[10], packet[11]]));
                    }
                }
            }
        }
    }

    /// Timer work: keyframe retries and resuming drained subscribers.
    fn tick(&self, now: Instant) {
        let mut m = self.lock();
        let mut resumed = Vec::new();
        for (sub, ssrcs) in &m.backlogged {
            let queued: usize = ssrcs.iter().filter_map(|s| m.sinks.get(s)).map(|s| SINK_QUEUE - s.tx.capacity()).sum();
            if queued < SINK_QUEUE / 4 {
                resumed.push(*sub);
            }
        }
        for sub in resumed {
            m.backlogged.remove(&sub);
            m.fwd.set_backlog(now, sub, 0);
        }
        if m.fwd.poll_timeout().is_some_and(|t| t <= now) {
            m.fwd.handle_timeout(now);
        }
        self.flush(&mut m, now);
        // Sender reports of the viewers on the direct path (a viewer's tracks share one
        // sender, which sends its reports once a second however often it is asked).
        let wall = std::time::SystemTime::now();
        for d in m.sinks.values().filter_map(|s| s.direct.as_ref()) {
            d.reports(now, wall);
        }
    }

    /// The forwarder's counters.
    pub fn stats(&self) -> ForwarderStats {
        self.lock().fwd.stats()
    }

    /// Publishers (the composite not counted), their tracks, and subscriber sessions.
    pub fn counts(&self) -> (usize, usize, u64) {
        let p = self.participants.lock();
        let real = || p.iter().filter(|(k, _)| k.as_str() != MIX).map(|(_, v)| v);
        (real().count(), real().map(|p| p.tracks.len()).sum(), self.subscribers.load(Ordering::Relaxed))
    }

    /// Changes the operator settings (and tells the composite).
    pub fn update_control<R>(&self, f: impl FnOnce(&mut Control) -> R) -> R {
        let mut c = self.control.lock();
        let r = f(&mut c);
        self.control_version.fetch_add(1, Ordering::Release);
        r
    }

    /// Adds or removes a running recording.
    pub fn set_recording(&self, session: &Arc<crate::record::Session>, running: bool) {
        let mut r = self.recordings.lock();
        r.retain(|s| !Arc::ptr_eq(s, session));
        if running {
            r.push(session.clone());
        }
        self.recordings_version.fetch_add(1, Ordering::Release);
    }

    /// `name` joined: running recordings will name them.
    pub fn note_participant(&self, name: &str) {
        for s in self.recordings.lock().iter() {
            s.saw(name);
        }
    }

    /// The running recordings and their version, when newer than `seen`.
    pub fn recordings_if_newer(&self, seen: u64) -> Option<(u64, Vec<Arc<crate::record::Session>>)> {
        let v = self.recordings_version.load(Ordering::Acquire);
        if v == seen {
            return None;
        }
        Some((v, self.recordings.lock().clone()))
    }

    /// A copy of the operator settings.
    pub fn control(&self) -> Control {
        self.control.lock().clone()
    }

    /// The operator settings and their version, when newer than `seen`.
    pub fn control_if_newer(&self, seen: u64) -> Option<(u64, Control)> {
        // Versions start at 1, so a reader that has seen nothing (0) always gets a copy.
        let v = self.control_version.load(Ordering::Acquire);
        if v == seen {
            return None;
        }
        let c = self.control.lock().clone();
        Some((v, c))
    }

    pub(crate) fn participants(&self) -> parking_lot::MutexGuard<'_, HashMap<String, Participant>> {
        self.participants.lock()
    }

    /// Registers the composite's tracks as a publisher's and starts copying packets to it.
    /// False when it runs already.
    pub fn start_mix(&self, tap: Tap, tracks: Vec<PublishedTrack>, keyframes: mpsc::UnboundedSender<u32>, video_ssrc: u32, audio_ssrc: u32) -> bool {
        let mut mix = self.mix.lock();
        if mix.is_some() {
            return false;
        }
        *mix = Some((video_ssrc, audio_ssrc));
        *self.mcu_tap.lock() = Some(Arc::new(tap));
        *self.mix_keyframes.lock() = Some(keyframes.clone());
        let mut m = self.lock();
        for t in &tracks {
            let family = codec_family(&t.codec.mime_type).unwrap_or(Codec::Audio);
            let ssrc = if t.kind == RtpCodecKind::Video { video_ssrc } else { audio_ssrc };
            if let Err(e) = m.fwd.publish(t.id.clone(), family, t.codec.clock_rate, &[(ssrc, 0)]) {
                tracing::warn!(error = %e, "composite track not published");
            }
            let _ = m.fwd.set_pli_interval(&t.id, COMPOSITE_PLI_INTERVAL);
            m.ssrcs.insert(t.id.clone(), ssrc);
            if t.kind == RtpCodecKind::Video {
                m.feedback.insert(t.id.clone(), keyframes.clone());
            }
        }
        drop(m);
        self.participants().insert(
            MIX.into(),
            Participant { session: String::new(), mcu: false, extmap: Arc::default(), expected_tracks: tracks.len(), tracks, simulcast: Vec::new() },
        );
        true
    }

    /// Stops copying packets to the composite and unpublishes its tracks.
    pub fn stop_mix(&self) {
        *self.mcu_tap.lock() = None;
        *self.mix_keyframes.lock() = None;
        *self.mix.lock() = None;
        let p = self.participants().remove(MIX);
        let mut m = self.lock();
        for t in p.map(|p| p.tracks).unwrap_or_default() {
            m.fwd.unpublish(&t.id);
            m.feedback.remove(&t.id);
            m.ssrcs.remove(&t.id);
        }
    }

    /// Registers an MCU participant's own video and audio as tracks of the composite: the
    /// canvas it sees (the room's, or its personalised one) and its mix (everyone but itself).
    /// Their SSRCs are what the engine writes for that participant.
    pub fn add_mix_listener(&self, name: &str, codec: crate::mcu::MixCodec) -> Vec<PublishedTrack> {
        let (audio_ssrc, video_ssrc) = (rand::random::<u32>() | 1, rand::random::<u32>() | 1);
        let mut tracks = crate::mcu::mix_tracks(codec);
        tracks[0].id = Arc::from(format!("{MIX}/video-for-{name}"));
        tracks[1].id = Arc::from(format!("{MIX}/audio-for-{name}"));
        let keyframes = self.mix_keyframes.lock().clone();
        let mut m = self.lock();
        for (t, ssrc) in tracks.iter().zip([video_ssrc, audio_ssrc]) {
            let family = codec_family(&t.codec.mime_type).unwrap_or(Codec::Audio);
            if let Err(e) = m.fwd.publish(t.id.clone(), family, t.codec.clock_rate, &[(ssrc, 0)]) {
                tracing::warn!(error = %e, "listener track not published");
            }
            let _ = m.fwd.set_pli_interval(&t.id, COMPOSITE_PLI_INTERVAL);
            m.ssrcs.insert(t.id.clone(), ssrc);
            if t.kind == RtpCodecKind::Video
                && let Some(tx) = &keyframes
            {
                m.feedback.insert(t.id.clone(), tx.clone());
            }
        }
        drop(m);
        self.listeners.lock().insert(name.into(), (audio_ssrc, video_ssrc));
        tracks
    }

    /// Encode profiles of MCU participants that have one (by name).
    pub fn view_profiles(&self) -> HashMap<String, crate::mcu::VideoProfile> {
        self.view_profiles.lock().clone()
    }

    /// MCU participants that are SIP legs.
    pub fn gateway_legs(&self) -> std::collections::HashSet<String> {
        self.gateway_legs.lock().clone()
    }

    /// Removes an MCU participant's own video and mix.
    pub fn remove_mix_listener(&self, name: &str) {
        self.view_profiles.lock().remove(name);
        self.gateway_legs.lock().remove(name);
        if self.listeners.lock().remove(name).is_some() {
            let mut m = self.lock();
            for kind in ["video", "audio"] {
                let id = format!("{MIX}/{kind}-for-{name}");
                m.fwd.unpublish(&id);
                m.feedback.remove(id.as_str());
                m.ssrcs.remove(id.as_str());
            }
        }
    }

    /// MCU participants and the SSRCs of their own audio mix and video.
    pub fn mix_listeners(&self) -> Vec<(String, u32, u32)> {
        self.listeners.lock().iter().map(|(k, (a, v))| (k.clone(), *a, *v)).collect()
    }

    /// The composite's video and audio SSRCs (zero when it is not running).
    pub fn mix_ssrcs(&self) -> (u32, u32) {
        self.mix.lock().unwrap_or((0, 0))
    }

    /// A packet of the composite, fanned out to its viewers.
    pub fn publish_mix_packet(&self, now: Instant, raw: &[u8]) {
        self.drive(now, |fwd, now| {
            let _ = fwd.handle_rtp(now, raw);
        });
    }

    /// Asks a publisher track for a keyframe (the composite's decoder needs one).
    pub fn request_keyframe(&self, track: &TrackId) {
        let mut m = self.lock();
        if let Some(sub) = m.taps.values().find(|t| t.track.id == *track).map(|t| t.sub) {
            // A simulcast track: the layer the composite receives.
            self.counters.composite_plis.fetch_add(1, Ordering::Relaxed);
            let now = Instant::now();
            m.fwd.request_keyframe_for(now, sub, track);
            self.flush(&mut m, now);
            return;
        }
        if let (Some(tx), Some(&ssrc)) = (m.feedback.get(track), m.ssrcs.get(track)) {
            self.counters.composite_plis.fetch_add(1, Ordering::Relaxed);
            let _ = tx.send(ssrc);
        }
    }

    /// One packet of a publisher's track (WebRTC or a SIP leg): forwarded, and copied to the
    /// composite while it runs.
    /// A muted track's packets are counted and dropped (neither forwarded nor mixed).
    pub fn ingest(&self, track: &PublishedTrack, participant: &str, packet: rtc::rtp::Packet, raw: &[u8]) {
        self.counters.received.fetch_add(1, Ordering::Relaxed);
        if track.muted.load(Ordering::Relaxed) {
            return;
        }
        self.counters.received_bytes.fetch_add(raw.len() as u64, Ordering::Relaxed);
        self.drive(Instant::now(), |fwd, now| {
            let _ = fwd.handle_rtp(now, raw);
        });
        // A simulcast track reaches the composite through its forwarder subscription (one layer).
        if track.layers <= 1
            && let Some(tap) = self.mcu_tap.lock().as_ref()
        {
            // A composite that falls behind loses packets (its decoder then asks for a
            // keyframe); the forwarding path never waits for it.
            if tap.offer(&track.id, participant, &track.codec.mime_type, packet) == Offered::Full {
                self.counters.dropped_composite.fetch_add(1, Ordering::Relaxed);
            }
        }
    }

    /// A packet of the composite's subscription to a simulcast track.
    fn tap(&self, track: &PublishedTrack, participant: &str, raw: &[u8]) {
        use rtc::shared::marshal::Unmarshal;
        let Some(tap) = self.mcu_tap.lock().clone() else { return };
        let Ok(packet) = rtc::rtp::Packet::unmarshal(&mut &raw[..]) else { return };
        if tap.offer(&track.id, participant, &track.codec.mime_type, packet) == Offered::Full {
            self.counters.dropped_composite.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// A simulcast track the composite receives through the forwarder: its layer count and the
    /// layer it gets now.
    pub fn composite_layer(&self, track: &str) -> Option<(usize, Option<usize>)> {
        let m = self.lock();
        let tap = m.taps.values().find(|t| &*t.track.id == track)?;
        Some((tap.track.layers as usize, m.fwd.current_layer(tap.sub, track)))
    }

    /// Caps the layer the composite receives of a simulcast track (switched at a keyframe).
    /// True when the cap changed.
    pub fn set_composite_layer(&self, track: &str, cap: usize) -> bool {
        let now = Instant::now();
        let mut m = self.lock();
        let Media { fwd, taps, .. } = &mut *m;
        let Some(tap) = taps.values_mut().find(|t| &*t.track.id == track) else { return false };
        if tap.cap == cap {
            return false;
        }
        tap.cap = cap;
        let _ = fwd.set_max_layer(now, tap.sub, track, cap);
        self.flush(&mut m, now);
        true
    }

    /// A viewer's choice for a track (over the WebSocket): `None` stops it, `Some(layer)`
    /// receives it up to that simulcast layer. Applies to every WHEP session of that viewer
    /// that carries the track, now and when one starts later. Returns how many sessions
    /// changed now.
    pub fn choose(&self, viewer: &str, track: &str, choice: Option<usize>) -> usize {
        let now = Instant::now();
        let mut m = self.lock();
        let track: TrackId = Arc::from(track);
        m.choices.insert((viewer.to_string(), track.clone()), choice);
        let Media { fwd, viewers, .. } = &mut *m;
        let mut changed = 0;
        for (&sub, v) in viewers.iter().filter(|(_, v)| v.started && v.name == viewer) {
            let Some(&(_, ssrc)) = v.wired.iter().find(|(t, _)| *t == track) else { continue };
            changed += 1;
            match choice {
                // Off rather than unsubscribed: back on, its stream continues without a gap.
                None => {
                    let _ = fwd.set_active(now, sub, &track, false);
                }
                Some(layer) => {
                    if !fwd.is_subscribed(sub, &track) {
                        let _ = fwd.subscribe(now, sub, &track, ssrc, None);
                    }
                    let _ = fwd.set_max_layer(now, sub, &track, layer);
                    let _ = fwd.set_active(now, sub, &track, true);
                }
            }
        }
        self.flush(&mut m, now);
        changed
    }

    /// A viewer's WebSocket is gone: its choices no longer apply to sessions that start later.
    pub fn forget_choices(&self, viewer: &str) {
        self.lock().choices.retain(|(v, _), _| v != viewer);
    }

    /// RTCP from a subscriber that is not a WebRTC connection (a SIP leg): PLI/FIR/REMB.
    pub fn subscriber_rtcp(&self, sub: SubscriberId, raw: &[u8]) {
        self.drive(Instant::now(), |fwd, now| {
            let _ = fwd.handle_subscriber_rtcp(now, sub, raw);
        });
    }

    /// What the subscribers of `tracks` (one shared encode) said within `max_age`: the lowest
    /// REMB, and the worst loss (/256) with the time of the newest report.
    pub fn encode_feedback(&self, tracks: &[&str], max_age: Duration) -> (Option<u64>, Option<(Instant, u8)>) {
        let now = Instant::now();
        let m = self.lock();
        (m.fwd.track_estimate(now, tracks, max_age), m.fwd.track_loss(now, tracks, max_age))
    }

    /// Whether anyone receives `track` (the composite skips pictures nobody watches).
    pub fn watched(&self, track: &str) -> bool {
        self.lock().fwd.subscribers_of(track) > 0
    }

    /// Tracks published by real participants.
    pub fn live_tracks(&self) -> std::collections::HashSet<TrackId> {
        self.participants().iter().filter(|(k, _)| k.as_str() != MIX).flat_map(|(_, p)| p.tracks.iter().map(|t| t.id.clone())).collect()
    }

    /// No publisher and no viewer: the composite may stop.
    pub fn idle_for_mix(&self) -> bool {
        let (p, _, s) = self.counts();
        p == 0 && s == 0
    }
}

/// A track a SIP leg publishes.
pub struct GatewayTrack {
    /// Audio or video.
    pub kind: RtpCodecKind,
    /// Its codec as the room sees it (the phone's G.711 arrives transcoded to Opus).
    pub codec: RTCRtpCodec,
    /// The SSRC its packets carry.
    pub ssrc: u32,
}

/// A SIP leg's place in a room.
pub struct GatewayLeg {
    /// Its session id (`Sfu::end` removes it).
    pub session: String,
    /// The room.
    pub room: Arc<Room>,
    /// Its participant name.
    pub participant: String,
    /// The tracks it publishes, each with the keyframe requests for it (SSRC asked).
    pub published: Vec<(PublishedTrack, mpsc::UnboundedReceiver<u32>)>,
    /// Its picture: the SSRC the packets carry and the packets.
    pub video: Option<(u32, mpsc::Receiver<Bytes>)>,
    /// Its mix (everyone but itself), Opus: the SSRC and the packets.
    pub audio: Option<(u32, mpsc::Receiver<Bytes>)>,
    /// Its subscriber id (for its RTCP).
    pub sub: SubscriberId,
    /// Notified when the server ends the session (an operator removed it, shutdown).
    pub hangup: Arc<tokio::sync::Notify>,
}

pub(crate) enum Role {
    /// A WHIP publisher, or an MCU participant (which also subscribes, as `sub`).
    Publisher {
        participant: String,
        sub: Option<SubscriberId>,
    },
    Subscriber {
        sub: SubscriberId,
    },
}

pub(crate) struct Session {
    pub(crate) room: Arc<Room>,
    /// The WebRTC connection (`None` for a SIP leg, whose call ends through `hangup`).
    pc: Option<Arc<dyn PeerConnection>>,
    /// Told when the session is ended by the server (an operator, shutdown): a SIP leg hangs up.
    hangup: Option<Arc<tokio::sync::Notify>>,
    pub(crate) role: Role,
}

/// Rooms recorded automatically, the composite's settings, and the recordings' own encode.
pub(crate) type AutoRecord = (Vec<String>, McuConfig, Option<crate::mcu::VideoProfile>);

/// The SFU: rooms and the sessions in them.
pub struct Sfu {
    rtc: RtcConfig,
    pub(crate) limits: SfuLimits,
    pub(crate) rooms: Mutex<HashMap<String, Arc<Room>>>,
    pub(crate) sessions: Mutex<HashMap<String, Session>>,
    next_id: AtomicU64,
    /// Shared counters.
    pub counters: Arc<Counters>,
    /// Forwarder counters of rooms that have closed (metrics counters never go down).
    retired: Mutex<Vec<ForwarderStats>>,
    /// Room events for the WebSocket protocol and the gRPC event stream.
    pub events: Arc<Events>,
    /// Where recordings go.
    pub(crate) recording_dir: Mutex<std::path::PathBuf>,
    /// Every recording since the start (the newest 1000).
    pub(crate) recordings: Mutex<Vec<Arc<crate::record::Session>>>,
    /// Rooms recorded from their first publisher (`*`: all), with the composite settings.
    pub(crate) auto_record: Mutex<Option<AutoRecord>>,
    /// The SIP gateway, when it runs (the control API edits its dial plan).
    pub(crate) sip: Mutex<Option<Arc<crate::sip::Gateway>>>,
}

/// What `/metrics` reports per receiving session.
pub struct ReceiverStats {
    /// The room.
    pub room: String,
    /// The session id.
    pub session: String,
    /// Round-trip time of the selected ICE pair (s).
    pub rtt: Option<f64>,
    /// REMB downlink estimate (bps).
    pub estimate: Option<u64>,
}

/// An accepted session: where it lives and the answer.
pub struct Accepted {
    /// Session id (the resource is `/session/{id}`).
    pub id: String,
    /// The SDP answer.
    pub answer: String,
    /// The participant's identity.
    pub participant: String,
}

impl Sfu {
    /// An SFU with these transport settings and limits.
    pub fn new(rtc: RtcConfig, limits: SfuLimits) -> Arc<Sfu> {
        let sfu = Arc::new(Sfu {
            rtc,
            limits,
            rooms: Mutex::default(),
            sessions: Mutex::default(),
            next_id: AtomicU64::new(1),
            counters: Arc::default(),
            retired: Mutex::default(),
            events: Arc::default(),
            recording_dir: Mutex::new("recordings".into()),
            recordings: Mutex::default(),
            auto_record: Mutex::default(),
            sip: Mutex::default(),
        });
        // One timer for every room: keyframe retries and backlog recovery.
        let weak = Arc::downgrade(&sfu);
        tokio::spawn(async move {
            let mut every = tokio::time::interval(Duration::from_millis(50));
            loop {
                every.tick().await;
                let Some(sfu) = weak.upgrade() else { return };
                let rooms: Vec<Arc<Room>> = sfu.rooms.lock().values().cloned().collect();
                let now = Instant::now();
                for r in rooms {
                    r.tick(now);
                }
            }
        });
        sfu
    }

    /// Every room, for metrics.
    pub fn rooms(&self) -> Vec<Arc<Room>> {
        self.rooms.lock().values().cloned().collect()
    }

    /// Forwarder counters of closed rooms.
    pub fn retired_stats(&self) -> Vec<ForwarderStats> {
        self.retired.lock().clone()
    }

    /// A session id: 128 random bits, so the session URL is an unguessable capability (RFC
    /// 9725 lets the resource URL alone authorise PATCH and DELETE).
    fn fresh_id(&self) -> String {
        format!("{:032x}", rand::random::<u128>())
    }

    pub(crate) fn room(&self, name: &str, create: bool) -> Result<Arc<Room>, SessionError> {
        let mut rooms = self.rooms.lock();
        if let Some(r) = rooms.get(name) {
            return Ok(r.clone());
        }
        if !create {
            return Err(SessionError::NotFound(format!("no room \"{name}\"")));
        }
        if rooms.len() >= self.limits.max_rooms {
            return Err(SessionError::Limit(format!("room limit reached ({})", self.limits.max_rooms)));
        }
        let r = Room::new(name, self.counters.clone(), self.events.clone());
        rooms.insert(name.into(), r.clone());
        Ok(r)
    }

    /// WHIP: a publisher's offer for `room`.
    pub async fn publish(self: &Arc<Self>, room_name: &str, participant: &str, offer: String) -> Result<Accepted, SessionError> {
        self.join(room_name, participant, offer, None).await
    }

    /// An MCU participant (`POST /mcu/{room}`): publishes like WHIP and, on the same connection,
    /// receives the room composite and its own audio mix (everyone but itself).
    pub async fn join_mcu(self: &Arc<Self>, room_name: &str, participant: &str, offer: String, config: McuConfig) -> Result<Accepted, SessionError> {
        self.join(room_name, participant, offer, Some(config)).await
    }

    async fn join(self: &Arc<Self>, room_name: &str, participant: &str, offer: String, mcu: Option<McuConfig>) -> Result<Accepted, SessionError> {
        if participant.starts_with('_') {
            return Err(SessionError::Conflict(format!("\"{participant}\": names starting with _ are reserved for the server")));
        }
        let sending = count_sending_sections(&offer);
        if sending == 0 {
            return Err(SessionError::BadOffer("the offer sends no audio or video".into()));
        }
        if sending > self.limits.max_tracks {
            return Err(SessionError::Limit(format!("{sending} tracks offered; at most {} per participant", self.limits.max_tracks)));
        }
        let extmap = Arc::new(forwarded_extmap(&offer));
        let simulcast = mcu_signaling::sdp::simulcast_send_rids(&offer);
        let desc = RTCSessionDescription::offer(offer).map_err(|e| SessionError::BadOffer(e.to_string()))?;
        let room = self.room(room_name, true)?;
        let id = self.fresh_id();
        {
            let mut ps = room.participants.lock();
            if ps.contains_key(participant) {
                return Err(SessionError::Conflict(format!("\"{participant}\" already publishes in \"{room_name}\"")));
            }
            let max = match room.max_participants.load(Ordering::Relaxed) {
                0 => self.limits.max_participants,
                n => n.min(self.limits.max_participants),
            };
            if ps.iter().filter(|(k, _)| k.as_str() != MIX).count() >= max {
                return Err(SessionError::Limit(format!("room \"{room_name}\" is full ({max} participants)")));
            }
            ps.insert(
                participant.into(),
                Participant { session: id.clone(), mcu: mcu.is_some(), extmap, expected_tracks: sending, tracks: Vec::new(), simulcast },
            );
        }
        let handler = Arc::new(Handler::new(Arc::downgrade(self), id.clone(), Some((room.clone(), participant.to_string()))));
        // An MCU participant also receives the composite and its own mix.
        let sub: Option<SubscriberId> = mcu.map(|_| self.next_id.fetch_add(1, Ordering::Relaxed));
        let receive = match mcu {
            Some(config) => {
                crate::mcu::ensure(self, &room, config);
                room.add_mix_listener(participant, config.codec)
            }
            None => Vec::new(),
        };
        let result = match self.rtc.peer_connection(handler.clone(), crate::rtc::Media::Receives).await.map_err(internal) {
            Ok((pc, _)) => {
                let answered = match sub {
                    Some(sub) => self.answer_subscriber(&pc, (&handler, None), &room, &receive, desc, (sub, participant)).await.map(|(a, _)| a),
                    None => negotiate(&self.rtc, &pc, &handler, desc).await,
                };
                match answered {
                    Ok(answer) => Ok((pc, answer)),
                    Err(e) => {
                        // Dropping a connection leaves its sockets open: close it.
                        let _ = pc.close().await;
                        Err(e)
                    }
                }
            }
            Err(e) => Err(e),
        };
        match result {
            Ok((pc, answer)) => {
                let kind = if sub.is_some() { "MCU participant joined" } else { "publisher joined (WHIP)" };
                tracing::info!(room = room_name, participant, session = %id, tracks = sending, "{kind}");
                if sub.is_some() {
                    room.subscribers.fetch_add(1, Ordering::Relaxed);
                }
                self.sessions.lock().insert(
                    id.clone(),
                    Session { room: room.clone(), pc: Some(pc), hangup: None, role: Role::Publisher { participant: participant.into(), sub } },
                );
                self.events.emit(room_name, EventKind::ParticipantJoined { participant: participant.into(), mcu: sub.is_some() });
                room.note_participant(participant);
                self.auto_record(&room);
                Ok(Accepted { id, answer, participant: participant.into() })
            }
            Err(e) => {
                room.participants.lock().remove(participant);
                if let Some(sub) = sub {
                    room.remove_mix_listener(participant);
                    let mut m = room.lock();
                    m.fwd.unsubscribe(sub, None);
                    m.sinks.retain(|_, e| e.sub != sub);
                }
                self.drop_if_empty(&room);
                Err(e)
            }
        }
    }

    /// A SIP leg joins `room_name` as an MCU participant: it publishes `tracks` (SSRCs chosen
    /// by the gateway) and receives its own mix and, with a `profile`, its picture (encoded
    /// with that profile) as forwarded packets (`None`: an audio-only leg, no picture drawn). The participant is named `name`, or `name-2`, `name-3`, ... when
    /// taken.
    pub fn join_gateway(
        self: &Arc<Self>,
        room_name: &str,
        name: &str,
        tracks: Vec<GatewayTrack>,
        profile: Option<crate::mcu::VideoProfile>,
        config: McuConfig,
    ) -> Result<GatewayLeg, SessionError> {
        let room = self.room(room_name, true)?;
        let id = self.fresh_id();
        let participant = {
            let mut ps = room.participants.lock();
            let max = match room.max_participants.load(Ordering::Relaxed) {
                0 => self.limits.max_participants,
                n => n.min(self.limits.max_participants),
            };
            if ps.iter().filter(|(k, _)| k.as_str() != MIX).count() >= max {
                drop(ps);
                self.drop_if_empty(&room);
                return Err(SessionError::Limit(format!("room \"{room_name}\" is full ({max} participants)")));
            }
            let participant =
                (1..).map(|n| if n == 1 { name.to_string() } else { format!("{name}-{n}") }).find(|p| !ps.contains_key(p)).expect("some suffix is free");
            ps.insert(
                participant.clone(),
                Participant {
                    session: id.clone(),
                    mcu: true,
                    extmap: Arc::default(),
                    expected_tracks: tracks.len(),
                    tracks: Vec::new(),
                    simulcast: Vec::new(),
                },
            );
            participant
        };
        crate::mcu::ensure(self, &room, config);
        let codec = profile.map(|p| p.codec).unwrap_or(config.codec);
        if let Some(p) = profile {
            room.view_profiles.lock().insert(participant.clone(), p);
        }
        room.gateway_legs.lock().insert(participant.clone());
        let receive = room.add_mix_listener(&participant, codec);
        // Its own picture and mix, forwarded like any subscriber's (sequence numbers rewritten).
        let sub: SubscriberId = self.next_id.fetch_add(1, Ordering::Relaxed);
        let mut queues = Vec::new();
        {
            let mut m = room.lock();
            for t in &receive {
                if t.kind == RtpCodecKind::Video && profile.is_none() {
                    continue;
                }
                let ssrc = rand_ssrc(&self.next_id);
                let (tx, rx) = mpsc::channel::<Bytes>(SINK_QUEUE);
                m.sinks.insert(ssrc, SinkEntry { sub, tx, pt: 0, ext_ids: Arc::from([]), clock_rate: 0, direct: None });
                queues.push((t.id.clone(), ssrc, rx));
            }
        }
        room.drive(Instant::now(), |fwd, now| {
            for (track, ssrc, _) in &queues {
                if let Err(e) = fwd.subscribe(now, sub, track, *ssrc, None) {
                    tracing::debug!(error = %e, "gateway subscription not started");
                }
            }
        });
        let mut queues = queues.into_iter().map(|(_, ssrc, rx)| (ssrc, rx));
        let video = if profile.is_some() { queues.next() } else { None };
        let audio = queues.next();
        let mut published = Vec::new();
        for (n, t) in tracks.into_iter().enumerate() {
            let kind_name = if t.kind == RtpCodecKind::Audio { "audio" } else { "video" };
            let track_id: TrackId = Arc::from(format!("{participant}/{kind_name}-{n}"));
            let family = codec_family(&t.codec.mime_type).unwrap_or(Codec::Audio);
            let (fb_tx, fb_rx) = mpsc::unbounded_channel::<u32>();
            {
                let mut m = room.lock();
                if let Err(e) = m.fwd.publish(track_id.clone(), family, t.codec.clock_rate, &[(t.ssrc, 0)]) {
                    tracing::warn!(error = %e, "gateway track not published");
                    continue;
                }
                m.feedback.insert(track_id.clone(), fb_tx);
                m.ssrcs.insert(track_id.clone(), t.ssrc);
            }
            let track = PublishedTrack { id: track_id, kind: t.kind, codec: t.codec, extmap: Arc::default(), muted: Arc::default(), layers: 1 };
            if let Some(p) = room.participants().get_mut(&participant) {
                p.tracks.push(track.clone());
            }
            self.events.emit(room_name, EventKind::TrackPublished { participant: participant.clone(), track: track.info() });
            published.push((track, fb_rx));
        }
        room.subscribers.fetch_add(1, Ordering::Relaxed);
        let hangup = Arc::new(tokio::sync::Notify::new());
        self.sessions.lock().insert(
            id.clone(),
            Session { room: room.clone(), pc: None, hangup: Some(hangup.clone()), role: Role::Publisher { participant: participant.clone(), sub: Some(sub) } },
        );
        tracing::info!(room = room_name, %participant, session = %id, "SIP participant joined");
        self.events.emit(room_name, EventKind::ParticipantJoined { participant: participant.clone(), mcu: true });
        room.note_participant(&participant);
        self.auto_record(&room);
        Ok(GatewayLeg { session: id, room, participant, published, video, audio, sub, hangup })
    }

    /// WHEP: a subscriber's offer for one participant's forwarded tracks.
    pub async fn play(self: &Arc<Self>, room_name: &str, target: &str, viewer: &str, offer: String) -> Result<Accepted, SessionError> {
        let desc = RTCSessionDescription::offer(offer).map_err(|e| SessionError::BadOffer(e.to_string()))?;
        let room = self.room(room_name, false)?;
        if room.subscribers.load(Ordering::Relaxed) as usize >= self.limits.max_subscribers {
            return Err(SessionError::Limit(format!("room \"{room_name}\" has its maximum of {} subscribers", self.limits.max_subscribers)));
        }
        let tracks = wait_for_tracks(&room, target).await?;
        let id = self.fresh_id();
        let sub: SubscriberId = self.next_id.fetch_add(1, Ordering::Relaxed);
        let handler = Arc::new(Handler::new(Arc::downgrade(self), id.clone(), None));
        let (pc, direct) = self.rtc.peer_connection(handler.clone(), crate::rtc::Media::SendOnly).await.map_err(internal)?;
        match self.answer_subscriber(&pc, (&handler, direct), &room, &tracks, desc, (sub, viewer)).await {
            Ok((answer, wired)) => {
                room.subscribers.fetch_add(1, Ordering::Relaxed);
                tracing::info!(room = room_name, target, viewer, session = %id, tracks = wired, "subscriber joined (WHEP)");
                self.sessions.lock().insert(id.clone(), Session { room, pc: Some(pc), hangup: None, role: Role::Subscriber { sub } });
                Ok(Accepted { id, answer, participant: viewer.into() })
            }
            Err(e) => {
                // Dropping a connection leaves its sockets open: close it.
                let _ = pc.close().await;
                let mut m = room.lock();
                m.fwd.unsubscribe(sub, None);
                m.sinks.retain(|_, e| e.sub != sub);
                m.viewers.remove(&sub);
                Err(e)
            }
        }
    }

    async fn answer_subscriber(
        &self,
        pc: &Arc<dyn PeerConnection>,
        (handler, direct): (&Arc<Handler>, Option<crate::fastpath::Direct>),
        room: &Arc<Room>,
        tracks: &[PublishedTrack],
        desc: RTCSessionDescription,
        (sub, viewer): (SubscriberId, &str),
    ) -> Result<(String, usize), SessionError> {
        let target = tracks.first().map(|t| t.id.split('/').next().unwrap_or("").to_string()).unwrap_or_default();
        pc.set_remote_description(desc).await.map_err(|e| SessionError::BadOffer(e.to_string()))?;
        let mut locals = Vec::new();
        for t in tracks {
            let ssrc = rand_ssrc(&self.next_id);
            let local = Arc::new(TrackLocalStaticRTP::new(MediaStreamTrack::new(
                target.to_string(),
                t.id.to_string(),
                t.id.to_string(),
                t.kind,
                vec![RTCRtpEncodingParameters {
                    rtp_coding_parameters: RTCRtpCodingParameters { ssrc: Some(ssrc), ..Default::default() },
                    codec: t.codec.clone(),
                    ..Default::default()
                }],
            )));
            let sender = pc.add_track(local.clone() as Arc<dyn TrackLocal>).await.map_err(internal)?;
            locals.push((t.clone(), ssrc, local, sender));
        }
        let answer = pc.create_answer(None).await.map_err(|e| SessionError::BadOffer(e.to_string()))?;
        pc.set_local_description(answer).await.map_err(internal)?;
        handler.gathered().await;
        let answer = self.rtc.announce(&pc.local_description().await.ok_or_else(|| internal("no local description"))?.sdp);

        // The subscriber's ids for the extensions we forward, from our answer.
        let theirs: HashMap<&'static str, u8> = forwarded_extmap(&answer).into_iter().map(|(id, uri)| (uri, id)).collect();
        let mut wired = Vec::new();
        for (t, ssrc, local, sender) in locals {
            let ext_ids: Vec<(u8, u8)> = t.extmap.iter().filter_map(|(&id, uri)| theirs.get(uri).map(|&to| (id, to))).collect();
            let params = sender.get_parameters().await.map_err(internal)?;
            let Some(pt) = matching_payload_type(&t.codec, &params.rtp_parameters.codecs) else {
                tracing::info!(room = %room.name, track = %t.id, codec = %t.codec.mime_type, "subscriber did not accept the track's codec; skipped");
                continue;
            };
            let (tx, rx) = mpsc::channel::<Bytes>(SINK_QUEUE);
            let entry = SinkEntry { sub, tx, pt, ext_ids: Arc::from(ext_ids.as_slice()), clock_rate: t.codec.clock_rate, direct: None };
            tokio::spawn(sink_writer(local.clone(), rx, pt, ext_ids, self.counters.clone()));
            tokio::spawn(subscriber_feedback(local, room.clone(), sub));
            room.lock().sinks.insert(ssrc, entry);
            wired.push((t.id.clone(), ssrc));
        }
        if wired.is_empty() && !tracks.is_empty() {
            return Err(SessionError::NotAcceptable(format!("no codec in common with the tracks of \"{target}\"")));
        }
        // Forwarding (and the keyframe request that starts it) begins once DTLS is up: a
        // keyframe sent before then would be lost and the viewer would wait for the next one.
        let count = wired.len();
        room.lock().viewers.insert(sub, Viewer { name: viewer.to_string(), wired, started: false });
        let (room, mut connected) = (room.clone(), handler.connected_tx.subscribe());
        tokio::spawn(async move {
            if connected.wait_for(|c| *c).await.is_err() {
                return;
            }
            let direct = match direct {
                Some(d) => direct_out(&d, &room.name, sub).await,
                None => None,
            };
            let now = Instant::now();
            let mut m = room.lock();
            let Media { fwd, viewers, choices, sinks, .. } = &mut *m;
            let Some(v) = viewers.get_mut(&sub) else { return };
            v.started = true;
            if let Some(d) = direct {
                for (_, ssrc) in &v.wired {
                    if let Some(sink) = sinks.get_mut(ssrc) {
                        sink.direct = Some(d.clone());
                    }
                }
            }
            for (track, ssrc) in &v.wired {
                // What the viewer chose over the WebSocket before the connection was up.
                let choice = choices.get(&(v.name.clone(), track.clone())).copied();
                if choice == Some(None) {
                    continue;
                }
                if let Err(e) = fwd.subscribe(now, sub, track, *ssrc, None) {
                    tracing::debug!(error = %e, "subscription not started (track gone)");
                } else if let Some(Some(layer)) = choice {
                    let _ = fwd.set_max_layer(now, sub, track, layer);
                }
            }
            room.flush(&mut m, now);
        });
        Ok((answer, count))
    }

    /// WHEP of the room composite: starts it when needed (a room with nobody in it yet shows
    /// an empty canvas until publishers arrive).
    pub async fn play_mix(self: &Arc<Self>, room_name: &str, viewer: &str, offer: String, config: McuConfig) -> Result<Accepted, SessionError> {
        // A bad offer must not start a composite.
        RTCSessionDescription::offer(offer.clone()).map_err(|e| SessionError::BadOffer(e.to_string()))?;
        let room = self.room(room_name, true)?;
        crate::mcu::ensure(self, &room, config);
        self.play(room_name, MIX, viewer, offer).await
    }

    /// Trickle ICE (`PATCH`): candidates from an SDP fragment.
    pub async fn trickle(&self, id: &str, fragment: &str) -> Result<(), SessionError> {
        let pc = self.sessions.lock().get(id).and_then(|s| s.pc.clone());
        let pc = pc.ok_or_else(|| SessionError::NotFound(format!("no session {id}")))?;
        let mut mid = None;
        for line in fragment.lines().map(str::trim) {
            if let Some(m) = line.strip_prefix("a=mid:") {
                mid = Some(m.to_string());
            } else if let Some(c) = line.strip_prefix("a=")
                && c.starts_with("candidate:")
            {
                let init = rtc::peer_connection::transport::RTCIceCandidateInit { candidate: c.to_string(), sdp_mid: mid.clone(), ..Default::default() };
                pc.add_ice_candidate(init).await.map_err(|e| SessionError::BadOffer(e.to_string()))?;
            }
        }
        Ok(())
    }

    /// The shared WebRTC UDP port, when one is configured.
    pub fn udp_mux(&self) -> Option<&Arc<crate::udpmux::UdpMux>> {
        self.rtc.mux.as_ref()
    }

    /// Ends a session (`DELETE`, a failed connection, shutdown).
    pub async fn end(&self, id: &str) -> Result<(), SessionError> {
        let s = self.sessions.lock().remove(id);
        let s = s.ok_or_else(|| SessionError::NotFound(format!("no session {id}")))?;
        match &s.role {
            Role::Publisher { participant, sub } => {
                let p = s.room.participants.lock().remove(participant);
                if sub.is_some() {
                    s.room.remove_mix_listener(participant);
                }
                let mut m = s.room.lock();
                for t in p.map(|p| p.tracks).unwrap_or_default() {
                    m.fwd.unpublish(&t.id);
                    m.feedback.remove(&t.id);
                    m.ssrcs.remove(&t.id);
                    m.taps.retain(|_, tap| tap.track.id != t.id);
                }
                if let Some(sub) = sub {
                    m.fwd.unsubscribe(*sub, None);
                    m.sinks.retain(|_, e| e.sub != *sub);
                    m.backlogged.remove(sub);
                    m.viewers.remove(sub);
                    s.room.subscribers.fetch_sub(1, Ordering::Relaxed);
                }
                tracing::info!(room = %s.room.name, participant, session = id, "publisher left");
                self.events.emit(&s.room.name, EventKind::ParticipantLeft { participant: participant.clone() });
            }
            Role::Subscriber { sub } => {
                let mut m = s.room.lock();
                m.fwd.unsubscribe(*sub, None);
                m.sinks.retain(|_, e| e.sub != *sub);
                m.backlogged.remove(sub);
                m.viewers.remove(sub);
                s.room.subscribers.fetch_sub(1, Ordering::Relaxed);
                tracing::info!(room = %s.room.name, session = id, "subscriber left");
            }
        }
        if let Some(pc) = &s.pc {
            let _ = pc.close().await;
        }
        if let Some(h) = &s.hangup {
            h.notify_one();
        }
        self.drop_if_empty(&s.room);
        Ok(())
    }

    /// An empty room (the composite stopped too) goes away; its counters are kept for the
    /// metrics.
    pub fn forget_if_empty(&self, room: &Arc<Room>) {
        self.drop_if_empty(room);
    }

    fn drop_if_empty(&self, room: &Arc<Room>) {
        let mut rooms = self.rooms.lock();
        let mix_running = room.mix.lock().is_some();
        let keep = room.persistent.load(Ordering::Relaxed) && !room.closed.load(Ordering::Relaxed);
        if !keep && !mix_running && room.counts() == (0, 0, 0) && rooms.get(&room.name).is_some_and(|r| Arc::ptr_eq(r, room)) {
            rooms.remove(&room.name);
            self.retired.lock().push(room.stats());
            self.events.emit(&room.name, EventKind::RoomClosed);
        }
    }

    /// Ends every session (shutdown).
    pub async fn end_all(&self) {
        let ids: Vec<String> = self.sessions.lock().keys().cloned().collect();
        for id in ids {
            let _ = self.end(&id).await;
        }
    }

    /// A room's publishers (the composite not listed) and whether its composite runs, as JSON.
    pub fn room_info(&self, name: &str) -> Option<serde_json::Value> {
        let room = self.room(name, false).ok()?;
        let mut people: Vec<serde_json::Value> = room
            .participants()
            .iter()
            .filter(|(k, _)| k.as_str() != MIX)
            .map(|(k, p)| {
                let kinds: Vec<&str> = p.tracks.iter().map(|t| if t.kind == RtpCodecKind::Audio { "audio" } else { "video" }).collect();
                // Simulcast tracks: the layer the composite decodes.
                let layers: serde_json::Map<String, serde_json::Value> =
                    p.tracks.iter().filter_map(|t| Some((t.id.to_string(), serde_json::json!(room.composite_layer(&t.id)?.1)))).collect();
                serde_json::json!({ "name": k, "tracks": p.tracks.len(), "kinds": kinds, "composite_layers": layers })
            })
            .collect();
        people.sort_by(|a, b| a["name"].as_str().cmp(&b["name"].as_str()));
        let (_, _, subscribers) = room.counts();
        Some(serde_json::json!({ "room": name, "participants": people, "subscribers": subscribers, "composite": room.mix_ssrcs() != (0, 0) }))
    }

    /// Per receiving session (WHEP viewer or MCU participant): room, session id, the
    /// selected ICE pair's round-trip time (s) and the REMB downlink estimate (bps).
    pub async fn receiver_stats(&self) -> Vec<ReceiverStats> {
        type Receiving = (String, Arc<Room>, Arc<dyn PeerConnection>, SubscriberId);
        let sessions: Vec<Receiving> = self
            .sessions
            .lock()
            .iter()
            .filter_map(|(id, s)| match &s.role {
                Role::Subscriber { sub } | Role::Publisher { sub: Some(sub), .. } => Some((id.clone(), s.room.clone(), s.pc.clone()?, *sub)),
                Role::Publisher { sub: None, .. } => None,
            })
            .collect();
        let mut out = Vec::with_capacity(sessions.len());
        for (id, room, pc, sub) in sessions {
            let report = pc.get_stats(Instant::now(), webrtc::peer_connection::StatsSelector::None).await;
            let rtt = report.iter().find_map(|e| match e {
                rtc::statistics::report::RTCStatsReportEntry::IceCandidatePair(p) if p.nominated && p.current_round_trip_time > 0.0 => {
                    Some(p.current_round_trip_time)
                }
                _ => None,
            });
            let estimate = room.lock().fwd.estimate(sub);
            out.push(ReceiverStats { room: room.name.clone(), session: id, rtt, estimate });
        }
        out
    }

    /// Whether a session exists.
    pub fn has_session(&self, id: &str) -> bool {
        self.sessions.lock().contains_key(id)
    }
}

fn rand_ssrc(seq: &AtomicU64) -> u32 {
    // Distinct per track within the process; unpredictability is not a goal for SSRCs.
    let n = seq.fetch_add(1, Ordering::Relaxed);
    let x = (n ^ 0x5bd1_e995).wrapping_mul(0x9e37_79b9_7f4a_7c15);
    ((x >> 32) as u32) | 1
}

/// The subscriber's payload type for a publisher's codec: same MIME type, same H.264
/// packetization mode.
fn matching_payload_type(codec: &RTCRtpCodec, offered: &[rtc::rtp_transceiver::rtp_sender::RTCRtpCodecParameters]) -> Option<u8> {
    let is_h264 = codec.mime_type.eq_ignore_ascii_case("video/h264");
    offered
        .iter()
        .find(|c| {
            c.rtp_codec.mime_type.eq_ignore_ascii_case(&codec.mime_type)
                && (!is_h264 || packetization_mode(&c.rtp_codec.sdp_fmtp_line) == packetization_mode(&codec.sdp_fmtp_line))
        })
        .map(|c| c.payload_type)
}

async fn negotiate(rtc: &RtcConfig, pc: &Arc<dyn PeerConnection>, handler: &Handler, offer: RTCSessionDescription) -> Result<String, SessionError> {
    pc.set_remote_description(offer).await.map_err(|e| SessionError::BadOffer(e.to_string()))?;
    let answer = pc.create_answer(None).await.map_err(|e| SessionError::BadOffer(e.to_string()))?;
    pc.set_local_description(answer).await.map_err(internal)?;
    handler.gathered().await;
    Ok(rtc.announce(&pc.local_description().await.ok_or_else(|| internal("no local description"))?.sdp))
}

async fn wait_for_tracks(room: &Room, target: &str) -> Result<Vec<PublishedTrack>, SessionError> {
    // A publisher's tracks appear when their first packets arrive; a viewer that asks at once
    // waits briefly for all the tracks the publisher offered.
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let (tracks, expected) = {
            let ps = room.participants.lock();
            let p = ps.get(target).ok_or_else(|| SessionError::NotFound(format!("no participant \"{target}\" in \"{}\"", room.name)))?;
            (p.tracks.clone(), p.expected_tracks)
        };
        if tracks.len() >= expected || (Instant::now() >= deadline && !tracks.is_empty()) {
            return Ok(tracks);
        }
        if Instant::now() >= deadline {
            return Err(SessionError::NotFound(format!("\"{target}\" publishes no media yet")));
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The direct sender of a viewer whose connection is up. The SRTP contexts are derived as
/// the DTLS handshake completes, about when the connection reports itself connected: a few
/// tries, then the `webrtc` crate's path.
async fn direct_out(direct: &crate::fastpath::Direct, room: &str, sub: SubscriberId) -> Option<Arc<crate::fastpath::DirectOut>> {
    let mut tries = 0;
    loop {
        match crate::fastpath::DirectOut::new(direct) {
            Ok(d) => {
                tracing::debug!(room, sub, dest = ?d.destination(), "viewer on the direct send path");
                return Some(Arc::new(d));
            }
            Err(e) if tries >= 10 => {
                tracing::warn!(room, sub, error = %e, "direct send path unavailable; sending through the webrtc crate");
                return None;
            }
            Err(_) => {
                tries += 1;
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    }
}

/// Writes one subscriber track's packets with the subscriber's payload type and extension ids
/// (`ext_ids`: publisher id → subscriber id; other extensions are dropped: ids are per
/// connection, so the publisher's mean nothing here).
async fn sink_writer(track: Arc<TrackLocalStaticRTP>, mut rx: mpsc::Receiver<Bytes>, pt: u8, ext_ids: Vec<(u8, u8)>, counters: Arc<Counters>) {
    while let Some(raw) = rx.recv().await {
        let mut buf = raw;
        let Ok(mut p) = rtc::rtp::Packet::unmarshal(&mut buf) else { continue };
        p.header.payload_type = pt;
        // Rebuilt through set_extension, which keeps the block's padding consistent.
        let old = std::mem::take(&mut p.header.extensions);
        p.header.extension = false;
        p.header.extensions_padding = 0;
        for e in old {
            if let Some(&(_, to)) = ext_ids.iter().find(|(from, _)| *from == e.id) {
                let _ = p.header.set_extension(to, e.payload);
            }
        }
        if track.write_rtp(p).await.is_err() {
            return;
        }
        counters.sent.fetch_add(1, Ordering::Relaxed);
    }
}

/// Keyframe requests and REMB from one subscriber track into the forwarder.
async fn subscriber_feedback(track: Arc<TrackLocalStaticRTP>, room: Arc<Room>, sub: SubscriberId) {
    while let Some(evt) = track.poll().await {
        let TrackLocalEvent::OnRtcpPacket(packets) = evt else { continue };
        let Ok(raw) = rtc::rtcp::packet::marshal(&packets) else { continue };
        let keyframe_requests = packets
            .iter()
            .filter(|p| p.as_any().is::<PictureLossIndication>() || p.as_any().is::<rtc::rtcp::payload_feedbacks::full_intra_request::FullIntraRequest>())
            .count();
        room.counters.keyframe_requests.fetch_add(keyframe_requests as u64, Ordering::Relaxed);
        room.drive(Instant::now(), |fwd, now| {
            let _ = fwd.handle_subscriber_rtcp(now, sub, &raw);
        });
    }
}

/// Peer connection events of one session.
struct Handler {
    sfu: Weak<Sfu>,
    session: String,
    publisher: Option<(Arc<Room>, String)>,
    gathered_tx: tokio::sync::watch::Sender<bool>,
    connected_tx: tokio::sync::watch::Sender<bool>,
    track_count: AtomicU64,
}

impl Handler {
    fn new(sfu: Weak<Sfu>, session: String, publisher: Option<(Arc<Room>, String)>) -> Handler {
        Handler {
            sfu,
            session,
            publisher,
            gathered_tx: tokio::sync::watch::channel(false).0,
            connected_tx: tokio::sync::watch::channel(false).0,
            track_count: AtomicU64::new(0),
        }
    }

    async fn gathered(&self) {
        let mut rx = self.gathered_tx.subscribe();
        let _ = tokio::time::timeout(GATHER_TIMEOUT, rx.wait_for(|g| *g)).await;
    }
}

#[async_trait::async_trait]
impl PeerConnectionEventHandler for Handler {
    async fn on_ice_gathering_state_change(&self, state: RTCIceGatheringState) {
        if state == RTCIceGatheringState::Complete {
            self.gathered_tx.send_replace(true);
        }
    }

    async fn on_connection_state_change(&self, state: RTCPeerConnectionState) {
        tracing::debug!(session = %self.session, %state, "connection state");
        if state == RTCPeerConnectionState::Connected {
            self.connected_tx.send_replace(true);
        }
        if matches!(state, RTCPeerConnectionState::Failed | RTCPeerConnectionState::Closed)
            && let Some(sfu) = self.sfu.upgrade()
            && sfu.has_session(&self.session)
        {
            tracing::info!(session = %self.session, %state, "connection ended without DELETE; cleaning up");
            let id = self.session.clone();
            tokio::spawn(async move {
                let _ = sfu.end(&id).await;
            });
        }
    }

    async fn on_track(&self, track: Arc<dyn TrackRemote>) {
        let Some((room, participant)) = self.publisher.clone() else { return };
        let Some(ssrc) = track.ssrcs().await.first().copied() else { return };
        let Some(codec) = track.codec(ssrc).await else { return };
        let kind = track.kind().await;
        let Some(family) = codec_family(&codec.mime_type) else {
            tracing::info!(%participant, codec = %codec.mime_type, "track with a codec the SFU does not forward; ignored");
            return;
        };
        // A simulcast video (rids in the offer, lowest first) is one track of several layers.
        let rids = match kind {
            RtpCodecKind::Video => room.participants.lock().get(&participant).map(|p| p.simulcast.clone()).unwrap_or_default(),
            _ => Vec::new(),
        };
        let mut rids = rids;
        rids.truncate(4);
        let simulcast = rids.len() > 1 && track.rid(ssrc).await.is_some();
        let n = self.track_count.fetch_add(1, Ordering::Relaxed);
        let id: TrackId = Arc::from(format!("{participant}/{}-{n}", if kind == RtpCodecKind::Audio { "audio" } else { "video" }));
        let mut published = PublishedTrack {
            id: id.clone(),
            kind,
            codec: codec.clone(),
            extmap: Arc::default(),
            muted: Arc::new(AtomicBool::new(false)),
            layers: if simulcast { rids.len() as u8 } else { 1 },
        };
        if let Some(p) = room.participants.lock().get(&participant) {
            published.extmap = p.extmap.clone();
        }
        let (fb_tx, mut fb_rx) = mpsc::unbounded_channel::<u32>();
        // SSRCs are unique per connection, not per room: two publishers (fixed-SSRC encoders,
        // or plain chance) may send the same one. The forwarder's key is a room-unique SSRC per
        // layer: the publisher's own when it is free (one layer), else a fresh one its packets
        // are rewritten to.
        let layers = if simulcast { rids.len() } else { 1 };
        let room_ssrcs: Vec<u32> = {
            let mut m = room.lock();
            let mut chosen: Vec<u32> = Vec::new();
            for k in 0..layers {
                let mut room_ssrc = if k == 0 && !simulcast { ssrc } else { rand::random() };
                while room_ssrc == 0 || m.fwd.ssrc_in_use(room_ssrc) || chosen.contains(&room_ssrc) {
                    room_ssrc = rand::random();
                }
                chosen.push(room_ssrc);
            }
            let spec: Vec<(u32, u64)> = chosen.iter().map(|&s| (s, 0)).collect();
            match m.fwd.publish(id.clone(), family, codec.clock_rate, &spec) {
                Ok(()) => {
                    m.feedback.insert(id.clone(), fb_tx);
                    m.ssrcs.insert(id.clone(), chosen[0]);
                    if simulcast && let Some(sfu) = self.sfu.upgrade() {
                        // The composite takes one layer through the forwarder, switched at
                        // keyframes like any subscriber's.
                        let sub = sfu.next_id.fetch_add(1, Ordering::Relaxed);
                        let mut out = rand::random::<u32>();
                        while out == 0 || m.fwd.ssrc_in_use(out) || m.sinks.contains_key(&out) || m.taps.contains_key(&out) {
                            out = rand::random();
                        }
                        if m.fwd.subscribe(Instant::now(), sub, &id, out, None).is_ok() {
                            m.taps.insert(out, TapSink { sub, track: published.clone(), participant: participant.clone(), cap: layers - 1 });
                        }
                    }
                    chosen
                }
                Err(e) => {
                    tracing::warn!(error = %e, "publish refused");
                    return;
                }
            }
        };
        if let Some(p) = room.participants.lock().get_mut(&participant) {
            debug_assert_eq!(p.session, self.session);
            p.tracks.push(published.clone());
        }
        tracing::info!(room = %room.name, track = %id, codec = %codec.mime_type, ssrc, ?room_ssrcs, rids = ?if simulcast { rids.clone() } else { Vec::new() }, "track published");
        room.events.emit(&room.name, EventKind::TrackPublished { participant: participant.clone(), track: published.info() });
        // Each layer's publisher SSRC, as its packets arrive (keyframe requests name it).
        let sources: Arc<Mutex<Vec<Option<u32>>>> = Arc::new(Mutex::new(vec![None; layers]));
        if !simulcast {
            sources.lock()[0] = Some(ssrc);
        }
        // Keyframe requests the forwarder sends upstream.
        let pli_track = track.clone();
        let pli_sources = sources.clone();
        let pli_room_ssrcs = room_ssrcs.clone();
        tokio::spawn(async move {
            // The request names the room's SSRC of a layer; the publisher knows its own.
            while let Some(asked) = fb_rx.recv().await {
                let layer = pli_room_ssrcs.iter().position(|s| *s == asked).unwrap_or(0);
                let Some(media_ssrc) = pli_sources.lock()[layer] else { continue };
                let pli = PictureLossIndication { sender_ssrc: 0, media_ssrc };
                if pli_track.write_rtcp(vec![Box::new(pli)]).await.is_err() {
                    return;
                }
            }
        });
        let layers = Layers { rids: if simulcast { rids } else { Vec::new() }, room_ssrcs, sources };
        // The handler must return at once (the connection's driver awaits it): read in a task.
        tokio::spawn(async move {
            read_publisher_track(track, room, published, participant, layers).await;
        });
    }
}

/// How a published track's packets map to the forwarder's layers.
struct Layers {
    /// Simulcast rids, lowest first (empty: one layer, whatever its SSRC).
    rids: Vec<String>,
    /// The room SSRC of each layer.
    room_ssrcs: Vec<u32>,
    /// The publisher's SSRC of each layer, once seen.
    sources: Arc<Mutex<Vec<Option<u32>>>>,
}

/// Reads a published track: each layer's packets go into the room under its room SSRC.
async fn read_publisher_track(track: Arc<dyn TrackRemote>, room: Arc<Room>, published: PublishedTrack, participant: String, layers: Layers) {
    // Publisher SSRC → layer (None: not a layer we forward).
    let mut layer_of: HashMap<u32, Option<usize>> = HashMap::new();
    if layers.rids.is_empty()
        && let Some(first) = layers.sources.lock()[0]
    {
        layer_of.insert(first, Some(0));
    }
    while let Some(evt) = track.poll().await {
        match evt {
            TrackRemoteEvent::OnRtpPacket(mut p) => {
                let source = p.header.ssrc;
                let layer = match layer_of.get(&source) {
                    Some(l) => *l,
                    None => {
                        // A new SSRC: a simulcast layer (by its rid), else a stream we do not
                        // forward (a second SSRC on a non-simulcast track).
                        let rid = track.rid(source).await;
                        let l = rid.as_ref().and_then(|r| layers.rids.iter().position(|x| x == r));
                        // Until the rid is known the packet cannot be placed: dropped, asked again.
                        if rid.is_none() && !layers.rids.is_empty() {
                            room.counters.dropped_simulcast.fetch_add(1, Ordering::Relaxed);
                            continue;
                        }
                        if let Some(l) = l {
                            layers.sources.lock()[l] = Some(source);
                            tracing::debug!(track = %published.id, source, layer = l, "simulcast layer seen");
                        }
                        layer_of.insert(source, l);
                        l
                    }
                };
                let Some(layer) = layer else {
                    room.counters.dropped_simulcast.fetch_add(1, Ordering::Relaxed);
                    continue;
                };
                p.header.ssrc = layers.room_ssrcs[layer];
                let Ok(raw) = p.marshal() else { continue };
                room.ingest(&published, &participant, p, &raw);
            }
            TrackRemoteEvent::OnEnded => break,
            _ => {}
        }
    }
}
