//! The server's counters, which the metrics endpoint reads beside the forwarders' own: one set
//! for the process, shared by every room, session and the direct send path.

use std::sync::atomic::AtomicU64;

/// Counters the metrics endpoint reads, beside the forwarders' own.
#[derive(Default)]
pub struct Counters {
    /// Packets received from publishers.
    pub received: AtomicU64,
    /// Bytes received from publishers.
    pub received_bytes: AtomicU64,
    /// Packets dropped because a subscriber's queue was full.
    pub dropped_queue_full: AtomicU64,
    /// Packets of a publisher's second and further simulcast layers (not forwarded yet).
    pub dropped_simulcast: AtomicU64,
    /// Packets sent on subscriber connections.
    pub sent: AtomicU64,
    /// Of those, packets the SFU encrypted and sent itself (`fastpath`).
    pub sent_direct: AtomicU64,
    /// Packets the direct send path dropped (malformed, refused by SRTP, socket full).
    pub dropped_direct: AtomicU64,
    /// Keyframe requests received from subscribers.
    pub keyframe_requests: AtomicU64,
    /// Sessions refused (bad offer, limits, auth).
    pub refused: AtomicU64,
    /// Keyframe requests the composite's decoders sent to publishers.
    pub composite_plis: AtomicU64,
    /// Packets not copied to a composite that was behind (its tap queue full).
    pub dropped_composite: AtomicU64,
    /// Audio packets the composite's playout buffers dropped: late (their tick had passed),
    /// duplicated, or dropped to bring the delay back to the target.
    pub dropped_audio_playout: AtomicU64,
    /// 20 ms audio frames the composite concealed (lost or not arrived in time at their tick).
    pub audio_concealed: AtomicU64,
    /// The composite's encoders that failed (to open, or to encode): video canvases and audio
    /// mixes. The canvas or mix stops; the room goes on.
    pub mix_encoder_failures: AtomicU64,
    /// Composites that moved to the CPU after a GPU fault: their renderer (a device lost, out
    /// of memory), their mixer, or a hardware (NVENC) encoder replaced by software.
    pub render_fallbacks: AtomicU64,
    pub mix_fallbacks: AtomicU64,
    pub encoder_fallbacks: AtomicU64,
}
