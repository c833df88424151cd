//! Room events: one ordered stream for the whole server, numbered as they are emitted. The
//! WebSocket protocol tells SFU clients when a composite appears; gRPC `WatchEvents` streams
//! them all to operators.

use std::time::{SystemTime, UNIX_EPOCH};

use parking_lot::Mutex;

use mcu_compositor::RoomLayout;
use tokio::sync::broadcast;

/// A published track as the control API shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TrackInfo {
    /// Room-unique id, `participant/kind-n`.
    pub id: String,
    /// "audio" or "video".
    pub kind: &'static str,
    /// MIME type.
    pub codec: String,
    /// Whether forwarding and mixing are stopped.
    pub muted: bool,
    /// Simulcast layers (1 without simulcast).
    pub layers: u8,
}

/// What happened.
#[derive(Debug, Clone, PartialEq)]
pub enum EventKind {
    /// A publisher's or MCU participant's session was accepted.
    ParticipantJoined {
        /// Who.
        participant: String,
        /// An MCU participant (publishes and receives its own mix).
        mcu: bool,
    },
    /// A participant's session ended (DELETE, failure, removal).
    ParticipantLeft {
        /// Who.
        participant: String,
    },
    /// A participant's track's first packet arrived.
    TrackPublished {
        /// Whose.
        participant: String,
        /// The track.
        track: TrackInfo,
    },
    /// The room mix's loudest speaker changed.
    ActiveSpeaker {
        /// Who speaks now.
        participant: String,
        /// Who spoke before.
        previous: Option<String>,
    },
    /// The room's (or one viewer's) layout was set.
    LayoutChanged {
        /// The viewer, for a personalised layout.
        viewer: Option<String>,
        /// The new layout.
        layout: RoomLayout,
    },
    /// The room composite started (true) or stopped (false).
    MixAvailable {
        /// Whether it runs.
        available: bool,
    },
    /// A track was muted or unmuted by an operator.
    TrackMuted {
        /// The track, with its new state.
        track: TrackInfo,
    },
    /// The room is gone.
    RoomClosed,
    /// A SIP participant pressed a key (RFC 4733 telephone event).
    Dtmf {
        /// Who.
        participant: String,
        /// `0`-`9`, `*`, `#`, `A`-`D`.
        digit: char,
    },
    /// A recording started, stopped or failed (or one of its files did).
    Recording(crate::media::record::Snapshot),
}

/// One event of one room.
#[derive(Debug, Clone, PartialEq)]
pub struct RoomEvent {
    /// The room.
    pub room: String,
    /// Increases by one per event of the server.
    pub seq: u64,
    /// Wall clock, Unix milliseconds.
    pub unix_ms: i64,
    /// What happened.
    pub kind: EventKind,
}

/// The server's event stream.
pub struct Events {
    tx: broadcast::Sender<RoomEvent>,
    seq: Mutex<u64>,
}

impl Default for Events {
    fn default() -> Events {
        Events { tx: broadcast::channel(1024).0, seq: Mutex::new(0) }
    }
}

impl Events {
    /// Numbers and sends an event. Numbering and sending under one lock keeps the stream in
    /// sequence order whichever thread emits.
    pub fn emit(&self, room: &str, kind: EventKind) {
        let mut seq = self.seq.lock();
        *seq += 1;
        let unix_ms = SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_millis() as i64).unwrap_or(0);
        let _ = self.tx.send(RoomEvent { room: room.to_string(), seq: *seq, unix_ms, kind });
    }

    /// A new receiver of every event from now on.
    pub fn subscribe(&self) -> broadcast::Receiver<RoomEvent> {
        self.tx.subscribe()
    }
}
