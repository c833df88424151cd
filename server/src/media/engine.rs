//! The room composite (MCU), as the server runs it: every published track of a room is copied
//! to the room's media engine (`mcu_pipeline`), which decodes, composites, mixes and encodes;
//! the result is published back into the room as the tracks of a virtual participant,
//! [`MIX`]. Viewers of the composite (`POST /whep/{room}`) subscribe to those tracks through the
//! room's forwarder like to any publisher's, so they share one encode, and keyframe requests,
//! slow-viewer handling and sequence rewriting come from the SFU path.
//!
//! This module is the engine's driver, and only that: the engine's policy (canvas planning,
//! keyframes, rate control from viewers' REMB and loss reports, simulcast layer caps, idle
//! shutdown) lives in `mcu_pipeline` and is tested there on virtual time. Each room runs two
//! OS threads (decode, composite and encode are CPU work): the video engine, woken at the end
//! of each input frame and at each canvas tick, and the audio engine, woken every 20 ms (a slow
//! video decode or encode never delays a mix tick). Each pass reads the room once into a
//! `RoomView`, hands the engine what arrived through the room's tap, and carries out what the
//! engine asks: RTP into the room's forwarder, keyframe requests and layer caps to publishers,
//! media to recordings, speaker events.
//!
//! MCU participants (`POST /mcu/{room}`) are listeners of the mixer too: each hears everyone but
//! itself on a track of its own (`_mix/audio-for-{name}`); listeners whose mixes are equal share
//! one Opus encode.

use std::{
    collections::HashSet,
    sync::{Arc, Weak},
    time::Instant,
};

use mcu_codec::EncoderSelector;
use mcu_compositor::Compositor;
use mcu_compositor::Gpu;
use mcu_mixer::{GpuMixer, Mixer};
use mcu_pipeline::{
    AudioEngine, AudioOutput, AudioStats, EncoderFactory, Feedback, Listener, RecordingView, RoomView, SelectedEncoders, Simulcast, SoftwareCodecs,
    VideoEngine, VideoOutput, VideoStats,
};
use tokio::sync::mpsc;

use mcu_pipeline::{MIX, McuConfig, TrackId};

use crate::media::{
    events::EventKind,
    record::{FileLayout, Session},
    room::{Control, MembersView, Room, mix_tracks},
    tap::{Tap, TapQueue, TapReaders},
};

/// Where a room's composite draws and mixes: chosen once per process (`mcu serve
/// --render-path`, `--mix-path`) on the process's one GPU device.
#[derive(Clone, Default)]
pub struct MediaPaths {
    /// Canvases drawn with wgpu on this device (`None`: on the CPU).
    pub render: Option<Arc<Gpu>>,
    /// Mixes computed on this device (`None`: on the CPU).
    pub mix: Option<Arc<Gpu>>,
    /// The process's encode workers: every room encodes the canvases of a pass there in
    /// parallel (`None`: on the room's own thread, one after another).
    pub encode_pool: Option<Arc<rayon::ThreadPool>>,
    /// NVENC or software per stream, as the start-up probe decided (`None`: software), and
    /// the reasons for software already logged.
    pub encoders: Option<Arc<EncoderSelector>>,
    pub told: Arc<std::sync::Mutex<HashSet<String>>>,
}

impl MediaPaths {
    /// The paths' names: (render, mix), each `gpu` or `cpu`.
    pub fn names(&self) -> (&'static str, &'static str) {
        let name = |g: &Option<Arc<Gpu>>| if g.is_some() { "gpu" } else { "cpu" };
        (name(&self.render), name(&self.mix))
    }
}

/// What runs on the composite's thread when it ends (the room still there).
pub type Ended = Box<dyn FnOnce(&Arc<Room>) + Send>;

/// Starts the composite of `room` unless it runs already; `ended` runs when it ends (its
/// threads done). True when this call started it.
pub fn ensure(room: &Arc<Room>, config: McuConfig, paths: MediaPaths, ended: Ended) -> bool {
    let (tap, readers) = Tap::new();
    let (kf_tx, kf_rx) = mpsc::unbounded_channel::<u32>();
    let tracks = mix_tracks(config.codec);
    if !room.start_mix(tap, tracks, kf_tx, rand::random::<u32>() | 1, rand::random::<u32>() | 1, paths.names()) {
        return false;
    }
    tracing::info!(room = %room.name, width = config.width, height = config.height, fps = config.fps, codec = ?config.codec, "room composite started");
    room.events.emit(&room.name, EventKind::MixAvailable { available: true });
    let weak_room = Arc::downgrade(room);
    let name = room.name.clone();
    let handle = tokio::runtime::Handle::current();
    let spawned = std::thread::Builder::new().name(format!("mcu-{name}")).spawn(move || {
        let _rt = handle.enter();
        if let Err(e) = run(weak_room.clone(), readers, kf_rx, config, paths) {
            tracing::error!(room = %name, error = %e, "room composite failed");
        }
        if let Some(room) = weak_room.upgrade() {
            ended(&room);
        }
        tracing::info!(room = %name, "room composite stopped");
    });
    if let Err(e) = spawned {
        tracing::error!(error = %e, "cannot start the composite thread");
        room.stop_mix();
        return false;
    }
    true
}

/// The room as the engines see it, read once per pass; what changes rarely (the membership,
/// the operator's settings, the recordings) is copied only when its version moves, and what is
/// watched only when a canvas or tick is due (kept in between).
#[derive(Default)]
struct Snapshot {
    members: MembersView,
    members_seen: u64,
    control: Arc<Control>,
    control_seen: u64,
    recordings: Vec<Arc<Session>>,
    recordings_seen: u64,
    /// Which listeners' pictures are watched (by name).
    watched: HashSet<String>,
    room_video_watched: bool,
    room_audio_watched: bool,
}

/// What a pass of [`Snapshot::view`] reads afresh.
struct Refresh {
    /// What is watched (a canvas or tick is due).
    watched: bool,
    /// For the video engine: the listeners' pictures (profiles, watched video tracks).
    video: bool,
    /// The canvas tracks whose receivers' reports to read, and the live tracks' simulcast
    /// layers (a rate check is due).
    feedback: Option<Vec<TrackId>>,
}

impl Snapshot {
    fn view(&mut self, room: &Room, refresh: Refresh, speaker: Option<String>) -> RoomView {
        if let Some((v, members)) = room.members_if_newer(self.members_seen) {
            self.members_seen = v;
            self.members = members;
        }
        if let Some((v, list)) = room.recordings_if_newer(self.recordings_seen) {
            self.recordings_seen = v;
            self.recordings = list;
        }
        if let Some((v, c)) = room.control_if_newer(self.control_seen) {
            self.control_seen = v;
            self.control = Arc::new(c);
        }
        if refresh.watched {
            if refresh.video {
                self.watched = self.members.listeners.iter().filter(|l| room.picture_watched(&l.name)).map(|l| l.name.clone()).collect();
                self.room_video_watched = room.watched(&mcu_pipeline::room_video_track());
            } else {
                self.room_audio_watched = room.watched(&format!("{MIX}/audio-0"));
            }
        }
        let listeners = self
            .members
            .listeners
            .iter()
            .map(|l| Listener {
                video_watched: refresh.video && self.watched.contains(&l.name),
                profile: if refresh.video { l.profile } else { None },
                ..l.clone()
            })
            .collect();
        let mut view = RoomView {
            live_tracks: self.members.live_tracks.clone(),
            listeners,
            room_ssrcs: self.members.room_ssrcs,
            room_video_watched: self.room_video_watched,
            room_audio_watched: self.room_audio_watched,
            control: self.control.clone(),
            recordings: self.recordings.iter().map(|s| RecordingView { id: Arc::from(s.id.as_str()), profile: s.profile, tracks: s.tracks }).collect(),
            speaker,
            idle: self.members.publishers == 0 && room.subscriber_sessions() == 0,
            ..RoomView::default()
        };
        if let Some(tracks) = refresh.feedback {
            for t in tracks {
                let (estimate, loss) = room.encode_feedback(&[&*t], mcu_pipeline::ESTIMATE_MAX_AGE);
                view.feedback.insert(t.to_string(), Feedback { estimate, loss });
            }
            for track in &view.live_tracks {
                if let Some((layers, current)) = room.composite_layer(track) {
                    view.simulcast.insert(track.clone(), Simulcast { layers, current });
                }
            }
        }
        view
    }
}

fn run(room: Weak<Room>, tap: TapReaders, mut keyframe_requests: mpsc::UnboundedReceiver<u32>, config: McuConfig, paths: MediaPaths) -> anyhow::Result<()> {
    // The audio mix runs on a thread of its own: a slow video decode or encode never delays
    // the 20 ms mix ticks. It tells this thread who speaks (for the speaker layout). It ends
    // with this thread.
    // It is waited for: when this returns, nothing of the composite runs (its GPU work
    // included).
    struct EndsAudio(Arc<TapQueue>, Option<std::thread::JoinHandle<()>>);
    impl Drop for EndsAudio {
        fn drop(&mut self) {
            self.0.close();
            if let Some(h) = self.1.take() {
                let _ = h.join();
            }
        }
    }
    let shared_speaker: Arc<parking_lot::Mutex<Option<String>>> = Arc::default();
    let audio_thread = {
        let (room, speaker, audio, mix_gpu) = (room.clone(), shared_speaker.clone(), tap.audio.clone(), paths.mix.clone());
        std::thread::Builder::new().name("mcu-audio".into()).spawn(move || {
            if let Err(e) = run_audio(room, &audio, speaker, config, mix_gpu) {
                tracing::error!(error = %e, "room audio mix failed");
            }
        })?
    };
    let _ends_audio = EndsAudio(tap.audio.clone(), Some(audio_thread));
    // The CPU compositor draws on this thread itself (no pool, no hand-off); the GPU one
    // submits to the process's device and reads the canvases back.
    let on_gpu = paths.render.is_some();
    let compositor = paths.render.map_or_else(|| Compositor::new_cpu(1), Compositor::new);
    let encoders: Box<dyn EncoderFactory> = match paths.encoders.clone() {
        Some(selector) => Box::new(SelectedEncoders::new(selector, paths.told.clone())),
        None => Box::new(SoftwareCodecs),
    };
    let mut engine = VideoEngine::new(config, Instant::now(), Box::new(compositor), encoders, Box::new(SoftwareCodecs), rand::random());
    if let Some(pool) = paths.encode_pool.clone() {
        engine = engine.with_encode_pool(pool);
    }
    if on_gpu {
        // A GPU fault (device lost, out of memory) moves the room to the CPU compositor.
        engine = engine.with_fallback_renderer(Box::new(|| Box::new(Compositor::new_cpu(1))));
    }
    let mut snapshot = Snapshot::default();
    let mut counted = VideoStats::default();
    loop {
        // Woken at the end of each video frame and at each canvas tick.
        let Some(batch) = tap.video.wait(engine.poll_timeout()) else { return Ok(()) };
        let Some(room) = room.upgrade() else { return Ok(()) };
        if room.closed.load(std::sync::atomic::Ordering::Relaxed) {
            return Ok(());
        }
        let now = Instant::now();
        let speaker = shared_speaker.lock().clone();
        let refresh = Refresh { watched: now >= engine.poll_timeout(), video: true, feedback: engine.wants_feedback(now).then(|| engine.canvas_tracks()) };
        let view = snapshot.view(&room, refresh, speaker);
        engine.set_view(now, view);
        // Video inputs (audio goes to the audio thread).
        for t in batch {
            if let Some(codec) = t.video {
                engine.handle_packet(t.arrived, &t.track, &t.participant, codec, t.packet);
            }
        }
        while let Ok(ssrc) = keyframe_requests.try_recv() {
            engine.request_keyframe(ssrc);
        }
        engine.handle_timeout(now);
        while let Some(out) = engine.poll_output() {
            match out {
                VideoOutput::Rtp(packet) => room.publish_mix_packet(now, &packet),
                VideoOutput::RequestKeyframe(track) => room.request_keyframe(&track),
                VideoOutput::LayerCap { track, layer } => {
                    let changed = room.set_composite_layer(&track, layer);
                    if changed {
                        tracing::debug!(room = %room.name, %track, layer, "composite simulcast layer cap");
                    }
                }
                VideoOutput::TrackVideo { track, codec, keyframe, data, size } => {
                    let layout = FileLayout { video: Some(codec), audio_channels: None };
                    for s in &snapshot.recordings {
                        if let Some(w) = s.track_writer(&track, layout) {
                            w.video(now, keyframe, &data, size);
                        }
                    }
                }
                VideoOutput::CompositeVideo { recordings, shown_at, keyframe, data, size } => {
                    for s in snapshot.recordings.iter().filter(|s| recordings.iter().any(|id| **id == *s.id)) {
                        s.composite.video(shown_at, keyframe, &data, size);
                    }
                }
                VideoOutput::CanvasTrack { track, ssrc, codec } => room.publish_canvas(&track, ssrc, codec),
                VideoOutput::CanvasGone { track } => room.unpublish_canvas(&track),
                VideoOutput::Show { listener, track } => {
                    let shown = room.show_canvas(&listener, &track);
                    if !shown {
                        tracing::debug!(room = %room.name, %listener, %track, "canvas not shown: no subscription yet");
                    }
                }
                VideoOutput::RenderFallback { error } => {
                    tracing::error!(room = %room.name, %error, "GPU compositor failed; the room draws on the CPU from the next frame on");
                    room.counters().render_fallbacks.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    room.composite_moved_to_cpu(true);
                }
                VideoOutput::EncoderFallback { canvas, error } => {
                    tracing::warn!(room = %room.name, %canvas, %error, "hardware encoder failed; the canvas is encoded in software from its next frame");
                    room.counters().encoder_fallbacks.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                }
                VideoOutput::EncoderFailed { canvas, error } => {
                    tracing::error!(room = %room.name, %canvas, %error, "composite canvas encoder failed; the canvas stops, the room goes on (retried in 5 s)");
                }
                VideoOutput::Idle => return Ok(()),
                _ => {}
            }
        }
        let stats = engine.stats();
        let failed = stats.encoder_failures - counted.encoder_failures;
        if failed > 0 {
            room.counters().mix_encoder_failures.fetch_add(failed, std::sync::atomic::Ordering::Relaxed);
        }
        counted = stats;
    }
}

/// The room's audio engine: each publisher's Opus decoded, the mixes (room mix, and each MCU
/// participant's everyone-but-itself) every 20 ms, one Opus encode per distinct mix, published
/// as the composite's audio tracks; recordings fed. Ends when its tap queue is closed (the
/// video thread ended, or the composite stopped).
fn run_audio(
    room: Weak<Room>,
    rx: &TapQueue,
    shared_speaker: Arc<parking_lot::Mutex<Option<String>>>,
    config: McuConfig,
    gpu: Option<Arc<Gpu>>,
) -> anyhow::Result<()> {
    let mixer = Mixer::new(AudioEngine::mixer_config(), gpu.map(GpuMixer::new))?;
    let mut engine = AudioEngine::new(config, Instant::now(), mixer, rand::random())?;
    let mut snapshot = Snapshot::default();
    let mut counted = AudioStats::default();
    let mut told_audio_failure = false;
    loop {
        // Everything that arrived since the last tick (the tap never wakes this thread early).
        let Some(batch) = rx.wait(engine.poll_timeout()) else { return Ok(()) };
        let Some(room) = room.upgrade() else { return Ok(()) };
        let now = Instant::now();
        let refresh = Refresh { watched: now >= engine.poll_timeout(), video: false, feedback: None };
        let view = snapshot.view(&room, refresh, None);
        engine.set_view(view);
        for t in batch {
            engine.handle_packet(t.arrived, &t.track, &t.participant, t.packet.seq, t.packet.payload);
        }
        engine.handle_timeout(now);
        while let Some(out) = engine.poll_output() {
            match out {
                AudioOutput::Rtp(packet) => room.publish_mix_packet(now, &packet),
                AudioOutput::TrackAudio { track, payload } => {
                    for s in &snapshot.recordings {
                        if let Some(w) = s.track_writer(&track, FileLayout { video: None, audio_channels: Some(2) }) {
                            w.audio(now, &payload);
                        }
                    }
                }
                AudioOutput::CompositeAudio(packet) => {
                    for s in &snapshot.recordings {
                        s.composite.audio(now, &packet);
                    }
                }
                AudioOutput::SpeakerChanged { to, previous } => {
                    *shared_speaker.lock() = Some(to.clone());
                    room.events.emit(&room.name, EventKind::ActiveSpeaker { participant: to, previous });
                }
                // Told once a room; counted every tick (the metric).
                AudioOutput::EncoderFailed { error } if !told_audio_failure => {
                    told_audio_failure = true;
                    tracing::error!(room = %room.name, %error, "a mix could not be encoded; its listeners miss those ticks (further failures counted in mcu_mix_encoder_failures_total)");
                }
                _ => {}
            }
        }
        let stats = engine.stats();
        let c = room.counters();
        let add = |counter: &std::sync::atomic::AtomicU64, now: u64, was: u64| {
            if now > was {
                counter.fetch_add(now - was, std::sync::atomic::Ordering::Relaxed);
            }
        };
        add(&c.dropped_audio_playout, stats.playout_dropped, counted.playout_dropped);
        add(&c.audio_concealed, stats.concealed, counted.concealed);
        add(&c.mix_encoder_failures, stats.encoder_failures, counted.encoder_failures);
        if stats.mix_gpu_fallbacks > counted.mix_gpu_fallbacks {
            // Logged by the mixer; the room's mix path is the CPU's from now on.
            add(&c.mix_fallbacks, stats.mix_gpu_fallbacks, counted.mix_gpu_fallbacks);
            room.composite_moved_to_cpu(false);
        }
        counted = stats;
    }
}
