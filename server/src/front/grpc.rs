//! The gRPC control API (`mcu.v1`, see `api/proto/mcu/v1/mcu.proto`) served with tonic on
//! `--grpc-listen`: rooms, layouts, audio gains, the event stream; server reflection for
//! `grpcurl`-like tools, and gRPC-web (with CORS) on the same port for browser pages.
//!
//! Every call is authorised first (an operator API key, or an admin JWT for the room; `--dev`
//! without an API key lets tokenless calls through), then validated: a bad field is
//! `INVALID_ARGUMENT` naming it, an unknown room `NOT_FOUND`.

use std::{pin::Pin, sync::Arc, time::SystemTime};

use futures_util::Stream;
use mcu_api::{FieldError, GainChange, v1};
use mcu_signaling::auth::{AuthError, Keys, Need, bearer};
use tonic::{Request, Response, Status, metadata::MetadataMap};

use mcu_pipeline::McuConfig;

use crate::{
    app::{App, ControlError, ParticipantSummary, RoomSummary},
    media::{
        events::{EventKind, RoomEvent, TrackInfo},
        record::{FileState, Snapshot},
        room::Room,
    },
};

/// Who may call.
pub struct Auth {
    /// Token keys (admin JWTs).
    pub keys: Keys,
    /// Development mode.
    pub dev: bool,
    /// The operator key (`x-api-key`).
    pub api_key: Option<String>,
}

/// Room-independent calls need a credential for every room.
const ALL_ROOMS: &str = "*";

impl Auth {
    fn check(&self, md: &MetadataMap, room: &str) -> Result<(), Status> {
        if let Some(key) = md.get("x-api-key") {
            let given = key.to_str().unwrap_or("").as_bytes();
            return match &self.api_key {
                Some(k) if constant_time_eq(k.as_bytes(), given) => Ok(()),
                _ => Err(Status::unauthenticated("x-api-key is not valid")),
            };
        }
        let token = bearer(md.get("authorization").and_then(|v| v.to_str().ok()));
        if token.is_none() && self.dev && self.api_key.is_none() {
            return Ok(());
        }
        let now = SystemTime::now().duration_since(SystemTime::UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0);
        match self.keys.authorize(token, room, Need::Admin, now) {
            Ok(_) => Ok(()),
            Err(AuthError::Missing) => Err(Status::unauthenticated("a credential is required: authorization: Bearer <admin JWT>, or x-api-key")),
            Err(e) if e.status() == 403 => Err(Status::permission_denied(e.to_string())),
            Err(e) => Err(Status::unauthenticated(e.to_string())),
        }
    }
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

fn invalid(e: FieldError) -> Status {
    Status::invalid_argument(e.to_string())
}

fn control_status(e: ControlError) -> Status {
    match e {
        ControlError::NotFound(m) => Status::not_found(m),
        ControlError::AlreadyExists(m) => Status::already_exists(m),
        ControlError::Limit(m) => Status::resource_exhausted(m),
        ControlError::Precondition(m) => Status::failed_precondition(m),
    }
}

/// The services' shared state.
#[derive(Clone)]
pub struct Api {
    app: Arc<App>,
    mcu: McuConfig,
    auth: Arc<Auth>,
}

impl Api {
    /// Authorises `room` and finds it.
    fn room<T>(&self, req: &Request<T>, room: &str) -> Result<Arc<Room>, Status> {
        self.auth.check(req.metadata(), room)?;
        mcu_api::reference("room", room).map_err(invalid)?;
        self.app.find_room(room).map_err(control_status)
    }
}

fn track_pb(t: &TrackInfo) -> v1::Track {
    v1::Track { id: t.id.clone(), kind: t.kind.into(), codec: t.codec.clone(), muted: t.muted }
}

fn kind_pb(mcu: bool) -> i32 {
    if mcu { v1::ParticipantKind::Mcu as i32 } else { v1::ParticipantKind::Publisher as i32 }
}

fn room_pb(s: RoomSummary) -> v1::Room {
    v1::Room {
        name: s.name,
        participants: s.participants as u32,
        subscribers: s.subscribers as u32,
        composite: s.composite,
        persistent: s.persistent,
        options: Some(v1::RoomOptions { max_participants: s.max_participants as u32, start_composite: false, everyone_but_me: Some(s.everyone_but_me) }),
        layout: Some(mcu_api::layout_pb(&s.layout)),
        render_path: s.paths.map(|p| p.0.to_string()).unwrap_or_default(),
        mix_path: s.paths.map(|p| p.1.to_string()).unwrap_or_default(),
    }
}

fn participant_pb(p: ParticipantSummary) -> v1::Participant {
    v1::Participant { name: p.name, kind: kind_pb(p.mcu), tracks: p.tracks.iter().map(track_pb).collect() }
}

fn event_pb(e: &RoomEvent) -> v1::RoomEvent {
    use v1::room_event::Event;
    let event = match &e.kind {
        EventKind::ParticipantJoined { participant, mcu } => {
            Event::ParticipantJoined(v1::ParticipantJoined { participant: participant.clone(), kind: kind_pb(*mcu) })
        }
        EventKind::ParticipantLeft { participant } => Event::ParticipantLeft(v1::ParticipantLeft { participant: participant.clone() }),
        EventKind::TrackPublished { participant, track } => {
            Event::TrackPublished(v1::TrackPublished { participant: participant.clone(), track: Some(track_pb(track)) })
        }
        EventKind::ActiveSpeaker { participant, previous } => {
            Event::ActiveSpeakerChanged(v1::ActiveSpeakerChanged { participant: participant.clone(), previous: previous.clone().unwrap_or_default() })
        }
        EventKind::LayoutChanged { viewer, layout } => {
            Event::LayoutChanged(v1::LayoutChanged { viewer: viewer.clone().unwrap_or_default(), layout: Some(mcu_api::layout_pb(layout)) })
        }
        EventKind::MixAvailable { available } => Event::CompositeChanged(v1::CompositeChanged { running: *available }),
        EventKind::TrackMuted { track } => Event::TrackMuted(v1::TrackMuted { track: Some(track_pb(track)) }),
        EventKind::RoomClosed => Event::RoomClosed(v1::RoomClosed {}),
        EventKind::Dtmf { participant, digit } => Event::DtmfReceived(v1::DtmfReceived { participant: participant.clone(), digit: digit.to_string() }),
        EventKind::Recording(r) => Event::RecordingChanged(v1::RecordingChanged { recording: Some(recording_pb(r)) }),
    };
    v1::RoomEvent { room: e.room.clone(), sequence: e.seq, unix_ms: e.unix_ms, event: Some(event) }
}

#[tonic::async_trait]
impl v1::room_service_server::RoomService for Api {
    async fn create_room(&self, req: Request<v1::CreateRoomRequest>) -> Result<Response<v1::Room>, Status> {
        self.auth.check(req.metadata(), &req.get_ref().name)?;
        let r = req.get_ref();
        mcu_api::new_room_name("name", &r.name).map_err(invalid)?;
        let options = r.options.unwrap_or_default();
        let layout = r.layout.as_ref().map(|l| mcu_api::layout("layout", l)).transpose().map_err(invalid)?;
        let room = self.app.create_room(&r.name, options.max_participants as usize, layout, options.everyone_but_me).map_err(control_status)?;
        if options.start_composite {
            self.app.sfu.ensure_mix(&room, self.mcu);
        }
        let mut pb = room_pb(self.app.summary(&room));
        if let Some(o) = pb.options.as_mut() {
            o.start_composite = options.start_composite;
        }
        Ok(Response::new(pb))
    }

    async fn list_rooms(&self, req: Request<v1::ListRoomsRequest>) -> Result<Response<v1::ListRoomsResponse>, Status> {
        self.auth.check(req.metadata(), ALL_ROOMS)?;
        Ok(Response::new(v1::ListRoomsResponse { rooms: self.app.summaries().into_iter().map(room_pb).collect() }))
    }

    async fn get_room(&self, req: Request<v1::GetRoomRequest>) -> Result<Response<v1::Room>, Status> {
        let room = self.room(&req, &req.get_ref().room)?;
        Ok(Response::new(room_pb(self.app.summary(&room))))
    }

    async fn delete_room(&self, req: Request<v1::DeleteRoomRequest>) -> Result<Response<v1::DeleteRoomResponse>, Status> {
        let room = self.room(&req, &req.get_ref().room)?;
        let ended = self.app.delete_room(&room.name).await.map_err(control_status)?;
        Ok(Response::new(v1::DeleteRoomResponse { sessions_ended: ended as u32 }))
    }

    async fn list_participants(&self, req: Request<v1::ListParticipantsRequest>) -> Result<Response<v1::ListParticipantsResponse>, Status> {
        let room = self.room(&req, &req.get_ref().room)?;
        Ok(Response::new(v1::ListParticipantsResponse { participants: self.app.participants_of(&room).into_iter().map(participant_pb).collect() }))
    }

    async fn remove_participant(&self, req: Request<v1::RemoveParticipantRequest>) -> Result<Response<v1::RemoveParticipantResponse>, Status> {
        let room = self.room(&req, &req.get_ref().room)?;
        let who = &req.get_ref().participant;
        mcu_api::reference("participant", who).map_err(invalid)?;
        self.app.remove_participant(&room, who).await.map_err(control_status)?;
        Ok(Response::new(v1::RemoveParticipantResponse {}))
    }

    async fn mute_track(&self, req: Request<v1::MuteTrackRequest>) -> Result<Response<v1::MuteTrackResponse>, Status> {
        let room = self.room(&req, &req.get_ref().room)?;
        let r = req.get_ref();
        mcu_api::reference("track_id", &r.track_id).map_err(invalid)?;
        let t = self.app.mute_track(&room, &r.track_id, r.muted).map_err(control_status)?;
        Ok(Response::new(v1::MuteTrackResponse { track: Some(track_pb(&t)) }))
    }
}

#[tonic::async_trait]
impl v1::layout_service_server::LayoutService for Api {
    async fn set_layout(&self, req: Request<v1::SetLayoutRequest>) -> Result<Response<v1::SetLayoutResponse>, Status> {
        let room = self.room(&req, &req.get_ref().room)?;
        let r = req.get_ref();
        let viewer = (!r.viewer.is_empty()).then_some(r.viewer.as_str());
        if let Some(v) = viewer {
            mcu_api::reference("viewer", v).map_err(invalid)?;
        }
        let layout = match (&r.layout, viewer) {
            (Some(l), _) => Some(mcu_api::layout("layout", l).map_err(invalid)?),
            (None, Some(_)) => None,
            (None, None) => return Err(Status::invalid_argument("layout: required for the room's layout")),
        };
        self.app.set_layout(&room, viewer, layout.clone());
        let shown = layout.unwrap_or_else(|| room.control().layout);
        Ok(Response::new(v1::SetLayoutResponse { layout: Some(mcu_api::layout_pb(&shown)) }))
    }

    async fn get_layout(&self, req: Request<v1::GetLayoutRequest>) -> Result<Response<v1::Layout>, Status> {
        let room = self.room(&req, &req.get_ref().room)?;
        let viewer = &req.get_ref().viewer;
        if !viewer.is_empty() {
            mcu_api::reference("viewer", viewer).map_err(invalid)?;
        }
        let c = room.control();
        Ok(Response::new(mcu_api::layout_pb(c.viewer_layouts.get(viewer).unwrap_or(&c.layout))))
    }
}

fn matrix_pb(gains: &std::collections::BTreeMap<(String, String), f32>) -> v1::AudioMatrix {
    v1::AudioMatrix { gains: gains.iter().map(|((l, s), g)| v1::Gain { listener: l.clone(), source: s.clone(), gain: *g }).collect() }
}

#[tonic::async_trait]
impl v1::audio_service_server::AudioService for Api {
    async fn update_audio_matrix(&self, req: Request<v1::UpdateAudioMatrixRequest>) -> Result<Response<v1::AudioMatrix>, Status> {
        let room = self.room(&req, &req.get_ref().room)?;
        let edits = &req.get_ref().edits;
        if edits.len() > 1024 {
            return Err(Status::invalid_argument(format!("edits: {} edits; at most 1024 per request", edits.len())));
        }
        // All or nothing: every edit is checked before any applies.
        let checked = edits.iter().enumerate().map(|(i, e)| mcu_api::gain_edit(&format!("edits[{i}]"), e)).collect::<Result<Vec<_>, _>>().map_err(invalid)?;
        let gains = room.update_control(|c| {
            for (listener, source, change) in checked {
                match change {
                    GainChange::Set(1.0) => c.gains.remove(&(listener, source)),
                    GainChange::Set(g) => c.gains.insert((listener, source), g),
                    GainChange::Reset => c.gains.remove(&(listener, source)),
                };
            }
            c.gains.clone()
        });
        Ok(Response::new(matrix_pb(&gains)))
    }

    async fn get_audio_matrix(&self, req: Request<v1::GetAudioMatrixRequest>) -> Result<Response<v1::AudioMatrix>, Status> {
        let room = self.room(&req, &req.get_ref().room)?;
        Ok(Response::new(matrix_pb(&room.control().gains)))
    }

    async fn set_top_k(&self, req: Request<v1::SetTopKRequest>) -> Result<Response<v1::SetTopKResponse>, Status> {
        let room = self.room(&req, &req.get_ref().room)?;
        let k = req.get_ref().top_k;
        if k > 64 {
            return Err(Status::invalid_argument(format!("top_k: {k} is more than 64")));
        }
        room.update_control(|c| c.top_k = k as usize);
        Ok(Response::new(v1::SetTopKResponse { top_k: k }))
    }
}

fn state_pb(s: FileState) -> i32 {
    let state = match s {
        FileState::Active => v1::RecordingState::Active,
        FileState::Stopped => v1::RecordingState::Stopped,
        FileState::Failed => v1::RecordingState::Failed,
    };
    state as i32
}

fn recording_pb(r: &Snapshot) -> v1::Recording {
    v1::Recording {
        id: r.id.clone(),
        room: r.room.clone(),
        state: state_pb(r.state),
        started_unix_ms: r.started_unix_ms,
        files: r
            .files
            .iter()
            .map(|f| v1::RecordingFile {
                path: f.path.display().to_string(),
                track_id: f.track.clone().unwrap_or_default(),
                state: state_pb(f.state),
                bytes: f.bytes,
                duration_ms: f.duration_ms,
                error: f.error.clone().unwrap_or_default(),
            })
            .collect(),
    }
}

/// A recording's own encode: codec (the live one's when unspecified), size and bitrate checked.
fn recording_profile(v: &v1::RecordingVideo, live: &mcu_pipeline::McuConfig) -> Result<mcu_pipeline::VideoProfile, Status> {
    use mcu_pipeline::MixCodec;
    let codec = match v1::RecordingCodec::try_from(v.codec) {
        Ok(v1::RecordingCodec::Unspecified) => None,
        Ok(v1::RecordingCodec::Vp8) => Some(MixCodec::Vp8),
        Ok(v1::RecordingCodec::H264) => Some(MixCodec::H264),
        Ok(v1::RecordingCodec::Av1) => Some(MixCodec::Av1),
        Err(_) => return Err(Status::invalid_argument(format!("video.codec: unknown codec {}", v.codec))),
    };
    mcu_pipeline::VideoProfile::for_recording(codec, v.width, v.height, v.bitrate_bps, live).map_err(|(field, why)| {
        let field = if field == "bitrate" { "bitrate_bps" } else { field };
        Status::invalid_argument(format!("video.{field}: {why}"))
    })
}

#[tonic::async_trait]
impl v1::recording_service_server::RecordingService for Api {
    async fn start_recording(&self, req: Request<v1::StartRecordingRequest>) -> Result<Response<v1::Recording>, Status> {
        let room = self.room(&req, &req.get_ref().room)?;
        let r = req.get_ref();
        let filename = (!r.filename.is_empty()).then_some(r.filename.as_str());
        if let Some(f) = filename {
            mcu_api::reference("filename", f).map_err(invalid)?;
            if f.contains(['/', '\\', '\0']) || f.starts_with('.') {
                return Err(Status::invalid_argument("filename: a plain name (no path separators, not starting with .)"));
            }
        }
        let profile = r.video.as_ref().map(|v| recording_profile(v, &self.mcu)).transpose()?;
        let (app, mcu, tracks, filename) = (self.app.clone(), self.mcu, r.tracks, filename.map(str::to_string));
        let session = tokio::task::spawn_blocking(move || app.start_recording(&room, tracks, filename.as_deref(), mcu, profile))
            .await
            .map_err(|e| Status::internal(e.to_string()))?
            .map_err(control_status)?;
        Ok(Response::new(recording_pb(&session.snapshot())))
    }

    async fn stop_recording(&self, req: Request<v1::StopRecordingRequest>) -> Result<Response<v1::Recording>, Status> {
        let id = req.get_ref().recording_id.clone();
        mcu_api::reference("recording_id", &id).map_err(invalid)?;
        let session = self.app.recording(&id).map_err(control_status)?;
        self.auth.check(req.metadata(), &session.room)?;
        // Closing files waits for their writers: off the async threads.
        let app = self.app.clone();
        let s = session.clone();
        tokio::task::spawn_blocking(move || app.stop_recording(&s)).await.map_err(|e| Status::internal(e.to_string()))?;
        Ok(Response::new(recording_pb(&session.snapshot())))
    }

    async fn list_recordings(&self, req: Request<v1::ListRecordingsRequest>) -> Result<Response<v1::ListRecordingsResponse>, Status> {
        let room = req.get_ref().room.clone();
        if room.is_empty() {
            self.auth.check(req.metadata(), ALL_ROOMS)?;
        } else {
            self.auth.check(req.metadata(), &room)?;
            mcu_api::reference("room", &room).map_err(invalid)?;
        }
        let list = self.app.recordings_of((!room.is_empty()).then_some(room.as_str()));
        Ok(Response::new(v1::ListRecordingsResponse { recordings: list.iter().map(|s| recording_pb(&s.snapshot())).collect() }))
    }
}

impl Api {
    fn gateway(&self) -> Result<std::sync::Arc<crate::sip::Gateway>, Status> {
        self.app.sip().ok_or_else(|| Status::failed_precondition("the SIP gateway is not running (--sip-listen)"))
    }
}

#[tonic::async_trait]
impl v1::sip_service_server::SipService for Api {
    async fn list_sip_routes(&self, req: Request<v1::ListSipRoutesRequest>) -> Result<Response<v1::ListSipRoutesResponse>, Status> {
        self.auth.check(req.metadata(), ALL_ROOMS)?;
        let routes = self.gateway()?.routes().into_iter().map(|(number, room)| v1::SipRoute { number, room }).collect();
        Ok(Response::new(v1::ListSipRoutesResponse { routes }))
    }

    async fn set_sip_route(&self, req: Request<v1::SipRoute>) -> Result<Response<v1::SipRoute>, Status> {
        self.auth.check(req.metadata(), ALL_ROOMS)?;
        let route = req.into_inner();
        self.gateway()?.set_route(&route.number, &route.room).map_err(|e| Status::invalid_argument(e.to_string()))?;
        Ok(Response::new(route))
    }

    async fn delete_sip_route(&self, req: Request<v1::DeleteSipRouteRequest>) -> Result<Response<v1::DeleteSipRouteResponse>, Status> {
        self.auth.check(req.metadata(), ALL_ROOMS)?;
        if self.gateway()?.remove_route(&req.get_ref().number) {
            Ok(Response::new(v1::DeleteSipRouteResponse {}))
        } else {
            Err(Status::not_found(format!("no route for \"{}\"", req.get_ref().number)))
        }
    }

    async fn dial_sip(&self, req: Request<v1::DialSipRequest>) -> Result<Response<v1::SipCall>, Status> {
        let r = req.get_ref().clone();
        self.auth.check(req.metadata(), &r.room)?;
        // The call may create the room.
        mcu_api::new_room_name("room", &r.room).map_err(invalid)?;
        let gateway = self.gateway()?;
        let name = (!r.name.is_empty()).then_some(r.name.as_str());
        match gateway.dial(&r.room, &r.uri, name).await {
            Ok(participant) => Ok(Response::new(v1::SipCall { room: r.room, participant })),
            Err(e @ crate::sip::DialError::Target(_)) => Err(Status::invalid_argument(e.to_string())),
            Err(e @ crate::sip::DialError::NoAnswer(_)) => Err(Status::unavailable(e.to_string())),
            Err(e @ crate::sip::DialError::Refused(_)) => Err(Status::aborted(e.to_string())),
            Err(e @ crate::sip::DialError::Setup(_)) => Err(Status::resource_exhausted(e.to_string())),
        }
    }

    async fn list_sip_calls(&self, req: Request<v1::ListSipCallsRequest>) -> Result<Response<v1::ListSipCallsResponse>, Status> {
        let room = req.get_ref().room.clone();
        self.auth.check(req.metadata(), if room.is_empty() { ALL_ROOMS } else { &room })?;
        let mut calls: Vec<v1::SipCall> = self
            .gateway()?
            .calls()
            .into_iter()
            .filter(|(r, _)| room.is_empty() || *r == room)
            .map(|(room, participant)| v1::SipCall { room, participant })
            .collect();
        calls.sort_by(|a, b| (&a.room, &a.participant).cmp(&(&b.room, &b.participant)));
        Ok(Response::new(v1::ListSipCallsResponse { calls }))
    }
}

type EventStream = Pin<Box<dyn Stream<Item = Result<v1::RoomEvent, Status>> + Send>>;

#[tonic::async_trait]
impl v1::event_service_server::EventService for Api {
    type WatchEventsStream = EventStream;

    async fn watch_events(&self, req: Request<v1::WatchEventsRequest>) -> Result<Response<EventStream>, Status> {
        let room = req.get_ref().room.clone();
        // Subscribed before the room is checked, so nothing between the two is missed.
        let rx = self.app.sfu.events.subscribe();
        if room.is_empty() {
            self.auth.check(req.metadata(), ALL_ROOMS)?;
        } else {
            self.room(&req, &room)?;
        }
        let stream = futures_util::stream::unfold((rx, room, false), |(mut rx, room, done)| async move {
            if done {
                return None;
            }
            loop {
                match rx.recv().await {
                    Ok(e) if room.is_empty() || e.room == room => {
                        // A watched room that closes ends its stream.
                        let last = !room.is_empty() && e.kind == EventKind::RoomClosed;
                        return Some((Ok(event_pb(&e)), (rx, room, last)));
                    }
                    Ok(_) => continue,
                    // A watcher that fell behind sees a gap in the sequence numbers.
                    Err(tokio::sync::broadcast::error::RecvError::Lagged(n)) => tracing::warn!(missed = n, "event watcher lagged"),
                    Err(tokio::sync::broadcast::error::RecvError::Closed) => return None,
                }
            }
        });
        Ok(Response::new(Box::pin(stream)))
    }
}

/// Serves the API on `listener` (over TLS with `tls`: PEM certificate chain and key) until
/// `shutdown` resolves.
pub async fn serve(
    listener: tokio::net::TcpListener,
    tls: Option<(Vec<u8>, Vec<u8>)>,
    app: Arc<App>,
    mcu: McuConfig,
    auth: Auth,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    let bound = listener.local_addr()?;
    tracing::info!(addr = %bound, tls = tls.is_some(), "gRPC control API serving (reflection and gRPC-web on)");
    let api = Api { app, mcu, auth: Arc::new(auth) };
    let reflection_v1 = tonic_reflection::server::Builder::configure().register_encoded_file_descriptor_set(mcu_api::FILE_DESCRIPTOR_SET).build_v1()?;
    let reflection_v1alpha =
        tonic_reflection::server::Builder::configure().register_encoded_file_descriptor_set(mcu_api::FILE_DESCRIPTOR_SET).build_v1alpha()?;
    let cors = tower_http::cors::CorsLayer::new()
        .allow_origin(tower_http::cors::Any)
        .allow_methods([axum::http::Method::POST, axum::http::Method::OPTIONS])
        .allow_headers(tower_http::cors::Any)
        .expose_headers([
            axum::http::HeaderName::from_static("grpc-status"),
            axum::http::HeaderName::from_static("grpc-message"),
            axum::http::HeaderName::from_static("grpc-status-details-bin"),
        ]);
    let mut builder = tonic::transport::Server::builder();
    if let Some((cert, key)) = tls {
        builder = builder.tls_config(tonic::transport::ServerTlsConfig::new().identity(tonic::transport::Identity::from_pem(cert, key)))?;
    }
    builder
        .accept_http1(true)
        .layer(cors)
        .layer(tonic_web::GrpcWebLayer::new())
        .add_service(v1::room_service_server::RoomServiceServer::new(api.clone()))
        .add_service(v1::layout_service_server::LayoutServiceServer::new(api.clone()))
        .add_service(v1::audio_service_server::AudioServiceServer::new(api.clone()))
        .add_service(v1::recording_service_server::RecordingServiceServer::new(api.clone()))
        .add_service(v1::sip_service_server::SipServiceServer::new(api.clone()))
        .add_service(v1::event_service_server::EventServiceServer::new(api))
        .add_service(reflection_v1)
        .add_service(reflection_v1alpha)
        .serve_with_incoming_shutdown(tokio_stream::wrappers::TcpListenerStream::new(listener), shutdown)
        .await?;
    Ok(())
}
