//! The application: what the server runs beside the rooms and over them. It owns the
//! recordings (started by operators or automatically from a room's first publisher, ended with
//! the composite that feeds them), the SIP gateway, and the control operations the gRPC API
//! and the CLI mirror (create and delete rooms, list and remove participants, mute tracks, set
//! layouts). Transport-free: the gRPC service ([`crate::front::grpc`]) maps these results to
//! status codes. The rooms ([`crate::media`]) know nothing of it: they tell it what it must
//! hear through [`RoomHooks`].

use std::{
    path::PathBuf,
    sync::{Arc, atomic::Ordering},
};

use mcu_compositor::RoomLayout;
use mcu_pipeline::{McuConfig, VideoProfile};
use parking_lot::Mutex;

use crate::{
    media::{
        events::{EventKind, TrackInfo},
        record::{FileLayout, Session},
        room::Room,
        sessions::{RoomHooks, Sfu},
    },
    sip::Gateway,
};

/// Rooms recorded automatically (`*`: all), the composite's settings, and the recordings' own
/// encode.
pub type AutoRecord = (Vec<String>, McuConfig, Option<VideoProfile>);

/// The application: the rooms, the recordings, the SIP gateway.
pub struct App {
    /// The rooms and the sessions in them.
    pub sfu: Arc<Sfu>,
    /// Where recordings go.
    recording_dir: PathBuf,
    /// Every recording since the start (the newest 1000).
    recordings: Mutex<Vec<Arc<Session>>>,
    /// Rooms recorded from their first publisher.
    auto_record: Option<AutoRecord>,
    /// The SIP gateway, when it runs (the control API edits its dial plan).
    sip: Mutex<Option<Arc<Gateway>>>,
}

impl App {
    /// The application over `sfu`; it hears the rooms from now on.
    pub fn new(sfu: Arc<Sfu>, recording_dir: PathBuf, auto_record: Option<AutoRecord>) -> Arc<App> {
        let app = Arc::new(App { sfu, recording_dir, recordings: Mutex::default(), auto_record, sip: Mutex::default() });
        let hooks: Arc<dyn RoomHooks> = app.clone();
        app.sfu.set_hooks(Arc::downgrade(&hooks));
        app
    }

    /// The SIP gateway, once started.
    pub fn set_sip(&self, gateway: Option<Arc<Gateway>>) {
        *self.sip.lock() = gateway;
    }

    /// The SIP gateway, when it runs.
    pub fn sip(&self) -> Option<Arc<Gateway>> {
        self.sip.lock().clone()
    }
}

impl RoomHooks for App {
    fn published(&self, room: &Arc<Room>) {
        self.auto_record(room);
    }

    fn composite_ended(&self, room: &Arc<Room>) {
        // Recordings end with the composite that feeds them, their files finished.
        self.stop_recordings(Some(&room.name));
    }
}

/// Why a control request fails.
#[derive(Debug, thiserror::Error)]
pub enum ControlError {
    /// No such room, participant or track.
    #[error("{0}")]
    NotFound(String),
    /// The room exists.
    #[error("{0}")]
    AlreadyExists(String),
    /// A server limit.
    #[error("{0}")]
    Limit(String),
    /// The server cannot do it as configured (an unwritable recording directory).
    #[error("{0}")]
    Precondition(String),
}

/// A room as the control API shows it.
pub struct RoomSummary {
    /// Its name.
    pub name: String,
    /// Publishing participants.
    pub participants: usize,
    /// Receiving sessions.
    pub subscribers: u64,
    /// Whether the composite runs.
    pub composite: bool,
    /// Created through the API.
    pub persistent: bool,
    /// Its participant limit (0: the server's).
    pub max_participants: usize,
    /// Its composite layout.
    pub layout: RoomLayout,
    /// A classroom: MCU participants see everyone but themselves.
    pub everyone_but_me: bool,
    /// Where its composite draws and mixes, while it runs.
    pub paths: Option<(&'static str, &'static str)>,
}

/// A participant as the control API shows it.
pub struct ParticipantSummary {
    /// Its name.
    pub name: String,
    /// An MCU participant.
    pub mcu: bool,
    /// Its tracks.
    pub tracks: Vec<TrackInfo>,
}

impl App {
    /// A room by name.
    pub fn find_room(&self, name: &str) -> Result<Arc<Room>, ControlError> {
        self.sfu.room(name, false).map_err(|_| ControlError::NotFound(format!("no room \"{name}\"")))
    }

    /// Creates a room that stays until deleted; `everyone_but_me` makes it a classroom or not
    /// (`None`: the server's default).
    pub fn create_room(
        &self,
        name: &str,
        max_participants: usize,
        layout: Option<RoomLayout>,
        everyone_but_me: Option<bool>,
    ) -> Result<Arc<Room>, ControlError> {
        if self.sfu.room(name, false).is_ok() {
            return Err(ControlError::AlreadyExists(format!("room \"{name}\" exists")));
        }
        let room = self.sfu.room(name, true).map_err(|e| ControlError::Limit(e.to_string()))?;
        room.persistent.store(true, Ordering::Relaxed);
        room.max_participants.store(max_participants.min(self.sfu.limits.max_participants), Ordering::Relaxed);
        if let Some(layout) = layout {
            room.update_control(|c| c.layout = layout);
        }
        if let Some(on) = everyone_but_me {
            room.update_control(|c| c.everyone_but_me = on);
        }
        tracing::info!(room = name, "room created");
        Ok(room)
    }

    /// What the API shows of a room.
    pub fn summary(&self, room: &Room) -> RoomSummary {
        let (participants, _, subscribers) = room.counts();
        let control = room.control();
        RoomSummary {
            name: room.name.clone(),
            participants,
            subscribers,
            composite: room.mix_ssrcs() != (0, 0),
            persistent: room.persistent.load(Ordering::Relaxed),
            max_participants: room.max_participants.load(Ordering::Relaxed),
            layout: control.layout,
            everyone_but_me: control.everyone_but_me,
            paths: room.members().paths,
        }
    }

    /// Every room, by name.
    pub fn summaries(&self) -> Vec<RoomSummary> {
        let mut rooms: Vec<RoomSummary> = self.sfu.rooms().iter().map(|r| self.summary(r)).collect();
        rooms.sort_by(|a, b| a.name.cmp(&b.name));
        rooms
    }

    /// Ends every session of a room, stops its composite and forgets it. Returns the sessions
    /// ended.
    pub async fn delete_room(&self, name: &str) -> Result<usize, ControlError> {
        let room = self.find_room(name)?;
        room.closed.store(true, Ordering::Relaxed);
        let ids = self.sfu.sessions_in(&room, None);
        for id in &ids {
            let _ = self.sfu.end(id).await;
        }
        if self.sfu.forget_room(&room) {
            self.sfu.events.emit(name, EventKind::RoomClosed);
        }
        tracing::info!(room = name, sessions = ids.len(), "room deleted");
        Ok(ids.len())
    }

    /// The participants of a room (the composite not listed), by name.
    pub fn participants_of(&self, room: &Room) -> Vec<ParticipantSummary> {
        let mut out: Vec<ParticipantSummary> = room
            .members()
            .people()
            .map(|(k, p)| ParticipantSummary { name: k.clone(), mcu: p.mcu, tracks: p.tracks.iter().map(|t| t.info()).collect() })
            .collect();
        out.sort_by(|a, b| a.name.cmp(&b.name));
        out
    }

    /// Ends a participant's session.
    pub async fn remove_participant(&self, room: &Arc<Room>, participant: &str) -> Result<(), ControlError> {
        let ids = self.sfu.sessions_in(room, Some(participant));
        if ids.is_empty() {
            return Err(ControlError::NotFound(format!("no participant \"{participant}\" in \"{}\"", room.name)));
        }
        for id in ids {
            let _ = self.sfu.end(&id).await;
        }
        tracing::info!(room = %room.name, participant, "participant removed");
        Ok(())
    }

    /// Stops or resumes forwarding and mixing a track. A video track that resumes asks its
    /// publisher for a keyframe so viewers see it at once.
    pub fn mute_track(&self, room: &Arc<Room>, track: &str, muted: bool) -> Result<TrackInfo, ControlError> {
        let found = room.members().people().flat_map(|(_, p)| p.tracks.iter()).find(|t| &*t.id == track).cloned();
        let t = found.ok_or_else(|| ControlError::NotFound(format!("no track \"{track}\" in \"{}\"", room.name)))?;
        let was = t.muted.swap(muted, Ordering::Relaxed);
        let info = t.info();
        if was != muted {
            if !muted && info.kind == "video" {
                room.request_keyframe(&t.id);
            }
            tracing::info!(room = %room.name, track, muted, "track mute changed");
            self.sfu.events.emit(&room.name, EventKind::TrackMuted { track: info.clone() });
        }
        Ok(info)
    }

    /// Sets a room's composite layout, or one MCU participant's own (`None` for a viewer: back
    /// to the room's). Applied at the composite's next frame.
    pub fn set_layout(&self, room: &Room, viewer: Option<&str>, layout: Option<RoomLayout>) {
        let shown = room.update_control(|c| match (viewer, layout) {
            (None, Some(l)) => {
                c.layout = l;
                c.layout.clone()
            }
            (Some(v), Some(l)) => {
                c.viewer_layouts.insert(v.to_string(), l.clone());
                l
            }
            (Some(v), None) => {
                c.viewer_layouts.remove(v);
                c.layout.clone()
            }
            (None, None) => c.layout.clone(),
        });
        self.sfu.events.emit(&room.name, EventKind::LayoutChanged { viewer: viewer.map(str::to_string), layout: shown });
    }
}

impl App {
    /// Starts recording a room's composite (and with `tracks`, each track) and the composite
    /// itself if it is not running.
    /// `profile`: the composite's encode for this file, when not the live one's.
    pub fn start_recording(
        &self,
        room: &Arc<Room>,
        tracks: bool,
        filename: Option<&str>,
        mcu: McuConfig,
        profile: Option<VideoProfile>,
    ) -> Result<Arc<Session>, ControlError> {
        let dir = &self.recording_dir;
        let profile = profile.filter(|p| *p != VideoProfile::of(&mcu));
        let video = profile.map(|p| p.codec).unwrap_or(mcu.codec).video_codec();
        let layout = FileLayout { video: Some(video), audio_channels: Some(1) };
        let participants: Vec<String> = self.participants_of(room).into_iter().map(|p| p.name).collect();
        let events = self.sfu.events.clone();
        let session = Session::start(dir, &room.name, filename, tracks, layout, profile, participants, move |s| {
            events.emit(&s.room, EventKind::Recording(s.snapshot()));
        })
        .map_err(|e| {
            tracing::error!(room = %room.name, dir = %dir.display(), error = %e, "recording not started");
            ControlError::Precondition(format!("the recording directory {} is not writable: {e}", dir.display()))
        })?;
        self.sfu.ensure_mix(room, mcu);
        room.set_recording(&session, true);
        {
            let mut all = self.recordings.lock();
            all.push(session.clone());
            let excess = all.len().saturating_sub(1000);
            all.drain(..excess);
        }
        tracing::info!(room = %room.name, id = %session.id, tracks, profile = ?session.profile, "recording started");
        self.sfu.events.emit(&room.name, EventKind::Recording(session.snapshot()));
        Ok(session)
    }

    /// Starts recording a room configured for automatic recording, unless it records already.
    fn auto_record(&self, room: &Arc<Room>) {
        let Some((rooms, mcu, profile)) = self.auto_record.clone() else { return };
        if !rooms.iter().any(|r| r == "*" || *r == room.name) || self.recordings_of(Some(&room.name)).iter().any(|s| s.active()) {
            return;
        }
        if let Err(e) = self.start_recording(room, true, None, mcu, profile) {
            tracing::error!(room = %room.name, error = %e, "automatic recording not started");
        }
    }

    /// A recording by id.
    pub fn recording(&self, id: &str) -> Result<Arc<Session>, ControlError> {
        let all = self.recordings.lock();
        all.iter().find(|s| s.id == id).cloned().ok_or_else(|| ControlError::NotFound(format!("no recording \"{id}\"")))
    }

    /// Finishes a recording's files (blocking while they close).
    pub fn stop_recording(&self, session: &Arc<Session>) {
        if let Ok(room) = self.find_room(&session.room) {
            room.set_recording(session, false);
        }
        if session.stop() {
            tracing::info!(room = %session.room, id = %session.id, "recording stopped");
            self.sfu.events.emit(&session.room, EventKind::Recording(session.snapshot()));
        }
    }

    /// Recordings of a room (every room when `None`), oldest first.
    pub fn recordings_of(&self, room: Option<&str>) -> Vec<Arc<Session>> {
        self.recordings.lock().iter().filter(|s| room.is_none_or(|r| s.room == r)).cloned().collect()
    }

    /// Finishes every running recording (shutdown, or a room's composite ending).
    pub fn stop_recordings(&self, room: Option<&str>) {
        for s in self.recordings_of(room) {
            if s.active() {
                self.stop_recording(&s);
            }
        }
    }
}
