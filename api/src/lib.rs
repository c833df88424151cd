//! The gRPC control API, `mcu.v1` (`proto/mcu/v1/mcu.proto`): generated messages, tonic
//! servers and clients, the descriptor set for server reflection, and the checks that turn
//! requests into the compositor's [`RoomLayout`] (every bad field named).
//!
//! Sans-IO: nothing here opens a socket; the server binary serves these services and its CLI
//! uses the clients.
#![deny(missing_docs)]

mod convert;

pub use convert::*;

/// The generated `mcu.v1` package.
#[allow(missing_docs, clippy::all, clippy::pedantic)]
pub mod v1 {
    tonic::include_proto!("mcu.v1");
}

/// The encoded `FileDescriptorSet` of `mcu.v1`, for server reflection.
pub const FILE_DESCRIPTOR_SET: &[u8] = tonic::include_file_descriptor_set!("mcu_v1_descriptor");
