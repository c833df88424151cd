//! The WebRTC transport: peer connections and the `webrtc` crate's settings ([`rtc`]), the one
//! shared UDP port ([`udpmux`]), the direct SRTP send path that bypasses the `webrtc` crate for
//! forwarded packets ([`fastpath`]) and the crypto provider that lends it the keys
//! ([`srtp_tap`]). Below the rooms: nothing here knows of rooms or sessions.

pub mod fastpath;
pub mod rtc;
pub mod srtp_tap;
pub mod udpmux;
