//! `mcu`: the media server binary.
//!
//! `mcu serve` (WHIP/WHEP, the WebSocket room protocol, the MCU, the gRPC control API), the
//! operator commands that mirror that API (`mcu room|layout|audio|events`), the compositor demo
//! (`mcu demo`), token minting (`mcu token`) and adapter discovery (`mcu adapters`). This crate
//! is the only one that reads the clock, opens sockets or spawns tasks.
#![allow(clippy::disallowed_methods)]

mod app;
mod cli;
mod counters;
mod front;
mod media;
mod sip;
mod transport;

// The WebRTC stack allocates and frees a few buffers per packet; glibc's allocator spent a third
// of the fan-out's CPU zeroing pages it had just returned to the kernel (benches/results/fanout-*).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> anyhow::Result<()> {
    cli::main()
}
