//! The room media engine: what a room's composite does with its publishers' media, as two
//! sans-IO state machines in the str0m style.
//!
//! - [`VideoEngine`]: each publisher's video packets through a jitter buffer and depacketizer,
//!   decoded; the canvases planned (who sees which picture, in which encode profile), drawn by
//!   a [`Renderer`] (the compositor), each encoded once by an encoder from an
//!   [`EncoderFactory`] and packetized for every viewer of it. Its policy: keyframes for
//!   viewers that move canvas and for new recordings, shared-encode rate control (REMB and
//!   loss), simulcast layer caps by tile size, placeholders for silent senders, drawing only
//!   what someone receives, a failed encoder failing only its canvas, idle shutdown.
//! - [`AudioEngine`]: each publisher's Opus through an adaptive playout buffer, decoded to
//!   mono; every 20 ms the mixer's mixes (the room's, and each listener's everyone-but-me),
//!   each distinct mix encoded once ([`mcu_mixer::SharedEncoders`]) and sent on the track of
//!   everyone who hears it; active-speaker changes.
//!
//! Both are driven the same way: the room's state arrives as a [`RoomView`] snapshot
//! (`set_view`, once per pass), packets through `handle_packet(arrived, ..)`, time through
//! `handle_timeout(now)`; results are drained with `poll_output()` and the next deadline is
//! `poll_timeout()`. Nothing here reads a clock, opens a socket or spawns a thread
//! (`clippy.toml` bans the clock): the server runs each engine on a thread of its own per room
//! and scenario tests run them on virtual time.
//!
//! Panics: none on network input (undecodable media is counted and logged at debug); a broken
//! invariant panics with the reason.
#![deny(missing_docs)]

mod audio;
pub mod audio_jitter;
mod depack;
mod encoders;
pub mod jitter;
mod plan;
mod rate;
mod video;

use std::{
    collections::{BTreeMap, HashMap, HashSet},
    sync::Arc,
    time::Instant,
};

use bytes::Bytes;
use mcu_codec::VideoCodec;

pub use audio::{AudioEngine, AudioOutput, AudioStats, MIX_INPUT, PHONE_OPUS_COMPLEXITY};
pub use encoders::{DecoderFactory, EncoderFactory, Renderer, SelectedEncoders, SoftwareCodecs};
pub use plan::layer_for_tile;
pub use rate::{ESTIMATE_MAX_AGE, MIN_VIDEO_BITRATE, RATE_CHECK_INTERVAL, loss_based_bitrate, shared_encode_bitrate};
pub use video::{VideoEngine, VideoOutput, VideoStats};

/// A track id (the SFU's).
pub type TrackId = mcu_sfu::TrackId;

/// The virtual participant whose tracks are the room composite.
pub const MIX: &str = "_mix";
/// The composite's video payload type.
pub const VIDEO_PT: u8 = 96;
/// The composite's audio payload type.
pub const AUDIO_PT: u8 = 111;
/// The largest RTP payload the composite sends.
pub const MTU: usize = 1200;
/// The canvas WHEP viewers (and MCU participants without a layout of their own) see.
pub const ROOM_CANVAS: &str = "room";

/// The composite's video codec.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "clap", derive(clap::ValueEnum))]
pub enum MixCodec {
    /// VP8 (libvpx).
    Vp8,
    /// H.264 constrained baseline, packetization-mode 1 (openh264).
    H264,
    /// AV1 (rav1e): recording profiles only, not a live composite codec.
    #[cfg_attr(feature = "clap", value(skip))]
    Av1,
}

impl MixCodec {
    /// The codec crate's name for it.
    pub fn video_codec(self) -> VideoCodec {
        match self {
            MixCodec::Vp8 => VideoCodec::Vp8,
            MixCodec::H264 => VideoCodec::H264,
            MixCodec::Av1 => VideoCodec::Av1,
        }
    }
}

impl std::str::FromStr for MixCodec {
    type Err = String;

    /// `vp8`, `h264` or `av1`, in any case: the one reader of codec names for the command line,
    /// the config file and the operator commands.
    fn from_str(s: &str) -> Result<MixCodec, String> {
        match s.trim().to_ascii_lowercase().as_str() {
            "vp8" => Ok(MixCodec::Vp8),
            "h264" => Ok(MixCodec::H264),
            "av1" => Ok(MixCodec::Av1),
            _ => Err(format!("{s:?}: vp8, h264 or av1")),
        }
    }
}

/// `WIDTHxHEIGHT` (`x` or `X`, spaces around the numbers allowed): the one reader of picture
/// sizes for the command line, the config file and the operator commands. Ranges are the
/// caller's to check.
pub fn parse_size(s: &str) -> Result<(u32, u32), String> {
    let (w, h) = s.split_once(['x', 'X']).ok_or_else(|| format!("{s:?} is not WIDTHxHEIGHT"))?;
    let w = w.trim().parse().map_err(|_| format!("bad width in {s:?}"))?;
    let h = h.trim().parse().map_err(|_| format!("bad height in {s:?}"))?;
    Ok((w, h))
}

/// Composite settings.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct McuConfig {
    /// Video codec of the composite.
    pub codec: MixCodec,
    /// Canvas width.
    pub width: u32,
    /// Canvas height.
    pub height: u32,
    /// Canvas frames per second.
    pub fps: u32,
    /// Video bitrate (bps).
    pub video_bitrate: u32,
    /// Opus bitrate (bps).
    pub audio_bitrate: u32,
}

/// How a viewer's picture is encoded when it differs from the room's (`McuConfig`): a SIP
/// phone gets H.264 at the size it decodes, in single NAL unit packets when it offered only
/// packetization-mode 0.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct VideoProfile {
    /// The codec.
    pub codec: MixCodec,
    /// Canvas width.
    pub width: u32,
    /// Canvas height.
    pub height: u32,
    /// H.264 packetization-mode 0: one NAL unit per packet (slices kept under the MTU).
    pub single_nal: bool,
    /// Target bitrate (bps).
    pub bitrate: u32,
}

impl VideoProfile {
    /// The room's own encode.
    pub fn of(config: &McuConfig) -> VideoProfile {
        VideoProfile { codec: config.codec, width: config.width, height: config.height, single_nal: false, bitrate: config.video_bitrate }
    }

    /// A recording's own encode: `codec`, `width`, `height` and `bitrate` (0: the live
    /// composite's codec and size, 0.1 bit per pixel per frame) checked against the limits.
    /// An error names the field (`width`, …) and says what is allowed.
    pub fn for_recording(codec: Option<MixCodec>, width: u32, height: u32, bitrate: u32, live: &McuConfig) -> Result<VideoProfile, (&'static str, String)> {
        let (width, height) = (if width == 0 { live.width } else { width }, if height == 0 { live.height } else { height });
        for (field, value, max) in [("width", width, 3840), ("height", height, 2160)] {
            if !(64..=max).contains(&value) || value % 2 == 1 {
                return Err((field, format!("{value}; an even number from 64 to {max}")));
            }
        }
        let bitrate = match bitrate {
            0 => ((width as u64 * height as u64 * live.fps as u64) / 10).clamp(100_000, 50_000_000) as u32,
            b if (100_000..=50_000_000).contains(&b) => b,
            b => return Err(("bitrate", format!("{b}; from 100000 to 50000000"))),
        };
        Ok(VideoProfile { codec: codec.unwrap_or(live.codec), width, height, single_nal: false, bitrate })
    }

    /// The canvas that shows the room layout in this profile.
    pub fn room_canvas(&self, config: &McuConfig) -> mcu_compositor::CanvasId {
        mcu_compositor::CanvasId::new(format!("{ROOM_CANVAS}{}", self.suffix(config)))
    }

    /// Suffix of the canvas ids drawn for this profile (empty for the room's own).
    pub(crate) fn suffix(&self, config: &McuConfig) -> String {
        if *self == VideoProfile::of(config) {
            String::new()
        } else {
            format!("@{}x{}-{:?}{}", self.width, self.height, self.codec, if self.single_nal { "-nal" } else { "" }).to_ascii_lowercase()
        }
    }
}

/// Operator settings of a room.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Control {
    /// The composite's layout.
    pub layout: mcu_compositor::RoomLayout,
    /// Gains that differ from the default: (listener, source) → gain; listener "" is the room
    /// mix.
    pub gains: BTreeMap<(String, String), f32>,
    /// Loudest sources mixed (0: all).
    pub top_k: usize,
    /// MCU participants' own layouts, by name.
    pub viewer_layouts: BTreeMap<String, mcu_compositor::RoomLayout>,
    /// Everyone but me (a classroom): every MCU participant without a layout of its own sees
    /// the room layout without itself, on a canvas of its own (those who publish no video see
    /// the room canvas).
    pub everyone_but_me: bool,
}

/// An MCU participant: it hears its own mix and sees its own picture, on tracks of its own.
#[derive(Debug, Clone, PartialEq)]
pub struct Listener {
    /// Its name (as a mixer participant and in layouts).
    pub name: String,
    /// The SSRC of its audio mix track.
    pub audio_ssrc: u32,
    /// The SSRC of its video track.
    pub video_ssrc: u32,
    /// Its picture's encode when it differs from the room's (a SIP phone).
    pub profile: Option<VideoProfile>,
    /// Someone receives its video track (its connection is up).
    pub video_watched: bool,
    /// A SIP leg (its mix ends up as narrowband G.711 mostly: a cheaper Opus encode).
    pub phone: bool,
}

/// A recording of the room.
#[derive(Debug, Clone, PartialEq)]
pub struct RecordingView {
    /// Its id.
    pub id: Arc<str>,
    /// Its composite's encode when it differs from the room's.
    pub profile: Option<VideoProfile>,
    /// It records each track too (as it arrives, no transcode).
    pub tracks: bool,
}

/// What the subscribers of one of the composite's tracks reported lately.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Feedback {
    /// The lowest downlink estimate (REMB, bps).
    pub estimate: Option<u64>,
    /// The worst loss (fraction /256) and when the newest report came.
    pub loss: Option<(Instant, u8)>,
}

/// A simulcast track's layers as the composite receives it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Simulcast {
    /// Layers the publisher sends.
    pub layers: usize,
    /// The layer the composite receives now.
    pub current: Option<usize>,
}

/// The room as the engines see it on one pass: one snapshot, read once, so nothing changes
/// under a pass.
#[derive(Debug, Clone, Default)]
pub struct RoomView {
    /// Tracks published by real participants now (an input whose track is gone is dropped).
    pub live_tracks: HashSet<TrackId>,
    /// MCU participants.
    pub listeners: Vec<Listener>,
    /// The SSRCs of the composite's own video and audio tracks (`_mix/video-0`, `_mix/audio-0`).
    pub room_ssrcs: (u32, u32),
    /// Someone receives the composite's own video track.
    pub room_video_watched: bool,
    /// Someone receives the composite's own audio track.
    pub room_audio_watched: bool,
    /// Operator settings.
    pub control: Arc<Control>,
    /// Recordings running.
    pub recordings: Vec<RecordingView>,
    /// Simulcast tracks the composite receives through the forwarder.
    pub simulcast: HashMap<TrackId, Simulcast>,
    /// Receiver feedback by composite track name (`_mix/video-0`, `_mix/video-for-{name}`).
    pub feedback: HashMap<String, Feedback>,
    /// Who speaks now (the audio engine's active speaker), for speaker layouts.
    pub speaker: Option<String>,
    /// Nobody publishes and nobody watches: the composite may stop.
    pub idle: bool,
}

/// An RTP packet of a publisher, as the engines need it.
#[derive(Debug, Clone)]
pub struct MediaPacket {
    /// Sequence number.
    pub seq: u16,
    /// RTP timestamp.
    pub timestamp: u32,
    /// Marker bit.
    pub marker: bool,
    /// Payload.
    pub payload: Bytes,
}

/// The name of a listener's own video track.
pub fn video_track_for(name: &str) -> String {
    format!("{MIX}/video-for-{name}")
}

/// The composite's own video track.
pub fn room_video_track() -> String {
    format!("{MIX}/video-0")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_and_codec_names_are_read_one_way() {
        assert_eq!(parse_size("640x360"), Ok((640, 360)));
        assert_eq!(parse_size(" 1280 X 720 "), Ok((1280, 720)));
        assert!(parse_size("1280").unwrap_err().contains("WIDTHxHEIGHT"));
        assert!(parse_size("wx720").unwrap_err().contains("bad width"));
        assert!(parse_size("640x-1").unwrap_err().contains("bad height"));
        assert_eq!("H264".parse::<MixCodec>(), Ok(MixCodec::H264));
        assert_eq!("vp8".parse::<MixCodec>(), Ok(MixCodec::Vp8));
        assert_eq!(" av1".parse::<MixCodec>(), Ok(MixCodec::Av1));
        assert!("hevc".parse::<MixCodec>().unwrap_err().contains("vp8, h264 or av1"));
    }
}
