//! The SFU's media plane core, sans-IO: RTP/RTCP parsing, and a forwarding table that rewrites
//! SSRC, sequence numbers and timestamps so that each subscriber sees one continuous stream
//! across simulcast layer switches and publisher restarts; switches layers at keyframes by
//! bandwidth estimate (REMB) and cap; answers NACKs from a retransmission cache (RTX where
//! negotiated); forwards PLI/FIR upstream with throttling; pauses subscribers whose send queue
//! backs up so they never slow the others.
//!
//! Time: every call that depends on time takes `now: Instant`; nothing reads a clock or touches
//! a socket (the server crate owns both). Outputs are drained with
//! [`Forwarder::poll_output`]; [`Forwarder::poll_timeout`] says when to call
//! [`Forwarder::handle_timeout`].
//!
//! Panics: none on network input: malformed RTP/RTCP is an error and counted.
#![deny(missing_docs)]

pub mod forwarder;
pub mod keyframe;
pub mod rtcp;
pub mod rtp;
pub mod stun;

pub use forwarder::{ForwardError, Forwarder, ForwarderConfig, ForwarderStats, Output, SubscriberId, TrackId};
pub use keyframe::Codec;
