//! `mcu serve`: assembles the server from its parts and runs it until Ctrl-C or SIGTERM: the
//! WebRTC transport, the rooms ([`crate::media`]), the application ([`crate::app::App`]:
//! recordings, SIP), the HTTP port ([`crate::front`]: WHIP/WHEP, `/ws`, `/metrics`) and the
//! gRPC port; then a clean stop that finishes every recording.

use std::{net::SocketAddr, sync::Arc};

use anyhow::Context;
use mcu_pipeline::McuConfig;
use mcu_signaling::{
    auth::Keys,
    room::{Hub, Limits},
};
use rtc::peer_connection::transport::RTCIceServer;

use mcu_compositor::{AdapterChoice, Gpu, RenderPath};

use crate::{
    app::App,
    front::{http::Http, ws::WsHub},
    media::{
        engine::MediaPaths,
        sessions::{Sfu, SfuLimits},
    },
    transport::rtc::RtcConfig,
};

/// The process's one GPU device, if a path wants one, and where composites draw and mix;
/// logged once with the reasons.
fn media_paths(args: &ServeArgs) -> anyhow::Result<MediaPaths> {
    let forced = args.render_path == RenderPath::Gpu || args.mix_path == RenderPath::Gpu;
    let wanted = forced || args.render_path == RenderPath::Auto;
    let gpu = match wanted.then(|| Gpu::new(&args.adapter)) {
        None => None,
        Some(Ok(g)) => Some(g),
        Some(Err(e)) if forced => anyhow::bail!("--render-path/--mix-path gpu: no GPU adapter ({}): {e}", args.adapter),
        Some(Err(e)) => {
            tracing::info!(error = %e, "no GPU adapter");
            None
        }
    };
    let render = match (args.render_path, &gpu) {
        (RenderPath::Cpu, _) => (None, "forced by configuration".to_string()),
        (RenderPath::Gpu, Some(g)) => (Some(g.clone()), format!("forced by configuration, on {}", g.info.name)),
        (RenderPath::Auto, Some(g)) if !g.kind.is_software() => (Some(g.clone()), format!("hardware adapter {}", g.info.name)),
        (RenderPath::Auto, Some(g)) => (None, format!("the only adapter, {}, is a software rasterizer; SIMD scaling on the CPU is faster", g.info.name)),
        (_, None) => (None, "no GPU adapter".to_string()),
    };
    let mix = match (args.mix_path, &gpu) {
        (RenderPath::Gpu, Some(g)) => (Some(g.clone()), format!("forced by configuration, on {}", g.info.name)),
        (RenderPath::Cpu, _) => (None, "forced by configuration".to_string()),
        (_, _) => (None, "auto: the CPU until the point where the GPU mixer pays is measured".to_string()),
    };
    let threads = match args.encode_threads {
        0 => std::thread::available_parallelism().map_or(1, |n| n.get()),
        n => n.min(256),
    };
    let pool =
        rayon::ThreadPoolBuilder::new().num_threads(threads).thread_name(|i| format!("mcu-encode-{i}")).build().context("starting the encode threads")?;
    // NVENC or software, probed once (one log line saying which and why).
    let encoders = mcu_codec::EncoderSelector::probe(args.encoder.0);
    let paths = MediaPaths { render: render.0, mix: mix.0, encode_pool: Some(Arc::new(pool)), encoders: Some(Arc::new(encoders)), told: Arc::default() };
    let (r, m) = paths.names();
    tracing::info!("room composites draw on the {r} ({}) and mix on the {m} ({}); {threads} encode threads", render.1, mix.1);
    Ok(paths)
}

/// Options of `mcu serve`.
#[derive(clap::Args, Debug)]
pub struct ServeArgs {
    /// HTTP listen address (port 0 picks a free port; the chosen address is printed).
    #[arg(long, env = "MCU_HTTP_LISTEN", default_value = "127.0.0.1:8080")]
    pub http_listen: SocketAddr,
    /// gRPC control API listen address (gRPC, gRPC-web and reflection; port 0 picks a free
    /// port; the chosen address is printed).
    #[arg(long, env = "MCU_GRPC_LISTEN", default_value = "127.0.0.1:50051")]
    pub grpc_listen: SocketAddr,
    /// Operator key for the gRPC API (`x-api-key` metadata). With it set, `--dev` no longer
    /// lets tokenless gRPC calls through.
    #[arg(long, env = "MCU_API_KEY", hide_env_values = true)]
    pub api_key: Option<String>,
    /// PEM certificate (chain) for TLS on the gRPC port; with `--grpc-tls-key`, gRPC is served
    /// over TLS only.
    #[arg(long, env = "MCU_GRPC_TLS_CERT", requires = "grpc_tls_key")]
    pub grpc_tls_cert: Option<std::path::PathBuf>,
    /// PEM private key for `--grpc-tls-cert`.
    #[arg(long, env = "MCU_GRPC_TLS_KEY", requires = "grpc_tls_cert")]
    pub grpc_tls_key: Option<std::path::PathBuf>,
    /// Directory recordings are written to (created when needed).
    #[arg(long, env = "MCU_RECORDING_DIR", default_value = "recordings")]
    pub recording_dir: std::path::PathBuf,
    /// Rooms recorded automatically (composite and tracks) from their first publisher,
    /// comma-separated; `*` records every room.
    #[arg(long, env = "MCU_AUTO_RECORD", value_delimiter = ',')]
    pub auto_record: Vec<String>,
    /// An encode of their own for automatic recordings' composite: vp8, h264 or av1 (default:
    /// they take the live composite's encode).
    #[arg(long, env = "MCU_RECORD_CODEC")]
    pub record_codec: Option<String>,
    /// Canvas size of that encode, WxH (default: the live composite's).
    #[arg(long, env = "MCU_RECORD_SIZE")]
    pub record_size: Option<String>,
    /// Bitrate of that encode, bit/s (default: 0.1 bit per pixel per frame).
    #[arg(long, env = "MCU_RECORD_BITRATE")]
    pub record_bitrate: Option<u32>,
    /// Development mode: accepts requests without tokens. Never in production.
    #[arg(long, env = "MCU_DEV")]
    pub dev: bool,
    /// HS256 secret for access tokens (at least 32 bytes).
    #[arg(long, env = "MCU_JWT_SECRET", hide_env_values = true)]
    pub jwt_secret: Option<String>,
    /// Ed25519 public key (PEM) for EdDSA access tokens.
    #[arg(long, env = "MCU_JWT_ED25519_PUBLIC_KEY")]
    pub jwt_ed25519_public_key: Option<std::path::PathBuf>,
    /// Participants per room.
    #[arg(long, env = "MCU_MAX_PARTICIPANTS", default_value_t = 500)]
    pub max_participants: usize,
    /// Rooms at once.
    #[arg(long, env = "MCU_MAX_ROOMS", default_value_t = 1000)]
    pub max_rooms: usize,
    /// Tracks per participant.
    #[arg(long, env = "MCU_MAX_TRACKS", default_value_t = 8)]
    pub max_tracks: usize,
    /// Subscriber (WHEP) sessions per room.
    #[arg(long, env = "MCU_MAX_SUBSCRIBERS", default_value_t = 1000)]
    pub max_subscribers: usize,
    /// Largest request body (SDP offers, trickle fragments) in bytes.
    #[arg(long, env = "MCU_MAX_BODY_BYTES", default_value_t = 64 * 1024)]
    pub max_body_bytes: usize,
    /// UDP addresses WebRTC binds, comma-separated. Port 0: a port per connection; another
    /// port (e.g. `0.0.0.0:7882`): that one port for every connection, on each of the
    /// addresses. `--dev` adds 127.0.0.1 so local clients connect.
    #[arg(long, env = "MCU_RTC_UDP", value_delimiter = ',', default_value = "0.0.0.0:0")]
    pub rtc_udp: Vec<SocketAddr>,
    /// STUN/TURN server URLs handed to the ICE agent and announced to WHIP/WHEP clients in
    /// `Link` headers, comma-separated (e.g. `stun:stun.example.org:3478`).
    #[arg(long, env = "MCU_ICE_SERVERS", value_delimiter = ',')]
    pub ice_servers: Vec<String>,
    /// A WebRTC connection without traffic for 5 s is disconnected; this many seconds more and
    /// it has failed: its session ends as if the client had sent DELETE.
    #[arg(long, env = "MCU_ICE_FAILED_TIMEOUT_SECS", default_value_t = 15)]
    pub ice_failed_timeout_secs: u64,
    /// On the shared UDP port (`--rtc-udp` with a port), WHEP viewers' forwarded packets are
    /// encrypted and sent by the SFU itself; `false` sends them through the `webrtc` crate's
    /// per-connection pipeline instead (about half the packets per core).
    #[arg(long, env = "MCU_RTC_DIRECT_SEND", default_value_t = true, action = clap::ArgAction::Set)]
    pub rtc_direct_send: bool,
    /// Room composite canvas width.
    #[arg(long, env = "MCU_MIX_WIDTH", default_value_t = 1280)]
    pub mix_width: u32,
    /// Room composite canvas height.
    #[arg(long, env = "MCU_MIX_HEIGHT", default_value_t = 720)]
    pub mix_height: u32,
    /// Room composite frames per second.
    #[arg(long, env = "MCU_MIX_FPS", default_value_t = 30)]
    pub mix_fps: u32,
    /// Room composite video codec: vp8 or h264 (constrained baseline, packetization-mode 1).
    #[arg(long, env = "MCU_MIX_CODEC", value_enum, default_value = "vp8")]
    pub mix_codec: mcu_pipeline::MixCodec,
    /// The GPU adapter the composites use: auto, hardware, lavapipe, gl or name:<text>.
    #[arg(long, env = "MCU_GPU_ADAPTER", default_value = "auto")]
    pub adapter: AdapterChoice,
    /// Where composites draw their canvases: auto (wgpu on a hardware adapter; the CPU on a
    /// software rasterizer such as lavapipe, which SIMD scaling beats, or without an adapter),
    /// gpu (wgpu on whatever adapter was chosen, software included) or cpu.
    #[arg(long, env = "MCU_RENDER_PATH", default_value = "auto")]
    pub render_path: RenderPath,
    /// Where composites compute their mixes: auto (the CPU for now: where the GPU mixer starts
    /// to pay is not measured yet), gpu (the compute shader on the chosen adapter) or cpu.
    #[arg(long, env = "MCU_MIX_PATH", default_value = "auto")]
    pub mix_path: RenderPath,
    /// The composites' video encoders: auto (NVENC where the GPU has it and the codec is one
    /// it encodes, in a build with the `nvenc` feature; software otherwise), software, or nvenc
    /// (NVENC only: a canvas NVENC cannot encode fails).
    #[arg(long, env = "MCU_ENCODER", default_value = "auto")]
    pub encoder: EncoderChoice,
    /// Threads that encode the composites' canvases, shared by every room (a room with several
    /// pictures, such as a classroom, encodes them in parallel); 0: one per core.
    #[arg(long, env = "MCU_ENCODE_THREADS", default_value_t = 0)]
    pub encode_threads: usize,
    /// Rooms are classrooms unless created otherwise: every MCU participant who publishes
    /// video sees the room layout without itself (a picture and an encode each; those who
    /// publish no video share the room's). A room created over gRPC says for itself.
    #[arg(long, env = "MCU_EVERYONE_BUT_ME")]
    pub everyone_but_me: bool,
    /// Room composite video bitrate (bps).
    #[arg(long, env = "MCU_MIX_VIDEO_BITRATE", default_value_t = 2_000_000)]
    pub mix_video_bitrate: u32,
    /// Public IPs of a 1:1 NAT in front of this machine (cloud VMs), comma-separated: announced
    /// as server-reflexive ICE candidates beside the host ones.
    #[arg(long, env = "MCU_PUBLIC_IPS", value_delimiter = ',')]
    pub public_ips: Vec<std::net::IpAddr>,
    /// TURN username for the servers above.
    #[arg(long, env = "MCU_TURN_USERNAME")]
    pub turn_username: Option<String>,
    /// TURN credential for the servers above.
    #[arg(long, env = "MCU_TURN_CREDENTIAL", hide_env_values = true)]
    pub turn_credential: Option<String>,
    /// SIP gateway: UDP and TCP on this address (port 0 picks a free port; the chosen address
    /// is printed), or `off`. Without the flag it tries 127.0.0.1:5060 and goes on without SIP
    /// (with a warning) when the port is taken.
    #[arg(long, env = "MCU_SIP_LISTEN")]
    pub sip_listen: Option<String>,
    /// Dial plan entries NUMBER=ROOM (comma-separated or repeated): a call to NUMBER (the
    /// request URI's user part, or user@host) joins ROOM. Unknown numbers get 404.
    #[arg(long, env = "MCU_SIP_ROUTE", value_delimiter = ',')]
    pub sip_route: Vec<String>,
    /// A phone that should be sending RTP and has been silent this long is hung up (e.g. 30s,
    /// 500ms).
    #[arg(long, env = "MCU_SIP_RTP_TIMEOUT", default_value = "30s", value_parser = crate::cli::config::parse_duration)]
    pub sip_rtp_timeout: std::time::Duration,
    /// Ring (180) this long before answering an INVITE (0s: answer at once).
    #[arg(long, env = "MCU_SIP_ANSWER_DELAY", default_value = "0s", value_parser = crate::cli::config::parse_duration)]
    pub sip_answer_delay: std::time::Duration,
    /// The picture SIP phones get (WIDTHxHEIGHT), smaller for phones that declare less.
    #[arg(long, env = "MCU_SIP_VIDEO_SIZE", default_value = "640x360", value_parser = parse_size)]
    pub sip_video_size: (u32, u32),
    /// Its bitrate (bps).
    #[arg(long, env = "MCU_SIP_VIDEO_BITRATE", default_value_t = 800_000)]
    pub sip_video_bitrate: u32,
    /// Inbound digest auth, USER:PASSWORD (comma-separated or repeated): INVITEs without valid
    /// credentials get a 401 challenge. None: INVITEs are not challenged.
    #[arg(long, env = "MCU_SIP_USERS", value_delimiter = ',', hide_env_values = true)]
    pub sip_users: Vec<String>,
    /// Register with this registrar or trunk (a SIP URI, e.g. sip:pbx.example.com:5060) and keep
    /// the registration refreshed.
    #[arg(long, env = "MCU_SIP_REGISTRAR")]
    pub sip_registrar: Option<String>,
    /// The account to register (and answer the registrar's digest challenge with).
    #[arg(long, env = "MCU_SIP_USERNAME", requires = "sip_registrar")]
    pub sip_username: Option<String>,
    /// Its password.
    #[arg(long, env = "MCU_SIP_PASSWORD", hide_env_values = true)]
    pub sip_password: Option<String>,
    /// Registration lifetime asked for (s).
    #[arg(long, env = "MCU_SIP_REGISTER_EXPIRES", default_value_t = 3600)]
    pub sip_register_expires: u32,
    /// SIP over TLS on this address (a fixed port, e.g. 0.0.0.0:5061), with --sip-tls-cert and
    /// --sip-tls-key (PEM).
    #[arg(long, env = "MCU_SIP_TLS_LISTEN", requires_all = ["sip_tls_cert", "sip_tls_key"])]
    pub sip_tls_listen: Option<SocketAddr>,
    /// PEM certificate chain for SIP over TLS.
    #[arg(long, env = "MCU_SIP_TLS_CERT")]
    pub sip_tls_cert: Option<std::path::PathBuf>,
    /// PEM private key for SIP over TLS.
    #[arg(long, env = "MCU_SIP_TLS_KEY")]
    pub sip_tls_key: Option<std::path::PathBuf>,
}

/// `--encoder`: auto, software or nvenc.
#[derive(Debug, Clone, Copy)]
pub struct EncoderChoice(pub mcu_codec::EncoderPreference);

impl std::str::FromStr for EncoderChoice {
    type Err = String;
    fn from_str(s: &str) -> Result<EncoderChoice, String> {
        use mcu_codec::EncoderPreference;
        match s.trim().to_ascii_lowercase().as_str() {
            "auto" => Ok(EncoderChoice(EncoderPreference::Auto)),
            "software" | "cpu" => Ok(EncoderChoice(EncoderPreference::Software)),
            "nvenc" => Ok(EncoderChoice(EncoderPreference::Nvenc)),
            _ => Err(format!("{s:?}: auto, software or nvenc")),
        }
    }
}

/// `640x360`: even sides from 16 to 1920.
fn parse_size(v: &str) -> Result<(u32, u32), String> {
    let (w, h) = mcu_pipeline::parse_size(v)?;
    if !(16..=1920).contains(&w) || !(16..=1920).contains(&h) || w % 2 == 1 || h % 2 == 1 {
        return Err(format!("\"{v}\": sides must be even, 16 to 1920"));
    }
    Ok((w, h))
}

/// `--record-codec/--record-size/--record-bitrate`: automatic recordings' own encode, if any.
fn record_profile(args: &ServeArgs, live: &McuConfig) -> anyhow::Result<Option<mcu_pipeline::VideoProfile>> {
    use mcu_pipeline::MixCodec;
    if args.record_codec.is_none() && args.record_size.is_none() && args.record_bitrate.is_none() {
        return Ok(None);
    }
    let codec = args.record_codec.as_deref().map(str::parse::<MixCodec>).transpose().map_err(|e| anyhow::anyhow!("--record-codec {e}"))?;
    let (width, height) = match args.record_size.as_deref() {
        None => (0, 0),
        Some(v) => mcu_pipeline::parse_size(v).map_err(|e| anyhow::anyhow!("--record-size {e}"))?,
    };
    let profile = mcu_pipeline::VideoProfile::for_recording(codec, width, height, args.record_bitrate.unwrap_or(0), live)
        .map_err(|(field, why)| anyhow::anyhow!("--record-{}: {why}", if field == "bitrate" { "bitrate" } else { "size" }))?;
    Ok(Some(profile))
}

/// One line for the scripts that start the server. A reader that went away (it read the lines
/// it wanted and closed the pipe) is no reason to stop: write errors are ignored.
fn say(line: &str) {
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{line}");
    let _ = out.flush();
}

pub fn run(args: &ServeArgs) -> anyhow::Result<()> {
    let mut keys = Keys::new();
    if let Some(secret) = &args.jwt_secret {
        keys = keys.with_hs256(secret.as_bytes())?;
    }
    if let Some(path) = &args.jwt_ed25519_public_key {
        keys = keys.with_ed25519_public_pem(&std::fs::read(path).with_context(|| format!("reading {}", path.display()))?)?;
    }
    if args.dev {
        tracing::warn!("DEVELOPMENT MODE: requests without access tokens are accepted. Do not expose this server.");
    } else if args.jwt_secret.is_none() && args.jwt_ed25519_public_key.is_none() {
        anyhow::bail!("no token key configured: set MCU_JWT_SECRET or --jwt-ed25519-public-key, or run with --dev");
    }
    let limits = Limits { max_participants: args.max_participants, max_rooms: args.max_rooms, max_tracks: args.max_tracks, ..Limits::default() };
    let ice_servers: Vec<RTCIceServer> = args
        .ice_servers
        .iter()
        .map(|u| RTCIceServer {
            urls: vec![u.clone()],
            username: args.turn_username.clone().unwrap_or_default(),
            credential: args.turn_credential.clone().unwrap_or_default(),
        })
        .collect();
    let ice_links = args.ice_servers.iter().map(|u| format!("<{u}>; rel=\"ice-server\"")).collect();
    let mut rtc = RtcConfig::new(
        &args.rtc_udp,
        args.dev,
        ice_servers,
        std::time::Duration::from_secs(args.ice_failed_timeout_secs.max(1)),
        args.public_ips.iter().map(|ip| ip.to_string()).collect(),
    );
    rtc.direct_send = args.rtc_direct_send;
    let sfu_limits =
        SfuLimits { max_rooms: args.max_rooms, max_participants: args.max_participants, max_tracks: args.max_tracks, max_subscribers: args.max_subscribers };
    let paths = media_paths(args)?;
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    runtime.block_on(async move {
        rtc.start().context("binding the shared WebRTC UDP port (--rtc-udp)")?;
        let sfu = Sfu::new(rtc, sfu_limits, paths);
        sfu.set_everyone_but_me_default(args.everyone_but_me);
        let mcu = McuConfig {
            codec: args.mix_codec,
            width: args.mix_width & !1,
            height: args.mix_height & !1,
            fps: args.mix_fps.clamp(1, 60),
            video_bitrate: args.mix_video_bitrate,
            audio_bitrate: 48_000,
        };
        let (stop_tx, mut stop_rx) = tokio::sync::watch::channel(false);
        let grpc_tls = match (&args.grpc_tls_cert, &args.grpc_tls_key) {
            (Some(cert), Some(key)) => Some((
                std::fs::read(cert).with_context(|| format!("reading {}", cert.display()))?,
                std::fs::read(key).with_context(|| format!("reading {}", key.display()))?,
            )),
            _ => None,
        };
        let grpc_scheme = if grpc_tls.is_some() { "https" } else { "http" };
        let grpc_auth = crate::front::grpc::Auth { keys: keys.clone(), dev: args.dev, api_key: args.api_key.clone().filter(|k| !k.is_empty()) };
        let grpc_listener = tokio::net::TcpListener::bind(args.grpc_listen).await.with_context(|| format!("binding gRPC {}", args.grpc_listen))?;
        let grpc_port = grpc_listener.local_addr()?.port();
        let record_profile = record_profile(args, &mcu)?;
        let auto_record = (!args.auto_record.is_empty()).then(|| (args.auto_record.clone(), mcu, record_profile));
        let app = App::new(sfu.clone(), args.recording_dir.clone(), auto_record);
        let http = Arc::new(Http { sfu: sfu.clone(), app: app.clone(), keys: keys.clone(), dev: args.dev, ice_links, mcu, grpc_port });
        let ws = WsHub::new(http.clone(), Hub::new(keys, args.dev, limits));
        ws.bridge_events(sfu.events.subscribe());
        let router = crate::front::router(http, ws, args.max_body_bytes);
        let listener = tokio::net::TcpListener::bind(args.http_listen).await.with_context(|| format!("binding {}", args.http_listen))?;
        let addr = listener.local_addr()?;
        // Scripts read these two lines, in this order.
        say(&format!("listening on http://{addr}"));
        say(&format!("grpc listening on {grpc_scheme}://{}", grpc_listener.local_addr()?));
        let plan = mcu_sip::DialPlan::parse(args.sip_route.iter().map(String::as_str))?;
        let sip = match args.sip_listen.as_deref() {
            Some("off") => None,
            explicit => {
                let listen: SocketAddr =
                    explicit.unwrap_or("127.0.0.1:5060").parse().with_context(|| format!("--sip-listen {explicit:?} is not ADDR:PORT or off"))?;
                let settings = crate::sip::SipSettings {
                    listen,
                    plan,
                    rtp_timeout: args.sip_rtp_timeout,
                    answer_delay: args.sip_answer_delay,
                    video_size: args.sip_video_size,
                    video_bitrate: args.sip_video_bitrate,
                    users: args
                        .sip_users
                        .iter()
                        .map(|u| {
                            u.split_once(':')
                                .map(|(a, b)| (a.to_string(), b.to_string()))
                                .ok_or_else(|| anyhow::anyhow!("--sip-users entries are USER:PASSWORD"))
                        })
                        .collect::<anyhow::Result<_>>()?,
                    registrar: args.sip_registrar.clone(),
                    register_user: args.sip_username.clone().map(|u| (u, args.sip_password.clone().unwrap_or_default())),
                    register_expires: args.sip_register_expires.max(60),
                    tls: match (&args.sip_tls_listen, &args.sip_tls_cert, &args.sip_tls_key) {
                        (Some(addr), Some(cert), Some(key)) => Some((
                            *addr,
                            std::fs::read(cert).with_context(|| format!("reading {}", cert.display()))?,
                            std::fs::read(key).with_context(|| format!("reading {}", key.display()))?,
                        )),
                        _ => None,
                    },
                };
                match crate::sip::start(sfu.clone(), settings, mcu).await {
                    Ok((gateway, bound)) => {
                        say(&format!("sip listening on udp+tcp {bound}"));
                        if let Some(tls) = args.sip_tls_listen {
                            say(&format!("sip listening on tls {tls}"));
                        }
                        Some(gateway)
                    }
                    Err(e) if explicit.is_none() => {
                        tracing::warn!(error = %e, "SIP gateway not started (127.0.0.1:5060 unavailable); set --sip-listen");
                        None
                    }
                    Err(e) => return Err(e.context(format!("binding SIP {listen}"))),
                }
            }
        };
        app.set_sip(sip.clone());
        let grpc = tokio::spawn(crate::front::grpc::serve(grpc_listener, grpc_tls, app.clone(), mcu, grpc_auth, async move {
            let _ = stop_rx.wait_for(|stop| *stop).await;
        }));
        tracing::info!(%addr, dev = args.dev, "mcu serving");
        axum::serve(listener, router)
            .with_graceful_shutdown(async move {
                // Ctrl-C or SIGTERM (service managers, `docker stop`): a clean stop that
                // finishes every recording.
                let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).ok();
                tokio::select! {
                    _ = tokio::signal::ctrl_c() => {}
                    _ = async { match term.as_mut() { Some(t) => { t.recv().await; } None => std::future::pending::<()>().await } } => {}
                }
                tracing::info!("shutting down");
                let _ = stop_tx.send(true);
            })
            .await?;
        // Open event streams would hold a graceful gRPC shutdown forever: they get 3 s.
        let abort = grpc.abort_handle();
        match tokio::time::timeout(std::time::Duration::from_secs(3), grpc).await {
            Ok(Ok(Err(e))) => tracing::error!(error = %e, "gRPC server failed"),
            Ok(Err(e)) => tracing::error!(error = %e, "gRPC server task failed"),
            Ok(Ok(Ok(()))) => {}
            Err(_) => abort.abort(),
        }
        // Every recording is finished (duration, cues) before the sessions end.
        let recorder = app.clone();
        let _ = tokio::task::spawn_blocking(move || recorder.stop_recordings(None)).await;
        if let Some(gateway) = sip {
            gateway.shutdown().await;
        }
        sfu.end_all().await;
        // Nothing may still draw or mix on the GPU device when the process exits.
        sfu.stop_composites(std::time::Duration::from_secs(5)).await;
        drop(app);
        anyhow::Ok(())
    })
}
