//! Signalling: WHIP/WHEP (RFC 9725), the WebSocket room protocol and JWT auth.
//!
//! Not yet implemented: this crate is filled by the transport and signalling issue.
