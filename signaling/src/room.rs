//! The WebSocket room protocol, sans-IO: JSON messages in, JSON messages out, per connection.
//!
//! A full client opens `/ws`, sends `join` (with a token unless the server runs in development
//! mode), and then sees the room's state and presence: who is there, which tracks they
//! publish, whether an MCU mix is available. It announces its own tracks, chooses which tracks
//! it receives and at which simulcast layer, relays text messages to the room or to one
//! participant, and relays offers/answers/candidates to one peer for a direct peer-to-peer call.
//! Media itself flows over WebRTC; this module only keeps state and says who must be told what.
//!
//! The server feeds text frames to [`Hub::handle`] with the connection id and the current Unix
//! time, delivers the returned messages, and calls [`Hub::disconnect`] when a socket closes or
//! vanishes. Bad input gets an `error` message for that connection only; nothing else changes.

use std::collections::{BTreeMap, HashMap};

use serde::{Deserialize, Serialize};

use crate::auth::{AuthError, Keys, Need};

/// A WebSocket connection, numbered by the server.
pub type ConnId = u64;

/// What a published track carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Kind {
    /// Audio.
    Audio,
    /// Video.
    Video,
}

/// A track as the room sees it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TrackInfo {
    /// Unique within its participant.
    pub track_id: String,
    /// Audio or video.
    pub kind: Kind,
    /// Simulcast layers offered (1 without simulcast).
    pub layers: u8,
}

/// A participant as the room sees it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ParticipantInfo {
    /// Identity (from the token, or chosen in development mode).
    pub id: String,
    /// Display name.
    pub name: String,
    /// Published tracks.
    pub tracks: Vec<TrackInfo>,
}

/// Messages from a client.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ClientMessage {
    /// Enter a room (first message).
    Join {
        /// The room.
        room: String,
        /// Access token; optional only in development mode.
        #[serde(default)]
        token: Option<String>,
        /// Identity to use in development mode (ignored when a token names one).
        #[serde(default)]
        identity: Option<String>,
        /// Display name.
        #[serde(default)]
        name: Option<String>,
    },
    /// Announce a track.
    Publish {
        /// The track.
        track: TrackInfo,
    },
    /// Withdraw a track.
    Unpublish {
        /// Its id.
        track_id: String,
    },
    /// Receive these tracks of that participant and not its others (replaces earlier choices
    /// for it). Applies to the WHEP sessions the client opened with the same identity.
    Subscribe {
        /// The publisher.
        participant: String,
        /// Its track ids.
        track_ids: Vec<String>,
    },
    /// Stop receiving a track.
    Unsubscribe {
        /// The publisher.
        participant: String,
        /// The track.
        track_id: String,
    },
    /// Cap the simulcast layer received for a track (0 is the lowest; the forwarder switches
    /// at the next keyframe of the new layer).
    SetLayer {
        /// The publisher.
        participant: String,
        /// The track.
        track_id: String,
        /// Highest layer wanted (0 is the lowest).
        max_layer: u8,
    },
    /// A text message to the room, or to one participant.
    Chat {
        /// The text.
        text: String,
        /// One recipient, or everyone when absent.
        #[serde(default)]
        to: Option<String>,
    },
    /// An offer, answer or candidate for a direct peer-to-peer connection, relayed as is.
    Signal {
        /// The peer.
        to: String,
        /// Opaque to the server.
        payload: serde_json::Value,
    },
    /// Leave the room (the socket may stay open).
    Leave,
}

/// Messages to a client.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ServerMessage {
    /// You are in: the room's state.
    Joined {
        /// The room.
        room: String,
        /// Your identity.
        you: String,
        /// Everyone else, with their tracks.
        participants: Vec<ParticipantInfo>,
        /// Whether the room has an MCU mix to subscribe to.
        mix_available: bool,
    },
    /// Someone joined.
    ParticipantJoined {
        /// Who.
        participant: ParticipantInfo,
    },
    /// Someone left (or their connection vanished).
    ParticipantLeft {
        /// Who.
        id: String,
    },
    /// Someone published a track.
    TrackPublished {
        /// Who.
        participant: String,
        /// The track.
        track: TrackInfo,
    },
    /// Someone withdrew a track.
    TrackUnpublished {
        /// Who.
        participant: String,
        /// The track.
        track_id: String,
    },
    /// Your subscriptions now (after subscribe/unsubscribe/set_layer).
    Subscriptions {
        /// (publisher, track, max layer).
        tracks: Vec<(String, String, u8)>,
    },
    /// A text message.
    Chat {
        /// The sender.
        from: String,
        /// The text.
        text: String,
        /// Whether only you received it.
        private: bool,
    },
    /// A relayed peer-to-peer signal.
    Signal {
        /// The sender.
        from: String,
        /// As sent.
        payload: serde_json::Value,
    },
    /// The MCU mix of the room appeared or went away.
    MixAvailable {
        /// Whether there is one now.
        available: bool,
    },
    /// Your last message was refused.
    Error {
        /// HTTP-like status: 400 bad message, 401/403 auth, 404 unknown, 409 conflict, 413 too
        /// large, 429 over a limit.
        code: u16,
        /// What was wrong.
        message: String,
    },
}

/// Hub limits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Rooms at once.
    pub max_rooms: usize,
    /// Participants per room.
    pub max_participants: usize,
    /// Tracks per participant.
    pub max_tracks: usize,
    /// Bytes per client message.
    pub max_message_bytes: usize,
    /// Characters per chat text.
    pub max_chat_chars: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits { max_rooms: 1000, max_participants: 500, max_tracks: 8, max_message_bytes: 64 * 1024, max_chat_chars: 4000 }
    }
}

struct Member {
    info: ParticipantInfo,
    /// Its WebSocket, if it has one (a WHIP/WHEP/SIP participant may have none).
    conn: Option<ConnId>,
    /// (publisher, track) → max layer.
    subscriptions: BTreeMap<(String, String), u8>,
    /// Ids of the tracks its media sessions publish (told by the server), as opposed to
    /// those it announced over the socket.
    media: Vec<String>,
}

/// A subscription choice for the server to apply to a viewer's media sessions (the WHEP
/// sessions it opened with the same identity): see [`Hub::take_media_changes`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MediaChange {
    /// Receive `track` of `publisher` up to layer `max_layer`, or not at all (`None`).
    Track {
        /// The room.
        room: String,
        /// Who chose.
        viewer: String,
        /// Whose track.
        publisher: String,
        /// The track id.
        track: String,
        /// Highest layer wanted; `None`: unsubscribed.
        max_layer: Option<u8>,
    },
    /// The viewer's socket is gone: its choices lapse (its sessions keep what they receive).
    Forget {
        /// The room.
        room: String,
        /// Who.
        viewer: String,
    },
}

#[derive(Default)]
struct Room {
    members: BTreeMap<String, Member>,
    mix_available: bool,
}

/// All rooms' signalling state.
pub struct Hub {
    keys: Keys,
    dev_mode: bool,
    limits: Limits,
    rooms: HashMap<String, Room>,
    /// Connection → (room, identity) once joined.
    conns: HashMap<ConnId, (String, String)>,
    /// Choices not yet taken by the server.
    changes: Vec<MediaChange>,
}

/// Messages to deliver: (connection, message).
pub type Outbox = Vec<(ConnId, ServerMessage)>;

fn error(conn: ConnId, code: u16, message: impl Into<String>) -> Outbox {
    vec![(conn, ServerMessage::Error { code, message: message.into() })]
}

impl Hub {
    /// A hub checking tokens with `keys`; in `dev_mode`, `join` without a token is accepted.
    pub fn new(keys: Keys, dev_mode: bool, limits: Limits) -> Hub {
        Hub { keys, dev_mode, limits, rooms: HashMap::new(), conns: HashMap::new(), changes: Vec::new() }
    }

    /// Participants in a room (for metrics and the control API).
    pub fn participants(&self, room: &str) -> Vec<ParticipantInfo> {
        self.rooms.get(room).map(|r| r.members.values().map(|m| m.info.clone()).collect()).unwrap_or_default()
    }

    /// A participant's subscriptions: (publisher, track, max layer).
    pub fn subscriptions(&self, room: &str, id: &str) -> Vec<(String, String, u8)> {
        self.rooms
            .get(room)
            .and_then(|r| r.members.get(id))
            .map(|m| m.subscriptions.iter().map(|((p, t), l)| (p.clone(), t.clone(), *l)).collect())
            .unwrap_or_default()
    }

    /// Announces that a room's MCU mix appeared or went away (tells everyone in it).
    pub fn set_mix_available(&mut self, room: &str, available: bool) -> Outbox {
        let Some(r) = self.rooms.get_mut(room) else { return Vec::new() };
        if r.mix_available == available {
            return Vec::new();
        }
        r.mix_available = available;
        r.members.values().filter_map(|m| Some((m.conn?, ServerMessage::MixAvailable { available }))).collect()
    }

    /// Handles one text frame from `conn` at `now` (Unix seconds).
    pub fn handle(&mut self, conn: ConnId, text: &str, now: u64) -> Outbox {
        if text.len() > self.limits.max_message_bytes {
            return error(conn, 413, format!("message of {} bytes exceeds {} bytes", text.len(), self.limits.max_message_bytes));
        }
        let msg: ClientMessage = match serde_json::from_str(text) {
            Ok(m) => m,
            Err(e) => return error(conn, 400, format!("bad message: {e}")),
        };
        if let ClientMessage::Join { room, token, identity, name } = msg {
            return self.join(conn, room, token, identity, name, now);
        }
        let Some((room, me)) = self.conns.get(&conn).cloned() else {
            return error(conn, 400, "join a room first");
        };
        let limits = self.limits;
        let r = self.rooms.get_mut(&room).expect("joined connections have a room");
        let others = |r: &Room, me: &str| r.members.values().filter(|m| m.info.id != me).filter_map(|m| m.conn).collect::<Vec<_>>();
        match msg {
            ClientMessage::Join { .. } => unreachable!("handled above"),
            ClientMessage::Publish { track } => {
                let member = r.members.get_mut(&me).expect("joined member exists");
                if member.info.tracks.iter().any(|t| t.track_id == track.track_id) {
                    return error(conn, 409, format!("track \"{}\" is already published", track.track_id));
                }
                if member.info.tracks.len() >= limits.max_tracks {
                    return error(conn, 429, format!("at most {} tracks per participant", limits.max_tracks));
                }
                if track.track_id.is_empty() || track.layers == 0 || track.layers > 4 {
                    return error(conn, 400, "a track needs an id and 1 to 4 layers");
                }
                member.info.tracks.push(track.clone());
                others(r, &me).into_iter().map(|c| (c, ServerMessage::TrackPublished { participant: me.clone(), track: track.clone() })).collect()
            }
            ClientMessage::Unpublish { track_id } => {
                let member = r.members.get_mut(&me).expect("joined member exists");
                if member.media.contains(&track_id) {
                    return error(conn, 409, format!("track \"{track_id}\" belongs to a media session; end that session instead"));
                }
                let before = member.info.tracks.len();
                member.info.tracks.retain(|t| t.track_id != track_id);
                if member.info.tracks.len() == before {
                    return error(conn, 404, format!("no track \"{track_id}\""));
                }
                Self::track_gone(r, &me, &track_id)
            }
            ClientMessage::Subscribe { participant, track_ids } => {
                let Some(publisher) = r.members.get(&participant) else {
                    return error(conn, 404, format!("no participant \"{participant}\""));
                };
                let layers: Vec<(String, u8)> = match track_ids
                    .iter()
                    .map(|t| publisher.info.tracks.iter().find(|x| &x.track_id == t).map(|x| (t.clone(), x.layers - 1)).ok_or(t))
                    .collect::<Result<_, _>>()
                {
                    Ok(v) => v,
                    Err(t) => return error(conn, 404, format!("\"{participant}\" publishes no track \"{t}\"")),
                };
                if participant == me {
                    return error(conn, 400, "subscribing to your own tracks");
                }
                // The list replaces earlier choices for this publisher: its other tracks are
                // not received (a media session receives all of them until told otherwise).
                let unlisted: Vec<String> = publisher.info.tracks.iter().map(|t| t.track_id.clone()).filter(|t| !track_ids.contains(t)).collect();
                let member = r.members.get_mut(&me).expect("joined member exists");
                for t in unlisted {
                    member.subscriptions.remove(&(participant.clone(), t.clone()));
                    self.changes.push(MediaChange::Track { room: room.clone(), viewer: me.clone(), publisher: participant.clone(), track: t, max_layer: None });
                }
                for (t, top) in layers {
                    let layer = *member.subscriptions.entry((participant.clone(), t.clone())).or_insert(top);
                    self.changes.push(MediaChange::Track {
                        room: room.clone(),
                        viewer: me.clone(),
                        publisher: participant.clone(),
                        track: t,
                        max_layer: Some(layer),
                    });
                }
                self.subscriptions_message(conn, &room, &me)
            }
            ClientMessage::Unsubscribe { participant, track_id } => {
                let member = r.members.get_mut(&me).expect("joined member exists");
                if member.subscriptions.remove(&(participant.clone(), track_id.clone())).is_none() {
                    return error(conn, 404, format!("not subscribed to \"{participant}\"/\"{track_id}\""));
                }
                self.changes.push(MediaChange::Track { room: room.clone(), viewer: me.clone(), publisher: participant, track: track_id, max_layer: None });
                self.subscriptions_message(conn, &room, &me)
            }
            ClientMessage::SetLayer { participant, track_id, max_layer } => {
                let member = r.members.get_mut(&me).expect("joined member exists");
                match member.subscriptions.get_mut(&(participant.clone(), track_id.clone())) {
                    Some(l) => *l = max_layer.min(3),
                    None => return error(conn, 404, format!("not subscribed to \"{participant}\"/\"{track_id}\"")),
                }
                self.changes.push(MediaChange::Track {
                    room: room.clone(),
                    viewer: me.clone(),
                    publisher: participant,
                    track: track_id,
                    max_layer: Some(max_layer.min(3)),
                });
                self.subscriptions_message(conn, &room, &me)
            }
            ClientMessage::Chat { text, to } => {
                if text.chars().count() > limits.max_chat_chars {
                    return error(conn, 413, format!("chat text over {} characters", limits.max_chat_chars));
                }
                match to {
                    Some(to) => match r.members.get(&to).map(|m| m.conn) {
                        Some(Some(c)) => vec![(c, ServerMessage::Chat { from: me, text, private: true })],
                        Some(None) => error(conn, 409, format!("\"{to}\" has no socket to receive messages")),
                        None => error(conn, 404, format!("no participant \"{to}\"")),
                    },
                    None => others(r, &me).into_iter().map(|c| (c, ServerMessage::Chat { from: me.clone(), text: text.clone(), private: false })).collect(),
                }
            }
            ClientMessage::Signal { to, payload } => match r.members.get(&to) {
                Some(_) if to == me => error(conn, 400, "signalling yourself"),
                Some(m) => match m.conn {
                    Some(c) => vec![(c, ServerMessage::Signal { from: me, payload })],
                    None => error(conn, 409, format!("\"{to}\" has no socket to receive signals")),
                },
                None => error(conn, 404, format!("no participant \"{to}\"")),
            },
            ClientMessage::Leave => self.disconnect(conn),
        }
    }

    fn subscriptions_message(&self, conn: ConnId, room: &str, me: &str) -> Outbox {
        vec![(conn, ServerMessage::Subscriptions { tracks: self.subscriptions(room, me) })]
    }

    fn join(&mut self, conn: ConnId, room: String, token: Option<String>, identity: Option<String>, name: Option<String>, now: u64) -> Outbox {
        if self.conns.contains_key(&conn) {
            return error(conn, 409, "already in a room; leave first");
        }
        if room.is_empty() || room.len() > 128 {
            return error(conn, 400, "room names are 1 to 128 bytes");
        }
        let (id, token_name) = match (token, self.dev_mode) {
            (Some(t), _) => match self.keys.authorize(Some(&t), &room, Need::Subscribe, now) {
                Ok(c) => (c.sub, c.name),
                Err(e) => return error(conn, e.status(), e.to_string()),
            },
            (None, true) => match identity {
                Some(i) if !i.is_empty() && i.len() <= 128 => (i, None),
                _ => (format!("guest-{conn}"), None),
            },
            (None, false) => return error(conn, AuthError::Missing.status(), AuthError::Missing.to_string()),
        };
        if !self.rooms.contains_key(&room) && self.rooms.len() >= self.limits.max_rooms {
            return error(conn, 429, format!("at most {} rooms", self.limits.max_rooms));
        }
        let r = self.rooms.entry(room.clone()).or_default();
        if let Some(m) = r.members.get_mut(&id) {
            if m.conn.is_some() {
                return error(conn, 409, format!("\"{id}\" is already in the room"));
            }
            // Its media sessions are in already (the server told us): the socket joins them.
            m.conn = Some(conn);
            let participants = r.members.values().filter(|m| m.info.id != id).map(|m| m.info.clone()).collect();
            self.conns.insert(conn, (room.clone(), id.clone()));
            return vec![(conn, ServerMessage::Joined { room, you: id, participants, mix_available: r.mix_available })];
        }
        if r.members.len() >= self.limits.max_participants {
            return error(conn, 429, format!("room \"{room}\" is full ({} participants)", self.limits.max_participants));
        }
        let info = ParticipantInfo { id: id.clone(), name: name.or(token_name).unwrap_or_else(|| id.clone()), tracks: Vec::new() };
        let mut out: Outbox = r.members.values().filter_map(|m| Some((m.conn?, ServerMessage::ParticipantJoined { participant: info.clone() }))).collect();
        out.push((
            conn,
            ServerMessage::Joined {
                room: room.clone(),
                you: id.clone(),
                participants: r.members.values().map(|m| m.info.clone()).collect(),
                mix_available: r.mix_available,
            },
        ));
        r.members.insert(id.clone(), Member { info, conn: Some(conn), subscriptions: BTreeMap::new(), media: Vec::new() });
        self.conns.insert(conn, (room, id));
        out
    }

    /// The connection closed or vanished: its participant leaves, the others are told, and
    /// every subscription to its tracks ends. A participant whose media sessions still publish
    /// stays (without a socket) with those tracks.
    pub fn disconnect(&mut self, conn: ConnId) -> Outbox {
        let Some((room, id)) = self.conns.remove(&conn) else { return Vec::new() };
        self.changes.push(MediaChange::Forget { room: room.clone(), viewer: id.clone() });
        let Some(r) = self.rooms.get_mut(&room) else { return Vec::new() };
        let Some(m) = r.members.get_mut(&id) else { return Vec::new() };
        m.conn = None;
        m.subscriptions.clear();
        if !m.media.is_empty() {
            // Only the tracks it announced over the socket go.
            let announced: Vec<String> = m.info.tracks.iter().filter(|t| !m.media.contains(&t.track_id)).map(|t| t.track_id.clone()).collect();
            m.info.tracks.retain(|t| m.media.contains(&t.track_id));
            let mut out = Vec::new();
            for t in announced {
                out.extend(Self::track_gone(r, &id, &t));
            }
            return out;
        }
        self.remove_member(&room, &id)
    }

    fn remove_member(&mut self, room: &str, id: &str) -> Outbox {
        let Some(r) = self.rooms.get_mut(room) else { return Vec::new() };
        if r.members.remove(id).is_none() {
            return Vec::new();
        }
        for m in r.members.values_mut() {
            m.subscriptions.retain(|(p, _), _| p != id);
        }
        let out = r.members.values().filter_map(|m| Some((m.conn?, ServerMessage::ParticipantLeft { id: id.to_string() }))).collect();
        if r.members.is_empty() {
            self.rooms.remove(room);
        }
        out
    }

    /// A track is withdrawn: subscriptions to it end, the others are told.
    fn track_gone(r: &mut Room, publisher: &str, track: &str) -> Outbox {
        for m in r.members.values_mut() {
            m.subscriptions.remove(&(publisher.to_string(), track.to_string()));
        }
        r.members
            .values()
            .filter(|m| m.info.id != publisher)
            .filter_map(|m| Some((m.conn?, ServerMessage::TrackUnpublished { participant: publisher.to_string(), track_id: track.to_string() })))
            .collect()
    }

    /// The server says `id` is in `room` through a media session (WHIP, WHEP, MCU, SIP): it
    /// is a participant whether or not it has a socket. Others with sockets are told.
    pub fn media_joined(&mut self, room: &str, id: &str) -> Outbox {
        let r = self.rooms.entry(room.to_string()).or_default();
        if r.members.contains_key(id) {
            return Vec::new();
        }
        let info = ParticipantInfo { id: id.to_string(), name: id.to_string(), tracks: Vec::new() };
        let out = r.members.values().filter_map(|m| Some((m.conn?, ServerMessage::ParticipantJoined { participant: info.clone() }))).collect();
        r.members.insert(id.to_string(), Member { info, conn: None, subscriptions: BTreeMap::new(), media: Vec::new() });
        out
    }

    /// The server says `id` publishes `track` through a media session (the first packet came).
    pub fn media_track(&mut self, room: &str, id: &str, track: TrackInfo) -> Outbox {
        let mut out = self.media_joined(room, id);
        let r = self.rooms.get_mut(room).expect("media_joined made the room");
        let m = r.members.get_mut(id).expect("media_joined made the member");
        if m.info.tracks.iter().any(|t| t.track_id == track.track_id) {
            return out;
        }
        m.media.push(track.track_id.clone());
        m.info.tracks.push(track.clone());
        out.extend(
            r.members
                .values()
                .filter(|m| m.info.id != id)
                .filter_map(|m| Some((m.conn?, ServerMessage::TrackPublished { participant: id.to_string(), track: track.clone() }))),
        );
        out
    }

    /// The server says `id`'s media sessions ended: their tracks go, and so does `id` unless it
    /// still has a socket.
    pub fn media_left(&mut self, room: &str, id: &str) -> Outbox {
        let Some(r) = self.rooms.get_mut(room) else { return Vec::new() };
        let Some(m) = r.members.get_mut(id) else { return Vec::new() };
        if m.conn.is_none() {
            return self.remove_member(room, id);
        }
        let media = std::mem::take(&mut m.media);
        m.info.tracks.retain(|t| !media.contains(&t.track_id));
        let mut out = Vec::new();
        for t in media {
            out.extend(Self::track_gone(r, id, &t));
        }
        out
    }

    /// Subscription choices made since the last call, for the server to apply to the viewers'
    /// media sessions.
    pub fn take_media_changes(&mut self) -> Vec<MediaChange> {
        std::mem::take(&mut self.changes)
    }
}
