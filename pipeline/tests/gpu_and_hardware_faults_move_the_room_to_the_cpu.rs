//! GPU faults never drop a call: a renderer that fails mid-room (a device lost) hands the room
//! to its fallback renderer at the next frame, and a hardware encoder that fails mid-stream is
//! replaced by a software one at once; the viewers' pictures go on within a second, and each
//! move is counted and told once. The encoder selection with a fake NVENC driver status picks
//! software for a codec NVENC does not encode and says why once.
mod common;

use std::sync::{
    Arc, Mutex,
    atomic::{AtomicBool, Ordering},
};

use common::*;
use mcu_codec::{
    Backend, EncodeError, EncoderConfig, EncoderPreference, EncoderSelector, OpenError, VideoCodec, VideoEncoder, new_software_encoder,
    nvenc::{NvencInfo, NvencStatus},
};
use mcu_compositor::{Compositor, FrameSet, InputId, RenderError, RenderOutput, Scene, SceneError};
use mcu_media::{Rgb, VideoFrame};
use mcu_pipeline::{Control, EncoderFactory, Renderer, SelectedEncoders, SoftwareCodecs, VideoOutput};

const RED: Rgb = Rgb(220, 30, 30);

fn reddish(c: Rgb) -> bool {
    c.0 > 150 && c.1 < 90 && c.2 < 90
}

fn centre(room: &Room, ssrc: u32) -> Rgb {
    let f = room.viewers.decode_last(ssrc);
    f.mean_rgb(f.width / 2 - 8, f.height / 2 - 8, f.width / 2 + 8, f.height / 2 + 8)
}

/// The CPU compositor, failing every pass once `lost` is set (as a GPU renderer does once its
/// device is lost).
struct LosesItsDevice {
    inner: Compositor,
    lost: Arc<AtomicBool>,
}

impl Renderer for LosesItsDevice {
    fn register_input(&mut self, id: InputId) -> bool {
        self.inner.register_input(id)
    }
    fn unregister_input(&mut self, id: &InputId) {
        self.inner.unregister_input(id)
    }
    fn set_no_video(&mut self, id: &InputId) {
        self.inner.set_no_video(id)
    }
    fn update_scene(&mut self, scene: Scene) -> Result<(), SceneError> {
        self.inner.update_scene(scene)
    }
    fn render(&mut self, frames: FrameSet) -> Result<RenderOutput, RenderError> {
        if self.lost.load(Ordering::Relaxed) {
            return Err(RenderError::Gpu("device lost (injected)".into()));
        }
        self.inner.render(frames)
    }
    fn recycle(&mut self, canvas: VideoFrame) {
        self.inner.recycle(canvas)
    }
}

#[test]
fn a_lost_render_device_moves_the_room_to_the_fallback_renderer_at_the_next_frame() {
    let lost = Arc::new(AtomicBool::new(false));
    let renderer = LosesItsDevice { inner: Compositor::new_cpu(1), lost: lost.clone() };
    let mut room = Room::with_renderer(Box::new(SoftwareCodecs), Box::new(renderer));
    room.engine = room.engine.with_fallback_renderer(Box::new(|| Box::new(Compositor::new_cpu(1))));
    room.publish(Publisher::new("alice", (160, 90), RED));
    room.listener("a", 100, None);
    room.run(1.5, &["alice"]);
    let before = room.viewers.frames(100);
    assert!(before >= 12 && reddish(centre(&room, 100)), "{before} pictures before the fault");

    // The device is lost: the pass fails, the next one draws on the fallback.
    lost.store(true, Ordering::Relaxed);
    room.run(1.0, &["alice"]);
    let after = room.viewers.frames(100) - before;
    assert!(after >= 9, "the picture goes on: {after} pictures in the second after the fault (10 fps; one pass lost)");
    assert!(reddish(centre(&room, 100)), "alice again on the fallback: {:?}", centre(&room, 100));
    let stats = room.engine.stats();
    assert_eq!((stats.render_failures, stats.render_fallbacks), (1, 1), "{stats:?}");
    let told: Vec<&VideoOutput> = room.outputs.iter().filter(|o| matches!(o, VideoOutput::RenderFallback { .. })).collect();
    assert_eq!(told.len(), 1, "told once: {told:?}");
    assert_eq!(room.viewers.by_ssrc[&100].seq_gaps, 0, "the track's numbering runs on");
}

#[test]
fn a_lost_wgpu_device_on_lavapipe_moves_the_room_to_the_cpu() {
    // A real device loss: the GPU compositor's device destroyed mid-room.
    let gpu = mcu_compositor::Gpu::new(&mcu_compositor::AdapterChoice::Auto).expect("a wgpu adapter (lavapipe in CI)");
    let mut room = Room::with_renderer(Box::new(SoftwareCodecs), Box::new(Compositor::new(gpu.clone())));
    room.engine = room.engine.with_fallback_renderer(Box::new(|| Box::new(Compositor::new_cpu(1))));
    room.publish(Publisher::new("alice", (160, 90), RED));
    room.listener("a", 100, None);
    room.run(1.0, &["alice"]);
    let before = room.viewers.frames(100);
    assert!(before >= 8 && reddish(centre(&room, 100)), "{before} pictures drawn with wgpu before the fault");
    gpu.device.destroy();
    room.run(1.0, &["alice"]);
    let after = room.viewers.frames(100) - before;
    let stats = room.engine.stats();
    assert_eq!(stats.render_fallbacks, 1, "{stats:?}");
    assert!(after >= 8, "the picture goes on: {after} pictures in the second after the device was destroyed");
    assert!(reddish(centre(&room, 100)), "alice drawn on the CPU: {:?}", centre(&room, 100));
}

/// Encoders that claim to be NVENC (software inside) and fail once `lost` is set, until the
/// engine tells the factory; then plain software.
struct FlakyHardware {
    lost: Arc<AtomicBool>,
    software: bool,
    opened: Arc<Mutex<Vec<Backend>>>,
}

impl EncoderFactory for FlakyHardware {
    fn video_encoder(&mut self, codec: VideoCodec, config: &EncoderConfig) -> Result<Box<dyn VideoEncoder>, OpenError> {
        let inner = new_software_encoder(codec, config)?;
        if self.software {
            self.opened.lock().unwrap().push(inner.backend());
            return Ok(inner);
        }
        self.opened.lock().unwrap().push(Backend::Nvenc);
        let (lost, codec) = (self.lost.clone(), codec);
        let hook = move |frame: &VideoFrame| {
            if lost.load(Ordering::Relaxed) {
                return Err(EncodeError::UnsupportedSize {
                    codec,
                    pts: frame.pts,
                    width: frame.width,
                    height: frame.height,
                    why: "NVENC session lost (injected)",
                });
            }
            Ok(())
        };
        Ok(Box::new(Hooked { inner, backend: Some(Backend::Nvenc), hook: Box::new(hook) }))
    }
    fn encoder_failed(&mut self, backend: Backend) -> bool {
        let moved = backend == Backend::Nvenc && !self.software;
        self.software = true;
        moved
    }
}

#[test]
fn a_failed_hardware_encoder_is_replaced_by_software_at_once() {
    let lost = Arc::new(AtomicBool::new(false));
    let opened: Arc<Mutex<Vec<Backend>>> = Arc::default();
    let mut room = Room::new(Box::new(FlakyHardware { lost: lost.clone(), software: false, opened: opened.clone() }));
    room.publish(Publisher::new("alice", (160, 90), RED));
    room.listener("a", 100, None);
    room.run(1.5, &["alice"]);
    let before = room.viewers.frames(100);
    assert!(before >= 12, "{before} pictures from the hardware encoder");
    lost.store(true, Ordering::Relaxed);
    room.run(1.0, &["alice"]);
    let after = room.viewers.frames(100) - before;
    // The failed pass's picture is lost; the next one comes from the software encoder (a
    // keyframe), not 5 s later as after a software encoder's failure.
    assert!(after >= 9, "{after} pictures in the second after the failure");
    assert!(reddish(centre(&room, 100)), "{:?}", centre(&room, 100));
    let frames = &room.viewers.by_ssrc[&100].frames;
    assert!(frames[before].2, "the software encoder's first picture is a keyframe");
    assert_eq!(*opened.lock().unwrap(), [Backend::Nvenc, Backend::Software("libvpx")]);
    let stats = room.engine.stats();
    assert_eq!((stats.encoder_failures, stats.encoder_fallbacks), (1, 1), "{stats:?}");
    assert_eq!(room.outputs.iter().filter(|o| matches!(o, VideoOutput::EncoderFallback { .. })).count(), 1);
    assert!(!room.outputs.iter().any(|o| matches!(o, VideoOutput::EncoderFailed { .. })), "no canvas stopped");
}

#[test]
fn the_selector_with_a_fake_nvenc_status_picks_software_for_vp8_and_says_why_once() {
    // An L4-like GPU whose NVENC encodes H.264 only, as a driver probe would report it.
    let info = NvencInfo { device: "NVIDIA L4 (fake)".into(), driver_api: (12, 2), codecs: vec![VideoCodec::H264] };
    let selector = Arc::new(EncoderSelector::with_status(EncoderPreference::Auto, NvencStatus::Available(info)));
    let told: Arc<Mutex<std::collections::HashSet<String>>> = Arc::default();
    let mut room = Room::new(Box::new(SelectedEncoders::new(selector, told.clone())));
    room.publish(Publisher::new("alice", (160, 90), RED));
    room.listener("a", 100, None);
    room.listener("b", 200, None);
    // Two canvases, two encoders.
    let mut control = Control::default();
    control.viewer_layouts.insert("b".into(), mcu_compositor::RoomLayout { background: Rgb(0, 90, 0), ..Default::default() });
    room.view.control = Arc::new(control);
    room.run(1.5, &["alice"]);
    assert!(room.viewers.frames(100) >= 12 && room.viewers.frames(200) >= 12);
    assert_eq!(room.engine.stats().encoders_opened, 2);
    let told = told.lock().unwrap();
    assert_eq!(told.len(), 1, "one reason, said once for both streams: {told:?}");
    assert!(told.iter().next().unwrap().contains("does not encode VP8"), "{told:?}");
}

#[test]
fn an_nvenc_session_that_cannot_open_falls_back_to_software_and_says_why_once() {
    // The probe says H.264 on NVENC, but no session opens on this machine (no driver here; on
    // a GPU, a session limit reached): each stream gets openh264, the reason logged once.
    let info = NvencInfo { device: "NVIDIA L4 (fake)".into(), driver_api: (12, 2), codecs: vec![VideoCodec::H264] };
    let selector = Arc::new(EncoderSelector::with_status(EncoderPreference::Auto, NvencStatus::Available(info)));
    let told: Arc<Mutex<std::collections::HashSet<String>>> = Arc::default();
    let mut factory = SelectedEncoders::new(selector, told.clone());
    for _ in 0..3 {
        let enc = factory.video_encoder(VideoCodec::H264, &EncoderConfig::realtime(500_000, 30.0)).expect("software takes over");
        assert_eq!(enc.backend(), Backend::Software("openh264"));
    }
    let told = told.lock().unwrap();
    assert_eq!(told.len(), 1, "{told:?}");
    assert!(told.iter().next().unwrap().contains("NVENC failed for this stream"), "{told:?}");
    // A hardware encoder that fails mid-stream moves the room's factory to software.
    assert!(!factory.fell_back());
    assert!(!factory.encoder_failed(Backend::Software("openh264")), "a software failure is no reason to move");
    assert!(factory.encoder_failed(Backend::Nvenc));
    assert!(factory.fell_back());
}
