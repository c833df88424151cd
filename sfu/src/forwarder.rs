//! The forwarding table: published tracks (simulcast layers) to subscriptions, driven by
//! packets and `now` (sans-IO, after str0m: `handle_*` in, `poll_output`/`poll_timeout` out).

use std::{
    collections::{HashMap, VecDeque},
    sync::Arc,
    time::{Duration, Instant},
};

use crate::{
    keyframe::{Codec, is_keyframe},
    rtcp::{self, RtcpError, RtcpPacket},
    rtp::{self, RtpError, RtpPacket},
};

/// Names a published track.
pub type TrackId = Arc<str>;
/// Names a subscriber connection.
pub type SubscriberId = u64;

/// Forwarder settings.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ForwarderConfig {
    /// At most one keyframe request per publisher layer in this interval.
    pub pli_interval: Duration,
    /// Packets kept per subscription for retransmission.
    pub retransmit_cache: usize,
    /// A subscriber whose send backlog exceeds this many bytes is paused (dropped from fan-out)
    /// until it drains and a keyframe arrives.
    pub max_backlog_bytes: usize,
    /// The SSRC the SFU uses as RTCP sender.
    pub sfu_ssrc: u32,
    /// A simulcast layer with no packet for this long counts as stopped (a publisher whose
    /// bandwidth estimate dropped it, or that never sent it): subscriptions move to a layer
    /// that flows.
    pub layer_timeout: Duration,
}

impl Default for ForwarderConfig {
    fn default() -> Self {
        ForwarderConfig {
            pli_interval: Duration::from_millis(500),
            retransmit_cache: 1024,
            max_backlog_bytes: 1 << 20,
            sfu_ssrc: 1,
            layer_timeout: Duration::from_millis(1500),
        }
    }
}

/// Where an output goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Output {
    /// An RTP packet for a subscriber.
    Rtp {
        /// The subscriber.
        to: SubscriberId,
        /// The rewritten packet.
        packet: Vec<u8>,
    },
    /// RTCP feedback for the publisher of a track (keyframe requests).
    PublisherRtcp {
        /// The track.
        track: TrackId,
        /// The packet.
        packet: Vec<u8>,
    },
}

/// Counters for metrics.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ForwarderStats {
    /// Packets sent to subscribers (retransmissions excluded).
    pub forwarded: u64,
    /// Bytes sent to subscribers (retransmissions excluded).
    pub forwarded_bytes: u64,
    /// Packets not sent to a paused (slow) subscriber.
    pub dropped_slow: u64,
    /// Packets refused as malformed or from unknown SSRCs.
    pub dropped_invalid: u64,
    /// NACKed sequence numbers received.
    pub nacks: u64,
    /// Retransmissions sent.
    pub retransmitted: u64,
    /// NACKed packets no longer in the cache.
    pub nack_misses: u64,
    /// Keyframe requests sent upstream.
    pub plis_sent: u64,
    /// Keyframe requests absorbed by throttling.
    pub plis_throttled: u64,
    /// Layer switches done.
    pub layer_switches: u64,
    /// Subscriptions moved to another track ([`Forwarder::switch_track`]) at its keyframe.
    pub track_switches: u64,
}

/// A forwarding operation that was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ForwardError {
    /// Not RTP.
    #[error(transparent)]
    Rtp(#[from] RtpError),
    /// Not RTCP.
    #[error(transparent)]
    Rtcp(#[from] RtcpError),
    /// An SSRC no published track has.
    #[error("RTP from unknown SSRC {0:#010x}")]
    UnknownSsrc(u32),
    /// A track id that is not published.
    #[error("unknown track \"{0}\"")]
    UnknownTrack(String),
    /// A track id published twice, or an SSRC already in use.
    #[error("track \"{0}\" or one of its SSRCs is already published")]
    Duplicate(String),
    /// No such subscription.
    #[error("subscriber {0} has no subscription to \"{1}\"")]
    UnknownSubscription(SubscriberId, String),
}

struct Layer {
    ssrc: u32,
    /// Expected bitrate, for choosing by bandwidth estimate (0: unknown, use the measured one).
    bitrate: u64,
    last_pli: Option<Instant>,
    /// A keyframe request was throttled: it is sent when the interval ends (coalesced, not
    /// lost: a recording or decoder that asked once still gets its keyframe).
    pli_pending: bool,
    /// When its last packet came.
    last_packet: Option<Instant>,
    /// Whether packets flow (see [`ForwarderConfig::layer_timeout`]).
    live: bool,
    /// The bitrate measured over the last window of about a second.
    measured: Option<u64>,
    window: Option<(Instant, u64)>,
}

impl Layer {
    /// The bitrate a subscription must afford for this layer.
    fn rate(&self) -> u64 {
        if self.bitrate > 0 { self.bitrate } else { self.measured.unwrap_or(0) }
    }

    fn count(&mut self, now: Instant, bytes: usize) {
        self.last_packet = Some(now);
        let (start, sum) = self.window.get_or_insert((now, 0));
        *sum += bytes as u64;
        let elapsed = now.saturating_duration_since(*start);
        if elapsed >= Duration::from_secs(1) {
            self.measured = Some((*sum as f64 * 8.0 / elapsed.as_secs_f64()) as u64);
            self.window = Some((now, 0));
        }
    }
}

struct Track {
    codec: Codec,
    clock_rate: u32,
    /// Lowest layer first.
    layers: Vec<Layer>,
    /// Keyframe requests at most this often (the configured interval unless set per track).
    pli_interval: Duration,
    /// When the first packet of any layer came (layers never seen are stopped a timeout later).
    first_packet: Option<Instant>,
}

/// Sequence number and timestamp rewriting for one subscription (LiveKit calls it the
/// munger): output stays continuous across layer switches and publisher restarts.
#[derive(Debug, Clone, Copy)]
struct Munger {
    started: bool,
    source: u32,
    /// First input sequence number after the last (re)anchor: older ones are dropped.
    anchor_seq: u16,
    highest_in: u16,
    seq_offset: u16,
    ts_offset: u32,
    last_out_seq: u16,
    last_out_ts: u32,
    last_out_at: Option<Instant>,
}

fn seq_newer(a: u16, b: u16) -> bool {
    a != b && a.wrapping_sub(b) < 0x8000
}

impl Munger {
    fn new() -> Munger {
        Munger { started: false, source: 0, anchor_seq: 0, highest_in: 0, seq_offset: 0, ts_offset: 0, last_out_seq: 0, last_out_ts: 0, last_out_at: None }
    }

    /// Anchors on a new source (or a restarted one) so that its first packet follows the last
    /// output: sequence + 1, timestamp advanced by the wall time since the last output.
    fn anchor(&mut self, source: u32, seq: u16, ts: u32, now: Instant, clock_rate: u32) {
        if self.started {
            let elapsed = self.last_out_at.map_or(Duration::ZERO, |t| now.saturating_duration_since(t));
            let advance = ((elapsed.as_secs_f64() * clock_rate as f64) as u32).max(1);
            self.seq_offset = self.last_out_seq.wrapping_add(1).wrapping_sub(seq);
            self.ts_offset = self.last_out_ts.wrapping_add(advance).wrapping_sub(ts);
        } else {
            self.seq_offset = 0;
            self.ts_offset = 0;
            self.started = true;
        }
        self.source = source;
        self.anchor_seq = seq;
        self.highest_in = seq.wrapping_sub(1);
    }

    /// Maps an input packet of the current source; `None` for packets from before the anchor.
    fn map(&mut self, seq: u16, ts: u32, now: Instant) -> Option<(u16, u32)> {
        if seq_newer(self.anchor_seq, seq) {
            return None;
        }
        let out = (seq.wrapping_add(self.seq_offset), ts.wrapping_add(self.ts_offset));
        if seq_newer(seq, self.highest_in) {
            self.highest_in = seq;
            self.last_out_seq = out.0;
            self.last_out_ts = out.1;
            self.last_out_at = Some(now);
        }
        Some(out)
    }
}

/// A forwarded packet kept for retransmission: output sequence number, the publisher's packet,
/// output timestamp.
type Cached = (u16, Arc<[u8]>, u32);

struct Subscription {
    sub: SubscriberId,
    track: TrackId,
    /// The track it moves to at that track's next keyframe ([`Forwarder::switch_track`]);
    /// `track`'s packets are sent until then.
    moving_to: Option<TrackId>,
    out_ssrc: u32,
    rtx: Option<(u32, u8)>,
    rtx_seq: u16,
    munger: Munger,
    current: Option<usize>,
    max_layer: usize,
    estimate: Option<u64>,
    /// When the last REMB came.
    estimate_at: Option<Instant>,
    /// The last receiver report on this stream: when, and the fraction lost (/256).
    loss: Option<(Instant, u8)>,
    /// Ring of (output seq, original packet, output timestamp).
    cache: Vec<Option<Cached>>,
    /// Waiting for a keyframe before sending (new, resumed or switching).
    need_keyframe: bool,
    paused: bool,
    /// Turned off by the subscriber (it chose not to receive the track for now).
    off: bool,
    backlog: usize,
}

/// The SFU's forwarding core.
pub struct Forwarder {
    config: ForwarderConfig,
    tracks: HashMap<TrackId, Track>,
    by_ssrc: HashMap<u32, (TrackId, usize)>,
    subs: Vec<Subscription>,
    out: VecDeque<Output>,
    stats: ForwarderStats,
}

impl Forwarder {
    /// An empty table.
    pub fn new(config: ForwarderConfig) -> Forwarder {
        Forwarder { config, tracks: HashMap::new(), by_ssrc: HashMap::new(), subs: Vec::new(), out: VecDeque::new(), stats: ForwarderStats::default() }
    }

    /// Counters.
    pub fn stats(&self) -> ForwarderStats {
        self.stats
    }

    /// Whether a published layer uses `ssrc` (the room's SSRCs are the forwarder's keys).
    pub fn ssrc_in_use(&self, ssrc: u32) -> bool {
        self.by_ssrc.contains_key(&ssrc)
    }

    /// Publishes a track with its layers' SSRCs and expected bitrates, lowest first (one entry
    /// for a non-simulcast track).
    pub fn publish(&mut self, id: impl Into<TrackId>, codec: Codec, clock_rate: u32, layers: &[(u32, u64)]) -> Result<(), ForwardError> {
        let id = id.into();
        if self.tracks.contains_key(&id) || layers.iter().any(|(s, _)| self.by_ssrc.contains_key(s)) || layers.is_empty() {
            return Err(ForwardError::Duplicate(id.to_string()));
        }
        for (i, (ssrc, _)) in layers.iter().enumerate() {
            self.by_ssrc.insert(*ssrc, (id.clone(), i));
        }
        let layers = layers
            .iter()
            .map(|&(ssrc, bitrate)| Layer { ssrc, bitrate, last_pli: None, pli_pending: false, last_packet: None, live: true, measured: None, window: None })
            .collect();
        self.tracks.insert(id, Track { codec, clock_rate, layers, pli_interval: self.config.pli_interval, first_packet: None });
        Ok(())
    }

    /// Sets how often a track's publisher may be asked for a keyframe: shorter for a local
    /// encoder (the composite), for which a request costs no round trip and no publisher
    /// uplink.
    pub fn set_pli_interval(&mut self, track: &str, interval: Duration) -> Result<(), ForwardError> {
        let t = self.tracks.get_mut(track).ok_or_else(|| ForwardError::UnknownTrack(track.into()))?;
        t.pli_interval = interval;
        Ok(())
    }

    /// Replaces a layer's SSRC (a publisher that restarted with new SSRCs).
    pub fn replace_ssrc(&mut self, track: &str, layer: usize, ssrc: u32) -> Result<(), ForwardError> {
        let t = self.tracks.get_mut(track).ok_or_else(|| ForwardError::UnknownTrack(track.into()))?;
        let l = t.layers.get_mut(layer).ok_or_else(|| ForwardError::UnknownTrack(track.into()))?;
        self.by_ssrc.remove(&l.ssrc);
        l.ssrc = ssrc;
        self.by_ssrc.insert(ssrc, (Arc::from(track), layer));
        Ok(())
    }

    /// Ends a track and every subscription to it, except those moving to another track:
    /// they wait for that one's keyframe (sequence numbers continuing).
    pub fn unpublish(&mut self, id: &str) {
        if let Some(t) = self.tracks.remove(id) {
            for l in t.layers {
                self.by_ssrc.remove(&l.ssrc);
            }
        }
        for s in &mut self.subs {
            if s.moving_to.as_deref() == Some(id) {
                s.moving_to = None;
            }
            if &*s.track == id
                && let Some(to) = s.moving_to.take()
            {
                s.track = to;
                s.current = None;
                s.need_keyframe = true;
            }
        }
        self.subs.retain(|s| &*s.track != id);
    }

    /// Moves the subscription that sends as `out_ssrc` to `to` (a viewer of the composite moved
    /// to another canvas): it keeps its SSRC, its sequence numbers and timestamps continue, and
    /// its current track's packets are sent until `to`'s next keyframe, which is requested now.
    /// Moving it to the track it is on cancels a move.
    pub fn switch_track(&mut self, now: Instant, sub: SubscriberId, out_ssrc: u32, to: &str) -> Result<(), ForwardError> {
        if !self.tracks.contains_key(to) {
            return Err(ForwardError::UnknownTrack(to.into()));
        }
        let i = self.subs.iter().position(|s| s.sub == sub && s.out_ssrc == out_ssrc).ok_or_else(|| ForwardError::UnknownSubscription(sub, to.into()))?;
        if &*self.subs[i].track == to {
            self.subs[i].moving_to = None;
            return Ok(());
        }
        let to: TrackId = Arc::from(to);
        self.subs[i].moving_to = Some(to.clone());
        let layer = self.moving_layer(i);
        self.request_keyframe(now, &to, layer);
        Ok(())
    }

    /// The subscriptions to `track` (those moving to it included): subscriber and output SSRC.
    pub fn subscriptions_to(&self, track: &str) -> Vec<(SubscriberId, u32)> {
        self.subs.iter().filter(|s| &*s.track == track || s.moving_to.as_deref() == Some(track)).map(|s| (s.sub, s.out_ssrc)).collect()
    }

    /// Whether `sub` has a subscription that sends as `out_ssrc` (on whatever track).
    pub fn sends_as(&self, sub: SubscriberId, out_ssrc: u32) -> bool {
        self.subs.iter().any(|s| s.sub == sub && s.out_ssrc == out_ssrc)
    }

    /// The track a subscription moves to, if it is moving.
    pub fn moving_to(&self, sub: SubscriberId, out_ssrc: u32) -> Option<TrackId> {
        self.subs.iter().find(|s| s.sub == sub && s.out_ssrc == out_ssrc).and_then(|s| s.moving_to.clone())
    }

    /// The layer of its new track a moving subscription starts on: the highest within its cap.
    fn moving_layer(&self, i: usize) -> usize {
        let s = &self.subs[i];
        let layers = s.moving_to.as_ref().and_then(|t| self.tracks.get(t)).map_or(1, |t| t.layers.len());
        s.max_layer.min(layers - 1)
    }

    /// Subscribes `sub` to `track`, sending as `out_ssrc` (and RTX as `(ssrc, payload type)`
    /// when negotiated). Sending starts at the next keyframe, which is requested now.
    pub fn subscribe(&mut self, now: Instant, sub: SubscriberId, track: &str, out_ssrc: u32, rtx: Option<(u32, u8)>) -> Result<(), ForwardError> {
        let t = self.tracks.get(track).ok_or_else(|| ForwardError::UnknownTrack(track.into()))?;
        let max_layer = t.layers.len() - 1;
        let track: TrackId = Arc::from(track);
        self.subs.retain(|s| !(s.sub == sub && s.track == track));
        self.subs.push(Subscription {
            sub,
            track: track.clone(),
            moving_to: None,
            out_ssrc,
            rtx,
            rtx_seq: 0,
            munger: Munger::new(),
            current: None,
            max_layer,
            estimate: None,
            estimate_at: None,
            loss: None,
            cache: vec![None; self.config.retransmit_cache.max(1)],
            need_keyframe: true,
            paused: false,
            off: false,
            backlog: 0,
        });
        let target = self.target_layer(self.subs.len() - 1);
        self.request_keyframe(now, &track, target);
        Ok(())
    }

    /// How many subscriptions `track` has (those moving to it included).
    pub fn subscribers_of(&self, track: &str) -> usize {
        self.subs.iter().filter(|s| &*s.track == track || s.moving_to.as_deref() == Some(track)).count()
    }

    /// The lowest downlink estimate (REMB, bps) among the subscribers of `tracks` that sent one
    /// within `max_age`: what one encode all of them receive should stay under.
    pub fn track_estimate(&self, now: Instant, tracks: &[&str], max_age: Duration) -> Option<u64> {
        self.subs
            .iter()
            .filter(|s| tracks.contains(&&*s.track) && s.estimate_at.is_some_and(|at| now.saturating_duration_since(at) <= max_age))
            .filter_map(|s| s.estimate)
            .min()
    }

    /// The worst loss (fraction /256) the subscribers of `tracks` reported within `max_age`, and
    /// when the newest of those reports came: what a loss-based rate control of one encode for
    /// all of them reacts to.
    pub fn track_loss(&self, now: Instant, tracks: &[&str], max_age: Duration) -> Option<(Instant, u8)> {
        self.subs
            .iter()
            .filter(|s| tracks.contains(&&*s.track))
            .filter_map(|s| s.loss)
            .filter(|(at, _)| now.saturating_duration_since(*at) <= max_age)
            .fold(None, |acc, (at, f)| Some(acc.map_or((at, f), |(a, g): (Instant, u8)| (a.max(at), g.max(f)))))
    }

    /// The subscriber's downlink estimate (REMB, bps), if it has sent one.
    pub fn estimate(&self, sub: SubscriberId) -> Option<u64> {
        self.subs.iter().filter(|s| s.sub == sub).filter_map(|s| s.estimate).max()
    }

    /// Ends a subscription (or all of a subscriber's with `track = None`).
    pub fn unsubscribe(&mut self, sub: SubscriberId, track: Option<&str>) {
        self.subs.retain(|s| !(s.sub == sub && track.is_none_or(|t| &*s.track == t)));
    }

    /// Caps the layer a subscriber receives (its chosen maximum resolution).
    pub fn set_max_layer(&mut self, now: Instant, sub: SubscriberId, track: &str, layer: usize) -> Result<(), ForwardError> {
        let i = self.sub_index(sub, track)?;
        self.subs[i].max_layer = layer;
        self.retarget(now, i);
        Ok(())
    }

    /// Turns a subscription off (nothing is sent) or back on: it then restarts at the next
    /// keyframe, which is requested, with its sequence numbers and timestamps continuing
    /// where they stopped (a receiver sees a pause, not a loss).
    pub fn set_active(&mut self, now: Instant, sub: SubscriberId, track: &str, active: bool) -> Result<(), ForwardError> {
        let i = self.sub_index(sub, track)?;
        let s = &mut self.subs[i];
        if s.off != active {
            return Ok(());
        }
        s.off = !active;
        if active {
            // Re-anchored at the next keyframe like a new source.
            s.current = None;
            s.need_keyframe = true;
            let target = self.target_layer(i);
            let track = self.subs[i].track.clone();
            self.request_keyframe(now, &track, target);
        }
        Ok(())
    }

    /// Tells the forwarder how many bytes wait in a subscriber's send queue. Over the limit the
    /// subscriber is paused; once it drains it resumes at the next keyframe.
    pub fn set_backlog(&mut self, now: Instant, sub: SubscriberId, bytes: usize) {
        let limit = self.config.max_backlog_bytes;
        let mut want = Vec::new();
        for s in self.subs.iter_mut().filter(|s| s.sub == sub) {
            s.backlog = bytes;
            if bytes > limit && !s.paused {
                s.paused = true;
                tracing::debug!(sub, track = %s.track, bytes, "subscriber paused: send backlog over the limit");
            } else if bytes <= limit / 2 && s.paused {
                s.paused = false;
                s.need_keyframe = true;
                want.push((s.track.clone(), s.current.unwrap_or(s.max_layer)));
            }
        }
        for (track, layer) in want {
            self.request_keyframe(now, &track, layer);
        }
    }

    fn sub_index(&self, sub: SubscriberId, track: &str) -> Result<usize, ForwardError> {
        self.subs.iter().position(|s| s.sub == sub && &*s.track == track).ok_or_else(|| ForwardError::UnknownSubscription(sub, track.into()))
    }

    /// The layer a subscription should receive: among the layers that flow, the highest within
    /// its cap whose bitrate fits its bandwidth estimate (the lowest flowing one if none fits,
    /// or if none within the cap flows); the cap itself while no layer flows.
    fn target_layer(&self, i: usize) -> usize {
        let s = &self.subs[i];
        let Some(t) = self.tracks.get(&s.track) else { return 0 };
        let cap = s.max_layer.min(t.layers.len() - 1);
        let live = |l: &usize| t.layers[*l].live;
        let Some(lowest) = (0..t.layers.len()).find(live) else { return cap };
        let fits = |l: &usize| s.estimate.is_none_or(|bps| t.layers[*l].rate() <= bps);
        (0..=cap).rev().filter(live).find(fits).unwrap_or(lowest)
    }

    /// The layers a track's packets flow on now (lowest first), for tests and metrics.
    pub fn live_layers(&self, track: &str) -> Vec<usize> {
        self.tracks.get(track).map(|t| (0..t.layers.len()).filter(|&l| t.layers[l].live).collect()).unwrap_or_default()
    }

    /// Whether `sub` has a subscription to `track`.
    pub fn is_subscribed(&self, sub: SubscriberId, track: &str) -> bool {
        self.sub_index(sub, track).is_ok()
    }

    /// The layer a subscriber receives now, if it receives any yet.
    pub fn current_layer(&self, sub: SubscriberId, track: &str) -> Option<usize> {
        self.sub_index(sub, track).ok().and_then(|i| self.subs[i].current)
    }

    fn retarget(&mut self, now: Instant, i: usize) {
        let target = self.target_layer(i);
        if self.subs[i].current != Some(target) {
            let track = self.subs[i].track.clone();
            self.request_keyframe(now, &track, target);
        }
    }

    fn request_keyframe(&mut self, now: Instant, track: &TrackId, layer: usize) {
        let sender = self.config.sfu_ssrc;
        let Some(t) = self.tracks.get_mut(track) else { return };
        let interval = t.pli_interval;
        if t.codec == Codec::Audio {
            return;
        }
        let Some(l) = t.layers.get_mut(layer) else { return };
        if l.last_pli.is_some_and(|at| now.saturating_duration_since(at) < interval) {
            self.stats.plis_throttled += 1;
            l.pli_pending = true;
            return;
        }
        l.last_pli = Some(now);
        l.pli_pending = false;
        self.stats.plis_sent += 1;
        self.out.push_back(Output::PublisherRtcp { track: track.clone(), packet: rtcp::pli(sender, l.ssrc) });
    }

    /// Takes an RTP packet from a publisher and fans it out.
    pub fn handle_rtp(&mut self, now: Instant, raw: &[u8]) -> Result<(), ForwardError> {
        let p = match RtpPacket::parse(raw) {
            Ok(p) => p,
            Err(e) => {
                self.stats.dropped_invalid += 1;
                return Err(e.into());
            }
        };
        let Some((track, layer)) = self.by_ssrc.get(&p.ssrc).cloned() else {
            self.stats.dropped_invalid += 1;
            return Err(ForwardError::UnknownSsrc(p.ssrc));
        };
        let t = self.tracks.get_mut(&track).expect("by_ssrc names published tracks");
        t.first_packet.get_or_insert(now);
        let l = &mut t.layers[layer];
        l.count(now, raw.len());
        l.live = true;
        let (codec, clock_rate) = (t.codec, t.clock_rate);
        let key = is_keyframe(codec, p.payload());
        let shared: Arc<[u8]> = Arc::from(raw);
        // Layers that subscriptions still wait for, requested (throttled) after the fan-out.
        let mut wanting: Vec<usize> = Vec::new();
        for i in 0..self.subs.len() {
            if self.subs[i].off {
                continue;
            }
            if self.subs[i].moving_to.as_ref() == Some(&track) {
                // Moving here: at a keyframe of its layer, the subscription's track becomes this
                // one and its output continues from the last packet it sent.
                if !key || layer != self.moving_layer(i) {
                    continue;
                }
                let s = &mut self.subs[i];
                s.track = track.clone();
                s.moving_to = None;
                s.current = Some(layer);
                s.munger.anchor(p.ssrc, p.seq, p.timestamp, now, clock_rate);
                s.need_keyframe = false;
                self.stats.track_switches += 1;
            } else if self.subs[i].track != track {
                continue;
            }
            let target = self.target_layer(i);
            if self.subs[i].current != Some(target) && !(layer == target && key) {
                wanting.push(target);
            }
            let s = &mut self.subs[i];
            let from_current = s.current == Some(layer) && s.munger.source == p.ssrc;
            if !from_current {
                // Switch (or start, or follow a restarted publisher) only at a keyframe of the
                // target layer.
                let restarted = s.current == Some(layer);
                if !(layer == target || restarted) || !key {
                    continue;
                }
                if s.current.is_some() && s.current != Some(layer) {
                    self.stats.layer_switches += 1;
                }
                s.current = Some(layer);
                s.munger.anchor(p.ssrc, p.seq, p.timestamp, now, clock_rate);
                s.need_keyframe = false;
            } else if s.need_keyframe {
                if !key {
                    continue;
                }
                s.need_keyframe = false;
            }
            if s.paused {
                self.stats.dropped_slow += 1;
                continue;
            }
            let Some((seq, ts)) = s.munger.map(p.seq, p.timestamp, now) else { continue };
            let mut packet = raw.to_vec();
            rtp::rewrite_header(&mut packet, seq, ts, s.out_ssrc);
            let slot = seq as usize % s.cache.len();
            s.cache[slot] = Some((seq, shared.clone(), ts));
            self.stats.forwarded += 1;
            self.stats.forwarded_bytes += packet.len() as u64;
            self.out.push_back(Output::Rtp { to: s.sub, packet });
        }
        wanting.sort_unstable();
        wanting.dedup();
        for l in wanting {
            self.request_keyframe(now, &track, l);
        }
        Ok(())
    }

    /// Takes RTCP from a subscriber: NACKs are answered from the cache, PLI/FIR go upstream
    /// (throttled), REMB sets the subscriber's bandwidth estimate and thereby its layer.
    pub fn handle_subscriber_rtcp(&mut self, now: Instant, sub: SubscriberId, raw: &[u8]) -> Result<(), ForwardError> {
        let packets = rtcp::parse(raw).inspect_err(|_| self.stats.dropped_invalid += 1)?;
        for p in packets {
            match p {
                RtcpPacket::Nack { media, lost, .. } => {
                    self.stats.nacks += lost.len() as u64;
                    let Some(i) = self.subs.iter().position(|s| s.sub == sub && s.out_ssrc == media) else { continue };
                    for seq in lost {
                        self.retransmit(i, seq);
                    }
                }
                RtcpPacket::Pli { media, .. } => self.keyframe_for(now, sub, media),
                RtcpPacket::Fir { entries, .. } => {
                    for (media, _) in entries {
                        self.keyframe_for(now, sub, media);
                    }
                }
                // A subscriber that also sends (an MCU participant, a browser) reports on what it
                // receives inside its sender reports.
                RtcpPacket::ReceiverReport { reports, .. } | RtcpPacket::SenderReport { reports, .. } => {
                    for r in reports {
                        if let Some(s) = self.subs.iter_mut().find(|s| s.sub == sub && s.out_ssrc == r.ssrc) {
                            s.loss = Some((now, r.fraction_lost));
                        }
                    }
                }
                RtcpPacket::Remb { bitrate, ssrcs, .. } => {
                    let idx: Vec<usize> =
                        (0..self.subs.len()).filter(|&i| self.subs[i].sub == sub && (ssrcs.is_empty() || ssrcs.contains(&self.subs[i].out_ssrc))).collect();
                    for i in idx {
                        self.subs[i].estimate = Some(bitrate);
                        self.subs[i].estimate_at = Some(now);
                        self.retarget(now, i);
                    }
                }
                _ => {}
            }
        }
        Ok(())
    }

    /// Asks for a keyframe of the layer a subscription receives (or waits for): what its
    /// decoder needs after a loss.
    pub fn request_keyframe_for(&mut self, now: Instant, sub: SubscriberId, track: &str) {
        if let Ok(i) = self.sub_index(sub, track) {
            let s = &self.subs[i];
            let (track, layer) = match &s.moving_to {
                Some(to) => (to.clone(), self.moving_layer(i)),
                None => (s.track.clone(), s.current.unwrap_or_else(|| self.target_layer(i))),
            };
            self.request_keyframe(now, &track, layer);
        }
    }

    fn keyframe_for(&mut self, now: Instant, sub: SubscriberId, media: u32) {
        if let Some(i) = self.subs.iter().position(|s| s.sub == sub && s.out_ssrc == media) {
            let s = &self.subs[i];
            let (track, layer) = match &s.moving_to {
                Some(to) => (to.clone(), self.moving_layer(i)),
                None => (s.track.clone(), s.current.unwrap_or(s.max_layer)),
            };
            self.request_keyframe(now, &track, layer);
        }
    }

    fn retransmit(&mut self, i: usize, seq: u16) {
        let s = &mut self.subs[i];
        let slot = seq as usize % s.cache.len();
        let Some((cached_seq, original, ts)) = s.cache[slot].clone() else {
            self.stats.nack_misses += 1;
            return;
        };
        if cached_seq != seq {
            self.stats.nack_misses += 1;
            return;
        }
        let packet = match s.rtx {
            None => {
                let mut p = original.to_vec();
                rtp::rewrite_header(&mut p, seq, ts, s.out_ssrc);
                p
            }
            Some((rtx_ssrc, rtx_pt)) => {
                // RFC 4588: the original sequence number, then the original payload.
                let Ok(orig) = RtpPacket::parse(&original) else { return };
                let mut payload = seq.to_be_bytes().to_vec();
                payload.extend_from_slice(orig.payload());
                s.rtx_seq = s.rtx_seq.wrapping_add(1);
                rtp::build(rtx_pt, orig.marker, s.rtx_seq, ts, rtx_ssrc, &payload)
            }
        };
        self.stats.retransmitted += 1;
        self.out.push_back(Output::Rtp { to: s.sub, packet });
    }

    /// The next output, if any.
    pub fn poll_output(&mut self) -> Option<Output> {
        self.out.pop_front()
    }

    /// When [`Forwarder::handle_timeout`] next needs calling: keyframe requests retried for
    /// subscriptions still waiting, at the PLI interval; a simulcast layer that may have stopped.
    pub fn poll_timeout(&self) -> Option<Instant> {
        let timeout = self.config.layer_timeout;
        let plis = self.tracks.values().flat_map(|t| t.layers.iter().filter_map(|l| l.last_pli.map(|at| at + t.pli_interval)));
        let stops = self
            .tracks
            .values()
            .filter(|t| t.layers.len() > 1)
            .flat_map(|t| t.layers.iter().filter(|l| l.live).filter_map(|l| l.last_packet.or(t.first_packet).map(|at| at + timeout)));
        plis.chain(stops).min()
    }

    /// Marks simulcast layers without packets for [`ForwarderConfig::layer_timeout`] as stopped,
    /// and retries keyframe requests for subscriptions still waiting for one (or for a layer
    /// that flows).
    pub fn handle_timeout(&mut self, now: Instant) {
        let timeout = self.config.layer_timeout;
        for t in self.tracks.values_mut().filter(|t| t.layers.len() > 1) {
            let first = t.first_packet;
            for l in t.layers.iter_mut().filter(|l| l.live) {
                if l.last_packet.or(first).is_some_and(|at| now.saturating_duration_since(at) >= timeout) {
                    l.live = false;
                    l.measured = None;
                    l.window = None;
                }
            }
        }
        let mut waiting: Vec<(TrackId, usize)> = self
            .tracks
            .iter()
            .flat_map(|(id, t)| {
                t.layers
                    .iter()
                    .enumerate()
                    .filter(|(_, l)| l.pli_pending && l.last_pli.is_none_or(|at| now.saturating_duration_since(at) >= t.pli_interval))
                    .map(|(k, _)| (id.clone(), k))
            })
            .collect();
        waiting.extend(
            (0..self.subs.len())
                .filter(|&i| {
                    let s = &self.subs[i];
                    !s.paused && !s.off && s.moving_to.is_none() && (s.need_keyframe || s.current != Some(self.target_layer(i)))
                })
                .map(|i| (self.subs[i].track.clone(), self.target_layer(i))),
        );
        waiting.extend((0..self.subs.len()).filter(|&i| !self.subs[i].off).filter_map(|i| self.subs[i].moving_to.clone().map(|to| (to, self.moving_layer(i)))));
        waiting.sort_unstable();
        waiting.dedup();
        for (track, layer) in waiting {
            self.request_keyframe(now, &track, layer);
        }
    }
}
