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
        atomic::{AtomicBool, AtomicU64, Ordering},
    },
    time::{Duration, Instant},
};

use parking_lot::Mutex;

use bytes::Bytes;
use mcu_sfu::{
    forwarder::{ForwarderStats, SubscriberId, TrackId},
    keyframe::Codec,
};
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

use mcu_pipeline::{MIX, McuConfig};

use crate::{
    counters::Counters,
    media::{
        engine::MediaPaths,
        events::{EventKind, Events},
        room::{Media, Participant, PublishedTrack, Room, SINK_QUEUE, SinkEntry, TapSink, Viewer},
    },
    transport::rtc::{RtcConfig, codec_family, forwarded_extmap, packetization_mode},
};

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

/// What the layer above the rooms (the app: recordings) must hear of them, when it happens.
pub trait RoomHooks: Send + Sync {
    /// A participant published in `room` (automatic recordings start here).
    fn published(&self, room: &Arc<Room>);
    /// The composite of `room` ended (the recordings it fed end with it; may block while their
    /// files close).
    fn composite_ended(&self, room: &Arc<Room>);
}

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
    /// Where the rooms' composites draw and mix.
    paths: MediaPaths,
    /// Composites running (their threads not ended).
    composites: Arc<AtomicU64>,
    /// Who hears of publishes and of composites ending (the app), once set.
    hooks: std::sync::OnceLock<Weak<dyn RoomHooks>>,
    /// Rooms start as classrooms (everyone but me) unless created otherwise.
    everyone_but_me: AtomicBool,
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
    pub fn new(rtc: RtcConfig, limits: SfuLimits, paths: MediaPaths) -> Arc<Sfu> {
        let sfu = Arc::new(Sfu {
            rtc,
            limits,
            paths,
            composites: Arc::default(),
            rooms: Mutex::default(),
            sessions: Mutex::default(),
            next_id: AtomicU64::new(1),
            counters: Arc::default(),
            retired: Mutex::default(),
            events: Arc::default(),
            hooks: std::sync::OnceLock::new(),
            everyone_but_me: AtomicBool::new(false),
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

    /// Who hears of publishes and of composites ending (set once).
    pub fn set_hooks(&self, hooks: Weak<dyn RoomHooks>) {
        let _ = self.hooks.set(hooks);
    }

    fn hooks(&self) -> Option<Arc<dyn RoomHooks>> {
        self.hooks.get().and_then(Weak::upgrade)
    }

    /// Starts the composite of `room` unless it runs already. When it ends, the recordings it
    /// fed end, its tracks go, and an empty room is forgotten.
    pub fn ensure_mix(self: &Arc<Self>, room: &Arc<Room>, config: McuConfig) {
        let weak = Arc::downgrade(self);
        let running = self.composites.clone();
        running.fetch_add(1, Ordering::AcqRel);
        let ended_running = running.clone();
        let started = crate::media::engine::ensure(
            room,
            config,
            self.paths.clone(),
            Box::new(move |room: &Arc<Room>| {
                let sfu = weak.upgrade();
                if let Some(hooks) = sfu.as_ref().and_then(|s| s.hooks()) {
                    hooks.composite_ended(room);
                }
                room.stop_mix();
                room.events.emit(&room.name, EventKind::MixAvailable { available: false });
                if let Some(sfu) = sfu {
                    sfu.forget_if_empty(room);
                }
                ended_running.fetch_sub(1, Ordering::AcqRel);
            }),
        );
        if !started {
            running.fetch_sub(1, Ordering::AcqRel);
        }
    }

    /// Stops every room's composite and waits (up to `limit`) until their threads have ended:
    /// at shutdown, nothing may still use the GPU device when the process exits.
    pub async fn stop_composites(&self, limit: Duration) {
        for r in self.rooms() {
            r.closed.store(true, Ordering::Relaxed);
        }
        let deadline = Instant::now() + limit;
        while self.composites.load(Ordering::Acquire) > 0 && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        let left = self.composites.load(Ordering::Acquire);
        if left > 0 {
            tracing::warn!(left, "composites still running at exit");
        }
    }

    /// A room is deleted: forgotten at once (true when it was still known).
    pub fn forget_room(&self, room: &Arc<Room>) -> bool {
        let mut rooms = self.rooms.lock();
        let known = rooms.get(&room.name).is_some_and(|r| Arc::ptr_eq(r, room));
        if known {
            rooms.remove(&room.name);
        }
        known
    }

    /// Session ids in a room (every participant and viewer).
    pub fn sessions_in(&self, room: &Arc<Room>, participant: Option<&str>) -> Vec<String> {
        self.sessions
            .lock()
            .iter()
            .filter(|(_, s)| Arc::ptr_eq(&s.room, room))
            .filter(|(_, s)| match (participant, &s.role) {
                (None, _) => true,
                (Some(name), Role::Publisher { participant, .. }) => participant == name,
                (Some(_), Role::Subscriber { .. }) => false,
            })
            .map(|(id, _)| id.clone())
            .collect()
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

    /// Rooms created from now on are classrooms (`mcu serve --everyone-but-me`), unless their
    /// creator says otherwise.
    pub fn set_everyone_but_me_default(&self, on: bool) {
        self.everyone_but_me.store(on, Ordering::Relaxed);
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
        if self.everyone_but_me.load(Ordering::Relaxed) {
            r.update_control(|c| c.everyone_but_me = true);
        }
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
            let mut ps = room.members_mut();
            if ps.participants.contains_key(participant) {
                return Err(SessionError::Conflict(format!("\"{participant}\" already publishes in \"{room_name}\"")));
            }
            let max = match room.max_participants.load(Ordering::Relaxed) {
                0 => self.limits.max_participants,
                n => n.min(self.limits.max_participants),
            };
            if ps.people().count() >= max {
                return Err(SessionError::Limit(format!("room \"{room_name}\" is full ({max} participants)")));
            }
            ps.participants.insert(
                participant.into(),
                Participant { session: id.clone(), mcu: mcu.is_some(), extmap, expected_tracks: sending, tracks: Vec::new(), simulcast },
            );
        }
        let handler = Arc::new(Handler::new(Arc::downgrade(self), id.clone(), Some((room.clone(), participant.to_string()))));
        // An MCU participant also receives the composite and its own mix.
        let sub: Option<SubscriberId> = mcu.map(|_| self.next_id.fetch_add(1, Ordering::Relaxed));
        let receive = match mcu {
            Some(config) => {
                self.ensure_mix(&room, config);
                room.add_mix_listener(participant, config.codec, None, false)
            }
            None => Vec::new(),
        };
        let result = match self.rtc.peer_connection(handler.clone(), crate::transport::rtc::Media::Receives).await.map_err(internal) {
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
                if let Some(hooks) = self.hooks() {
                    hooks.published(&room);
                }
                Ok(Accepted { id, answer, participant: participant.into() })
            }
            Err(e) => {
                room.members_mut().participants.remove(participant);
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
        profile: Option<mcu_pipeline::VideoProfile>,
        config: McuConfig,
    ) -> Result<GatewayLeg, SessionError> {
        let room = self.room(room_name, true)?;
        let id = self.fresh_id();
        let participant = {
            let mut ps = room.members_mut();
            let max = match room.max_participants.load(Ordering::Relaxed) {
                0 => self.limits.max_participants,
                n => n.min(self.limits.max_participants),
            };
            if ps.people().count() >= max {
                drop(ps);
                self.drop_if_empty(&room);
                return Err(SessionError::Limit(format!("room \"{room_name}\" is full ({max} participants)")));
            }
            let participant = (1..)
                .map(|n| if n == 1 { name.to_string() } else { format!("{name}-{n}") })
                .find(|p| !ps.participants.contains_key(p))
                .expect("some suffix is free");
            ps.participants.insert(
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
        self.ensure_mix(&room, config);
        let codec = profile.map(|p| p.codec).unwrap_or(config.codec);
        let receive = room.add_mix_listener(&participant, codec, profile, true);
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
            if let Some(p) = room.members_mut().participants.get_mut(&participant) {
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
        if let Some(hooks) = self.hooks() {
            hooks.published(&room);
        }
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
        let (pc, direct) = self.rtc.peer_connection(handler.clone(), crate::transport::rtc::Media::SendOnly).await.map_err(internal)?;
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
        (handler, direct): (&Arc<Handler>, Option<crate::transport::fastpath::Direct>),
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
            let sender = pc.add_track(local.clone() as Arc<dyn TrackLocal>).await.map_err(|e| {
                // An offer without the track's codec (a VP8-only MCU participant on a server
                // whose composite is H.264): the client's to fix, said as such.
                if e.to_string().contains("codec") {
                    SessionError::BadOffer(format!("the offer cannot receive {} in {}, the codec it is sent in ({e})", t.id, t.codec.mime_type))
                } else {
                    internal(e)
                }
            })?;
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
        self.ensure_mix(&room, config);
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
    pub fn udp_mux(&self) -> Option<&Arc<crate::transport::udpmux::UdpMux>> {
        self.rtc.mux.as_ref()
    }

    /// Ends a session (`DELETE`, a failed connection, shutdown).
    pub async fn end(&self, id: &str) -> Result<(), SessionError> {
        let s = self.sessions.lock().remove(id);
        let s = s.ok_or_else(|| SessionError::NotFound(format!("no session {id}")))?;
        match &s.role {
            Role::Publisher { participant, sub } => {
                let p = s.room.members_mut().participants.remove(participant);
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
        let mix_running = room.members().mix.is_some();
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
            .members()
            .people()
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
        // Where the composite draws and mixes, while it runs.
        let (render, mix) = room.members().paths.unzip();
        Some(serde_json::json!({
            "room": name,
            "participants": people,
            "subscribers": subscribers,
            "composite": room.mix_ssrcs() != (0, 0),
            "render_path": render,
            "mix_path": mix,
            "everyone_but_me": room.control().everyone_but_me,
        }))
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
            let ps = room.members();
            let p = ps.participants.get(target).ok_or_else(|| SessionError::NotFound(format!("no participant \"{target}\" in \"{}\"", room.name)))?;
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
async fn direct_out(direct: &crate::transport::fastpath::Direct, room: &str, sub: SubscriberId) -> Option<Arc<crate::transport::fastpath::DirectOut>> {
    let mut tries = 0;
    loop {
        match crate::transport::fastpath::DirectOut::new(direct) {
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
            RtpCodecKind::Video => room.members().participants.get(&participant).map(|p| p.simulcast.clone()).unwrap_or_default(),
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
        if let Some(p) = room.members().participants.get(&participant) {
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
        if let Some(p) = room.members_mut().participants.get_mut(&participant) {
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
                room.ingest(&published, &participant, raw.freeze());
            }
            TrackRemoteEvent::OnEnded => break,
            _ => {}
        }
    }
}
