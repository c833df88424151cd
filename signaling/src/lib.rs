//! Signalling: WHIP/WHEP (RFC 9725), the WebSocket room protocol and JWT auth.
//!
//! Today: [`auth`], access tokens (HS256 or EdDSA JWTs naming a room, an identity and grants)
//! minted and checked against an explicit `now`. The HTTP endpoints and the room protocol come
//! with the transport issue.
//!
//! Time: token checks take `now` (seconds since the Unix epoch) from the caller; nothing here
//! reads a clock. Panics: none on input; every bad token is an [`auth::AuthError`].
#![deny(missing_docs)]

pub mod auth;
