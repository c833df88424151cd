//! Sans-IO SFU forwarding: RTP rewriting, simulcast layer switching, NACK/RTX, PLI throttling and
//! bandwidth estimation, driven by `now` and packets (no sockets, no clock).
//!
//! Not yet implemented: this crate is filled by the transport and SFU issue.
