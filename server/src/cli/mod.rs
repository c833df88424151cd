//! The command line: `mcu serve`, the operator commands that mirror the gRPC API (`mcu
//! room|layout|audio|record|sip|events`), `mcu demo`, `mcu token` and `mcu adapters`; and the
//! config file that feeds the flags.

pub mod config;
pub mod ctl;
pub mod demo;
pub mod serve;
pub mod token;

use clap::{Parser, Subcommand};

use mcu_compositor::AdapterChoice;

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
    Demo(demo::DemoArgs),
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

/// Runs the command line.
pub fn main() -> anyhow::Result<()> {
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
