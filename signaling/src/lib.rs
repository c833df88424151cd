//! Signalling: WHIP/WHEP (RFC 9725), the WebSocket room protocol and JWT auth.
//!
//! Today: [`auth`], access tokens (HS256 or EdDSA JWTs naming a room, an identity and grants)
//! minted and checked against an explicit `now`; and [`room`], the WebSocket room protocol's
//! state machine (join, presence, publish, selective subscription with layer caps, chat,
//! peer-to-peer signal relay, limits); and [`sdp`], the facts the server reads from offers
//! itself. The HTTP endpoints (WHIP/WHEP, `/ws`) live in the server binary, which owns sockets.
//!
//! Time: token checks take `now` (seconds since the Unix epoch) from the caller; nothing here
//! reads a clock. Panics: none on input; every bad token is an [`auth::AuthError`].
#![deny(missing_docs)]

pub mod auth;
pub mod room;
pub mod sdp;
