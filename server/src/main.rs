//! `mcu`: the media server binary.
//!
//! `mcu serve` (WHIP/WHEP, the WebSocket room protocol, the MCU, the gRPC control API), the
//! operator commands that mirror that API (`mcu room|layout|audio|events`), the compositor demo
//! (`mcu demo`), token minting (`mcu token`) and adapter discovery (`mcu adapters`). This crate
//! is the only one that reads the clock, opens sockets or spawns tasks.
#![allow(clippy::disallowed_methods)]

mod config;
mod control;
mod ctl;
mod demo;
mod events;
mod fastpath;
mod grpc;
mod mcu;
mod metrics;
mod record;
mod rtc;
mod serve;
mod sfu;
mod sip;
mod srtp_tap;
mod tap;
mod token;
mod udpmux;
mod whip;

use std::path::PathBuf;

use clap::{Parser, Subcommand};

// The WebRTC stack allocates and frees a few buffers per packet; glibc's allocator spent a third
// of the fan-out's CPU zeroing pages it had just returned to the kernel (benches/results/fanout-*).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;
use mcu_compositor::{AdapterChoice, RenderPath};

#[derive(Parser, Debug)]
#[command(name = "mcu", version, about = "GPU-accelerated SFU + MCU media server")]
struct Cli {
    /// Log filter (tracing EnvFilter syntax), e.g. "info" or "mcu_compositor=debug".
    #[arg(long, env = "MCU_LOG", default_value = "info", global = true)]
    log: String,
    /// A TOML file of flag values (keys are the long flag names); flags and MCU_* variables win.
    #[arg(long, env = "MCU_CONFIG", global = true)]
    #[allow(dead_code)] // read from the raw arguments before parsing (see `config`)
    config: Option<std::path::PathBuf>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Composite synthetic participants in every layout and write the canvases as PNGs.
    Demo(DemoArgs),
    /// Run the server: WebRTC (WHIP/WHEP, MCU participants), the gRPC API, recording, SIP.
    Serve(Box<serve::ServeArgs>),
    /// Mint an access token (JWT) for a room.
    Token(token::TokenArgs),
    /// Rooms over the gRPC API: list, get, create, delete, participants, remove, mute.
    Room {
        #[command(flatten)]
        conn: ctl::Conn,
        #[command(subcommand)]
        cmd: ctl::RoomCmd,
    },
    /// The room composite's layout over the gRPC API.
    Layout {
        #[command(flatten)]
        conn: ctl::Conn,
        #[command(subcommand)]
        cmd: ctl::LayoutCmd,
    },
    /// Per-listener gains over the gRPC API.
    Audio {
        #[command(flatten)]
        conn: ctl::Conn,
        #[command(subcommand)]
        cmd: ctl::AudioCmd,
    },
    /// Recordings over the gRPC API: start, stop, list.
    Record {
        #[command(flatten)]
        conn: ctl::Conn,
        #[command(subcommand)]
        cmd: ctl::RecordCmd,
    },
    /// The SIP gateway over the gRPC API: dial plan, calls, dial out.
    Sip {
        #[command(flatten)]
        conn: ctl::Conn,
        #[command(subcommand)]
        cmd: ctl::SipCmd,
    },
    /// Stream room events (one room, or every room) over the gRPC API.
    Events {
        #[command(flatten)]
        conn: ctl::Conn,
        /// The room (every room when absent).
        room: Option<String>,
    },
    /// List the GPU adapters wgpu finds and the one `--adapter` picks.
    Adapters {
        /// Adapter choice: auto, hardware, lavapipe, gl or name:<text>.
        #[arg(long, env = "MCU_GPU_ADAPTER", default_value = "auto")]
        adapter: AdapterChoice,
    },
}

/// Options of `mcu demo`.
#[derive(clap::Args, Debug)]
pub struct DemoArgs {
    /// Adapter choice: auto, hardware, lavapipe, gl or name:<text>.
    #[arg(long, env = "MCU_GPU_ADAPTER", default_value = "auto")]
    pub adapter: AdapterChoice,
    /// Render path: auto (wgpu on a hardware GPU, CPU on a software rasterizer), gpu or cpu.
    #[arg(long, env = "MCU_RENDER_PATH", default_value = "auto")]
    pub render_path: RenderPath,
    /// Worker threads of the CPU render path (0: one per core).
    #[arg(long, env = "MCU_CPU_RENDER_THREADS", default_value_t = 0)]
    pub cpu_render_threads: usize,
    /// Directory for the PNGs.
    #[arg(long, env = "MCU_DEMO_OUT", default_value = "target/demo")]
    pub out: PathBuf,
    /// Number of synthetic participants (1..=49).
    #[arg(long, default_value_t = 6, value_parser = clap::value_parser!(u32).range(1..=49))]
    pub participants: u32,
    /// Canvas width (even).
    #[arg(long, default_value_t = 1280)]
    pub width: u32,
    /// Canvas height (even).
    #[arg(long, default_value_t = 720)]
    pub height: u32,
}

fn main() -> anyhow::Result<()> {
    // The config file feeds the flags' environment variables, so it is read before parsing.
    if let Some(path) = config::path_from_args(&std::env::args().collect::<Vec<_>>()) {
        config::apply(std::path::Path::new(&path))?;
    }
    let cli = Cli::parse();
    tracing_subscriber::fmt()
        // The SIP stack logs every datagram at info: kept at warn unless asked for by name.
        .with_env_filter({
            let spec = if cli.log.contains("rsipstack") { cli.log.clone() } else { format!("{},rsipstack=warn", cli.log) };
            tracing_subscriber::EnvFilter::try_new(&spec).unwrap_or_else(|_| "info".into())
        })
        .with_writer(std::io::stderr)
        .init();
    match cli.command {
        Command::Demo(args) => demo::run(&args),
        Command::Adapters { adapter } => demo::adapters(&adapter),
        Command::Token(args) => token::run(&args),
        Command::Serve(args) => serve::run(&args),
        Command::Room { conn, cmd } => ctl::room(&conn, cmd),
        Command::Layout { conn, cmd } => ctl::layout(&conn, cmd),
        Command::Audio { conn, cmd } => ctl::audio(&conn, cmd),
        Command::Events { conn, room } => ctl::events(&conn, room),
        Command::Record { conn, cmd } => ctl::record(&conn, cmd),
        Command::Sip { conn, cmd } => ctl::sip(&conn, cmd),
    }
}
