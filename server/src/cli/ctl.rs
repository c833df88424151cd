//! Operator subcommands that mirror the gRPC API: `mcu room …`, `mcu layout …`, `mcu audio …`,
//! `mcu events …`, `mcu record …`, `mcu sip …`. Each is a gRPC client call against a running server.

use anyhow::Context;
use clap::{Args, Subcommand, ValueEnum};
use mcu_api::v1;
use tonic::{Request, metadata::MetadataValue, transport::Channel};

/// Where the server is and who is calling.
#[derive(Args, Debug)]
pub struct Conn {
    /// gRPC address of the server.
    #[arg(long, env = "MCU_GRPC_URL", default_value = "http://127.0.0.1:50051", global = true)]
    pub grpc: String,
    /// Operator key (`x-api-key`).
    #[arg(long, env = "MCU_API_KEY", hide_env_values = true, global = true)]
    pub api_key: Option<String>,
    /// Admin access token (JWT), sent as `authorization: Bearer …`.
    #[arg(long, env = "MCU_TOKEN", hide_env_values = true, global = true)]
    pub token: Option<String>,
}

/// `mcu room …`
#[derive(Subcommand, Debug)]
pub enum RoomCmd {
    /// Every room.
    List,
    /// One room.
    Get { room: String },
    /// A room that stays until deleted.
    Create {
        room: String,
        /// Participants at most (0: the server's limit).
        #[arg(long, default_value_t = 0)]
        max_participants: u32,
        /// Start the composite now.
        #[arg(long)]
        start_composite: bool,
        /// A classroom (true): every MCU participant who publishes video sees everyone but
        /// itself; false: they see the room composite; unset: the server's default.
        #[arg(long)]
        everyone_but_me: Option<bool>,
    },
    /// End every session and forget the room.
    Delete { room: String },
    /// The room's participants and their tracks.
    Participants { room: String },
    /// End a participant's session.
    Remove { room: String, participant: String },
    /// Stop forwarding and mixing a track (`--unmute` resumes it).
    Mute {
        room: String,
        /// Track id, e.g. `alice/video-0`.
        track: String,
        #[arg(long)]
        unmute: bool,
    },
}

/// Layout kinds on the command line.
#[derive(ValueEnum, Clone, Copy, Debug)]
pub enum Kind {
    /// Equal cells.
    Grid,
    /// The active speaker large.
    Speaker,
    /// The presenter large.
    Presentation,
    /// Explicit rectangles (`--tile`).
    Custom,
}

/// `mcu layout …`
#[derive(Subcommand, Debug)]
pub enum LayoutCmd {
    /// Set the room composite's layout.
    Set {
        room: String,
        kind: Kind,
        /// Grid columns (0: automatic).
        #[arg(long, default_value_t = 0)]
        columns: u32,
        /// Grid rows (0: automatic).
        #[arg(long, default_value_t = 0)]
        rows: u32,
        /// Pixels between cells.
        #[arg(long, default_value_t = 0)]
        gap: u32,
        /// Presenter (presentation layout).
        #[arg(long, default_value = "")]
        presenter: String,
        /// Custom tiles: `name:x,y,WxH[,z]`, repeatable.
        #[arg(long = "tile")]
        tiles: Vec<String>,
        /// Participants placed first, comma-separated.
        #[arg(long, value_delimiter = ',')]
        pin: Vec<String>,
        /// The large tile, whoever speaks.
        #[arg(long, default_value = "")]
        spotlight: String,
        /// Canvas background, `#rrggbb`.
        #[arg(long)]
        background: Option<String>,
        /// Transition duration (ms).
        #[arg(long, default_value_t = 0)]
        transition_ms: u32,
        /// Set this MCU participant's own canvas instead of the room's.
        #[arg(long, default_value = "")]
        viewer: String,
        /// With `--viewer`: leave the viewer out of its own canvas.
        #[arg(long)]
        hide_self: bool,
    },
    /// Drop an MCU participant's own layout (it sees the room's again).
    Clear { room: String, viewer: String },
    /// The room composite's layout (or what `--viewer` sees).
    Get {
        room: String,
        #[arg(long, default_value = "")]
        viewer: String,
    },
}

/// `mcu record …`
#[derive(Subcommand, Debug)]
pub enum RecordCmd {
    /// Record a room's composite (and with `--tracks`, each track).
    Start {
        room: String,
        #[arg(long)]
        tracks: bool,
        /// The composite's file name (no extension).
        #[arg(long, default_value = "")]
        filename: String,
        /// An encode of its own for the composite: vp8, h264 or av1 (default: the live one's).
        #[arg(long)]
        codec: Option<String>,
        /// Its canvas size, WxH (default: the live one's).
        #[arg(long)]
        size: Option<String>,
        /// Its bitrate in bit/s (default: 0.1 bit per pixel per frame).
        #[arg(long)]
        bitrate: Option<u32>,
    },
    /// Finish a recording.
    Stop { id: String },
    /// Recordings (of one room, or all).
    List { room: Option<String> },
}

/// `mcu audio …`
#[derive(Subcommand, Debug)]
pub enum AudioCmd {
    /// Silence `source` for `listener` ("" or `--room-mix`: the room mix).
    Mute {
        room: String,
        source: String,
        #[arg(long, default_value = "")]
        listener: String,
    },
    /// Undo a mute or gain.
    Reset {
        room: String,
        source: String,
        #[arg(long, default_value = "")]
        listener: String,
    },
    /// Set a gain (0..=4).
    Gain {
        room: String,
        source: String,
        gain: f32,
        #[arg(long, default_value = "")]
        listener: String,
    },
    /// Gains that differ from the default.
    Matrix { room: String },
    /// Mix only the K loudest (0: everyone).
    TopK { room: String, k: u32 },
}

fn parse_tile(s: &str) -> anyhow::Result<v1::CustomTile> {
    let err = || anyhow::anyhow!("--tile {s:?}: expected name:x,y,WxH[,z]");
    let (name, geo) = s.rsplit_once(':').ok_or_else(err)?;
    let parts: Vec<&str> = geo.split(',').collect();
    if parts.len() < 3 {
        return Err(err());
    }
    let (width, height) = mcu_pipeline::parse_size(parts[2]).map_err(|_| err())?;
    Ok(v1::CustomTile {
        participant: name.into(),
        x: parts[0].parse().map_err(|_| err())?,
        y: parts[1].parse().map_err(|_| err())?,
        width,
        height,
        z: parts.get(3).map(|z| z.parse()).transpose().map_err(|_| err())?.unwrap_or(0),
        tile: None,
    })
}

/// `--codec/--size/--bitrate` of `record start`: `None` when none is given.
fn recording_video(codec: Option<&str>, size: Option<&str>, bitrate: Option<u32>) -> anyhow::Result<Option<v1::RecordingVideo>> {
    if codec.is_none() && size.is_none() && bitrate.is_none() {
        return Ok(None);
    }
    let codec = match codec.map(str::parse::<mcu_pipeline::MixCodec>).transpose().map_err(|e| anyhow::anyhow!("--codec {e}"))? {
        None => v1::RecordingCodec::Unspecified,
        Some(mcu_pipeline::MixCodec::Vp8) => v1::RecordingCodec::Vp8,
        Some(mcu_pipeline::MixCodec::H264) => v1::RecordingCodec::H264,
        Some(mcu_pipeline::MixCodec::Av1) => v1::RecordingCodec::Av1,
    };
    let (width, height) = match size {
        None => (0, 0),
        Some(s) => mcu_pipeline::parse_size(s).map_err(|e| anyhow::anyhow!("--size {e}, e.g. 1920x1080"))?,
    };
    Ok(Some(v1::RecordingVideo { codec: codec as i32, width, height, bitrate_bps: bitrate.unwrap_or(0) }))
}

fn request<T>(conn: &Conn, msg: T) -> anyhow::Result<Request<T>> {
    let mut req = Request::new(msg);
    if let Some(k) = &conn.api_key {
        req.metadata_mut().insert("x-api-key", MetadataValue::try_from(k.as_str()).context("--api-key is not valid metadata")?);
    }
    if let Some(t) = &conn.token {
        req.metadata_mut().insert("authorization", MetadataValue::try_from(format!("Bearer {t}")).context("--token is not valid metadata")?);
    }
    Ok(req)
}

async fn channel(conn: &Conn) -> anyhow::Result<Channel> {
    Channel::from_shared(conn.grpc.clone())?.connect().await.with_context(|| format!("connecting to {}", conn.grpc))
}

fn status(e: tonic::Status) -> anyhow::Error {
    anyhow::anyhow!("{:?}: {}", e.code(), e.message())
}

fn print_room(r: &v1::Room) {
    let everyone_but_me = r.options.as_ref().and_then(|o| o.everyone_but_me).unwrap_or(false);
    let paths = if r.composite { format!("\trender={}\tmix={}", r.render_path, r.mix_path) } else { String::new() };
    println!(
        "{}\tparticipants={}\tsubscribers={}\tcomposite={}\tpersistent={}\teveryone_but_me={everyone_but_me}{paths}",
        r.name, r.participants, r.subscribers, r.composite, r.persistent
    );
}

fn block_on<F: std::future::Future<Output = anyhow::Result<()>>>(f: F) -> anyhow::Result<()> {
    tokio::runtime::Builder::new_current_thread().enable_all().build()?.block_on(f)
}

/// `mcu room …`
pub fn room(conn: &Conn, cmd: RoomCmd) -> anyhow::Result<()> {
    block_on(async {
        let mut c = v1::room_service_client::RoomServiceClient::new(channel(conn).await?);
        match cmd {
            RoomCmd::List => {
                for r in c.list_rooms(request(conn, v1::ListRoomsRequest {})?).await.map_err(status)?.into_inner().rooms {
                    print_room(&r);
                }
            }
            RoomCmd::Get { room } => print_room(&c.get_room(request(conn, v1::GetRoomRequest { room })?).await.map_err(status)?.into_inner()),
            RoomCmd::Create { room, max_participants, start_composite, everyone_but_me } => {
                let options = Some(v1::RoomOptions { max_participants, start_composite, everyone_but_me });
                print_room(&c.create_room(request(conn, v1::CreateRoomRequest { name: room, options, layout: None })?).await.map_err(status)?.into_inner());
            }
            RoomCmd::Delete { room } => {
                let r = c.delete_room(request(conn, v1::DeleteRoomRequest { room })?).await.map_err(status)?.into_inner();
                println!("deleted; {} sessions ended", r.sessions_ended);
            }
            RoomCmd::Participants { room } => {
                for p in c.list_participants(request(conn, v1::ListParticipantsRequest { room })?).await.map_err(status)?.into_inner().participants {
                    let kind = if p.kind == v1::ParticipantKind::Mcu as i32 { "mcu" } else { "publisher" };
                    let tracks: Vec<String> = p.tracks.iter().map(|t| format!("{} {}{}", t.id, t.codec, if t.muted { " (muted)" } else { "" })).collect();
                    println!("{}\t{kind}\t{}", p.name, tracks.join(", "));
                }
            }
            RoomCmd::Remove { room, participant } => {
                c.remove_participant(request(conn, v1::RemoveParticipantRequest { room, participant })?).await.map_err(status)?;
                println!("removed");
            }
            RoomCmd::Mute { room, track, unmute } => {
                let t = c.mute_track(request(conn, v1::MuteTrackRequest { room, track_id: track, muted: !unmute })?).await.map_err(status)?.into_inner();
                println!("{}\tmuted={}", t.track.map(|t| t.id).unwrap_or_default(), !unmute);
            }
        }
        Ok(())
    })
}

/// `mcu layout …`
pub fn layout(conn: &Conn, cmd: LayoutCmd) -> anyhow::Result<()> {
    block_on(async {
        let mut c = v1::layout_service_client::LayoutServiceClient::new(channel(conn).await?);
        match cmd {
            LayoutCmd::Get { room, viewer } => {
                println!("{:?}", c.get_layout(request(conn, v1::GetLayoutRequest { room, viewer })?).await.map_err(status)?.into_inner())
            }
            LayoutCmd::Clear { room, viewer } => {
                c.set_layout(request(conn, v1::SetLayoutRequest { room, viewer, layout: None })?).await.map_err(status)?;
                println!("viewer layout cleared");
            }
            LayoutCmd::Set { room, kind, columns, rows, gap, presenter, tiles, pin, spotlight, background, transition_ms, viewer, hide_self } => {
                use v1::layout::Kind as K;
                let kind = match kind {
                    Kind::Grid => K::Grid(v1::Grid { columns, rows, gap }),
                    Kind::Speaker => K::ActiveSpeaker(v1::ActiveSpeaker { strip: None }),
                    Kind::Presentation => K::Presentation(v1::Presentation { presenter, strip: None }),
                    Kind::Custom => K::Custom(v1::Custom { tiles: tiles.iter().map(|t| parse_tile(t)).collect::<anyhow::Result<_>>()? }),
                };
                let background = match background {
                    None => None,
                    Some(hex) => {
                        let rgb = mcu_media::Rgb::parse_hex(&hex).ok_or_else(|| anyhow::anyhow!("--background {hex:?}: expected #rrggbb"))?;
                        Some(v1::Color { r: rgb.0 as u32, g: rgb.1 as u32, b: rgb.2 as u32 })
                    }
                };
                let transition = (transition_ms > 0).then_some(v1::Transition { duration_ms: transition_ms, easing: 0 });
                let layout = v1::Layout { kind: Some(kind), pinned: pin, spotlight, tile: None, background, transition, hide_self };
                c.set_layout(request(conn, v1::SetLayoutRequest { room, viewer, layout: Some(layout) })?).await.map_err(status)?;
                println!("layout set");
            }
        }
        Ok(())
    })
}

/// `mcu audio …`
pub fn audio(conn: &Conn, cmd: AudioCmd) -> anyhow::Result<()> {
    block_on(async {
        let mut c = v1::audio_service_client::AudioServiceClient::new(channel(conn).await?);
        use v1::gain_edit::Change;
        let (room, edit) = match cmd {
            AudioCmd::Matrix { room } => {
                for g in c.get_audio_matrix(request(conn, v1::GetAudioMatrixRequest { room })?).await.map_err(status)?.into_inner().gains {
                    println!("{}\t{}\t{}", if g.listener.is_empty() { "(room mix)" } else { &g.listener }, g.source, g.gain);
                }
                return Ok(());
            }
            AudioCmd::TopK { room, k } => {
                c.set_top_k(request(conn, v1::SetTopKRequest { room, top_k: k })?).await.map_err(status)?;
                println!("top-k {k}");
                return Ok(());
            }
            AudioCmd::Mute { room, source, listener } => (room, v1::GainEdit { listener, source, change: Some(Change::Mute(true)) }),
            AudioCmd::Reset { room, source, listener } => (room, v1::GainEdit { listener, source, change: Some(Change::Reset(true)) }),
            AudioCmd::Gain { room, source, gain, listener } => (room, v1::GainEdit { listener, source, change: Some(Change::Gain(gain)) }),
        };
        let m = c.update_audio_matrix(request(conn, v1::UpdateAudioMatrixRequest { room, edits: vec![edit] })?).await.map_err(status)?.into_inner();
        println!("{} gains differ from the default", m.gains.len());
        Ok(())
    })
}

/// `mcu events [ROOM]`: one line per event until the stream ends.
pub fn events(conn: &Conn, room: Option<String>) -> anyhow::Result<()> {
    block_on(async {
        let mut c = v1::event_service_client::EventServiceClient::new(channel(conn).await?);
        let mut stream = c.watch_events(request(conn, v1::WatchEventsRequest { room: room.unwrap_or_default() })?).await.map_err(status)?.into_inner();
        while let Some(e) = stream.message().await.map_err(status)? {
            let what = e.event.map(|ev| format!("{ev:?}")).unwrap_or_default();
            println!("{}\t{}\t{}", e.sequence, e.room, what);
        }
        Ok(())
    })
}

fn print_recording(r: &v1::Recording) {
    println!("{}\t{}\t{:?}", r.id, r.room, v1::RecordingState::try_from(r.state).unwrap_or_default());
    for f in &r.files {
        let what = if f.track_id.is_empty() { "composite" } else { &f.track_id };
        println!(
            "  {what}\t{}\t{:?}\t{} bytes\t{} ms{}",
            f.path,
            v1::RecordingState::try_from(f.state).unwrap_or_default(),
            f.bytes,
            f.duration_ms,
            if f.error.is_empty() { String::new() } else { format!("\t{}", f.error) }
        );
    }
}

/// `mcu record …`
pub fn record(conn: &Conn, cmd: RecordCmd) -> anyhow::Result<()> {
    block_on(async {
        let mut c = v1::recording_service_client::RecordingServiceClient::new(channel(conn).await?);
        match cmd {
            RecordCmd::Start { room, tracks, filename, codec, size, bitrate } => {
                let video = recording_video(codec.as_deref(), size.as_deref(), bitrate)?;
                print_recording(
                    &c.start_recording(request(conn, v1::StartRecordingRequest { room, tracks, filename, video })?).await.map_err(status)?.into_inner(),
                )
            }
            RecordCmd::Stop { id } => {
                print_recording(&c.stop_recording(request(conn, v1::StopRecordingRequest { recording_id: id })?).await.map_err(status)?.into_inner())
            }
            RecordCmd::List { room } => {
                for r in c
                    .list_recordings(request(conn, v1::ListRecordingsRequest { room: room.unwrap_or_default() })?)
                    .await
                    .map_err(status)?
                    .into_inner()
                    .recordings
                {
                    print_recording(&r);
                }
            }
        }
        Ok(())
    })
}

/// `mcu sip …`
#[derive(Subcommand, Debug)]
pub enum SipCmd {
    /// The dial plan.
    Routes,
    /// Calls to NUMBER join ROOM.
    Route { number: String, room: String },
    /// Remove NUMBER from the dial plan.
    Unroute { number: String },
    /// Calls in progress (of one room, or all).
    Calls { room: Option<String> },
    /// Call a SIP URI into a room (returns when answered).
    Dial {
        room: String,
        uri: String,
        /// Participant name suffix (default: the URI's user part).
        #[arg(long, default_value = "")]
        name: String,
    },
}

/// `mcu sip …`
pub fn sip(conn: &Conn, cmd: SipCmd) -> anyhow::Result<()> {
    block_on(async {
        let mut c = v1::sip_service_client::SipServiceClient::new(channel(conn).await?);
        match cmd {
            SipCmd::Routes => {
                for r in c.list_sip_routes(request(conn, v1::ListSipRoutesRequest {})?).await.map_err(status)?.into_inner().routes {
                    println!("{}\t{}", r.number, r.room);
                }
            }
            SipCmd::Route { number, room } => {
                let r = c.set_sip_route(request(conn, v1::SipRoute { number, room })?).await.map_err(status)?.into_inner();
                println!("{}\t{}", r.number, r.room);
            }
            SipCmd::Unroute { number } => {
                c.delete_sip_route(request(conn, v1::DeleteSipRouteRequest { number: number.clone() })?).await.map_err(status)?;
                println!("removed {number}");
            }
            SipCmd::Calls { room } => {
                for call in
                    c.list_sip_calls(request(conn, v1::ListSipCallsRequest { room: room.unwrap_or_default() })?).await.map_err(status)?.into_inner().calls
                {
                    println!("{}\t{}", call.room, call.participant);
                }
            }
            SipCmd::Dial { room, uri, name } => {
                let call = c.dial_sip(request(conn, v1::DialSipRequest { room, uri, name })?).await.map_err(status)?.into_inner();
                println!("{}\t{}", call.room, call.participant);
            }
        }
        Ok(())
    })
}
