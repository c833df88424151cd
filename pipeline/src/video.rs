//! The composite's video: inputs decoded, canvases planned, drawn, encoded once each and
//! packetized once each, as a track of the composite; the driver's forwarder sends each canvas
//! track to whoever sees it ([`VideoOutput::Show`] moves a viewer between canvases at a
//! keyframe).

use std::{
    collections::{BTreeMap, HashMap, HashSet, VecDeque},
    sync::Arc,
    time::{Duration, Instant},
};

use bytes::Bytes;
use mcu_codec::{Decoded, DecoderOptions, EncoderConfig, VideoCodec, VideoDecoder, VideoEncoder, bitstream};
use mcu_compositor::{CanvasId, FrameSet, InputId, Scene};
use mcu_media::VideoFrame;
use rtc::rtp::{
    codec::{av1::Av1Payloader, h264::H264Payloader, vp8::Vp8Payloader},
    packetizer::Payloader,
};

use crate::{
    MIX, MTU, McuConfig, MediaPacket, MixCodec, ROOM_CANVAS, RoomView, TrackId, VIDEO_PT, VideoProfile,
    depack::{Depack, PtsClock},
    encoders::{DecoderFactory, EncoderFactory, Renderer},
    plan::{largest_tiles, layer_for_tile, plan_canvases},
    rate::{RATE_CHECK_INTERVAL, loss_based_bitrate, shared_encode_bitrate},
    room_video_track,
};

/// Largest picture an input may announce (4K UHD); bigger is refused before decoding, so a
/// forged header cannot make the decoder allocate gigabytes or stall the canvas.
const MAX_INPUT_PIXELS: u32 = 3840 * 2160;
/// How often the composite's encoder makes a keyframe while it is recorded (cue points).
const RECORDING_KEYFRAME_INTERVAL: Duration = Duration::from_secs(2);
/// How often a track recording still waiting for its first keyframe asks for one again.
const TRACK_KEY_RETRY: Duration = Duration::from_millis(500);
/// The least time between two keyframe requests for one input.
const PLI_INTERVAL: Duration = Duration::from_millis(500);
/// A sender silent this long shows its placeholder instead of a frozen picture.
const PLACEHOLDER_AFTER: Duration = Duration::from_secs(2);
/// Nobody publishing and nobody watching this long: the composite stops.
const IDLE_STOP: Duration = Duration::from_secs(5);
/// A canvas whose encoder failed is tried again after this long.
const ENCODER_RETRY: Duration = Duration::from_secs(5);
/// NAL units above this are split in several slices for packetization-mode 0 receivers.
const MAX_NAL: u32 = 1100;

/// What the video engine asks of its driver.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum VideoOutput {
    /// An RTP packet of one of the composite's video tracks, for the room's forwarder.
    Rtp(Vec<u8>),
    /// A publisher's track should send a keyframe (an input decoder needs one; a recording
    /// starts).
    RequestKeyframe(TrackId),
    /// The highest simulcast layer the composite should receive of a track (the smallest that
    /// fills its largest tile).
    LayerCap {
        /// The track.
        track: TrackId,
        /// The layer.
        layer: usize,
    },
    /// An access unit of a publisher's track as it arrived, for the track recordings.
    TrackVideo {
        /// The track.
        track: TrackId,
        /// Its codec.
        codec: VideoCodec,
        /// It is a keyframe.
        keyframe: bool,
        /// The access unit.
        data: Bytes,
        /// The last decoded picture's size.
        size: (u32, u32),
    },
    /// An encoded picture of a canvas that recordings are fed from.
    CompositeVideo {
        /// The recordings fed from that canvas.
        recordings: Vec<Arc<str>>,
        /// When the picture was drawn (an encoder that holds frames back returns earlier ones).
        shown_at: Instant,
        /// It is a keyframe.
        keyframe: bool,
        /// The encoded picture.
        data: Bytes,
        /// Its size.
        size: (u32, u32),
    },
    /// The renderer failed (a GPU device lost, out of memory): the room draws with the
    /// fallback renderer from the next frame on.
    RenderFallback {
        /// Why.
        error: String,
    },
    /// A hardware encoder failed mid-stream: the canvas is reopened at once with the encoders'
    /// other kind (software after NVENC).
    EncoderFallback {
        /// The canvas.
        canvas: String,
        /// Why.
        error: String,
    },
    /// A canvas's encoder could not be opened or failed: that canvas is not sent until it is
    /// opened again ([`ENCODER_RETRY`] later); the other canvases go on.
    EncoderFailed {
        /// The canvas.
        canvas: String,
        /// Why.
        error: String,
    },
    /// A canvas is drawn for viewers: its track is to be published in the room (its packets
    /// carry `ssrc`). The room canvas's track ([`room_video_track`]) is the driver's from the
    /// start and is not announced.
    CanvasTrack {
        /// The track (`_mix/canvas-N`).
        track: TrackId,
        /// The SSRC of its packets.
        ssrc: u32,
        /// Its codec.
        codec: MixCodec,
    },
    /// A canvas is no longer drawn: its track is to be unpublished (after the viewers it had
    /// were shown another, so their subscriptions move on).
    CanvasGone {
        /// The track.
        track: TrackId,
    },
    /// An MCU participant's picture is now this canvas track: its subscription moves there at
    /// the track's next keyframe (its own SSRC and numbering continue).
    Show {
        /// The participant.
        listener: String,
        /// The canvas track.
        track: TrackId,
    },
    /// Nobody has published or watched for 5 s: the composite should stop.
    Idle,
}

/// A canvas as a track of the composite.
struct CanvasOut {
    track: TrackId,
    ssrc: u32,
    seq: u16,
}

/// What the video engine counted.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct VideoStats {
    /// Canvas encoders that failed to open or to encode.
    pub encoder_failures: u64,
    /// Passes whose canvases could not be drawn.
    pub render_failures: u64,
    /// Canvas passes drawn.
    pub renders: u64,
    /// Canvases drawn (a pass draws every canvas someone receives).
    pub canvases_drawn: u64,
    /// Pictures encoded (one per canvas sent, however many see it).
    pub encodes: u64,
    /// Video encoders opened.
    pub encoders_opened: u64,
    /// Times the room moved to its fallback renderer (a GPU fault).
    pub render_fallbacks: u64,
    /// Hardware encoders that failed and were replaced by software at once.
    pub encoder_fallbacks: u64,
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

/// One canvas's encode, shared by everyone who sees it.
struct View {
    encoder: Box<dyn VideoEncoder>,
    /// The profile's bitrate: the most its viewers' estimates may let it use.
    max_bitrate: u32,
    /// The loss-based part of its rate control, and the newest receiver report it has used.
    loss_rate: u32,
    loss_seen: Option<Instant>,
    /// `None`: one NAL unit per packet (H.264 packetization-mode 0).
    payloader: Option<Box<dyn Payloader + Send>>,
}

/// The composite's video, sans-IO (see the crate docs).
pub struct VideoEngine {
    config: McuConfig,
    epoch: Instant,
    frame_interval: Duration,
    renderer: Box<dyn Renderer>,
    /// What draws when `renderer` fails (the CPU compositor behind a GPU one), once.
    fallback: Option<Box<dyn FnOnce() -> Box<dyn Renderer> + Send>>,
    encoders: Box<dyn EncoderFactory>,
    decoders: Box<dyn DecoderFactory>,
    /// Where a pass's canvases are encoded in parallel (shared by every room of the process);
    /// `None`: one after another on the caller's thread.
    encode_pool: Option<Arc<rayon::ThreadPool>>,
    view: RoomView,
    /// Canvases by id, each with its encode; those whose encoder failed, until when.
    views: HashMap<CanvasId, View>,
    failed: HashMap<CanvasId, Instant>,
    /// Who sees which canvas (by the SSRC of their video track: MCU participants, and the room
    /// track's viewers).
    seen_by: HashMap<u32, CanvasId>,
    /// Each canvas of the scene as a track, and the last canvas track each MCU participant was
    /// shown.
    canvas_out: HashMap<CanvasId, CanvasOut>,
    shown: HashMap<String, TrackId>,
    next_canvas_track: u32,
    scene: Option<Scene>,
    /// The canvases of the last scene the renderer took, and each one's profile.
    canvases: Vec<CanvasId>,
    profiles: HashMap<CanvasId, VideoProfile>,
    videos: HashMap<TrackId, VideoInput>,
    /// Tracks no decoder could be opened for (left out while they are published).
    undecodable: HashSet<TrackId>,
    pending: BTreeMap<String, VideoFrame>,
    /// Recordings (ids) and the canvas each is fed from, in the view's order.
    recordings: Vec<Arc<str>>,
    recording_canvases: Vec<CanvasId>,
    last_recording_keyframe: Instant,
    /// Tracks that have passed a keyframe since the recording list last changed: the others'
    /// files are still waiting for their first one, which is asked for again every 500 ms (a
    /// request can be lost, or land while its layer is being switched).
    keyed: HashSet<TrackId>,
    last_key_retry: Instant,
    last_rate_check: Instant,
    /// The largest tile each input is drawn in, resolved when the scene changes.
    tile_sizes: HashMap<String, (u32, u32)>,
    next_frame: Instant,
    idle_since: Option<Instant>,
    idle_told: bool,
    rng: u64,
    outputs: VecDeque<VideoOutput>,
    stats: VideoStats,
}

impl VideoEngine {
    /// An engine started at `now`, drawing with `renderer` and coding with `encoders` and
    /// `decoders`; `seed` picks the tracks' first sequence numbers.
    pub fn new(
        config: McuConfig,
        now: Instant,
        renderer: Box<dyn Renderer>,
        encoders: Box<dyn EncoderFactory>,
        decoders: Box<dyn DecoderFactory>,
        seed: u64,
    ) -> VideoEngine {
        VideoEngine {
            config,
            epoch: now,
            frame_interval: Duration::from_secs_f64(1.0 / config.fps.max(1) as f64),
            renderer,
            fallback: None,
            encoders,
            decoders,
            encode_pool: None,
            view: RoomView::default(),
            views: HashMap::new(),
            failed: HashMap::new(),
            seen_by: HashMap::new(),
            canvas_out: HashMap::new(),
            shown: HashMap::new(),
            next_canvas_track: 1,
            scene: None,
            canvases: Vec::new(),
            profiles: HashMap::new(),
            videos: HashMap::new(),
            undecodable: HashSet::new(),
            pending: BTreeMap::new(),
            recordings: Vec::new(),
            recording_canvases: Vec::new(),
            last_recording_keyframe: now,
            keyed: HashSet::new(),
            last_key_retry: now,
            last_rate_check: now,
            tile_sizes: HashMap::new(),
            next_frame: now,
            idle_since: None,
            idle_told: false,
            rng: seed | 1,
            outputs: VecDeque::new(),
            stats: VideoStats::default(),
        }
    }

    /// Encodes a pass's canvases in parallel on `pool` (the driver's, shared by every room of
    /// the process; the engine itself starts no thread). Without one they are encoded one after
    /// another on the caller's thread. The outputs are the same either way, in the same order.
    pub fn with_encode_pool(mut self, pool: Arc<rayon::ThreadPool>) -> VideoEngine {
        self.encode_pool = Some(pool);
        self
    }

    /// When the renderer fails (a GPU device lost, out of memory), the room goes on drawing
    /// with the renderer `fallback` makes, from the next frame (one frame interval later): its
    /// inputs are registered and the scene set again; pictures come back with each input's
    /// next decoded frame.
    pub fn with_fallback_renderer(mut self, fallback: Box<dyn FnOnce() -> Box<dyn Renderer> + Send>) -> VideoEngine {
        self.fallback = Some(fallback);
        self
    }

    /// What it counted so far.
    pub fn stats(&self) -> VideoStats {
        self.stats
    }

    /// The room as it is now. Recordings that appear start at a keyframe of the composite and
    /// of every input.
    pub fn set_view(&mut self, now: Instant, view: RoomView) {
        if view.recordings == self.view.recordings {
            self.view = view;
            return;
        }
        let own = VideoProfile::of(&self.config);
        let ids: Vec<Arc<str>> = view.recordings.iter().map(|r| r.id.clone()).collect();
        if ids.iter().any(|id| !self.recordings.contains(id)) {
            for r in &view.recordings {
                if let Some(v) = self.views.get_mut(&r.profile.unwrap_or(own).room_canvas(&self.config)) {
                    v.encoder.request_keyframe();
                }
            }
            for id in self.videos.keys() {
                self.outputs.push_back(VideoOutput::RequestKeyframe(id.clone()));
            }
            self.keyed.clear();
            self.last_key_retry = now;
        }
        self.recording_canvases = view.recordings.iter().map(|r| r.profile.unwrap_or(own).room_canvas(&self.config)).collect();
        self.recordings = ids;
        self.view = view;
    }

    /// A packet of a publisher's video track (`codec`), arrived at `arrived`.
    pub fn handle_packet(&mut self, arrived: Instant, track: &TrackId, participant: &str, codec: VideoCodec, packet: MediaPacket) {
        let input = match self.videos.entry(track.clone()) {
            std::collections::hash_map::Entry::Occupied(o) => o.into_mut(),
            std::collections::hash_map::Entry::Vacant(v) => {
                let Some(depack) = Depack::new(codec) else { return };
                if self.undecodable.contains(track) {
                    return;
                }
                let decoder = match self.decoders.video_decoder(codec, &DecoderOptions::default()) {
                    Ok(d) => d,
                    Err(e) => {
                        // Told once; the track's packets are ignored while it is published.
                        tracing::warn!(%track, %codec, error = %e, "no decoder for a composite input; it is left out");
                        self.undecodable.insert(track.clone());
                        return;
                    }
                };
                self.renderer.register_input(InputId::new(participant));
                tracing::info!(%track, %codec, "composite input added");
                v.insert(VideoInput {
                    participant: participant.into(),
                    size: (0, 0),
                    codec,
                    clock: PtsClock::default(),
                    depack,
                    decoder,
                    last_pli: None,
                    last_frame: None,
                })
            }
        };
        input.depack.push(arrived, packet);
    }

    /// A viewer of the canvas track whose packets carry `ssrc` asked for a keyframe (through
    /// the forwarder, which throttles). Any other SSRC (an MCU participant's own track, which
    /// its subscription starts on before it is shown a canvas) asks nothing of the encoders.
    pub fn request_keyframe(&mut self, ssrc: u32) {
        let Some(canvas) = self.canvas_out.iter().find(|(_, c)| c.ssrc == ssrc).map(|(id, _)| id.clone()) else { return };
        if let Some(v) = self.views.get_mut(&canvas) {
            v.encoder.request_keyframe();
        }
    }

    /// The tracks of the canvases drawn for viewers now (the room's included): the driver
    /// reads their receivers' feedback for [`RoomView::feedback`].
    pub fn canvas_tracks(&self) -> Vec<TrackId> {
        let mut t: Vec<TrackId> = self.canvas_out.values().map(|c| c.track.clone()).collect();
        t.sort();
        t
    }

    /// Whether a pass at `now` fits the encodes' rates and the simulcast caps: the view should
    /// then carry the receivers' feedback and the inputs' simulcast layers.
    pub fn wants_feedback(&self, now: Instant) -> bool {
        now >= self.next_frame && now.duration_since(self.last_rate_check) >= RATE_CHECK_INTERVAL
    }

    /// When [`VideoEngine::handle_timeout`] is due next (the next canvas).
    pub fn poll_timeout(&self) -> Instant {
        self.next_frame
    }

    /// The next output, if any.
    pub fn poll_output(&mut self) -> Option<VideoOutput> {
        self.outputs.pop_front()
    }

    /// Does what is due at `now`: whole access units decoded (and recorded), and the canvases
    /// drawn, encoded and packetized when a frame interval has passed.
    pub fn handle_timeout(&mut self, now: Instant) {
        self.recording_keyframes(now);
        self.decode(now);
        // Inputs whose publisher left.
        let live = &self.view.live_tracks;
        self.undecodable.retain(|id| live.contains(id));
        let (renderer, pending) = (&mut self.renderer, &mut self.pending);
        self.videos.retain(|id, v| {
            let keep = live.contains(id);
            if !keep {
                renderer.unregister_input(&InputId::new(&v.participant));
                pending.remove(&v.participant);
            }
            keep
        });
        if now >= self.next_frame {
            self.next_frame += self.frame_interval;
            if now > self.next_frame + self.frame_interval * 3 {
                self.next_frame = now + self.frame_interval;
            }
            self.frame(now);
        }
        // Nobody publishing and nobody watching for a while: stop.
        if self.view.idle {
            let since = *self.idle_since.get_or_insert(now);
            if now - since > IDLE_STOP && !self.idle_told {
                self.idle_told = true;
                self.outputs.push_back(VideoOutput::Idle);
            }
        } else {
            self.idle_since = None;
            self.idle_told = false;
        }
    }

    fn recording_keyframes(&mut self, now: Instant) {
        if self.view.recordings.iter().any(|r| r.tracks) && now.duration_since(self.last_key_retry) >= TRACK_KEY_RETRY {
            self.last_key_retry = now;
            for id in self.videos.keys().filter(|id| !self.keyed.contains(*id)) {
                tracing::debug!(track = %id, "track recording still waits for a keyframe; asking again");
                self.outputs.push_back(VideoOutput::RequestKeyframe(id.clone()));
            }
        }
        // While recording, a composite keyframe every 2 s gives the file cue points to seek to.
        if !self.recordings.is_empty() && now.duration_since(self.last_recording_keyframe) >= RECORDING_KEYFRAME_INTERVAL {
            self.last_recording_keyframe = now;
            for id in &self.recording_canvases {
                if let Some(v) = self.views.get_mut(id) {
                    v.encoder.request_keyframe();
                }
            }
        }
    }

    /// Whole access units out of each input's jitter buffer (also those released by their
    /// deadline, with no new packet), decoded; recorded as they arrived.
    fn decode(&mut self, now: Instant) {
        let records_tracks = self.view.recordings.iter().any(|r| r.tracks);
        for (track, input) in self.videos.iter_mut() {
            while let Some((data, dropped, rtp_ts)) = input.depack.pop(now) {
                if dropped > 0 {
                    input.decoder.report_loss();
                }
                if input.codec == VideoCodec::Vp8
                    && let Some((w, h)) = bitstream::vp8_keyframe_size(&data)
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
                        self.pending.insert(input.participant.clone(), f);
                    }
                    Ok(_) => {}
                    Err(e) => tracing::debug!(%track, error = %e, "undecodable video"),
                }
                // Track recordings get the access unit as it arrived (no transcode).
                if records_tracks {
                    let keyframe = match input.codec {
                        VideoCodec::H264 => bitstream::h264_is_keyframe(&data),
                        VideoCodec::Av1 => bitstream::av1_is_keyframe(&data),
                        _ => bitstream::vp8_is_keyframe(&data),
                    };
                    if keyframe {
                        self.keyed.insert(track.clone());
                    }
                    self.outputs.push_back(VideoOutput::TrackVideo { track: track.clone(), codec: input.codec, keyframe, data, size: input.size });
                }
            }
            if input.decoder.needs_keyframe() && input.last_pli.is_none_or(|at| now - at > PLI_INTERVAL) {
                input.last_pli = Some(now);
                self.outputs.push_back(VideoOutput::RequestKeyframe(track.clone()));
            }
        }
    }

    /// One canvas pass: planned, drawn, encoded, packetized.
    fn frame(&mut self, now: Instant) {
        let mut inputs: Vec<String> = self.videos.values().map(|v| v.participant.clone()).collect();
        inputs.sort();
        inputs.dedup();
        let own = VideoProfile::of(&self.config);
        // Only pictures someone receives are drawn and encoded (an audio-only phone, a viewer
        // still connecting, a composite nobody plays cost nothing).
        let viewers: Vec<(String, u32, VideoProfile)> =
            self.view.listeners.iter().filter(|l| l.video_watched).map(|l| (l.name.clone(), l.video_ssrc, l.profile.unwrap_or(own))).collect();
        let room_ssrc = self.view.room_video_watched.then_some(self.view.room_ssrcs.0);
        let recorded: Vec<VideoProfile> = self.view.recordings.iter().map(|r| r.profile.unwrap_or(own)).collect();
        let (scene, profiles, assigned) =
            plan_canvases(&self.config, &self.view.control, &inputs, self.view.speaker.as_deref(), room_ssrc, &viewers, &recorded);
        let mut gone = Vec::new();
        if self.scene.as_ref() != Some(&scene) {
            // Validated by the control API; a scene the compositor still refuses keeps the
            // previous one on screen rather than stopping the room.
            match self.renderer.update_scene(scene.clone()) {
                Ok(()) => {
                    self.views.retain(|id, _| scene.canvases.iter().any(|c| &c.id == id));
                    self.failed.retain(|id, _| scene.canvases.iter().any(|c| &c.id == id));
                    self.profiles = profiles;
                    self.canvases = scene.canvases.iter().map(|c| c.id.clone()).collect();
                    gone = self.canvas_tracks_follow_scene();
                }
                Err(e) => tracing::warn!(error = %e, "layout refused; keeping the previous one"),
            }
            self.tile_sizes = largest_tiles(&scene);
            self.scene = Some(scene);
        }
        self.open_encoders(now);
        // A viewer that moves to another canvas is shown its track; the driver's forwarder
        // asks that canvas for the keyframe the move waits for.
        self.seen_by = assigned;
        self.show_canvases();
        // Unpublished only now: the viewers they had were moved on first.
        self.outputs.extend(gone.into_iter().map(|track| VideoOutput::CanvasGone { track }));
        if now.duration_since(self.last_rate_check) >= RATE_CHECK_INTERVAL {
            self.last_rate_check = now;
            self.layer_caps();
            self.fit_rates();
        }
        // A sender that stopped sending shows its placeholder instead of a frozen picture.
        for v in self.videos.values() {
            if v.last_frame.is_some_and(|t| now - t > PLACEHOLDER_AFTER) {
                self.renderer.set_no_video(&InputId::new(&v.participant));
            }
        }
        let pts = now - self.epoch;
        let frames = std::mem::take(&mut self.pending).into_iter().map(|(p, f)| (InputId::new(&p), f)).collect();
        let rendered = match self.renderer.render(FrameSet { pts, frames }) {
            Ok(r) => r,
            Err(e) => {
                self.stats.render_failures += 1;
                tracing::warn!(error = %e, "composite not drawn");
                self.fall_back_renderer(e.to_string());
                return;
            }
        };
        self.stats.renders += 1;
        self.stats.canvases_drawn += rendered.canvases.len() as u64;
        let ts = (pts.as_micros() * 9 / 100) as u32;
        // The canvases someone receives or records, in the scene's order; the others go back.
        let mut todo: Vec<(CanvasId, VideoFrame, bool, Vec<Arc<str>>)> = Vec::new();
        for (id, picture) in rendered.canvases {
            let watched = self.seen_by.values().any(|v| *v == id);
            let recorders: Vec<Arc<str>> = self.recordings.iter().zip(&self.recording_canvases).filter(|(_, c)| **c == id).map(|(s, _)| s.clone()).collect();
            if !self.views.contains_key(&id) || (!watched && recorders.is_empty()) {
                self.renderer.recycle(picture);
                continue;
            }
            todo.push((id, picture, watched, recorders));
        }
        // Each encoded once, in parallel on the encode pool when there is one (the canvases'
        // encoders are independent), the results then taken in the scene's order.
        let mut results = encode_all(self.encode_pool.as_deref(), &mut self.views, &todo);
        for (i, (id, picture, watched, recorders)) in todo.into_iter().enumerate() {
            let encoded = results[i].take().expect("one result per canvas encoded");
            // Encoded: the next canvas is drawn into its memory.
            let size = (picture.width, picture.height);
            self.renderer.recycle(picture);
            let units = match encoded {
                Ok(units) => units,
                Err(e) => {
                    self.encode_failed(now, &id, e.to_string());
                    continue;
                }
            };
            self.stats.encodes += 1;
            let Some(view) = self.views.get_mut(&id) else { continue };
            for unit in units {
                // An encoder that holds frames back (rav1e) returns an earlier picture: the
                // file gets that picture's time, in step with the audio.
                let shown_at = now.checked_sub(pts.saturating_sub(unit.pts)).unwrap_or(now);
                let data = Bytes::from(unit.data);
                if !recorders.is_empty() {
                    self.outputs.push_back(VideoOutput::CompositeVideo {
                        recordings: recorders.clone(),
                        shown_at,
                        keyframe: unit.keyframe,
                        data: data.clone(),
                        size,
                    });
                }
                if !watched {
                    continue;
                }
                let payloads = match view.payloader.as_mut() {
                    Some(p) => match p.payload(MTU, &data) {
                        Ok(p) => p,
                        Err(_) => continue,
                    },
                    // packetization-mode 0: every NAL unit whole (access unit delimiters dropped).
                    None => bitstream::annexb_nal_units(&data).filter(|n| n[0] & 0x1f != bitstream::h264_nal::AUD).map(Bytes::copy_from_slice).collect(),
                };
                let n = payloads.len();
                // Encoded and packetized once, on the canvas's track; the forwarder sends it to
                // every viewer (each with its own SSRC and numbering).
                let Some(out) = self.canvas_out.get_mut(&id) else { continue };
                for (i, p) in payloads.iter().enumerate() {
                    out.seq = out.seq.wrapping_add(1);
                    self.outputs.push_back(VideoOutput::Rtp(mcu_sfu::rtp::build(VIDEO_PT, i + 1 == n, out.seq, ts, out.ssrc, p)));
                }
            }
        }
    }

    /// Every canvas of the new scene gets a track (announced), and those of canvases that are
    /// gone are returned, to be unpublished once their viewers were moved.
    fn canvas_tracks_follow_scene(&mut self) -> Vec<TrackId> {
        let canvases = &self.canvases;
        let mut gone: Vec<TrackId> = Vec::new();
        self.canvas_out.retain(|id, c| {
            let keep = canvases.contains(id);
            if !keep && id.0.as_ref() != ROOM_CANVAS {
                gone.push(c.track.clone());
            }
            keep
        });
        gone.sort();
        for id in self.canvases.clone() {
            if self.canvas_out.contains_key(&id) {
                continue;
            }
            let seq = next_random(&mut self.rng) as u16;
            if id.0.as_ref() == ROOM_CANVAS {
                // The room's track, published by the driver with the composite.
                let out = CanvasOut { track: Arc::from(room_video_track()), ssrc: self.view.room_ssrcs.0, seq };
                self.canvas_out.insert(id, out);
                continue;
            }
            let track: TrackId = Arc::from(format!("{MIX}/canvas-{}", self.next_canvas_track));
            self.next_canvas_track += 1;
            let ssrc = loop {
                let s = next_random(&mut self.rng) as u32 | 1;
                if s != self.view.room_ssrcs.0 && s != self.view.room_ssrcs.1 && self.canvas_out.values().all(|c| c.ssrc != s) {
                    break s;
                }
            };
            let codec = self.profiles.get(&id).map_or(self.config.codec, |p| p.codec);
            self.outputs.push_back(VideoOutput::CanvasTrack { track: track.clone(), ssrc, codec });
            self.canvas_out.insert(id, CanvasOut { track, ssrc, seq });
        }
        gone
    }

    /// Each MCU participant whose canvas track changed is told (and one that is no longer
    /// shown anything is forgotten, so it is told again when it is).
    fn show_canvases(&mut self) {
        let mut shown = HashMap::new();
        let mut listeners: Vec<&crate::Listener> = self.view.listeners.iter().collect();
        listeners.sort_by(|a, b| a.name.cmp(&b.name));
        for l in listeners {
            let Some(track) = self.seen_by.get(&l.video_ssrc).and_then(|id| self.canvas_out.get(id)).map(|c| c.track.clone()) else { continue };
            if self.shown.get(&l.name) != Some(&track) {
                self.outputs.push_back(VideoOutput::Show { listener: l.name.clone(), track: track.clone() });
            }
            shown.insert(l.name.clone(), track);
        }
        self.shown = shown;
    }

    /// An encoder for every canvas of the renderer's scene that has none (and whose last failure is old
    /// enough to try again).
    fn open_encoders(&mut self, now: Instant) {
        let missing: Vec<CanvasId> =
            self.canvases.iter().filter(|id| !self.views.contains_key(*id) && self.failed.get(*id).is_none_or(|until| now >= *until)).cloned().collect();
        for id in missing {
            let Some(profile) = self.profiles.get(&id).copied() else { continue };
            match new_view(self.encoders.as_mut(), &profile, self.config.fps) {
                Ok(v) => {
                    self.stats.encoders_opened += 1;
                    self.failed.remove(&id);
                    self.views.insert(id, v);
                }
                Err(e) => self.fail(now, &id, e),
            }
        }
    }

    /// The renderer failed: the fallback (if any, once) draws from the next frame on, with
    /// the inputs registered again and the scene set again at that frame.
    fn fall_back_renderer(&mut self, error: String) {
        let Some(make) = self.fallback.take() else { return };
        let mut renderer = make();
        let mut inputs: Vec<&String> = self.videos.values().map(|v| &v.participant).collect();
        inputs.sort();
        inputs.dedup();
        for p in inputs {
            renderer.register_input(InputId::new(p));
        }
        self.renderer = renderer;
        // Set again at the next frame (and the canvas tracks, encoders and viewers stay).
        self.scene = None;
        self.stats.render_fallbacks += 1;
        self.outputs.push_back(VideoOutput::RenderFallback { error });
    }

    /// A canvas's encoder failed while encoding: a hardware one is replaced at once when the
    /// factory has another kind; otherwise as [`VideoEngine::fail`].
    fn encode_failed(&mut self, now: Instant, id: &CanvasId, error: String) {
        let backend = self.views.get(id).map(|v| v.encoder.backend());
        if let Some(backend) = backend
            && self.encoders.encoder_failed(backend)
        {
            self.stats.encoder_failures += 1;
            self.stats.encoder_fallbacks += 1;
            self.views.remove(id);
            self.failed.remove(id);
            self.outputs.push_back(VideoOutput::EncoderFallback { canvas: id.0.to_string(), error });
            // Reopened now: the next frame is encoded by the new encoder.
            self.open_encoders(now);
            return;
        }
        self.fail(now, id, error);
    }

    /// A canvas's encoder failed: counted and told; the canvas waits [`ENCODER_RETRY`].
    fn fail(&mut self, now: Instant, id: &CanvasId, error: String) {
        self.stats.encoder_failures += 1;
        self.views.remove(id);
        self.failed.insert(id.clone(), now + ENCODER_RETRY);
        self.outputs.push_back(VideoOutput::EncoderFailed { canvas: id.0.to_string(), error });
    }

    /// A simulcast sender: the composite decodes the smallest layer that fills its largest
    /// tile (4x fewer pixels to decode per layer skipped).
    fn layer_caps(&mut self) {
        let mut caps: Vec<(TrackId, usize)> = Vec::new();
        for (track, v) in &self.videos {
            let Some(sim) = self.view.simulcast.get(track) else { continue };
            let Some(current) = sim.current else { continue };
            let Some(&tile) = self.tile_sizes.get(&v.participant) else { continue };
            caps.push((track.clone(), layer_for_tile(sim.layers, current, v.size, tile)));
        }
        caps.sort();
        self.outputs.extend(caps.into_iter().map(|(track, layer)| VideoOutput::LayerCap { track, layer }));
    }

    /// Each shared encode follows the lowest bandwidth estimate (REMB) of those who receive
    /// it, and the loss they report, under its profile's bitrate.
    fn fit_rates(&mut self) {
        for (id, view) in self.views.iter_mut() {
            // The canvas's track: everyone who receives it (or is moving to it) reports there.
            let track = self.canvas_out.get(id).map(|c| c.track.to_string());
            let reports: Vec<&crate::Feedback> = track.iter().filter_map(|t| self.view.feedback.get(t)).collect();
            let estimate = reports.iter().filter_map(|f| f.estimate).min();
            let loss = reports
                .iter()
                .filter_map(|f| f.loss)
                .fold(None, |acc: Option<(Instant, u8)>, (at, f)| Some(acc.map_or((at, f), |(a, g)| (a.max(at), g.max(f)))));
            // Each new receiver report (the worst among the receivers) moves the loss-based
            // rate once.
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
                tracing::debug!(canvas = %id.0, ?estimate, target, "composite bitrate");
                if let Err(e) = view.encoder.set_rate(mcu_codec::RateControl { bitrate_bps: target, ..rate }) {
                    tracing::warn!(canvas = %id.0, error = %e, "bitrate not changed");
                }
            }
        }
    }
}

/// A canvas's encode result.
type Encoded = Option<Result<Vec<mcu_codec::EncodedFrame>, mcu_codec::EncodeError>>;

/// One encode result per picture of `todo` (by index), each from its canvas's encoder: on
/// `pool` in parallel when there is one and more than one picture, else on this thread.
fn encode_all(pool: Option<&rayon::ThreadPool>, views: &mut HashMap<CanvasId, View>, todo: &[(CanvasId, VideoFrame, bool, Vec<Arc<str>>)]) -> Vec<Encoded> {
    let mut work: Vec<(usize, &mut View)> = views.iter_mut().filter_map(|(id, v)| todo.iter().position(|t| t.0 == *id).map(|i| (i, v))).collect();
    let encode = |(i, v): &mut (usize, &mut View)| (*i, v.encoder.encode(&todo[*i].1));
    let done: Vec<(usize, Result<Vec<mcu_codec::EncodedFrame>, mcu_codec::EncodeError>)> = match pool {
        Some(pool) if work.len() > 1 => {
            use rayon::prelude::*;
            pool.install(|| work.par_iter_mut().map(encode).collect())
        }
        _ => work.iter_mut().map(encode).collect(),
    };
    let mut out: Vec<Encoded> = (0..todo.len()).map(|_| None).collect();
    for (i, r) in done {
        out[i] = Some(r);
    }
    out
}

fn new_view(encoders: &mut dyn EncoderFactory, profile: &VideoProfile, fps: u32) -> Result<View, String> {
    let (codec, payloader): (VideoCodec, Option<Box<dyn Payloader + Send>>) = match (profile.codec, profile.single_nal) {
        (MixCodec::Vp8, _) => (VideoCodec::Vp8, Some(Box::new(Vp8Payloader::default()))),
        (MixCodec::H264, false) => (VideoCodec::H264, Some(Box::new(H264Payloader::default()))),
        (MixCodec::H264, true) => (VideoCodec::H264, None),
        (MixCodec::Av1, _) => (VideoCodec::Av1, Some(Box::new(Av1Payloader {}))),
    };
    let config = EncoderConfig { max_nal_size: profile.single_nal.then_some(MAX_NAL), ..EncoderConfig::realtime(profile.bitrate, fps as f64) };
    let encoder = encoders.video_encoder(codec, &config).map_err(|e| e.to_string())?;
    Ok(View { encoder, payloader, max_bitrate: profile.bitrate, loss_rate: profile.bitrate, loss_seen: None })
}

/// xorshift64: the tracks' first sequence numbers (RFC 3550 wants them unpredictable; the
/// driver seeds it at random).
pub(crate) fn next_random(state: &mut u64) -> u64 {
    let mut x = *state;
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    *state = x;
    x
}
