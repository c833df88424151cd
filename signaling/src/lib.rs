//! Signalling: WHIP/WHEP (RFC 9725), the WebSocket room protocol and JWT auth.
//!
//! Today: [`auth`], access tokens (HS256 or EdDSA JWTs naming a room, an identity and grants)
//! minted and checked against an explicit `now`; and [`room`], the WebSocket room protocol's
//! state machine (join, presence, publish, selective subscription with layer caps, chat,
//! peer-to-peer signal relay, limits). The HTTP endpoints (WHIP/WHEP, `/ws`) come with the
//! transport.
//!
//! Time: token checks take `now` (seconds since the Unix epoch) from the caller; nothing here
//! reads a clock. Panics: none on input; every bad token is an [`auth::AuthError`].
#![deny(missing_docs)]

pub mod auth;
pub mod room;
