//! The room composite (MCU): every published track of a room is depacketized and decoded, the
//! videos composited into a grid, the audio mixed, and the result encoded once and published
//! back into the room as the tracks of a virtual participant, [`MIX`]. Viewers of the composite
//! (`POST /whep/{room}`) subscribe to those tracks through the room's forwarder like to any
//! publisher's, so they share one encode, and keyframe requests, slow-viewer handling and
//! sequence rewriting come from the SFU path.
//!
//! The engine runs on its own OS thread per room (decode, composite and encode are CPU work) and
//! is driven by the clock of that loop: inputs arrive through a tap on the room, the audio mix
//! ticks every 20 ms, the canvas every frame interval.
//!
//! MCU participants (`POST /mcu/{room}`) are listeners of the mixer too: each hears everyone but
//! itself on a track of its own (`_mix/audio-for-{name}`); listeners whose mixes are equal share
//! one Opus encode.
//!
//! Video inputs go through `mcu_sfu::jitter` (adaptive: a missing packet is waited for ~3× the
//! measured jitter, 10–300 ms, then its frame is given up and a keyframe requested) and rtc's
//! depacketizers. Layouts come from the control API (`sfu::Control`), resolved each frame.
//!
//! Not yet here: the encoders' bitrate following viewers' estimates.

use std::{
    collections::{BTreeMap, HashMap},
    sync::{Arc, Weak},
    time::{Duration, Instant},
};

use bytes::Bytes;
use mcu_codec::{
    audio::{OpusChannels, OpusConfig, OpusDecoder, OpusEncoder},
    new_decoder, new_software_encoder, Decoded, DecoderOptions, EncoderConfig, VideoCodec, VideoDecoder, VideoEncoder,
};
use mcu_compositor::{CanvasId, CanvasSpec, Compositor, FrameSet, InputId, RoomLayout, Scene};
use mcu_media::{PixelFormat, VideoFrame};
use mcu_mixer::{AudioFrame, Mixer, MixerConfig, Role};
use mcu_sfu::{forwarder::TrackId, rtp};
use mcu_sfu::audio_jitter::{AudioJitter, AudioJitterConfig, AudioJitterStats, Playout};
use mcu_sfu::jitter::{JitterBuffer, JitterConfig};
use rtc::{
    rtp::{
        codec::{av1::{Av1Depacketizer, Av1Payloader}, h264::{H264Packet, H264Payloader}, vp8::{Vp8Packet, Vp8Payloader}},
        packetizer::{Depacketizer, Payloader},
    },
    rtp_transceiver::rtp_sender::{RTCRtpCodec, RtpCodecKind},
};
use tokio::sync::mpsc;

use crate::{
    events::EventKind,
    tap::{Tap, TapQueue, TapReaders},
    record::FileLayout,
    sfu::{PublishedTrack, Room, Sfu},
};

/// The virtual participant whose tracks are the room composite.
pub const MIX: &str = "_mix";
const LISTENER: &str = "_room";
const VIDEO_PT: u8 = 96;
const AUDIO_PT: u8 = 111;
const MTU: usize = 1200;

/// The composite's video codec.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum MixCodec {
    /// VP8 (libvpx).
    Vp8,
    /// H.264 constrained baseline, packetization-mode 1 (openh264).
    H264,
    /// AV1 (rav1e): recording profiles only, not a live composite codec.
    #[value(skip)]
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

/// Composite settings.
#[derive(Debug, Clone, Copy)]
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

/// The tracks the composite publishes into its room.
pub fn mix_tracks(codec: MixCodec) -> Vec<PublishedTrack> {
    let video = match codec {
        MixCodec::Vp8 => RTCRtpCodec { mime_type: "video/VP8".into(), clock_rate: 90000, channels: 0, ..Default::default() },
        MixCodec::H264 => RTCRtpCodec {
            mime_type: "video/H264".into(),
            clock_rate: 90000,
            channels: 0,
            sdp_fmtp_line: "level-asymmetry-allowed=1;packetization-mode=1;profile-level-id=42e01f".into(),
            ..Default::default()
        },
        MixCodec::Av1 => RTCRtpCodec { mime_type: "video/AV1".into(), clock_rate: 90000, channels: 0, ..Default::default() },
    };
    vec![
        PublishedTrack { id: Arc::from(format!("{MIX}/video-0")), kind: RtpCodecKind::Video, codec: video, extmap: Arc::default(), muted: Arc::default(), layers: 1 },
        PublishedTrack {
            id: Arc::from(format!("{MIX}/audio-0")),
            kind: RtpCodecKind::Audio,
            codec: RTCRtpCodec { mime_type: "audio/opus".into(), clock_rate: 48000, channels: 2, sdp_fmtp_line: "minptime=10;useinbandfec=1".into(), ..Default::default() },
            extmap: Arc::default(),
            muted: Arc::default(),
            layers: 1,
        },
    ]
}

/// An input's jitter buffer and depacketizer: packets in, whole access units out.
struct Depack {
    jitter: JitterBuffer<Bytes>,
    depacketizer: Box<dyn Depacketizer + Send>,
}

impl Depack {
    fn new(codec: VideoCodec) -> Option<Depack> {
        let depacketizer: Box<dyn Depacketizer + Send> = match codec {
            VideoCodec::Vp8 => Box::new(Vp8Packet::default()),
            VideoCodec::H264 => Box::new(H264Packet::default()),
            VideoCodec::Av1 => Box::new(Av1Depacketizer::default()),
            VideoCodec::Hevc => return None,
        };
        Some(Depack { jitter: JitterBuffer::new(JitterConfig::default()), depacketizer })
    }

    fn push(&mut self, arrived: Instant, p: rtc::rtp::Packet) {
        let head = self.depacketizer.is_partition_head(&p.payload);
        self.jitter.push(arrived, p.header.sequence_number, p.header.timestamp, p.header.marker, head, p.payload);
    }

    /// The next complete access unit: its bytes, packets given up before it, RTP timestamp.
    /// A unit whose payloads do not depacketize counts as lost.
    fn pop(&mut self, now: Instant) -> Option<(Bytes, u64, u32)> {
        let mut lost = 0;
        loop {
            let frame = self.jitter.pop(now)?;
            lost += frame.lost_before;
            let mut data = Vec::new();
            let ok = frame.packets.iter().all(|p| match self.depacketizer.depacketize(p) {
                Ok(b) => {
                    data.extend_from_slice(&b);
                    true
                }
                Err(_) => false,
            });
            if ok && !data.is_empty() {
                return Some((Bytes::from(data), lost, frame.timestamp));
            }
            lost += frame.packets.len() as u64;
        }
    }
}

/// Unwraps 32-bit 90 kHz RTP timestamps into an increasing pts (decoders refuse a repeated
/// pts as a duplicate).
#[derive(Default)]
struct PtsClock {
    last_rtp: Option<u32>,
    ticks: i64,
    last_pts: Option<Duration>,
}

impl PtsClock {
    fn pts(&mut self, rtp_ts: u32) -> Duration {
        if let Some(last) = self.last_rtp {
            self.ticks += rtp_ts.wrapping_sub(last) as i32 as i64;
        }
        self.last_rtp = Some(rtp_ts);
        let mut pts = Duration::from_micros((self.ticks.max(0) as u64) * 100 / 9);
        if let Some(prev) = self.last_pts
            && pts <= prev
        {
            pts = prev + Duration::from_micros(1);
        }
        self.last_pts = Some(pts);
        pts
    }
}

/// Largest picture an input may announce (4K UHD); bigger is refused before decoding, so a
/// forged header cannot make the decoder allocate gigabytes or stall the canvas.
const MAX_INPUT_PIXELS: u32 = 3840 * 2160;

/// Width and height a VP8 keyframe announces (RFC 6386 §9.1), if `data` is one.
fn vp8_keyframe_size(data: &[u8]) -> Option<(u32, u32)> {
    if data.len() < 10 || data[0] & 1 != 0 || data[3..6] != [0x9d, 0x01, 0x2a] {
        return None;
    }
    let w = u16::from_le_bytes([data[6], data[7]]) & 0x3fff;
    let h = u16::from_le_bytes([data[8], data[9]]) & 0x3fff;
    Some((w as u32, h as u32))
}

/// Per input (participant), the largest tile it is drawn in across the scene's canvases (px).
fn largest_tiles(scene: &Scene) -> HashMap<String, (u32, u32)> {
    let mut out: HashMap<String, (u32, u32)> = HashMap::new();
    for c in &scene.canvases {
        let Ok(tiles) = mcu_compositor::layout::resolve(c) else { continue };
        for t in tiles {
            let e = out.entry(t.input.0.to_string()).or_default();
            e.0 = e.0.max(t.rect.width().max(0.0) as u32);
            e.1 = e.1.max(t.rect.height().max(0.0) as u32);
        }
    }
    out
}

/// The simulcast layer the composite should decode: the lowest whose picture fills `tile`
/// (to 85 %), judging the layers' sizes from the one decoded now (`current`, `decoded`) and
/// the factor of 2 between layers that browsers use. Unknown sizes: the top layer.
fn layer_for_tile(layers: usize, current: usize, decoded: (u32, u32), tile: (u32, u32)) -> usize {
    let top = layers.saturating_sub(1);
    if decoded.0 == 0 || decoded.1 == 0 {
        return top;
    }
    let fills = |l: usize| {
        let scale = 2f64.powi(l as i32 - current as i32);
        decoded.0 as f64 * scale >= tile.0 as f64 * 0.85 && decoded.1 as f64 * scale >= tile.1 as f64 * 0.85
    };
    (0..=top).find(|&l| fills(l)).unwrap_or(top)
}

struct VideoInput {
    participant: String,
    /// The last decoded picture's size (what a recording of the track announces).
    size: (u32, u32),
    codec: VideoCodec,
    clock: PtsClock,
    depack: Depack,
    decoder: Box<dyn VideoDecoder>,
    last_pli: Option<Instant>,
    last_frame: Option<Instant>,
}

struct AudioInput {
    participant: String,
    decoder: OpusDecoder,
    /// Opus packets in playout order, one per 20 ms tick (adaptive delay, reordering, loss).
    jitter: AudioJitter,
    /// Ticks concealed in a row (loss concealment fades out after a few).
    concealed_run: u32,
    /// Frames concealed (FEC or PLC), and the playout buffer's counters, already added to the
    /// server's.
    concealed: u64,
    counted: (u64, AudioJitterStats),
}

/// Ticks in a row that a missing frame is concealed (FEC or PLC) before it is silence.
const MAX_CONCEALED: u32 = 5;

/// What each publisher's Opus is decoded to for the mixer. The mixes are mono, and libopus
/// decodes a stereo stream straight to mono (a third less CPU than decoding both channels
/// for the mixer to fold).
const MIX_INPUT: OpusChannels = OpusChannels::Mono;

impl AudioInput {
    /// This tick's 20 ms of PCM (`MIX_INPUT`'s channels, interleaved), if any: the next frame
    /// decoded, or a missing one rebuilt from the next frame's FEC or concealed.
    fn play(&mut self, now: Instant) -> Option<Vec<i16>> {
        const SAMPLES: usize = 960;
        let pcm = match self.jitter.pop(now) {
            Playout::Frame(payload) => {
                self.concealed_run = 0;
                self.decoder.decode(&payload).map_err(|e| tracing::debug!(participant = %self.participant, error = %e, "undecodable audio")).ok()
            }
            Playout::Missing { next } => {
                self.concealed_run += 1;
                if self.concealed_run > MAX_CONCEALED {
                    // A sender gone quiet (muted, stopped): silence, not concealment.
                    return None;
                }
                self.concealed += 1;
                match next {
                    Some(next) => self.decoder.decode_fec(&next, SAMPLES).or_else(|_| self.decoder.conceal(SAMPLES)).ok(),
                    None => self.decoder.conceal(SAMPLES).ok(),
                }
            }
            Playout::Silence => None,
        };
        pcm.filter(|p| p.len() == SAMPLES * MIX_INPUT.count())
    }

    /// Adds what the playout buffer counted since the last call to the server's counters.
    fn count(&mut self, counters: &crate::sfu::Counters) {
        let now = (self.concealed, self.jitter.stats());
        let (was_concealed, was) = std::mem::replace(&mut self.counted, now);
        let (concealed, stats) = now;
        let dropped = (stats.late + stats.duplicates + stats.dropped) - (was.late + was.duplicates + was.dropped);
        if dropped > 0 {
            counters.dropped_audio_playout.fetch_add(dropped, std::sync::atomic::Ordering::Relaxed);
        }
        if concealed > was_concealed {
            counters.audio_concealed.fetch_add(concealed - was_concealed, std::sync::atomic::Ordering::Relaxed);
        }
    }
}

/// Starts the composite of `room` unless it runs already.
pub fn ensure(sfu: &Arc<Sfu>, room: &Arc<Room>, config: McuConfig) {
    let (tap, readers) = Tap::new();
    let (kf_tx, kf_rx) = mpsc::unbounded_channel::<u32>();
    let tracks = mix_tracks(config.codec);
    if !room.start_mix(tap, tracks, kf_tx, rand::random::<u32>() | 1, rand::random::<u32>() | 1) {
        return;
    }
    tracing::info!(room = %room.name, width = config.width, height = config.height, fps = config.fps, codec = ?config.codec, "room composite started");
    sfu.events.emit(&room.name, EventKind::MixAvailable { available: true });
    let (weak_sfu, weak_room) = (Arc::downgrade(sfu), Arc::downgrade(room));
    let name = room.name.clone();
    let handle = tokio::runtime::Handle::current();
    let spawned = std::thread::Builder::new().name(format!("mcu-{name}")).spawn(move || {
        let _rt = handle.enter();
        if let Err(e) = run(weak_room.clone(), readers, kf_rx, config) {
            tracing::error!(room = %name, error = %e, "room composite failed");
        }
        if let (Some(sfu), Some(room)) = (weak_sfu.upgrade(), weak_room.upgrade()) {
            // Recordings end with the composite that feeds them, their files finished.
            sfu.stop_recordings(Some(&room.name));
            room.stop_mix();
            sfu.events.emit(&room.name, EventKind::MixAvailable { available: false });
            sfu.forget_if_empty(&room);
        }
        tracing::info!(room = %name, "room composite stopped");
    });
    if let Err(e) = spawned {
        tracing::error!(error = %e, "cannot start the composite thread");
        room.stop_mix();
    }
}

/// How often shared encodes are fitted to their viewers' estimates.
const RATE_CHECK_INTERVAL: Duration = Duration::from_millis(500);
/// A REMB older than this no longer holds an encode down (browsers send one a second).
const ESTIMATE_MAX_AGE: Duration = Duration::from_secs(5);
/// The least an estimate may push an encode to.
const MIN_VIDEO_BITRATE: u32 = 100_000;

/// An encode's bitrate for the lowest estimate among its receivers: 90 % of it (the rest for
/// audio and overhead), at least [`MIN_VIDEO_BITRATE`], at most the profile's `max`.
fn shared_encode_bitrate(max: u32, estimate: Option<u64>) -> u32 {
    match estimate {
        Some(e) => ((e * 9 / 10).min(max as u64) as u32).max(MIN_VIDEO_BITRATE.min(max)),
        None => max,
    }
}

/// The loss-based rule of Google congestion control (draft-ietf-rmcat-gcc §6) for one receiver
/// report: more than 10 % lost cuts the rate by half the loss, less than 2 % raises it by 8 %,
/// between holds it; within [`MIN_VIDEO_BITRATE`] and `max`.
fn loss_based_bitrate(rate: u32, max: u32, fraction_lost: u8) -> u32 {
    let loss = fraction_lost as f64 / 256.0;
    let next = if loss > 0.10 {
        rate as f64 * (1.0 - 0.5 * loss)
    } else if loss < 0.02 {
        rate as f64 * 1.08
    } else {
        rate as f64
    };
    (next as u32).clamp(MIN_VIDEO_BITRATE.min(max), max)
}

/// How often the composite's encoder makes a keyframe while it is recorded.
const RECORDING_KEYFRAME_INTERVAL: Duration = Duration::from_secs(2);

/// The canvas WHEP viewers (and MCU participants without a layout of their own) see.
const ROOM_CANVAS: &str = "room";

fn canvas(size: (u32, u32), id: &str, layout: &RoomLayout, resolved: mcu_compositor::Layout) -> CanvasSpec {
    CanvasSpec {
        id: CanvasId::new(id),
        width: size.0,
        height: size.1,
        format: PixelFormat::I420,
        background: layout.background,
        layout: resolved,
        transition: layout.transition,
    }
}

/// How a viewer's picture is encoded when it differs from the room's (`McuConfig`): a SIP
/// phone gets H.264 at the size it decodes, in single NAL unit packets when it offered only
/// packetization-mode 0.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
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
    fn room_canvas(&self, config: &McuConfig) -> CanvasId {
        CanvasId::new(format!("{ROOM_CANVAS}{}", self.suffix(config)))
    }

    /// Suffix of the canvas ids drawn for this profile (empty for the room's own).
    fn suffix(&self, config: &McuConfig) -> String {
        if *self == VideoProfile::of(config) {
            String::new()
        } else {
            format!("@{}x{}-{:?}{}", self.width, self.height, self.codec, if self.single_nal { "-nal" } else { "" }).to_ascii_lowercase()
        }
    }
}

/// The canvases to draw and who sees each: the room canvas (the operator's room layout
/// resolved for who is in the room and who speaks) for the composite's own track and every MCU
/// participant without a layout of its own; then one canvas per distinct personalised picture
/// or encode profile. Viewers whose pictures and profiles come out equal share a canvas (and
/// its encode). `viewers` are the MCU participants, the SSRC of their video and their profile;
/// `room_ssrc` is the composite's track; `recorded` the profiles recordings encode (each shows
/// the room layout, on [`VideoProfile::room_canvas`]).
fn plan_canvases(
    config: &McuConfig,
    control: &crate::sfu::Control,
    inputs: &[String],
    speaker: Option<&str>,
    room_ssrc: Option<u32>,
    viewers: &[(String, u32, VideoProfile)],
    recorded: &[VideoProfile],
) -> (Scene, HashMap<CanvasId, VideoProfile>, HashMap<u32, CanvasId>) {
    let own = VideoProfile::of(config);
    let room = canvas((config.width, config.height), ROOM_CANVAS, &control.layout, control.layout.resolve(inputs, speaker));
    // The room canvas is drawn only when someone sees it (a viewer, a recording, an MCU
    // participant without a picture of its own).
    let room_seen = room_ssrc.is_some()
        || recorded.contains(&own)
        || viewers.iter().any(|(name, _, p)| *p == own && !control.viewer_layouts.contains_key(name));
    let mut canvases = if room_seen { vec![room] } else { Vec::new() };
    let mut profiles = HashMap::from([(CanvasId::new(ROOM_CANVAS), own)]);
    // Recordings with a profile of their own: the room layout at their size, in their codec.
    for p in recorded.iter().filter(|p| **p != own) {
        if let std::collections::hash_map::Entry::Vacant(e) = profiles.entry(p.room_canvas(config)) {
            canvases.push(canvas((p.width, p.height), &e.key().0, &control.layout, control.layout.resolve(inputs, speaker)));
            e.insert(*p);
        }
    }
    let mut assigned: HashMap<u32, CanvasId> = room_ssrc.map(|s| (s, CanvasId::new(ROOM_CANVAS))).into_iter().collect();
    let mut sorted: Vec<&(String, u32, VideoProfile)> = viewers.iter().collect();
    sorted.sort_by(|a, b| (&a.0, a.1).cmp(&(&b.0, b.1)));
    for (name, ssrc, profile) in sorted {
        let size = (profile.width, profile.height);
        let suffix = profile.suffix(config);
        let spec = match control.viewer_layouts.get(name) {
            Some(layout) => canvas(size, &format!("viewer:{name}{suffix}"), layout, layout.resolve_for(name, inputs, speaker)),
            None if *profile == own => {
                assigned.insert(*ssrc, CanvasId::new(ROOM_CANVAS));
                continue;
            }
            None => canvas(size, &format!("{ROOM_CANVAS}{suffix}"), &control.layout, control.layout.resolve(inputs, speaker)),
        };
        let same = canvases.iter().find(|c| {
            c.layout == spec.layout && c.background == spec.background && c.transition == spec.transition && profiles.get(&c.id) == Some(profile)
        });
        let id = match same {
            Some(same) => same.id.clone(),
            None => {
                let id = spec.id.clone();
                profiles.insert(id.clone(), *profile);
                canvases.push(spec);
                id
            }
        };
        assigned.insert(*ssrc, id);
    }
    (Scene { canvases }, profiles, assigned)
}

/// One canvas's encode, shared by everyone who sees it.
struct View {
    encoder: Box<dyn VideoEncoder>,
    /// The profile's bitrate: the most its viewers' estimates may let it use.
    max_bitrate: u32,
    /// The loss-based part of its rate control, and the newest receiver report it has used.
    loss_rate: u32,
    loss_seen: Option<Instant>,
    /// `None`: one NAL unit per packet (H.264 packetization-mode 0).
    payloader: Option<Box<dyn Payloader>>,
}

/// Opus complexity of the mixes WebRTC participants and recordings hear. At libopus' default
/// 10 SILK's delayed-decision quantiser made one mix's encode an eighth of a 4-sender room's CPU
/// (perf, `benches/mcu_capacity.rs`); at 5 it keeps 2 candidate states instead of 4, as WebRTC
/// itself runs on phones (still ~2.5 % of a room's CPU in perf). One encode serves every
/// listener of a mix, so this is per mix, not per listener.
const MIX_OPUS_COMPLEXITY: u8 = 5;

/// NAL units above this are split in several slices for packetization-mode 0 receivers.
const MAX_NAL: u32 = 1100;

fn new_view(profile: &VideoProfile, fps: u32) -> anyhow::Result<View> {
    let (codec, payloader): (VideoCodec, Option<Box<dyn Payloader>>) = match (profile.codec, profile.single_nal) {
        (MixCodec::Vp8, _) => (VideoCodec::Vp8, Some(Box::new(Vp8Payloader::default()))),
        (MixCodec::H264, false) => (VideoCodec::H264, Some(Box::new(H264Payloader::default()))),
        (MixCodec::H264, true) => (VideoCodec::H264, None),
        (MixCodec::Av1, _) => (VideoCodec::Av1, Some(Box::new(Av1Payloader {}))),
    };
    let config = EncoderConfig { max_nal_size: profile.single_nal.then_some(MAX_NAL), ..EncoderConfig::realtime(profile.bitrate, fps as f64) };
    Ok(View { encoder: new_software_encoder(codec, &config)?, payloader, max_bitrate: profile.bitrate, loss_rate: profile.bitrate, loss_seen: None })
}

/// Applies the operator's gain matrix to the mixer (listener "" is the room mix). Entries
/// naming someone not in the mix wait until they are.
fn apply_gains(mixer: &mut Mixer, roles: &HashMap<String, Role>, gains: &std::collections::BTreeMap<(String, String), f32>) {
    let _ = mixer.reset_gains(LISTENER);
    for (p, role) in roles {
        if *role != Role::Source {
            let _ = mixer.reset_gains(p);
        }
    }
    for ((listener, source), gain) in gains {
        let listener = if listener.is_empty() { LISTENER } else { listener.as_str() };
        let listens = listener == LISTENER || roles.get(listener).is_some_and(|r| *r != Role::Source);
        if listens && roles.get(source).is_some_and(|r| *r != Role::Listener) {
            let _ = mixer.set_gain(listener, source, *gain);
        }
    }
}

fn run(room: Weak<Room>, tap: TapReaders, mut keyframe_requests: mpsc::UnboundedReceiver<u32>, config: McuConfig) -> anyhow::Result<()> {
    let epoch = Instant::now();
    let frame_interval = Duration::from_secs_f64(1.0 / config.fps.max(1) as f64);
    // The audio mix runs on a thread of its own: a slow video decode or encode never delays
    // the 20 ms mix ticks. It tells this thread who speaks (for the speaker layout). It ends
    // with this thread.
    struct EndsAudio(Arc<TapQueue>);
    impl Drop for EndsAudio {
        fn drop(&mut self) {
            self.0.close();
        }
    }
    let _ends_audio = EndsAudio(tap.audio.clone());
    let shared_speaker: Arc<std::sync::Mutex<Option<String>>> = Arc::default();
    {
        let (room, speaker, audio) = (room.clone(), shared_speaker.clone(), tap.audio.clone());
        std::thread::Builder::new().name("mcu-audio".into()).spawn(move || {
            if let Err(e) = run_audio(room, &audio, speaker, config) {
                tracing::error!(error = %e, "room audio mix failed");
            }
        })?;
    }
    let mut compositor = Compositor::new_cpu(1);
    // Canvases by id, each with its encode; who sees which (by the SSRC of their video track);
    // each video track's sequence numbers.
    let mut views: HashMap<CanvasId, View> = HashMap::from([(CanvasId::new(ROOM_CANVAS), new_view(&VideoProfile::of(&config), config.fps)?)]);
    let mut seen_by: HashMap<u32, CanvasId> = HashMap::new();
    let mut video_seq: HashMap<u32, u16> = HashMap::new();
    let mut scene_now: Option<Scene> = None;
    let mut videos: HashMap<TrackId, VideoInput> = HashMap::new();
    let mut pending: BTreeMap<String, VideoFrame> = BTreeMap::new();
    let mut control = crate::sfu::Control::default();
    let mut control_seen = 0u64;
    let mut recordings: Vec<Arc<crate::record::Session>> = Vec::new();
    // The canvas each recording is fed from, in `recordings`' order.
    let mut recording_canvases: Vec<CanvasId> = Vec::new();
    let mut recordings_seen = 0u64;
    let mut last_recording_keyframe = Instant::now();
    // Tracks that have passed a keyframe since the recording list last changed: the others'
    // files are still waiting for their first one, which is asked for again every 500 ms (a
    // request can be lost, or land while its layer is being switched).
    let mut keyed: std::collections::HashSet<TrackId> = std::collections::HashSet::new();
    let mut last_key_retry = Instant::now();
    let mut last_rate_check = Instant::now();
    // The largest tile each input is drawn in, resolved when the scene changes.
    let mut tile_sizes: HashMap<String, (u32, u32)> = HashMap::new();

    let mut next_frame = epoch;
    let mut idle_since: Option<Instant> = None;
    loop {
        // Woken at the end of each video frame and at each canvas tick.
        let Some(batch) = tap.video.wait(next_frame) else { return Ok(()) };
        let Some(room) = room.upgrade() else { return Ok(()) };
        if room.closed.load(std::sync::atomic::Ordering::Relaxed) {
            return Ok(());
        }
        let now = Instant::now();
        if let Some((v, list)) = room.recordings_if_newer(recordings_seen) {
            recordings_seen = v;
            // A new recording starts at a keyframe of the composite and of every track.
            if list.iter().any(|s| !recordings.iter().any(|o| Arc::ptr_eq(o, s))) {
                for s in &list {
                    if let Some(v) = views.get_mut(&s.profile.unwrap_or(VideoProfile::of(&config)).room_canvas(&config)) {
                        v.encoder.request_keyframe();
                    }
                }
                for id in videos.keys() {
                    room.request_keyframe(id);
                }
                keyed.clear();
                last_key_retry = now;
            }
            recording_canvases = list.iter().map(|s| s.profile.unwrap_or(VideoProfile::of(&config)).room_canvas(&config)).collect();
            recordings = list;
        }
        if recordings.iter().any(|s| s.tracks) && now.duration_since(last_key_retry) >= Duration::from_millis(500) {
            last_key_retry = now;
            for id in videos.keys().filter(|id| !keyed.contains(*id)) {
                tracing::debug!(room = %room.name, track = %id, "track recording still waits for a keyframe; asking again");
                room.request_keyframe(id);
            }
        }
        // While recording, a composite keyframe every 2 s gives the file cue points to seek to.
        if !recordings.is_empty() && now.duration_since(last_recording_keyframe) >= RECORDING_KEYFRAME_INTERVAL {
            last_recording_keyframe = now;
            for id in &recording_canvases {
                if let Some(v) = views.get_mut(id) {
                    v.encoder.request_keyframe();
                }
            }
        }
        if let Some((v, c)) = room.control_if_newer(control_seen) {
            control_seen = v;
            control = c;
        }

        // Video inputs (audio goes to the audio thread).
        for t in batch {
            if let Some(codec) = t.video {
                let input = match videos.entry(t.track.clone()) {
                    std::collections::hash_map::Entry::Occupied(o) => o.into_mut(),
                    std::collections::hash_map::Entry::Vacant(v) => {
                        let (Some(depack), Ok(decoder)) = (Depack::new(codec), new_decoder(codec, &DecoderOptions::default())) else { continue };
                        compositor.register_input(InputId::new(&t.participant));
                        tracing::info!(room = %room.name, track = %t.track, %codec, "composite input added");
                        v.insert(VideoInput { participant: t.participant.clone(), size: (0, 0), codec, clock: PtsClock::default(), depack, decoder, last_pli: None, last_frame: None })
                    }
                };
                input.depack.push(t.arrived, t.packet);
            }
        }
        // Whole access units out of each input's jitter buffer (also those released by their
        // deadline, with no new packet), decoded; recorded as they arrived.
        for (track, input) in videos.iter_mut() {
            while let Some((data, dropped, rtp_ts)) = input.depack.pop(now) {
                if dropped > 0 {
                    input.decoder.report_loss();
                }
                if input.codec == VideoCodec::Vp8
                    && let Some((w, h)) = vp8_keyframe_size(&data)
                    && (w == 0 || h == 0 || w * h > MAX_INPUT_PIXELS)
                {
                    tracing::debug!(%track, w, h, "VP8 keyframe of an unacceptable size dropped");
                    input.decoder.report_loss();
                    continue;
                }
                let pts = input.clock.pts(rtp_ts);
                match input.decoder.decode(&data, pts) {
                    Ok(Decoded::Frame(f)) => {
                        input.last_frame = Some(now);
                        input.size = (f.width, f.height);
                        pending.insert(input.participant.clone(), f);
                    }
                    Ok(_) => {}
                    Err(e) => tracing::debug!(%track, error = %e, "undecodable video"),
                }
                // Track recordings get the access unit as it arrived (no transcode).
                let layout = FileLayout { video: Some(input.codec), audio_channels: None };
                for s in &recordings {
                    if let Some(w) = s.track_writer(track, layout) {
                        let key = match input.codec {
                            VideoCodec::H264 => mcu_codec::bitstream::h264_is_keyframe(&data),
                            VideoCodec::Av1 => mcu_codec::bitstream::av1_is_keyframe(&data),
                            _ => mcu_codec::bitstream::vp8_is_keyframe(&data),
                        };
                        w.video(now, key, &data, input.size);
                        if key {
                            keyed.insert(track.clone());
                        }
                    }
                }
            }
            if input.decoder.needs_keyframe() && input.last_pli.is_none_or(|at| now - at > Duration::from_millis(500)) {
                input.last_pli = Some(now);
                room.request_keyframe(track);
            }
        }
        while let Ok(ssrc) = keyframe_requests.try_recv() {
            let canvas = seen_by.get(&ssrc).cloned().unwrap_or_else(|| CanvasId::new(ROOM_CANVAS));
            if let Some(v) = views.get_mut(&canvas) {
                v.encoder.request_keyframe();
            }
        }

        // Inputs whose publisher left.
        let live = room.live_tracks();
        videos.retain(|id, v| {
            let keep = live.contains(id);
            if !keep {
                compositor.unregister_input(&InputId::new(&v.participant));
                pending.remove(&v.participant);
            }
            keep
        });

        let mcu_participants = room.mix_listeners();
        let speaker = shared_speaker.lock().expect("speaker lock is never poisoned").clone();

        // The canvas, every frame interval.
        if now >= next_frame {
            next_frame += frame_interval;
            if now > next_frame + frame_interval * 3 {
                next_frame = now + frame_interval;
            }
            let mut inputs: Vec<String> = videos.values().map(|v| v.participant.clone()).collect();
            inputs.sort();
            inputs.dedup();
            let own = VideoProfile::of(&config);
            let profiles = room.view_profiles();
            // Only pictures someone receives are drawn and encoded (an audio-only phone, a
            // viewer still connecting, a composite nobody plays cost nothing).
            let viewers: Vec<(String, u32, VideoProfile)> = mcu_participants
                .iter()
                .filter(|(n, _, _)| room.watched(&format!("{MIX}/video-for-{n}")))
                .map(|(n, _, v)| (n.clone(), *v, profiles.get(n).copied().unwrap_or(own)))
                .collect();
            let room_ssrc = room.watched(&format!("{MIX}/video-0")).then(|| room.mix_ssrcs().0);
            let recorded: Vec<VideoProfile> = recordings.iter().map(|s| s.profile.unwrap_or(own)).collect();
            let (scene, canvas_profiles, assigned) = plan_canvases(&config, &control, &inputs, speaker.as_deref(), room_ssrc, &viewers, &recorded);
            if scene_now.as_ref() != Some(&scene) {
                // Validated by the control API; a scene the compositor still refuses keeps the
                // previous one on screen rather than stopping the room.
                match compositor.update_scene(scene.clone()) {
                    Ok(()) => {
                        views.retain(|id, _| scene.canvases.iter().any(|c| &c.id == id));
                        for c in &scene.canvases {
                            if !views.contains_key(&c.id) {
                                views.insert(c.id.clone(), new_view(&canvas_profiles[&c.id], config.fps)?);
                            }
                        }
                    }
                    Err(e) => tracing::warn!(room = %room.name, error = %e, "layout refused; keeping the previous one"),
                }
                tile_sizes = largest_tiles(&scene);
                scene_now = Some(scene);
            }
            // A viewer that moves to another canvas needs a keyframe of it.
            for (ssrc, id) in &assigned {
                if seen_by.get(ssrc) != Some(id)
                    && let Some(v) = views.get_mut(id)
                {
                    v.encoder.request_keyframe();
                }
            }
            seen_by = assigned;
            video_seq.retain(|ssrc, _| seen_by.contains_key(ssrc));
            // Each shared encode follows the lowest bandwidth estimate (REMB) of those who
            // receive it, under its profile's bitrate.
            if now.duration_since(last_rate_check) >= RATE_CHECK_INTERVAL {
                last_rate_check = now;
                // A simulcast sender: the composite decodes the smallest layer that fills its
                // largest tile (4x fewer pixels to decode per layer skipped).
                for (track, v) in &videos {
                    let Some((layers, Some(current))) = room.composite_layer(track) else { continue };
                    let Some(&tile) = tile_sizes.get(&v.participant) else { continue };
                    let want = layer_for_tile(layers, current, v.size, tile);
                    if room.set_composite_layer(track, want) {
                        tracing::debug!(room = %room.name, %track, current, want, ?tile, decoded = ?v.size, "composite simulcast layer cap");
                    }
                }
                for (id, view) in views.iter_mut() {
                    let mut tracks: Vec<String> = viewers.iter().filter(|(_, ssrc, _)| seen_by.get(ssrc) == Some(id)).map(|(n, _, _)| format!("{MIX}/video-for-{n}")).collect();
                    if room_ssrc.is_some_and(|s| seen_by.get(&s) == Some(id)) {
                        tracks.push(format!("{MIX}/video-0"));
                    }
                    let (estimate, loss) = room.encode_feedback(&tracks.iter().map(String::as_str).collect::<Vec<_>>(), ESTIMATE_MAX_AGE);
                    // Each new receiver report (the worst among the receivers) moves the
                    // loss-based rate once.
                    match loss {
                        Some((at, fraction)) if view.loss_seen.is_none_or(|seen| at > seen) => {
                            view.loss_seen = Some(at);
                            view.loss_rate = loss_based_bitrate(view.loss_rate, view.max_bitrate, fraction);
                        }
                        // Nobody reports any more: back to the profile's rate.
                        None => view.loss_rate = view.max_bitrate,
                        _ => {}
                    }
                    let target = shared_encode_bitrate(view.max_bitrate, estimate).min(view.loss_rate);
                    let rate = view.encoder.rate();
                    if target.abs_diff(rate.bitrate_bps) > rate.bitrate_bps / 20 {
                        tracing::debug!(room = %room.name, canvas = %id.0, ?estimate, target, "composite bitrate");
                        if let Err(e) = view.encoder.set_rate(mcu_codec::RateControl { bitrate_bps: target, ..rate }) {
                            tracing::warn!(room = %room.name, canvas = %id.0, error = %e, "bitrate not changed");
                        }
                    }
                }
            }
            // A sender that stopped sending shows its placeholder instead of a frozen picture.
            for v in videos.values() {
                if v.last_frame.is_some_and(|t| now - t > Duration::from_secs(2)) {
                    compositor.set_no_video(&InputId::new(&v.participant));
                }
            }
            let pts = now - epoch;
            let frames = std::mem::take(&mut pending).into_iter().map(|(p, f)| (InputId::new(&p), f)).collect();
            let rendered = compositor.render(FrameSet { pts, frames })?;
            let ts = (pts.as_micros() * 9 / 100) as u32;
            for (id, picture) in rendered.canvases {
                let watched = seen_by.values().any(|v| *v == id);
                let recorders: Vec<&Arc<crate::record::Session>> = recordings.iter().zip(&recording_canvases).filter(|(_, c)| **c == id).map(|(s, _)| s).collect();
                let Some(view) = views.get_mut(&id).filter(|_| watched || !recorders.is_empty()) else {
                    compositor.recycle(picture);
                    continue;
                };
                let units = view.encoder.encode(&picture)?;
                // Encoded: the next canvas is drawn into its memory.
                let size = (picture.width, picture.height);
                compositor.recycle(picture);
                for unit in units {
                    // An encoder that holds frames back (rav1e) returns an earlier picture: the
                    // file gets that picture's time, in step with the audio.
                    let shown_at = now.checked_sub(pts.saturating_sub(unit.pts)).unwrap_or(now);
                    for s in &recorders {
                        s.composite.video(shown_at, unit.keyframe, &unit.data, size);
                    }
                    if !watched {
                        continue;
                    }
                    let payloads = match view.payloader.as_mut() {
                        Some(p) => match p.payload(MTU, &Bytes::from(unit.data)) {
                            Ok(p) => p,
                            Err(_) => continue,
                        },
                        // packetization-mode 0: every NAL unit whole (access unit delimiters dropped).
                        None => mcu_codec::bitstream::annexb_nal_units(&unit.data)
                            .filter(|n| n[0] & 0x1f != mcu_codec::bitstream::h264_nal::AUD)
                            .map(Bytes::copy_from_slice)
                            .collect(),
                    };
                    let n = payloads.len();
                    // Encoded and packetized once; written on every video track that shows it.
                    for (&ssrc, _) in seen_by.iter().filter(|(_, v)| **v == id) {
                        let seq = video_seq.entry(ssrc).or_insert_with(rand::random::<u16>);
                        for (i, p) in payloads.iter().enumerate() {
                            *seq = seq.wrapping_add(1);
                            room.publish_mix_packet(now, &rtp::build(VIDEO_PT, i + 1 == n, *seq, ts, ssrc, p));
                        }
                    }
                }
            }
        }

        // Nobody publishing and nobody watching for a while: stop.
        if room.idle_for_mix() {
            let since = *idle_since.get_or_insert(now);
            if now - since > Duration::from_secs(5) {
                return Ok(());
            }
        } else {
            idle_since = None;
        }
    }
}

/// The room's audio: each publisher's Opus decoded, the mixes (room mix, and each MCU
/// participant's everyone-but-itself) every 20 ms, one Opus encode per distinct mix, published
/// as the composite's audio tracks; recordings fed. Ends when its tap queue is closed (the
/// video thread ended, or the composite stopped).
fn run_audio(room: Weak<Room>, rx: &TapQueue, shared_speaker: Arc<std::sync::Mutex<Option<String>>>, config: McuConfig) -> anyhow::Result<()> {
    let tick = Duration::from_millis(20);
    let mut encoders: HashMap<u64, OpusEncoder> = HashMap::new();
    let mut mixer = Mixer::new(MixerConfig { top_k: 0, ..MixerConfig::default() }, None)?;
    mixer.add(LISTENER, Role::Listener)?;
    let mut roles: HashMap<String, Role> = HashMap::new();
    let mut listener_seq: HashMap<String, u16> = HashMap::new();
    let mut audios: HashMap<TrackId, AudioInput> = HashMap::new();
    let mut control = crate::sfu::Control::default();
    let mut control_seen = 0u64;
    let mut recordings: Vec<Arc<crate::record::Session>> = Vec::new();
    let mut recordings_seen = 0u64;
    let mut speaker: Option<String> = None;
    let mut gains_dirty = true;
    let mut next_tick = Instant::now();
    let (mut aseq, mut mix_tick) = (rand::random::<u16>(), 0u64);
    loop {
        // Everything that arrived since the last tick (the tap never wakes this thread early).
        let Some(batch) = rx.wait(next_tick) else { return Ok(()) };
        let Some(room) = room.upgrade() else { return Ok(()) };
        let now = Instant::now();
        if let Some((v, list)) = room.recordings_if_newer(recordings_seen) {
            recordings_seen = v;
            recordings = list;
        }
        if let Some((v, c)) = room.control_if_newer(control_seen) {
            control_seen = v;
            control = c;
            gains_dirty = true;
        }
        for t in batch {
            {
                let input = match audios.entry(t.track.clone()) {
                    std::collections::hash_map::Entry::Occupied(o) => o.into_mut(),
                    std::collections::hash_map::Entry::Vacant(v) => {
                        let Ok(decoder) = OpusDecoder::new(MIX_INPUT) else { continue };
                        let jitter = AudioJitter::new(AudioJitterConfig::default());
                        v.insert(AudioInput { participant: t.participant.clone(), decoder, jitter, concealed_run: 0, concealed: 0, counted: (0, AudioJitterStats::default()) })
                    }
                };
                for s in &recordings {
                    if let Some(w) = s.track_writer(&t.track, FileLayout { video: None, audio_channels: Some(2) }) {
                        w.audio(now, &t.packet.payload);
                    }
                }
                input.jitter.push(t.packet.header.sequence_number, t.packet.payload.to_vec(), t.arrived);
            }
        }
        let live = room.live_tracks();
        audios.retain(|id, _| live.contains(id));
        let mcu_participants = room.mix_listeners();
        // Who is in the mix, and how: audio publishers are sources, MCU participants also
        // listeners (each hears everyone but itself), the room's viewers one more listener.
        let listeners: HashMap<String, u32> = mcu_participants.iter().map(|(n, a, _)| (n.clone(), *a)).collect();
        let mut want: HashMap<String, Role> = audios.values().map(|a| (a.participant.clone(), Role::Source)).collect();
        for l in listeners.keys() {
            let r = want.entry(l.clone()).or_insert(Role::Listener);
            if *r == Role::Source {
                *r = Role::SourceAndListener;
            }
        }
        for (p, role) in &want {
            if roles.get(p) != Some(role) {
                if roles.remove(p).is_some() {
                    let _ = mixer.remove(p);
                }
                if mixer.add(p.as_str(), *role).is_ok() {
                    roles.insert(p.clone(), *role);
                }
                gains_dirty = true;
            }
        }
        roles.retain(|p, _| {
            let keep = want.contains_key(p);
            if !keep {
                let _ = mixer.remove(p);
                listener_seq.remove(p);
                gains_dirty = true;
            }
            keep
        });
        if gains_dirty {
            gains_dirty = false;
            apply_gains(&mut mixer, &roles, &control.gains);
            mixer.set_top_k(control.top_k);
        }

        // Asked once per batch of ticks.
        let (room_mix_heard, legs) = if now >= next_tick {
            (!recordings.is_empty() || room.watched(&format!("{MIX}/audio-0")), room.gateway_legs())
        } else {
            (false, Default::default())
        };
        // The audio mix, every 20 ms (catching up a late tick or two; after 100 ms behind, the
        // missed ticks are skipped).
        while now >= next_tick {
            next_tick += tick;
            if now > next_tick + tick * 5 {
                next_tick = now + tick;
            }
            for a in audios.values_mut() {
                let pcm = a.play(now);
                a.count(room.counters());
                if let Some(pcm) = pcm
                    && roles.get(&a.participant).is_some_and(|r| *r != Role::Listener)
                {
                    let _ = mixer.push(&a.participant, mix_tick, &AudioFrame { sample_rate: 48000, channels: MIX_INPUT.count() as u16, samples: pcm });
                }
            }
            let out = mixer.tick(mix_tick);
            mix_tick += 1;
            for change in &out.speaker_changes {
                let to = change.to.to_string();
                if speaker.as_deref() != Some(to.as_str()) {
                    room.events.emit(&room.name, EventKind::ActiveSpeaker { participant: to.clone(), previous: speaker.clone() });
                    speaker = Some(to);
                    *shared_speaker.lock().expect("speaker lock is never poisoned") = speaker.clone();
                }
            }
            let ts = (mix_tick * 960) as u32;
            // One encode per distinct mix, sent on the track of everyone who hears it. Opus keeps
            // state between frames, so each group key keeps its encoder.
            let mut used = Vec::with_capacity(out.groups.len());
            for g in &out.groups {
                // The room mix alone, heard by nobody (no viewer, no recording): not encoded.
                if !room_mix_heard && g.listeners.iter().all(|l| &**l == LISTENER) {
                    continue;
                }
                used.push(g.key);
                let enc = match encoders.entry(g.key) {
                    std::collections::hash_map::Entry::Occupied(o) => o.into_mut(),
                    std::collections::hash_map::Entry::Vacant(v) => {
                        // Mixes only SIP legs hear are mostly turned into G.711.
                        let phones_only = g.listeners.iter().all(|l| legs.contains(&**l));
                        let complexity = if phones_only { crate::sip::PHONE_OPUS_COMPLEXITY } else { MIX_OPUS_COMPLEXITY };
                        v.insert(OpusEncoder::new(OpusConfig { complexity, ..OpusConfig::voice(OpusChannels::Mono, config.audio_bitrate) })?)
                    }
                };
                let pcm: Vec<i16> = g.pcm.iter().map(|s| (s * 32767.0) as i16).collect();
                let Ok(packet) = enc.encode(&pcm) else { continue };
                for l in &g.listeners {
                    if &**l == LISTENER {
                        for s in &recordings {
                            s.composite.audio(now, &packet);
                        }
                        aseq = aseq.wrapping_add(1);
                        room.publish_mix_packet(now, &rtp::build(AUDIO_PT, false, aseq, ts, room.mix_ssrcs().1, &packet));
                    } else if let Some(&ssrc) = listeners.get(&**l) {
                        let seq = listener_seq.entry(l.to_string()).or_insert_with(rand::random::<u16>);
                        *seq = seq.wrapping_add(1);
                        room.publish_mix_packet(now, &rtp::build(AUDIO_PT, false, *seq, ts, ssrc, &packet));
                    }
                }
            }
            encoders.retain(|k, _| used.contains(k));
        }

    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn composite_layer_is_the_smallest_that_fills_the_tile() {
        // Chromium's q/h/f of a 640x480 camera, decoding h (320x240) now.
        assert_eq!(layer_for_tile(3, 1, (320, 240), (960, 720)), 2, "a big tile wants the top");
        assert_eq!(layer_for_tile(3, 1, (320, 240), (300, 220)), 1);
        assert_eq!(layer_for_tile(3, 1, (320, 240), (120, 90)), 0, "a thumbnail takes the quarter layer");
        // Decoding q (160x120) now: the same answers.
        assert_eq!(layer_for_tile(3, 0, (160, 120), (300, 220)), 1);
        assert_eq!(layer_for_tile(3, 0, (160, 120), (120, 90)), 0);
        // Nothing decoded yet, or a tile larger than the top: the top.
        assert_eq!(layer_for_tile(3, 0, (0, 0), (10, 10)), 2);
        assert_eq!(layer_for_tile(2, 1, (640, 360), (1920, 1080)), 1);
    }

    use super::*;

    /// Power of `freq` in `pcm` (Goertzel), per sample.
    fn tone_power(pcm: &[i16], freq: f64) -> f64 {
        let w = 2.0 * std::f64::consts::PI * freq / 48_000.0;
        let (mut s1, mut s2) = (0f64, 0f64);
        for &x in pcm {
            let s0 = x as f64 + 2.0 * w.cos() * s1 - s2;
            s2 = s1;
            s1 = s0;
        }
        (s1 * s1 + s2 * s2 - 2.0 * w.cos() * s1 * s2) / pcm.len() as f64
    }

    #[test]
    fn a_stereo_publisher_is_played_to_the_mixer_as_its_tone_in_mix_input_channels() {
        // A publisher sending stereo Opus (as browsers may) of a 440 Hz tone.
        let mut enc = OpusEncoder::new(OpusConfig::voice(OpusChannels::Stereo, 48_000)).unwrap();
        let t0 = Instant::now();
        let mut input = AudioInput {
            participant: "p".into(),
            decoder: OpusDecoder::new(MIX_INPUT).unwrap(),
            jitter: AudioJitter::new(AudioJitterConfig::default()),
            concealed_run: 0,
            concealed: 0,
            counted: (0, AudioJitterStats::default()),
        };
        let mut played = Vec::new();
        for f in 0..50u16 {
            let pcm: Vec<i16> = (0..960)
                .flat_map(|k| {
                    let v = ((2.0 * std::f64::consts::PI * 440.0 * (f as usize * 960 + k) as f64 / 48_000.0).sin() * 8_000.0) as i16;
                    [v, v]
                })
                .collect();
            let now = t0 + Duration::from_millis(20 * f as u64);
            input.jitter.push(f, enc.encode(&pcm).unwrap(), now);
            if let Some(pcm) = input.play(now) {
                assert_eq!(pcm.len(), 960 * MIX_INPUT.count(), "20 ms at 48 kHz in the mixer's channels");
                played.push(pcm);
            }
        }
        assert!(played.len() >= 40, "the tone plays every tick once buffered: {} of 50", played.len());
        // Past the decoder's first frames: the tone, and not a neighbour.
        let tail: Vec<i16> = played[10..].concat();
        let (at, off) = (tone_power(&tail, 440.0), tone_power(&tail, 1_000.0));
        assert!(at > 1e6 && at > off * 1_000.0, "440 Hz power {at:.0}, 1 kHz {off:.0}");
        assert!(input.concealed == 0, "nothing was lost");
    }

    #[test]
    fn loss_moves_the_rate_as_gcc_does() {
        assert_eq!(loss_based_bitrate(1_000_000, 2_000_000, 64), 875_000, "25 % lost: down by 12.5 %");
        assert_eq!(loss_based_bitrate(1_000_000, 2_000_000, 13), 1_000_000, "5 % lost: held");
        assert_eq!(loss_based_bitrate(1_000_000, 2_000_000, 0), 1_080_000, "no loss: up by 8 %");
        assert_eq!(loss_based_bitrate(1_950_000, 2_000_000, 0), 2_000_000, "never above the profile");
        assert_eq!(loss_based_bitrate(101_000, 2_000_000, 255), MIN_VIDEO_BITRATE, "a floor");
        let mut r = 1_200_000;
        for _ in 0..10 {
            r = loss_based_bitrate(r, 1_200_000, 64);
        }
        assert!((300_000..330_000).contains(&r), "ten reports of 25 % loss: {r}");
    }

    #[test]
    fn a_shared_encode_stays_under_the_lowest_estimate() {
        assert_eq!(shared_encode_bitrate(2_000_000, None), 2_000_000, "no estimate: the profile's bitrate");
        assert_eq!(shared_encode_bitrate(2_000_000, Some(1_000_000)), 900_000, "90 % of the estimate");
        assert_eq!(shared_encode_bitrate(2_000_000, Some(50_000_000)), 2_000_000, "never above the profile");
        assert_eq!(shared_encode_bitrate(2_000_000, Some(10_000)), MIN_VIDEO_BITRATE, "a floor");
        assert_eq!(shared_encode_bitrate(80_000, Some(10_000)), 80_000, "a profile below the floor keeps its own");
    }

    #[test]
    fn pts_increases_across_wraps_and_repeats() {
        let mut c = PtsClock::default();
        let a = c.pts(u32::MAX - 1499);
        let b = c.pts(1500);
        assert_eq!(b - a, Duration::from_micros(3000 * 100 / 9));
        let d = c.pts(1500);
        assert!(d > b, "a repeated timestamp still gets a later pts");
    }

    #[test]
    fn vp8_sizes_are_read_from_keyframes_only() {
        let key = [0x10, 0x02, 0x00, 0x9d, 0x01, 0x2a, 0x80, 0x02, 0x68, 0x01];
        assert_eq!(vp8_keyframe_size(&key), Some((640, 360)));
        let mut inter = key;
        inter[0] |= 1;
        assert_eq!(vp8_keyframe_size(&inter), None);
        assert_eq!(vp8_keyframe_size(&key[..5]), None);
    }
}
