//! `GET /metrics`: Prometheus text exposition (version 0.0.4) of the SFU and room protocol.

use std::{
    fmt::Write,
    sync::{Arc, atomic::Ordering},
};

use axum::{extract::State, http::header, response::IntoResponse};

use mcu_sfu::forwarder::ForwarderStats;

use crate::{
    front::ws::WsHub,
    media::sessions::{ReceiverStats, Sfu},
    sip::Gateway,
};

/// `GET /metrics`.
pub async fn endpoint(State(ws): State<Arc<WsHub>>) -> impl IntoResponse {
    let app = &ws.http().app;
    let mut text = render(&app.sfu, app.sip(), ws.open_sockets() as u64);
    if let Some(mux) = app.sfu.udp_mux() {
        text.push_str(&render_mux(mux));
    }
    text.push_str(&render_receivers(&app.sfu.receiver_stats().await));
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4; charset=utf-8")], text)
}

struct Out(String);

impl Out {
    fn metric(&mut self, name: &str, kind: &str, help: &str, value: u64) {
        let _ = writeln!(self.0, "# HELP {name} {help}\n# TYPE {name} {kind}\n{name} {value}");
    }

    fn labelled(&mut self, name: &str, kind: &str, help: &str, values: &[(&str, u64)]) {
        let _ = writeln!(self.0, "# HELP {name} {help}\n# TYPE {name} {kind}");
        for (labels, v) in values {
            let _ = writeln!(self.0, "{name}{{{labels}}} {v}");
        }
    }
}

fn add(a: &mut ForwarderStats, b: &ForwarderStats) {
    a.forwarded += b.forwarded;
    a.forwarded_bytes += b.forwarded_bytes;
    a.dropped_slow += b.dropped_slow;
    a.dropped_invalid += b.dropped_invalid;
    a.nacks += b.nacks;
    a.retransmitted += b.retransmitted;
    a.nack_misses += b.nack_misses;
    a.plis_sent += b.plis_sent;
    a.plis_throttled += b.plis_throttled;
    a.layer_switches += b.layer_switches;
    a.track_switches += b.track_switches;
}

/// Per receiving session: the selected ICE pair's RTT and the REMB downlink estimate.
pub fn render_receivers(receivers: &[ReceiverStats]) -> String {
    let mut o = String::new();
    let mut gauge = |name: &str, help: &str, value: &dyn Fn(&ReceiverStats) -> Option<String>| {
        let _ = writeln!(o, "# HELP {name} {help}\n# TYPE {name} gauge");
        for r in receivers {
            if let Some(v) = value(r) {
                let _ = writeln!(o, "{name}{{room=\"{}\",session=\"{}\"}} {v}", r.room, r.session);
            }
        }
    };
    gauge("mcu_subscriber_rtt_seconds", "Round-trip time of each receiving session's selected ICE pair.", &|r| r.rtt.map(|v| v.to_string()));
    gauge("mcu_subscriber_estimated_bitrate_bps", "Downlink bandwidth each receiving session reported (REMB).", &|r| r.estimate.map(|v| v.to_string()));
    o
}

/// The exposition text.
/// The shared WebRTC UDP port's counters.
pub fn render_mux(mux: &crate::transport::udpmux::UdpMux) -> String {
    let mut o = Out(String::new());
    o.metric("mcu_udp_mux_port", "gauge", "The UDP port every WebRTC connection shares.", mux.port() as u64);
    o.labelled(
        "mcu_udp_mux_dropped_total",
        "counter",
        "Datagrams on the shared port dropped: no connection claimed them (not a connectivity check of a known ufrag, from an unknown address), or the connection's queue was full.",
        &[("reason=\"unroutable\"", mux.unroutable.load(Ordering::Relaxed)), ("reason=\"queue_full\"", mux.overflow.load(Ordering::Relaxed))],
    );
    o.0
}

pub fn render(sfu: &Sfu, sip: Option<Arc<Gateway>>, ws_connections: u64) -> String {
    let mut total = ForwarderStats::default();
    for s in sfu.retired_stats() {
        add(&mut total, &s);
    }
    let rooms = sfu.rooms();
    let (mut participants, mut tracks, mut subscribers) = (0, 0, 0);
    for r in &rooms {
        add(&mut total, &r.stats());
        let (p, t, s) = r.counts();
        participants += p as u64;
        tracks += t as u64;
        subscribers += s;
    }
    let c = &sfu.counters;
    let mut o = Out(String::new());
    o.metric("mcu_rooms", "gauge", "Rooms with at least one session.", rooms.len() as u64);
    let mut paths = std::collections::BTreeMap::new();
    for (render, mix) in rooms.iter().filter_map(|r| r.members().paths) {
        *paths.entry(format!("render=\"{render}\",mix=\"{mix}\"")).or_insert(0u64) += 1;
    }
    let paths: Vec<(&str, u64)> = paths.iter().map(|(k, v)| (k.as_str(), *v)).collect();
    o.labelled("mcu_composites", "gauge", "Room composites running, by where they draw canvases and compute mixes (gpu, cpu).", &paths);
    o.metric("mcu_participants", "gauge", "Publishing participants.", participants);
    o.metric("mcu_tracks", "gauge", "Published tracks.", tracks);
    o.metric("mcu_subscribers", "gauge", "Subscriber (WHEP) sessions.", subscribers);
    o.metric("mcu_ws_connections", "gauge", "Open WebSocket room-protocol connections.", ws_connections);
    o.metric("mcu_rtp_received_packets_total", "counter", "RTP packets received from publishers.", c.received.load(Ordering::Relaxed));
    o.metric("mcu_rtp_received_bytes_total", "counter", "RTP bytes received from publishers.", c.received_bytes.load(Ordering::Relaxed));
    o.metric("mcu_rtp_forwarded_packets_total", "counter", "RTP packets forwarded to subscribers (retransmissions excluded).", total.forwarded);
    o.metric("mcu_rtp_forwarded_bytes_total", "counter", "RTP bytes forwarded to subscribers.", total.forwarded_bytes);
    o.metric(
        "mcu_mix_audio_concealed_frames_total",
        "counter",
        "20 ms audio frames the composite concealed (FEC or loss concealment) because the packet was lost or had not arrived at its tick.",
        c.audio_concealed.load(Ordering::Relaxed),
    );
    o.metric(
        "mcu_mix_encoder_failures_total",
        "counter",
        "Composite encoder failures: a video canvas whose encoder failed to open or to encode (it stops, and is retried every 5 s), or an audio mix tick not encoded (its listeners miss 20 ms); the rest of the room goes on.",
        c.mix_encoder_failures.load(Ordering::Relaxed),
    );
    o.labelled(
        "mcu_gpu_fallbacks_total",
        "counter",
        "Moves to the CPU after a GPU fault, by what moved: a composite's renderer (device lost, out of memory), its mixer, or a hardware (NVENC) encoder replaced by a software one. The room goes on.",
        &[
            ("what=\"render\"", c.render_fallbacks.load(Ordering::Relaxed)),
            ("what=\"mix\"", c.mix_fallbacks.load(Ordering::Relaxed)),
            ("what=\"encoder\"", c.encoder_fallbacks.load(Ordering::Relaxed)),
        ],
    );
    o.metric("mcu_rtp_sent_packets_total", "counter", "RTP packets written to subscriber connections.", c.sent.load(Ordering::Relaxed));
    o.metric(
        "mcu_rtp_sent_direct_packets_total",
        "counter",
        "Of those, packets the SFU encrypted and sent itself on the shared UDP port (WHEP viewers' direct send path).",
        c.sent_direct.load(Ordering::Relaxed),
    );
    o.labelled(
        "mcu_rtp_dropped_packets_total",
        "counter",
        "RTP packets dropped, by reason (composite_behind: a copy for a composite that is behind; audio_playout: a late, duplicated or excess packet at a composite's audio playout buffer; both are still forwarded; direct_send: a packet the direct send path could not send, its socket buffer full).",
        &[
            ("reason=\"slow_subscriber\"", total.dropped_slow),
            ("reason=\"queue_full\"", c.dropped_queue_full.load(Ordering::Relaxed)),
            ("reason=\"simulcast_layer\"", c.dropped_simulcast.load(Ordering::Relaxed)),
            ("reason=\"composite_behind\"", c.dropped_composite.load(Ordering::Relaxed)),
            ("reason=\"audio_playout\"", c.dropped_audio_playout.load(Ordering::Relaxed)),
            ("reason=\"direct_send\"", c.dropped_direct.load(Ordering::Relaxed)),
            ("reason=\"invalid\"", total.dropped_invalid),
        ],
    );
    o.metric("mcu_nacks_total", "counter", "Sequence numbers NACKed by subscribers (seen by the forwarder).", total.nacks);
    o.metric("mcu_retransmissions_total", "counter", "Retransmissions sent by the forwarder.", total.retransmitted);
    o.metric(
        "mcu_keyframe_requests_received_total",
        "counter",
        "PLI/FIR/REMB feedback received from subscribers.",
        c.keyframe_requests.load(Ordering::Relaxed),
    );
    o.labelled(
        "mcu_plis_total",
        "counter",
        "Keyframe requests to publishers: for subscribers (sent, throttled) and for the composite's decoders.",
        &[
            ("result=\"sent\"", total.plis_sent),
            ("result=\"throttled\"", total.plis_throttled),
            ("result=\"composite\"", c.composite_plis.load(Ordering::Relaxed)),
        ],
    );
    o.metric("mcu_layer_switches_total", "counter", "Simulcast layer switches.", total.layer_switches);
    o.metric(
        "mcu_canvas_switches_total",
        "counter",
        "MCU participants' pictures moved to another canvas track of the composite (at its keyframe).",
        total.track_switches,
    );
    o.metric("mcu_sessions_refused_total", "counter", "WHIP/WHEP requests refused (auth, limits, bad offers).", c.refused.load(Ordering::Relaxed));
    if let Some(g) = sip {
        let n = |a: &std::sync::atomic::AtomicU64| a.load(Ordering::Relaxed);
        let k = &g.counters;
        o.metric("mcu_sip_calls", "gauge", "SIP calls in progress.", g.calls().len() as u64);
        o.labelled(
            "mcu_sip_invites_total",
            "counter",
            "INVITEs (and calls out) answered, refused (404, 488, 400, 486) or challenged (401).",
            &[("result=\"answered\"", n(&k.calls_answered)), ("result=\"refused\"", n(&k.calls_refused)), ("result=\"challenged\"", n(&k.auth_challenges))],
        );
        o.labelled(
            "mcu_sip_hangups_total",
            "counter",
            "Calls we ended: RTP silence, an expired session timer.",
            &[("reason=\"rtp_timeout\"", n(&k.rtp_timeouts)), ("reason=\"session_timer\"", n(&k.session_expired))],
        );
        o.metric("mcu_sip_malformed_total", "counter", "SIP requests refused as malformed (400, 505).", n(&k.malformed));
        o.metric("mcu_sip_bad_packets_total", "counter", "Datagrams on SIP media ports that were not RTP from the phone.", n(&k.bad_packets));
        o.metric("mcu_sip_dtmf_total", "counter", "DTMF key presses received (RFC 4733).", n(&k.dtmf));
        o.metric("mcu_sip_registrations_total", "counter", "Successful registrations with the registrar (and refreshes).", n(&k.registrations));
    }
    o.0
}
