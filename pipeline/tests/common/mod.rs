//! A room on virtual time for the engine's scenario tests: publishers that send real VP8 (and
//! Opus) packets, the room's forwarder (`mcu_sfu`, as the server runs it) that publishes the
//! engine's canvas tracks and sends each viewer its canvas, and viewers that reassemble and
//! decode what they receive, by the SSRC of their video track.
#![allow(dead_code)]

use std::{
    collections::{BTreeMap, HashMap},
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use bytes::Bytes;
use mcu_codec::{
    Decoded, DecoderOptions, EncodeError, EncodedFrame, EncoderConfig, OpenError, RateControl, RateError, VideoCodec, VideoDecoder, VideoEncoder, new_decoder,
    new_software_encoder,
};
use mcu_compositor::Compositor;
use mcu_media::{PixelFormat, Rgb, VideoFrame};
use mcu_pipeline::{
    ESTIMATE_MAX_AGE, EncoderFactory, Feedback, Listener, McuConfig, MediaPacket, MixCodec, Renderer, RoomView, SoftwareCodecs, TrackId, VideoEngine,
    VideoOutput, VideoProfile,
};
use mcu_sfu::{Codec, Forwarder, ForwarderConfig, Output};
use rtc::rtp::{
    codec::vp8::{Vp8Packet, Vp8Payloader},
    packetizer::{Depacketizer, Payloader},
};

/// The one clock read of the tests: an arbitrary origin; time then advances by hand.
pub fn origin() -> Instant {
    #[allow(clippy::disallowed_methods)]
    Instant::now()
}

/// A small composite: VP8, 320x180 at 10 fps.
pub fn config() -> McuConfig {
    McuConfig { codec: MixCodec::Vp8, width: 320, height: 180, fps: 10, video_bitrate: 300_000, audio_bitrate: 32_000 }
}

/// A publisher sending a solid colour as VP8 at the composite's frame rate.
pub struct Publisher {
    pub name: String,
    pub track: TrackId,
    encoder: Box<dyn VideoEncoder>,
    payloader: Vp8Payloader,
    seq: u16,
    frames: u64,
    pub size: (u32, u32),
    pub color: Rgb,
}

impl Publisher {
    pub fn new(name: &str, size: (u32, u32), color: Rgb) -> Publisher {
        let encoder = new_software_encoder(VideoCodec::Vp8, &EncoderConfig::realtime(500_000, 10.0)).expect("libvpx opens");
        Publisher { name: name.into(), track: Arc::from(format!("{name}/video")), encoder, payloader: Vp8Payloader::default(), seq: 0, frames: 0, size, color }
    }

    /// One frame's packets.
    pub fn frame(&mut self) -> Vec<MediaPacket> {
        let pts = Duration::from_millis(100 * self.frames);
        self.frames += 1;
        let picture = VideoFrame::filled(PixelFormat::I420, self.size.0, self.size.1, self.color.to_yuv(), pts);
        let mut out = Vec::new();
        for unit in self.encoder.encode(&picture).expect("libvpx encodes") {
            let payloads = self.payloader.payload(1200, &Bytes::from(unit.data)).expect("VP8 packetizes");
            let n = payloads.len();
            for (i, p) in payloads.into_iter().enumerate() {
                self.seq = self.seq.wrapping_add(1);
                out.push(MediaPacket { seq: self.seq, timestamp: (pts.as_millis() * 90) as u32, marker: i + 1 == n, payload: p });
            }
        }
        out
    }
}

/// What a viewer's SSRC received: whole VP8 frames (by RTP timestamp, in order).
#[derive(Default)]
pub struct Received {
    /// (RTP timestamp, frame bytes, keyframe) per frame, in arrival order.
    pub frames: Vec<(u32, Vec<u8>, bool)>,
    partial: Vec<u8>,
    pub packets: u64,
    /// Packets whose sequence number did not follow the previous one's.
    pub seq_gaps: u64,
    last_seq: Option<u16>,
}

/// Every SSRC's frames, reassembled from the engine's RTP.
#[derive(Default)]
pub struct Viewers {
    pub by_ssrc: BTreeMap<u32, Received>,
}

impl Viewers {
    pub fn take(&mut self, packet: &[u8]) {
        let p = mcu_sfu::rtp::RtpPacket::parse(packet).expect("the engine sends valid RTP");
        let r = self.by_ssrc.entry(p.ssrc).or_default();
        r.packets += 1;
        if r.last_seq.is_some_and(|last| p.seq != last.wrapping_add(1)) {
            r.seq_gaps += 1;
        }
        r.last_seq = Some(p.seq);
        let mut d = Vp8Packet::default();
        let body = d.depacketize(&Bytes::copy_from_slice(p.payload())).expect("the engine's VP8 depacketizes");
        r.partial.extend_from_slice(&body);
        if p.marker {
            let data = std::mem::take(&mut r.partial);
            let key = mcu_codec::bitstream::vp8_is_keyframe(&data);
            r.frames.push((p.timestamp, data, key));
        }
    }

    pub fn frames(&self, ssrc: u32) -> usize {
        self.by_ssrc.get(&ssrc).map_or(0, |r| r.frames.len())
    }

    /// The last picture `ssrc` can show: its frames decoded in order.
    pub fn decode_last(&self, ssrc: u32) -> VideoFrame {
        let mut dec: Box<dyn VideoDecoder> = new_decoder(VideoCodec::Vp8, &DecoderOptions::default()).expect("a VP8 decoder");
        let mut last = None;
        for (i, (_, data, _)) in self.by_ssrc[&ssrc].frames.iter().enumerate() {
            if let Ok(Decoded::Frame(f)) = dec.decode(data, Duration::from_millis(i as u64 * 100)) {
                last = Some(f);
            }
        }
        last.expect("a picture was decoded")
    }
}

/// The SSRC of the room canvas's track (`_mix/video-0`).
pub const ROOM_SSRC: u32 = 300;

/// The engine, its room (forwarder included) and clock.
pub struct Room {
    pub engine: VideoEngine,
    pub view: RoomView,
    pub now: Instant,
    pub publishers: Vec<Publisher>,
    pub viewers: Viewers,
    pub outputs: Vec<VideoOutput>,
    pub fwd: Forwarder,
    /// The engine's receivers' feedback comes from the forwarder (as the server's driver reads
    /// it); false: the test sets `view.feedback` itself.
    pub feedback_from_forwarder: bool,
}

impl Room {
    pub fn new(encoders: Box<dyn EncoderFactory>) -> Room {
        Room::with_renderer(encoders, Box::new(Compositor::new_cpu(1)))
    }

    /// A room whose composite draws with `renderer`.
    pub fn with_renderer(encoders: Box<dyn EncoderFactory>, renderer: Box<dyn Renderer>) -> Room {
        let now = origin();
        let engine = VideoEngine::new(config(), now, renderer, encoders, Box::new(SoftwareCodecs), 7);
        let mut fwd = Forwarder::new(ForwarderConfig::default());
        fwd.publish("_mix/video-0", Codec::Vp8, 90_000, &[(ROOM_SSRC, 0)]).expect("the room track publishes");
        let view = RoomView { room_ssrcs: (ROOM_SSRC, ROOM_SSRC + 1), ..RoomView::default() };
        Room { engine, view, now, publishers: Vec::new(), viewers: Viewers::default(), outputs: Vec::new(), fwd, feedback_from_forwarder: true }
    }

    /// The canvases of a pass encoded in parallel on a pool of `threads`.
    pub fn with_encode_pool(mut self, threads: usize) -> Room {
        let pool = rayon::ThreadPoolBuilder::new().num_threads(threads).build().expect("a pool");
        self.engine = self.engine.with_encode_pool(Arc::new(pool));
        self
    }

    /// A WHEP viewer of the room canvas's track, receiving as `ssrc` (it counts as watching).
    pub fn room_viewer(&mut self, ssrc: u32) {
        self.fwd.subscribe(self.now, ssrc as u64, "_mix/video-0", ssrc, None).expect("the room track exists");
        self.view.room_video_watched = true;
    }

    /// A receiver report from the viewer receiving as `ssrc`: `fraction` of its packets lost
    /// (/256).
    pub fn report_loss(&mut self, ssrc: u32, fraction: u8) {
        let rr = mcu_sfu::rtcp::receiver_report(ssrc, &[(ssrc, fraction)]);
        self.fwd.handle_subscriber_rtcp(self.now, ssrc as u64, &rr).expect("a valid report");
    }

    /// A bandwidth estimate (REMB) from the viewer receiving as `ssrc`.
    pub fn report_estimate(&mut self, ssrc: u32, bps: u64) {
        let remb = mcu_sfu::rtcp::remb(ssrc, bps, &[ssrc]);
        self.fwd.handle_subscriber_rtcp(self.now, ssrc as u64, &remb).expect("a valid REMB");
    }

    /// Carries out an engine output as the server's driver does.
    fn carry_out(&mut self, out: &VideoOutput) {
        match out {
            VideoOutput::Rtp(p) => {
                let _ = self.fwd.handle_rtp(self.now, p);
            }
            VideoOutput::CanvasTrack { track, ssrc, .. } => self.fwd.publish(track.clone(), Codec::Vp8, 90_000, &[(*ssrc, 0)]).expect("a new canvas track"),
            VideoOutput::CanvasGone { track } => self.fwd.unpublish(track),
            VideoOutput::Show { listener, track } => {
                // The listener's subscription (it receives as its video SSRC) moves there, or starts.
                let ssrc = self.view.listeners.iter().find(|l| l.name == *listener).expect("a listener").video_ssrc;
                if self.fwd.switch_track(self.now, ssrc as u64, ssrc, track).is_err() {
                    self.fwd.subscribe(self.now, ssrc as u64, track, ssrc, None).expect("the canvas track exists");
                }
            }
            _ => {}
        }
    }

    /// What the forwarder sends: RTP to the viewers, keyframe requests to the engine.
    fn drain_forwarder(&mut self) {
        self.fwd.handle_timeout(self.now);
        while let Some(o) = self.fwd.poll_output() {
            match o {
                Output::Rtp { packet, .. } => self.viewers.take(&packet),
                Output::PublisherRtcp { packet, .. } => {
                    for p in mcu_sfu::rtcp::parse(&packet).expect("the forwarder's RTCP parses") {
                        if let mcu_sfu::rtcp::RtcpPacket::Pli { media, .. } = p {
                            self.engine.request_keyframe(media);
                        }
                    }
                }
            }
        }
    }

    pub fn publish(&mut self, p: Publisher) {
        self.view.live_tracks.insert(p.track.clone());
        self.publishers.push(p);
    }

    /// An MCU participant with video SSRC `ssrc` (audio `ssrc + 1`), watched.
    pub fn listener(&mut self, name: &str, ssrc: u32, profile: Option<VideoProfile>) {
        self.view.listeners.push(Listener { name: name.into(), audio_ssrc: ssrc + 1, video_ssrc: ssrc, profile, video_watched: true, phone: false });
    }

    /// `seconds` of media: every 100 ms, each publisher in `sending` sends a frame, then the
    /// engine runs.
    pub fn run(&mut self, seconds: f64, sending: &[&str]) {
        let steps = (seconds * 10.0).round() as usize;
        for _ in 0..steps {
            self.now += Duration::from_millis(100);
            if self.feedback_from_forwarder {
                self.view.feedback.clear();
                for track in self.engine.canvas_tracks() {
                    let estimate = self.fwd.track_estimate(self.now, &[&track], ESTIMATE_MAX_AGE);
                    let loss = self.fwd.track_loss(self.now, &[&track], ESTIMATE_MAX_AGE);
                    self.view.feedback.insert(track.to_string(), Feedback { estimate, loss });
                }
            }
            self.engine.set_view(self.now, self.view.clone());
            for p in self.publishers.iter_mut().filter(|p| sending.contains(&p.name.as_str())) {
                for packet in p.frame() {
                    self.engine.handle_packet(self.now, &p.track.clone(), &p.name.clone(), VideoCodec::Vp8, packet);
                }
            }
            // The jitter buffer holds a whole frame a little; let it go at the next step.
            self.engine.handle_timeout(self.now);
            while let Some(out) = self.engine.poll_output() {
                self.carry_out(&out);
                self.outputs.push(out);
            }
            self.drain_forwarder();
        }
    }
}

/// Software encoders, watched: how many were opened, the rates set, and which profiles'
/// encoders fail.
#[derive(Clone, Default)]
pub struct Watched {
    pub opened: Arc<Mutex<u32>>,
    /// Bitrates set, by encoder (opening order).
    pub rates: Arc<Mutex<HashMap<u32, Vec<u32>>>>,
    /// Encoders opened at this bitrate (a profile's) fail at every encode.
    pub failing_bitrate: Option<u32>,
}

impl EncoderFactory for Watched {
    fn video_encoder(&mut self, codec: VideoCodec, config: &EncoderConfig) -> Result<Box<dyn VideoEncoder>, OpenError> {
        let inner = new_software_encoder(codec, config)?;
        let mut opened = self.opened.lock().unwrap();
        *opened += 1;
        Ok(Box::new(WatchedEncoder { inner, id: *opened, rates: self.rates.clone(), fails: self.failing_bitrate == Some(config.rate.bitrate_bps) }))
    }
}

struct WatchedEncoder {
    inner: Box<dyn VideoEncoder>,
    id: u32,
    rates: Arc<Mutex<HashMap<u32, Vec<u32>>>>,
    fails: bool,
}

impl VideoEncoder for WatchedEncoder {
    fn codec(&self) -> VideoCodec {
        self.inner.codec()
    }
    fn backend(&self) -> mcu_codec::Backend {
        self.inner.backend()
    }
    fn encode(&mut self, frame: &VideoFrame) -> Result<Vec<EncodedFrame>, EncodeError> {
        if self.fails {
            return Err(EncodeError::UnsupportedSize {
                codec: self.inner.codec(),
                pts: frame.pts,
                width: frame.width,
                height: frame.height,
                why: "this test's encoder fails",
            });
        }
        self.inner.encode(frame)
    }
    fn request_keyframe(&mut self) {
        self.inner.request_keyframe()
    }
    fn set_rate(&mut self, rate: RateControl) -> Result<(), RateError> {
        self.rates.lock().unwrap().entry(self.id).or_default().push(rate.bitrate_bps);
        self.inner.set_rate(rate)
    }
    fn rate(&self) -> RateControl {
        self.inner.rate()
    }
    fn flush(&mut self) -> Result<Vec<EncodedFrame>, EncodeError> {
        self.inner.flush()
    }
}

/// What [`Hooked`] runs before each encode: an error fails that encode.
pub type EncodeHook = Box<dyn FnMut(&VideoFrame) -> Result<(), EncodeError> + Send>;

/// An encoder around another that runs `hook` before each encode (to note or to fail it) and
/// may claim another backend (a fake NVENC).
pub struct Hooked {
    pub inner: Box<dyn VideoEncoder>,
    pub backend: Option<mcu_codec::Backend>,
    pub hook: EncodeHook,
}

impl VideoEncoder for Hooked {
    fn codec(&self) -> VideoCodec {
        self.inner.codec()
    }
    fn backend(&self) -> mcu_codec::Backend {
        self.backend.unwrap_or_else(|| self.inner.backend())
    }
    fn encode(&mut self, frame: &VideoFrame) -> Result<Vec<EncodedFrame>, EncodeError> {
        (self.hook)(frame)?;
        self.inner.encode(frame)
    }
    fn request_keyframe(&mut self) {
        self.inner.request_keyframe()
    }
    fn set_rate(&mut self, rate: RateControl) -> Result<(), RateError> {
        self.inner.set_rate(rate)
    }
    fn rate(&self) -> RateControl {
        self.inner.rate()
    }
    fn flush(&mut self) -> Result<Vec<EncodedFrame>, EncodeError> {
        self.inner.flush()
    }
}
