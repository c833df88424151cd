//! `/ws`: the WebSocket room protocol. This module owns the sockets and the clock: it moves
//! text frames between WebSockets and the sans-IO [`Hub`], passing the current time in, tells
//! the hub when a socket closes or vanishes, hands the viewers' subscription choices to the
//! rooms, and tells the hub of the media sessions (WHIP, MCU participants, SIP legs) the room
//! event stream reports.

use std::{
    collections::HashMap,
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
    time::SystemTime,
};

use axum::{
    extract::{
        State,
        ws::{Message, WebSocket, WebSocketUpgrade},
    },
    response::IntoResponse,
};
use futures_util::{SinkExt, StreamExt};
use mcu_signaling::room::{ConnId, Hub, Kind, MediaChange, Outbox, ServerMessage, TrackInfo as WsTrack};
use parking_lot::Mutex;
use tokio::sync::mpsc;

use crate::{
    front::http::Http,
    media::events::{EventKind, RoomEvent},
};

/// The WebSocket room protocol's state: the sans-IO hub and the open sockets.
pub struct WsHub {
    http: Arc<Http>,
    hub: Mutex<Hub>,
    peers: Mutex<HashMap<ConnId, mpsc::UnboundedSender<ServerMessage>>>,
    next_conn: AtomicU64,
}

impl WsHub {
    pub fn new(http: Arc<Http>, hub: Hub) -> Arc<WsHub> {
        Arc::new(WsHub { http, hub: Mutex::new(hub), peers: Mutex::default(), next_conn: AtomicU64::new(1) })
    }

    /// The HTTP handlers' state.
    pub fn http(&self) -> &Arc<Http> {
        &self.http
    }

    /// WebSockets open now.
    pub fn open_sockets(&self) -> usize {
        self.peers.lock().len()
    }

    /// Hands the hub's subscription choices to the SFU (the viewers' WHEP sessions).
    fn apply_media_changes(&self) {
        let changes = self.hub.lock().take_media_changes();
        for change in changes {
            match change {
                MediaChange::Track { room, viewer, publisher, track, max_layer } => {
                    let Ok(r) = self.http.app.sfu.room(&room, false) else { continue };
                    let changed = r.choose(&viewer, &format!("{publisher}/{track}"), max_layer.map(usize::from));
                    tracing::debug!(room, viewer, publisher, track, ?max_layer, sessions = changed, "subscription choice");
                }
                MediaChange::Forget { room, viewer } => {
                    if let Ok(r) = self.http.app.sfu.room(&room, false) {
                        r.forget_choices(&viewer);
                    }
                }
            }
        }
    }

    fn deliver(&self, out: Outbox) {
        let peers = self.peers.lock();
        for (conn, msg) in out {
            // A peer that went away has no sender any more; its own task reports the close.
            if let Some(tx) = peers.get(&conn) {
                let _ = tx.send(msg);
            }
        }
    }

    /// Room events the WebSocket clients hear about (a composite appearing, as LiveSwitch tells
    /// SFU participants when an MCU mix joins their session), from a task of their own.
    pub fn bridge_events(self: &Arc<Self>, mut events: tokio::sync::broadcast::Receiver<RoomEvent>) {
        let ws_shared = self.clone();
        tokio::spawn(async move {
            loop {
                match events.recv().await {
                    Ok(ev) => {
                        // Media sessions (WHIP, WHEP-less MCU participants, SIP legs) are
                        // participants of the WebSocket room too, with their tracks.
                        let mut hub = ws_shared.hub.lock();
                        let out = match ev.kind {
                            EventKind::MixAvailable { available } => hub.set_mix_available(&ev.room, available),
                            EventKind::ParticipantJoined { participant, .. } if !participant.starts_with('_') => hub.media_joined(&ev.room, &participant),
                            EventKind::TrackPublished { participant, track } if !participant.starts_with('_') => {
                                let id = track.id.split_once('/').map_or(track.id.as_str(), |(_, t)| t).to_string();
                                let kind = if track.kind == "audio" { Kind::Audio } else { Kind::Video };
                                hub.media_track(&ev.room, &participant, WsTrack { track_id: id, kind, layers: track.layers.max(1) })
                            }
                            EventKind::ParticipantLeft { participant } => hub.media_left(&ev.room, &participant),
                            _ => Vec::new(),
                        };
                        drop(hub);
                        ws_shared.deliver(out);
                    }
                    Err(tokio::sync::broadcast::error::RecvError::Lagged(n)) => tracing::warn!(missed = n, "room events lagged"),
                    Err(tokio::sync::broadcast::error::RecvError::Closed) => return,
                }
            }
        });
    }
}

fn unix_now() -> u64 {
    SystemTime::now().duration_since(SystemTime::UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0)
}

/// `GET /ws`.
pub async fn ws_upgrade(ws: WebSocketUpgrade, State(shared): State<Arc<WsHub>>) -> impl IntoResponse {
    ws.max_message_size(256 * 1024).on_upgrade(move |socket| session(socket, shared))
}

async fn session(socket: WebSocket, shared: Arc<WsHub>) {
    let conn = shared.next_conn.fetch_add(1, Ordering::Relaxed);
    let (tx, mut rx) = mpsc::unbounded_channel::<ServerMessage>();
    shared.peers.lock().insert(conn, tx);
    let (mut sink, mut stream) = socket.split();
    let writer = tokio::spawn(async move {
        while let Some(msg) = rx.recv().await {
            let text = serde_json::to_string(&msg).expect("server messages serialise");
            if sink.send(Message::Text(text.into())).await.is_err() {
                break;
            }
        }
    });
    while let Some(frame) = stream.next().await {
        let out = match frame {
            Ok(Message::Text(text)) => {
                let out = shared.hub.lock().handle(conn, text.as_str(), unix_now());
                shared.apply_media_changes();
                out
            }
            Ok(Message::Binary(_)) => vec![(conn, ServerMessage::Error { code: 400, message: "text frames only".into() })],
            Ok(Message::Close(_)) | Err(_) => break,
            Ok(_) => continue,
        };
        shared.deliver(out);
    }
    // Closed or vanished: leave the room, tell the others.
    shared.peers.lock().remove(&conn);
    let out = shared.hub.lock().disconnect(conn);
    shared.apply_media_changes();
    shared.deliver(out);
    writer.abort();
}
