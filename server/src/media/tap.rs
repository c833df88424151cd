//! The composite's inputs: packets of a room's publishers copied to its video and audio
//! threads, with as few wake-ups as the media allows.
//!
//! A room's composite used to be woken for every packet (a few hundred times a second per
//! sender, audio included, which it then passed on to its audio thread, waking that too). The
//! work it does per wake-up (a decode) is only possible once a frame is whole, and the audio mix
//! runs on a 20 ms tick whatever arrives in between. So the tap wakes the video thread for the
//! last packet of a video frame (the RTP marker bit) and never wakes the audio thread: each
//! packet carries its arrival time, so the jitter buffer's estimates do not depend on when the
//! thread reads it, and the threads read everything queued when they wake (the video thread at
//! least every frame interval, the audio thread every tick).

use std::{sync::Arc, time::Instant};

use parking_lot::{Condvar, Mutex};

use bytes::Bytes;
use mcu_codec::VideoCodec;
use mcu_pipeline::MediaPacket;
use mcu_sfu::TrackId;
use mcu_sfu::rtp::RtpPacket;

/// A packet from a room's publisher, copied for the composite.
pub struct TapPacket {
    /// The track.
    pub track: TrackId,
    /// Who publishes it.
    pub participant: String,
    /// The video codec of the track (`None`: the track is Opus audio).
    pub video: Option<VideoCodec>,
    /// When it arrived.
    pub arrived: Instant,
    /// The packet (its payload shares the received buffer).
    pub packet: MediaPacket,
}

/// The video codec the composite decodes for a track's MIME type.
pub fn video_codec(mime: &str) -> Option<VideoCodec> {
    [("video/vp8", VideoCodec::Vp8), ("video/h264", VideoCodec::H264), ("video/av1", VideoCodec::Av1)]
        .into_iter()
        .find(|(m, _)| mime.eq_ignore_ascii_case(m))
        .map(|(_, c)| c)
}

/// A bounded queue of packets for one reading thread.
pub struct TapQueue {
    state: Mutex<QueueState>,
    ready: Condvar,
    capacity: usize,
}

struct QueueState {
    items: Vec<TapPacket>,
    /// The reader was asked to wake (a whole frame is in, or the queue is filling up).
    wake: bool,
    /// The writer is gone: the reader drains what is left and stops.
    closed: bool,
}

impl TapQueue {
    fn new(capacity: usize) -> TapQueue {
        TapQueue { state: Mutex::new(QueueState { items: Vec::new(), wake: false, closed: false }), ready: Condvar::new(), capacity }
    }

    /// Queues `packet`, waking the reader when `wake` or when the queue is half full. False
    /// when the queue is full: the packet is dropped (a composite that falls behind loses
    /// packets; the forwarding path never waits for it).
    fn push(&self, packet: TapPacket, wake: bool) -> bool {
        let mut s = self.state.lock();
        if s.closed || s.items.len() >= self.capacity {
            return false;
        }
        s.items.push(packet);
        if (wake || s.items.len() * 2 >= self.capacity) && !s.wake {
            s.wake = true;
            self.ready.notify_one();
        }
        true
    }

    /// Ends the queue: the reader gets what is left, then `None`.
    pub fn close(&self) {
        self.state.lock().closed = true;
        self.ready.notify_all();
    }

    /// Waits until the reader is woken or `deadline` passes, and returns everything queued
    /// (possibly nothing). `None` once the writer is gone and the queue is empty.
    pub fn wait(&self, deadline: Instant) -> Option<Vec<TapPacket>> {
        let mut s = self.state.lock();
        loop {
            if s.wake || s.closed {
                break;
            }
            let now = Instant::now();
            if now >= deadline {
                break;
            }
            self.ready.wait_until(&mut s, deadline);
        }
        s.wake = false;
        if s.closed && s.items.is_empty() {
            return None;
        }
        Some(std::mem::take(&mut s.items))
    }
}

/// The writing side, held by the room while its composite runs: packets go to the video
/// or the audio queue. Dropping it (the composite stopped, or the room is gone) closes both.
pub struct Tap {
    video: Arc<TapQueue>,
    audio: Arc<TapQueue>,
}

/// What became of a packet offered to the tap.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Offered {
    /// Queued for the video or the audio thread.
    Queued,
    /// Not a codec the composite takes.
    NotComposited,
    /// Dropped: the queue is full (the composite is behind).
    Full,
}

/// The reading sides: the composite's video thread and its audio thread.
pub struct TapReaders {
    /// Video packets, the reader woken at the end of each frame.
    pub video: Arc<TapQueue>,
    /// Opus packets, never waking the reader (it reads every mix tick).
    pub audio: Arc<TapQueue>,
}

/// Video packets a composite may hold unread (a 1080p keyframe is a few hundred packets).
const VIDEO_CAPACITY: usize = 4096;
/// Opus packets: 50 a second per sender.
const AUDIO_CAPACITY: usize = 1024;

impl Tap {
    /// A tap and its readers.
    pub fn new() -> (Tap, TapReaders) {
        let (video, audio) = (Arc::new(TapQueue::new(VIDEO_CAPACITY)), Arc::new(TapQueue::new(AUDIO_CAPACITY)));
        (Tap { video: video.clone(), audio: audio.clone() }, TapReaders { video, audio })
    }

    /// Copies a packet of `track` (codec `mime`) for the composite: video to the video thread,
    /// Opus to the audio thread; other codecs, and what is not RTP, are not composited.
    pub fn offer(&self, track: &TrackId, participant: &str, mime: &str, raw: &Bytes) -> Offered {
        let video = video_codec(mime);
        if video.is_none() && !mime.eq_ignore_ascii_case("audio/opus") {
            return Offered::NotComposited;
        }
        let Ok(view) = RtpPacket::parse(raw) else { return Offered::NotComposited };
        let packet = MediaPacket {
            seq: view.seq,
            timestamp: view.timestamp,
            marker: view.marker,
            payload: raw.slice(view.payload_offset..view.payload_offset + view.payload_len),
        };
        match self.send(TapPacket { track: track.clone(), participant: participant.into(), video, arrived: Instant::now(), packet }) {
            true => Offered::Queued,
            false => Offered::Full,
        }
    }

    /// Queues a packet for the thread that handles it; false when it was dropped (queue full).
    fn send(&self, packet: TapPacket) -> bool {
        match packet.video {
            Some(_) => {
                let wake = packet.packet.marker;
                self.video.push(packet, wake)
            }
            None => self.audio.push(packet, false),
        }
    }
}

impl Drop for Tap {
    fn drop(&mut self) {
        self.video.close();
        self.audio.close();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn packet(video: bool, marker: bool, seq: u16) -> TapPacket {
        let packet = MediaPacket { seq, timestamp: 0, marker, payload: Bytes::new() };
        TapPacket { track: "p/t".into(), participant: "p".into(), video: video.then_some(VideoCodec::Vp8), arrived: Instant::now(), packet }
    }

    #[test]
    fn the_video_reader_wakes_at_the_end_of_a_frame_with_every_packet_queued() {
        let (tap, readers) = Tap::new();
        let reader = std::thread::spawn(move || {
            let t = Instant::now();
            let got = readers.video.wait(t + Duration::from_secs(10)).unwrap();
            (got.iter().map(|p| p.packet.seq).collect::<Vec<_>>(), t.elapsed())
        });
        std::thread::sleep(Duration::from_millis(50));
        assert!(tap.send(packet(true, false, 1)));
        assert!(tap.send(packet(true, false, 2)));
        std::thread::sleep(Duration::from_millis(50));
        assert!(!reader.is_finished(), "packets inside a frame do not wake the reader");
        assert!(tap.send(packet(true, true, 3)));
        let (seqs, waited) = reader.join().unwrap();
        assert_eq!(seqs, vec![1, 2, 3]);
        assert!(waited < Duration::from_secs(5), "woken by the marker, not the deadline");
    }

    #[test]
    fn audio_goes_to_its_own_queue_and_waits_for_the_tick() {
        let (tap, readers) = Tap::new();
        assert!(tap.send(packet(false, true, 7)));
        let t = Instant::now();
        assert!(readers.video.wait(t + Duration::from_millis(20)).unwrap().is_empty());
        let audio = readers.audio.wait(Instant::now() + Duration::from_millis(30)).unwrap();
        assert!(t.elapsed() >= Duration::from_millis(45), "audio never wakes its reader early");
        assert_eq!(audio.iter().map(|p| p.packet.seq).collect::<Vec<_>>(), vec![7]);
    }

    #[test]
    fn offers_go_by_codec_and_a_full_queue_says_so() {
        let (tap, readers) = Tap::new();
        let id: TrackId = "p/t".into();
        let rtp = |seq| Bytes::from(mcu_sfu::rtp::build(96, true, seq, 3000, 0x1234, b"frame"));
        assert_eq!(tap.offer(&id, "p", "video/H264", &rtp(1)), Offered::Queued);
        assert_eq!(tap.offer(&id, "p", "audio/PCMU", &rtp(2)), Offered::NotComposited);
        assert_eq!(tap.offer(&id, "p", "video/H264", &Bytes::from_static(b"\x80short")), Offered::NotComposited, "not RTP");
        for i in 0..AUDIO_CAPACITY {
            assert_eq!(tap.offer(&id, "p", "audio/opus", &rtp(i as u16)), Offered::Queued);
        }
        assert_eq!(tap.offer(&id, "p", "audio/opus", &rtp(0)), Offered::Full);
        let far = Instant::now() + Duration::from_secs(1);
        let video = readers.video.wait(far).unwrap();
        assert_eq!((video.len(), video[0].video), (1, Some(VideoCodec::H264)));
        let p = &video[0].packet;
        assert_eq!((p.seq, p.timestamp, p.marker, &p.payload[..]), (1, 3000, true, &b"frame"[..]), "the payload without the header");
        assert_eq!(readers.audio.wait(far).unwrap().len(), AUDIO_CAPACITY);
    }

    #[test]
    fn a_full_queue_drops_and_a_dropped_tap_ends_the_readers_after_the_rest() {
        let (tap, readers) = Tap::new();
        for i in 0..AUDIO_CAPACITY {
            assert!(tap.send(packet(false, false, i as u16)));
        }
        assert!(!tap.send(packet(false, false, 0)), "over capacity: dropped");
        drop(tap);
        let far = Instant::now() + Duration::from_secs(10);
        assert_eq!(readers.audio.wait(far).unwrap().len(), AUDIO_CAPACITY, "what was queued is still read");
        assert!(readers.audio.wait(far).is_none());
        assert!(readers.video.wait(far).is_none());
    }
}
