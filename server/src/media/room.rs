//! A room: who is in it and what they publish (its membership), its forwarder and where the
//! forwarder's packets go (subscriber queues, the direct send path, the composite's tap), the
//! operator's settings, and the recordings that run in it. The WebRTC and SIP sessions that
//! join rooms live in [`super::sessions`]; the composite that reads a room lives in
//! [`super::engine`].

use std::{
    collections::{HashMap, HashSet},
    sync::{
        Arc,
        atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering},
    },
    time::{Duration, Instant},
};

use parking_lot::Mutex;

use bytes::Bytes;
use mcu_pipeline::{MIX, MixCodec, VideoProfile};
use mcu_sfu::{
    forwarder::{Forwarder, ForwarderConfig, ForwarderStats, Output, SubscriberId, TrackId},
    keyframe::Codec,
};
use rtc::rtp_transceiver::rtp_sender::{RTCRtpCodec, RtpCodecKind};
use tokio::sync::mpsc;

use crate::{
    counters::Counters,
    media::{
        events::{Events, TrackInfo},
        tap::{Offered, Tap},
    },
    transport::rtc::{codec_family, opus_track_codec},
};

/// Packets queued per subscriber track before its packets are dropped.
pub(crate) const SINK_QUEUE: usize = 512;
/// Keyframe requests to the composite's own encoders at most this often (publishers: 500 ms).
const COMPOSITE_PLI_INTERVAL: Duration = Duration::from_millis(100);

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
    pub(super) extmap: Arc<HashMap<u8, &'static str>>,
    pub(super) expected_tracks: usize,
    pub(crate) tracks: Vec<PublishedTrack>,
    /// The rids of its simulcast video, lowest first (empty without simulcast).
    pub(super) simulcast: Vec<String>,
}

pub(super) struct SinkEntry {
    pub(super) sub: SubscriberId,
    pub(super) tx: mpsc::Sender<Bytes>,
    /// The subscriber's payload type, extension ids (publisher → subscriber) and clock rate,
    /// for the direct send path.
    pub(super) pt: u8,
    pub(super) ext_ids: Arc<[(u8, u8)]>,
    pub(super) clock_rate: u32,
    /// Set once the connection is up and its keys known: packets bypass `tx` and the
    /// `webrtc` crate (`fastpath`).
    pub(super) direct: Option<Arc<crate::transport::fastpath::DirectOut>>,
}

/// One room's forwarding state.
pub(super) struct Media {
    pub(super) fwd: Forwarder,
    /// Subscriber track queues, by the SSRC the forwarder writes.
    pub(super) sinks: HashMap<u32, SinkEntry>,
    /// Subscribers paused for a full queue, rechecked by the room's timer.
    pub(super) backlogged: HashMap<SubscriberId, Vec<u32>>,
    /// Keyframe requests to each publisher track.
    pub(super) feedback: HashMap<TrackId, mpsc::UnboundedSender<u32>>,
    /// Each published track's SSRC.
    pub(super) ssrcs: HashMap<TrackId, u32>,
    /// The composite's canvas tracks (`_mix/canvas-N`) published now.
    pub(super) canvases: Vec<TrackId>,
    /// The composite's subscriptions to simulcast tracks (one layer of each, switched at
    /// keyframes by the forwarder like any subscriber's), by the SSRC it writes.
    pub(super) taps: HashMap<u32, TapSink>,
    /// WHEP sessions by subscriber: who views, and the tracks wired (track, SSRC written).
    pub(super) viewers: HashMap<SubscriberId, Viewer>,
    /// What viewers chose over the WebSocket (viewer, track) → `None`: not received,
    /// `Some(layer)`: received up to that simulcast layer.
    pub(super) choices: HashMap<(String, TrackId), Option<usize>>,
}

pub(super) struct Viewer {
    pub(super) name: String,
    pub(super) wired: Vec<(TrackId, u32)>,
    /// Forwarding started (the connection is up).
    pub(super) started: bool,
}

/// Where the forwarder's packets for the composite's subscription to a simulcast track go.
pub(super) struct TapSink {
    pub(super) sub: SubscriberId,
    pub(super) track: PublishedTrack,
    pub(super) participant: String,
    /// The highest layer the composite wants (the smallest that fills its tile).
    pub(super) cap: usize,
}

/// A room of the SFU.
pub struct Room {
    /// Its name.
    pub name: String,
    /// The forwarder and where its packets go.
    pub(super) media: Mutex<Media>,
    /// Who is in the room (changed only through [`Room::members_mut`]).
    members: Mutex<Members>,
    /// Bumped on every change of `members`, so the composite copies them only then.
    members_version: AtomicU64,
    /// Receiving sessions (WHEP viewers, MCU participants).
    pub(super) subscribers: AtomicU64,
    pub(super) counters: Arc<Counters>,
    /// Copies of every publisher packet for the room composite, while it runs (read per packet,
    /// so not under `members`).
    pub(super) mcu_tap: Mutex<Option<Arc<Tap>>>,
    /// Created through the control API: stays when empty, until deleted.
    pub(crate) persistent: AtomicBool,
    /// Set when the room is deleted: its composite stops at once.
    pub(crate) closed: AtomicBool,
    /// Participants at most (0: the server's limit).
    pub(crate) max_participants: AtomicUsize,
    /// What operators set: the composite's layout and the audio gain matrix.
    pub(super) control: Mutex<Control>,
    /// Bumped on every change of `control`, so the composite copies it only then.
    pub(super) control_version: AtomicU64,
    /// The server's event stream.
    pub(crate) events: Arc<Events>,
    /// Recordings running in this room.
    pub(super) recordings: Mutex<Vec<Arc<crate::media::record::Session>>>,
    /// Bumped when `recordings` changes, so the composite copies the list only then.
    pub(super) recordings_version: AtomicU64,
}

/// Who is in a room, in one place: publishers and MCU participants by name (the composite
/// too, as [`MIX`], while it runs), the composite's SSRCs, and what each MCU participant
/// receives of it. Read with [`Room::members`]; every change goes through
/// [`Room::members_mut`], which moves the version the composite reads.
#[derive(Default)]
pub(crate) struct Members {
    /// Publishers and MCU participants by name.
    pub(crate) participants: HashMap<String, Participant>,
    /// The composite's video and audio SSRCs, while it runs.
    pub(super) mix: Option<(u32, u32)>,
    /// Keyframe requests to the composite's encoders (by the SSRC asked), while it runs.
    mix_keyframes: Option<mpsc::UnboundedSender<u32>>,
    /// Where the composite draws and mixes (`gpu` or `cpu` each), while it runs.
    pub(crate) paths: Option<(&'static str, &'static str)>,
    /// MCU participants (`POST /mcu/{room}`, SIP legs): each hears its own mix and sees its
    /// canvas on tracks of its own.
    pub(super) listeners: HashMap<String, MixListener>,
}

/// What an MCU participant receives of the composite.
pub(super) struct MixListener {
    /// The SSRC of its own mix (everyone but itself).
    audio_ssrc: u32,
    /// The SSRC of its picture.
    video_ssrc: u32,
    /// Its picture's encode, when not the room's (SIP phones).
    pub(super) profile: Option<VideoProfile>,
    /// A SIP leg (its mix ends up as narrowband G.711 mostly).
    pub(super) phone: bool,
    /// The forwarder subscription that sends its picture (subscriber, SSRC), once it started:
    /// it subscribes to `_mix/video-for-{name}`, a track nothing is sent on, and is moved to
    /// the canvas track the composite shows it ([`Room::show_canvas`]).
    picture: Option<(SubscriberId, u32)>,
}

impl Members {
    /// Publishers, the composite not counted.
    pub(crate) fn people(&self) -> impl Iterator<Item = (&String, &Participant)> {
        self.participants.iter().filter(|(k, _)| k.as_str() != MIX)
    }
}

/// The room's membership, locked for a change; the version moves when it is dropped.
pub(crate) struct MembersMut<'a> {
    guard: parking_lot::MutexGuard<'a, Members>,
    version: &'a AtomicU64,
}

impl std::ops::Deref for MembersMut<'_> {
    type Target = Members;
    fn deref(&self) -> &Members {
        &self.guard
    }
}

impl std::ops::DerefMut for MembersMut<'_> {
    fn deref_mut(&mut self) -> &mut Members {
        &mut self.guard
    }
}

impl Drop for MembersMut<'_> {
    fn drop(&mut self) {
        self.version.fetch_add(1, Ordering::Release);
    }
}

/// The membership as the composite reads it, copied when its version moves.
#[derive(Default, Clone)]
pub struct MembersView {
    /// Tracks published by real participants.
    pub live_tracks: HashSet<TrackId>,
    /// MCU participants (`video_watched` not filled in: the forwarder knows).
    pub listeners: Vec<mcu_pipeline::Listener>,
    /// The composite's video and audio SSRCs (zero when it is not running).
    pub room_ssrcs: (u32, u32),
    /// Publishers, the composite not counted.
    pub publishers: usize,
}

/// Operator settings of a room (the engine's).
pub use mcu_pipeline::Control;

impl Room {
    /// The server's counters (shared by every room).
    pub fn counters(&self) -> &Counters {
        &self.counters
    }

    pub(super) fn new(name: &str, counters: Arc<Counters>, events: Arc<Events>) -> Arc<Room> {
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
                canvases: Vec::new(),
                taps: HashMap::new(),
                viewers: HashMap::new(),
                choices: HashMap::new(),
            }),
            mcu_tap: Mutex::new(None),
            members: Mutex::default(),
            members_version: AtomicU64::new(1),
            persistent: AtomicBool::new(false),
            closed: AtomicBool::new(false),
            max_participants: AtomicUsize::new(0),
            control: Mutex::default(),
            control_version: AtomicU64::new(1),
            events,
            recordings: Mutex::default(),
            recordings_version: AtomicU64::new(1),
            subscribers: AtomicU64::new(0),
            counters,
        })
    }

    pub(super) fn lock(&self) -> parking_lot::MutexGuard<'_, Media> {
        self.media.lock()
    }

    /// Runs the forwarder on one input and delivers what it produces.
    pub(super) fn drive(&self, now: Instant, f: impl FnOnce(&mut Forwarder, Instant)) {
        let mut m = self.lock();
        f(&mut m.fwd, now);
        self.flush(&mut m, now);
    }

    pub(super) fn flush(&self, m: &mut Media, now: Instant) {
        while let Some(out) = m.fwd.poll_output() {
            match out {
                Output::Rtp { to, packet } => {
                    let ssrc = u32::from_be_bytes([packet[8], packet[9], packet[10], packet[11]]);
                    if let Some(t) = m.taps.get(&ssrc) {
                        self.tap(&t.track, &t.participant, Bytes::from(packet));
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
    pub(super) fn tick(&self, now: Instant) {
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
        let m = self.members();
        (m.people().count(), m.people().map(|(_, p)| p.tracks.len()).sum(), self.subscribers.load(Ordering::Relaxed))
    }

    /// Changes the operator settings (and tells the composite).
    pub fn update_control<R>(&self, f: impl FnOnce(&mut Control) -> R) -> R {
        let mut c = self.control.lock();
        let r = f(&mut c);
        self.control_version.fetch_add(1, Ordering::Release);
        r
    }

    /// Adds or removes a running recording.
    pub fn set_recording(&self, session: &Arc<crate::media::record::Session>, running: bool) {
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
    pub fn recordings_if_newer(&self, seen: u64) -> Option<(u64, Vec<Arc<crate::media::record::Session>>)> {
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

    /// Who is in the room, locked for reading.
    pub(crate) fn members(&self) -> parking_lot::MutexGuard<'_, Members> {
        self.members.lock()
    }

    /// Who is in the room, locked for a change (the composite sees it at its next pass).
    pub(crate) fn members_mut(&self) -> MembersMut<'_> {
        MembersMut { guard: self.members.lock(), version: &self.members_version }
    }

    /// The membership as the composite reads it, when its version is newer than `seen`.
    pub fn members_if_newer(&self, seen: u64) -> Option<(u64, MembersView)> {
        // Versions start at 1, so a reader that has seen nothing (0) always gets a copy.
        let v = self.members_version.load(Ordering::Acquire);
        if v == seen {
            return None;
        }
        let m = self.members();
        let view = MembersView {
            live_tracks: m.people().flat_map(|(_, p)| p.tracks.iter().map(|t| t.id.clone())).collect(),
            listeners: m
                .listeners
                .iter()
                .map(|(name, l)| mcu_pipeline::Listener {
                    name: name.clone(),
                    audio_ssrc: l.audio_ssrc,
                    video_ssrc: l.video_ssrc,
                    video_watched: false,
                    profile: l.profile,
                    phone: l.phone,
                })
                .collect(),
            room_ssrcs: m.mix.unwrap_or((0, 0)),
            publishers: m.people().count(),
        };
        Some((v, view))
    }

    /// Registers the composite's tracks as a publisher's and starts copying packets to it.
    /// False when it runs already.
    /// The composite's renderer (`render`) or mixer moved to the CPU after a GPU fault.
    pub fn composite_moved_to_cpu(&self, render: bool) {
        let mut members = self.members_mut();
        if let Some(p) = members.paths.as_mut() {
            if render {
                p.0 = "cpu";
            } else {
                p.1 = "cpu";
            }
        }
    }

    pub fn start_mix(
        &self,
        tap: Tap,
        tracks: Vec<PublishedTrack>,
        keyframes: mpsc::UnboundedSender<u32>,
        video_ssrc: u32,
        audio_ssrc: u32,
        paths: (&'static str, &'static str),
    ) -> bool {
        let mut members = self.members_mut();
        if members.mix.is_some() {
            return false;
        }
        members.mix = Some((video_ssrc, audio_ssrc));
        members.paths = Some(paths);
        members.mix_keyframes = Some(keyframes.clone());
        *self.mcu_tap.lock() = Some(Arc::new(tap));
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
        members.participants.insert(
            MIX.into(),
            Participant { session: String::new(), mcu: false, extmap: Arc::default(), expected_tracks: tracks.len(), tracks, simulcast: Vec::new() },
        );
        true
    }

    /// Stops copying packets to the composite and unpublishes its tracks.
    pub fn stop_mix(&self) {
        *self.mcu_tap.lock() = None;
        let p = {
            let mut members = self.members_mut();
            members.mix_keyframes = None;
            members.mix = None;
            members.paths = None;
            members.participants.remove(MIX)
        };
        let mut m = self.lock();
        let canvases = std::mem::take(&mut m.canvases);
        for id in p.map(|p| p.tracks).unwrap_or_default().into_iter().map(|t| t.id).chain(canvases) {
            m.fwd.unpublish(&id);
            m.feedback.remove(&id);
            m.ssrcs.remove(&id);
        }
    }

    /// Publishes a canvas track of the composite (its packets carry `ssrc`); keyframe requests
    /// for it reach the composite's encoders.
    pub fn publish_canvas(&self, track: &TrackId, ssrc: u32, codec: MixCodec) {
        let keyframes = self.members().mix_keyframes.clone();
        let mut m = self.lock();
        // The codec as the room's own composite track names it (one mapping for both).
        let family = codec_family(&mix_tracks(codec)[0].codec.mime_type).unwrap_or(Codec::Vp8);
        if let Err(e) = m.fwd.publish(track.clone(), family, 90_000, &[(ssrc, 0)]) {
            tracing::warn!(%track, error = %e, "canvas track not published");
            return;
        }
        let _ = m.fwd.set_pli_interval(track, COMPOSITE_PLI_INTERVAL);
        m.ssrcs.insert(track.clone(), ssrc);
        if let Some(tx) = keyframes {
            m.feedback.insert(track.clone(), tx);
        }
        m.canvases.push(track.clone());
    }

    /// Unpublishes a canvas track (its viewers were moved on: their subscriptions follow).
    pub fn unpublish_canvas(&self, track: &TrackId) {
        let mut m = self.lock();
        m.fwd.unpublish(track);
        m.feedback.remove(track);
        m.ssrcs.remove(track);
        m.canvases.retain(|t| t != track);
    }

    /// An MCU participant's picture is now the canvas `track`: its subscription moves there at
    /// the track's next keyframe (asked for now). False while its connection has no
    /// subscription yet.
    pub fn show_canvas(&self, listener: &str, track: &TrackId) -> bool {
        let now = Instant::now();
        let mut members = self.members_mut();
        let Some(l) = members.listeners.get_mut(listener) else { return false };
        let mut m = self.lock();
        if l.picture.is_none_or(|(sub, ssrc)| !m.fwd.sends_as(sub, ssrc)) {
            l.picture = m.fwd.subscriptions_to(&mcu_pipeline::video_track_for(listener)).first().copied();
        }
        let Some((sub, ssrc)) = l.picture else { return false };
        let moved = m.fwd.switch_track(now, sub, ssrc, track).is_ok();
        self.flush(&mut m, now);
        moved
    }

    /// Whether an MCU participant's picture has a receiver (its connection is up).
    pub fn picture_watched(&self, listener: &str) -> bool {
        let picture = self.members().listeners.get(listener).and_then(|l| l.picture);
        let m = self.lock();
        picture.is_some_and(|(sub, ssrc)| m.fwd.sends_as(sub, ssrc)) || m.fwd.subscribers_of(&mcu_pipeline::video_track_for(listener)) > 0
    }

    /// Registers an MCU participant's own video and audio as tracks of the composite: the
    /// canvas it sees (the room's, or its personalised one) and its mix (everyone but itself).
    /// Their SSRCs are what the engine writes for that participant. `profile`: its picture's
    /// encode when not the room's; `phone`: a SIP leg.
    pub fn add_mix_listener(&self, name: &str, codec: MixCodec, profile: Option<VideoProfile>, phone: bool) -> Vec<PublishedTrack> {
        let (audio_ssrc, video_ssrc) = (rand::random::<u32>() | 1, rand::random::<u32>() | 1);
        let mut tracks = mix_tracks(codec);
        tracks[0].id = Arc::from(format!("{MIX}/video-for-{name}"));
        tracks[1].id = Arc::from(format!("{MIX}/audio-for-{name}"));
        let mut members = self.members_mut();
        let mut m = self.lock();
        for (t, ssrc) in tracks.iter().zip([video_ssrc, audio_ssrc]) {
            let family = codec_family(&t.codec.mime_type).unwrap_or(Codec::Audio);
            if let Err(e) = m.fwd.publish(t.id.clone(), family, t.codec.clock_rate, &[(ssrc, 0)]) {
                tracing::warn!(error = %e, "listener track not published");
            }
            let _ = m.fwd.set_pli_interval(&t.id, COMPOSITE_PLI_INTERVAL);
            m.ssrcs.insert(t.id.clone(), ssrc);
            if t.kind == RtpCodecKind::Video
                && let Some(tx) = &members.mix_keyframes
            {
                m.feedback.insert(t.id.clone(), tx.clone());
            }
        }
        drop(m);
        members.listeners.insert(name.into(), MixListener { audio_ssrc, video_ssrc, profile, phone, picture: None });
        tracks
    }

    /// Removes an MCU participant's own video and mix.
    pub fn remove_mix_listener(&self, name: &str) {
        if self.members_mut().listeners.remove(name).is_some() {
            let mut m = self.lock();
            for kind in ["video", "audio"] {
                let id = format!("{MIX}/{kind}-for-{name}");
                m.fwd.unpublish(&id);
                m.feedback.remove(id.as_str());
                m.ssrcs.remove(id.as_str());
            }
        }
    }

    /// The composite's video and audio SSRCs (zero when it is not running).
    pub fn mix_ssrcs(&self) -> (u32, u32) {
        self.members().mix.unwrap_or((0, 0))
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
    pub fn ingest(&self, track: &PublishedTrack, participant: &str, raw: Bytes) {
        self.counters.received.fetch_add(1, Ordering::Relaxed);
        if track.muted.load(Ordering::Relaxed) {
            return;
        }
        self.counters.received_bytes.fetch_add(raw.len() as u64, Ordering::Relaxed);
        self.drive(Instant::now(), |fwd, now| {
            let _ = fwd.handle_rtp(now, &raw);
        });
        // A simulcast track reaches the composite through its forwarder subscription (one layer).
        if track.layers <= 1
            && let Some(tap) = self.mcu_tap.lock().as_ref()
        {
            // A composite that falls behind loses packets (its decoder then asks for a
            // keyframe); the forwarding path never waits for it.
            if tap.offer(&track.id, participant, &track.codec.mime_type, &raw) == Offered::Full {
                self.counters.dropped_composite.fetch_add(1, Ordering::Relaxed);
            }
        }
    }

    /// A packet of the composite's subscription to a simulcast track.
    fn tap(&self, track: &PublishedTrack, participant: &str, raw: Bytes) {
        let Some(tap) = self.mcu_tap.lock().clone() else { return };
        if tap.offer(&track.id, participant, &track.codec.mime_type, &raw) == Offered::Full {
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

    /// Receiving sessions (WHEP viewers, MCU participants).
    pub fn subscriber_sessions(&self) -> u64 {
        self.subscribers.load(Ordering::Relaxed)
    }
}

/// The tracks the composite publishes into its room.
pub fn mix_tracks(codec: MixCodec) -> Vec<PublishedTrack> {
    let video = match codec {
        MixCodec::Vp8 => RTCRtpCodec { mime_type: "video/VP8".into(), clock_rate: 90000, channels: 0, ..Default::default() },
        MixCodec::H264 => RTCRtpCodec {
            mime_type: "video/H264".into(),
            clock_rate: 90000,
            channels: 0,
            sdp_fmtp_line: "level-asymmetry-allowed=1;packetization-mode=1;profile-level-id=42e01f".into(),
            ..Default::default()
        },
        MixCodec::Av1 => RTCRtpCodec { mime_type: "video/AV1".into(), clock_rate: 90000, channels: 0, ..Default::default() },
    };
    vec![
        PublishedTrack {
            id: Arc::from(format!("{MIX}/video-0")),
            kind: RtpCodecKind::Video,
            codec: video,
            extmap: Arc::default(),
            muted: Arc::default(),
            layers: 1,
        },
        PublishedTrack {
            id: Arc::from(format!("{MIX}/audio-0")),
            kind: RtpCodecKind::Audio,
            codec: opus_track_codec(),
            extmap: Arc::default(),
            muted: Arc::default(),
            layers: 1,
        },
    ]
}
