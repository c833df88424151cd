//! The SIP gateway's pure parts, beside the SIP stack (`rsipstack`, used by the server). H.264 packetization-mode 0 (one NAL unit per
//! packet, from `mcu_codec::bitstream::annexb_nal_units`) is done by the server.
//!
//! - [`offer`]: reads a phone's SDP offer for plain RTP/AVP (with `rtc-sdp`'s parser), chooses
//!   the codecs (PCMU, PCMA, Opus, telephone-event; H.264 in packetization-mode 0 or 1, VP8),
//!   sizes the video from what the phone can decode, and writes the answer.
//! - [`dialplan`]: which room a dialled number or URI joins.
//! - [`dtmf`]: RFC 4733 telephone events, each key reported once.
//!
//! Total functions over network input: malformed text is an error, never a panic.

pub mod dialplan;
pub mod dtmf;
pub mod offer;

pub use dialplan::DialPlan;
pub use dtmf::{DtmfDetector, DtmfEvent};
pub use offer::{
    AudioChoice, AudioCodec, Direction, Negotiated, NegotiationError, Offer, OfferError, VideoChoice, VideoCodecChoice, answer_sdp, negotiate, offer_sdp,
    parse_offer,
};
