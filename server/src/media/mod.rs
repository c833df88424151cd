//! Rooms and the sessions in them: who publishes and who receives what ([`room`], the rooms'
//! forwarders), the WebRTC and SIP sessions ([`sessions`]), the room media engine's driver
//! ([`engine`]), the copies of publisher packets it reads ([`tap`]), recordings ([`record`]) and
//! the room event stream ([`events`]).

pub mod engine;
pub mod events;
pub mod record;
pub mod room;
pub mod sessions;
pub mod tap;
