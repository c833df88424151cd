//! Server-side recording: a room's composite (the room canvas's encode and the room mix, as
//! viewers get them) and, optionally, each published track as it arrives, to Matroska/WebM
//! files in the recording directory.
//!
//! Each file has a writer thread of its own that owns the file and the [`MkvWriter`]; the
//! composite thread hands it encoded frames through a bounded queue and never waits for the
//! disk. A write error (disk full, directory gone) fails that file alone: its state says so, an
//! event tells watchers, and the server and other recordings go on. Clusters reach the file as
//! they complete, so a killed server leaves files that play up to their last second.

use std::{
    collections::HashMap,
    fs::File,
    path::{Path, PathBuf},
    sync::{
        Arc, Weak,
        atomic::{AtomicBool, Ordering},
        mpsc::{Receiver, SyncSender, TrySendError, sync_channel},
    },
    time::{Duration, Instant, SystemTime, UNIX_EPOCH},
};

use parking_lot::Mutex;

use mcu_codec::VideoCodec;
use mcu_recorder::{MkvWriter, TrackCodec, TrackSpec};
use mcu_sfu::forwarder::TrackId;

/// Frames a file's queue holds before frames are dropped (and counted): ~8 s at 30 fps + audio.
const QUEUE: usize = 1024;

/// Where a file is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FileState {
    /// Waiting for its first keyframe, or writing.
    Active,
    /// Finished cleanly.
    Stopped,
    /// Stopped by an error.
    Failed,
}

/// What the API shows of a file.
#[derive(Debug, Clone, PartialEq)]
pub struct FileStatus {
    /// Its path.
    pub path: PathBuf,
    /// The track it records, or `None` for the composite.
    pub track: Option<String>,
    /// Its state.
    pub state: FileState,
    /// Bytes written.
    pub bytes: u64,
    /// Media written (ms).
    pub duration_ms: u64,
    /// Why it failed.
    pub error: Option<String>,
    /// Frames dropped because the disk did not keep up.
    pub dropped: u64,
}

/// What a file records.
#[derive(Debug, Clone, Copy)]
pub struct FileLayout {
    /// Its video, if any.
    pub video: Option<VideoCodec>,
    /// Whether it has an Opus track, and its channels.
    pub audio_channels: Option<u8>,
}

enum Msg {
    Video {
        pts: Duration,
        keyframe: bool,
        data: Vec<u8>,
        size: (u32, u32),
    },
    Audio {
        pts: Duration,
        data: Vec<u8>,
    },
    /// Finish the file, with these tags in place of the first ones.
    Stop(Vec<(String, String)>),
}

/// One file being written.
pub struct FileWriter {
    tx: SyncSender<Msg>,
    t0: Instant,
    status: Arc<Mutex<FileStatus>>,
    thread: Mutex<Option<std::thread::JoinHandle<()>>>,
}

impl FileWriter {
    fn start(
        file: File,
        path: PathBuf,
        track: Option<String>,
        layout: FileLayout,
        title: String,
        tags: Vec<(String, String)>,
        changed: Arc<dyn Fn() + Send + Sync>,
    ) -> Arc<FileWriter> {
        let (tx, rx) = sync_channel(QUEUE);
        let status =
            Arc::new(Mutex::new(FileStatus { path: path.clone(), track, state: FileState::Active, bytes: 0, duration_ms: 0, error: None, dropped: 0 }));
        let st = status.clone();
        let thread = std::thread::Builder::new()
            .name("mcu-record".into())
            .spawn(move || write_file(file, rx, layout, title, tags, st, changed))
            .map_err(|e| tracing::error!(error = %e, "cannot start a recording thread"))
            .ok();
        Arc::new(FileWriter { tx, t0: Instant::now(), status, thread: Mutex::new(thread) })
    }

    fn send(&self, msg: Msg) {
        match self.tx.try_send(msg) {
            Ok(()) => {}
            Err(TrySendError::Full(_)) => self.status.lock().dropped += 1,
            Err(TrySendError::Disconnected(_)) => {}
        }
    }

    /// A video frame that arrived (or was encoded) at `now`.
    pub fn video(&self, now: Instant, keyframe: bool, data: &[u8], size: (u32, u32)) {
        self.send(Msg::Video { pts: now.saturating_duration_since(self.t0), keyframe, data: data.to_vec(), size });
    }

    /// An Opus packet of `now`.
    pub fn audio(&self, now: Instant, data: &[u8]) {
        self.send(Msg::Audio { pts: now.saturating_duration_since(self.t0), data: data.to_vec() });
    }

    /// Finishes the file with `tags` in place of the first ones, and waits for it to be closed.
    fn stop(&self, tags: Vec<(String, String)>) {
        let _ = self.tx.send(Msg::Stop(tags));
        let thread = self.thread.lock().take();
        if let Some(t) = thread {
            let _ = t.join();
        }
    }

    /// Its status.
    pub fn status(&self) -> FileStatus {
        self.status.lock().clone()
    }
}

fn write_file(
    file: File,
    rx: Receiver<Msg>,
    layout: FileLayout,
    title: String,
    tags: Vec<(String, String)>,
    status: Arc<Mutex<FileStatus>>,
    changed: Arc<dyn Fn() + Send + Sync>,
) {
    let mut file = Some(file);
    let mut writer: Option<MkvWriter<File>> = None;
    let (video_track, audio_track) = (0usize, if layout.video.is_some() { 1usize } else { 0 });
    let fail = |e: String| {
        let mut s = status.lock();
        tracing::error!(path = %s.path.display(), error = %e, "recording failed");
        s.state = FileState::Failed;
        s.error = Some(e);
        drop(s);
        changed();
    };
    while let Ok(msg) = rx.recv() {
        let result = match msg {
            Msg::Stop(tags) => {
                if let Some(w) = writer.as_mut()
                    && let Err(e) = w.set_final_tags(&tags)
                {
                    tracing::warn!(path = %status.lock().path.display(), error = %e, "the file keeps its first tags");
                }
                break;
            }
            Msg::Video { pts, keyframe, data, size } => {
                let data = if layout.video == Some(VideoCodec::Av1) { without_temporal_delimiter(&data) } else { &data[..] };
                if writer.is_none() {
                    // A file starts at a keyframe: players need one, and H.264's track header
                    // is built from its parameter sets.
                    if !keyframe {
                        continue;
                    }
                    match open(file.take(), &layout, data, size, &title, &tags) {
                        Ok(w) => writer = Some(w),
                        Err(e) => {
                            fail(e.to_string());
                            return;
                        }
                    }
                }
                writer.as_mut().map(|w| w.push(video_track, pts, keyframe, data)).unwrap_or(Ok(()))
            }
            Msg::Audio { pts, data } => {
                if writer.is_none() && layout.video.is_none() {
                    match open(file.take(), &layout, &[], (0, 0), &title, &tags) {
                        Ok(w) => writer = Some(w),
                        Err(e) => {
                            fail(e.to_string());
                            return;
                        }
                    }
                }
                match (writer.as_mut(), layout.audio_channels) {
                    (Some(w), Some(_)) => w.push(audio_track, pts, true, &data),
                    _ => Ok(()),
                }
            }
        };
        if let Err(e) = result {
            fail(e.to_string());
            return;
        }
        if let Some(w) = &writer {
            let mut s = status.lock();
            s.bytes = w.bytes();
            s.duration_ms = w.duration_ms();
        }
    }
    match writer.map(MkvWriter::finish) {
        Some(Ok((_, summary))) => {
            let mut s = status.lock();
            s.state = FileState::Stopped;
            s.bytes = summary.bytes;
            s.duration_ms = summary.duration_ms;
            tracing::info!(path = %s.path.display(), bytes = summary.bytes, duration_ms = summary.duration_ms, "recording finished");
        }
        Some(Err(e)) => {
            fail(e.to_string());
            return;
        }
        None => {
            // Nothing ever came (no keyframe): an empty file says nothing; remove it.
            let mut s = status.lock();
            let _ = std::fs::remove_file(&s.path);
            s.state = FileState::Stopped;
        }
    }
    changed();
}

fn open(
    file: Option<File>,
    layout: &FileLayout,
    first: &[u8],
    size: (u32, u32),
    title: &str,
    tags: &[(String, String)],
) -> Result<MkvWriter<File>, mcu_recorder::RecordError> {
    let file = file.ok_or_else(|| mcu_recorder::RecordError::Usage("file already used".into()))?;
    let mut tracks = Vec::new();
    if let Some(codec) = layout.video {
        let codec = match codec {
            VideoCodec::Vp8 => TrackCodec::Vp8,
            VideoCodec::H264 => TrackCodec::H264 { first_keyframe: first.to_vec() },
            VideoCodec::Av1 => TrackCodec::Av1 {
                config: mcu_codec::bitstream::av1c_record(first)
                    .ok_or_else(|| mcu_recorder::RecordError::Usage("no readable AV1 sequence header in the first key frame".into()))?,
            },
            other => return Err(mcu_recorder::RecordError::Usage(format!("{other} is not recorded yet"))),
        };
        tracks.push(TrackSpec { codec, name: "video".into(), width: size.0, height: size.1 });
    }
    if let Some(channels) = layout.audio_channels {
        tracks.push(TrackSpec { codec: TrackCodec::Opus { channels }, name: "audio".into(), width: 0, height: 0 });
    }
    let date_ns = SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_nanos() as i64).unwrap_or(0) - 978_307_200_000_000_000;
    MkvWriter::new(file, tracks, title, tags, date_ns)
}

/// The composite file's tags.
fn composite_tags(room: &str, participants: &[String], stamp: &str, id: &str) -> Vec<(String, String)> {
    vec![
        ("ROOM".to_string(), room.to_string()),
        ("PARTICIPANTS".to_string(), participants.join(", ")),
        ("DATE_RECORDED".to_string(), stamp.to_string()),
        ("RECORDING_ID".to_string(), id.to_string()),
    ]
}

/// `YYYYMMDDTHHMMSSZ` for Unix seconds (civil date from days, proleptic Gregorian).
pub fn utc_stamp(unix: u64) -> String {
    let (days, secs) = ((unix / 86_400) as i64, unix % 86_400);
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!("{y:04}{m:02}{d:02}T{:02}{:02}{:02}Z", secs / 3600, secs / 60 % 60, secs % 60)
}

/// The file extension for a layout: WebM when its codecs allow.
/// Matroska's AV1 blocks carry no temporal delimiter OBU (rav1e starts each unit with one).
fn without_temporal_delimiter(data: &[u8]) -> &[u8] {
    match data {
        [0x12, 0x00, rest @ ..] => rest,
        _ => data,
    }
}

fn extension(layout: &FileLayout) -> &'static str {
    if layout.video == Some(VideoCodec::H264) { "mkv" } else { "webm" }
}

/// A recording as the API shows it.
#[derive(Debug, Clone, PartialEq)]
pub struct Snapshot {
    /// Its id.
    pub id: String,
    /// The room.
    pub room: String,
    /// Active, stopped or failed.
    pub state: FileState,
    /// When it started (Unix ms).
    pub started_unix_ms: i64,
    /// The composite's file, then each track's.
    pub files: Vec<FileStatus>,
}

/// One recording of a room: the composite's file and, with `tracks`, a file per track.
pub struct Session {
    /// Its id.
    pub id: String,
    /// The room.
    pub room: String,
    /// When it started (Unix ms).
    pub started_unix_ms: i64,
    /// Whether each track gets a file.
    pub tracks: bool,
    /// The composite's file.
    pub composite: Arc<FileWriter>,
    track_files: Mutex<HashMap<TrackId, Arc<FileWriter>>>,
    stopped: AtomicBool,
    dir: PathBuf,
    stamp: String,
    changed: Arc<dyn Fn() + Send + Sync>,
    /// The composite's encode when it differs from the live one.
    pub profile: Option<mcu_pipeline::VideoProfile>,
    /// Everyone who took part: those present at the start, then each who joined, in order.
    participants: Mutex<Vec<String>>,
}

impl Session {
    /// Starts a recording of `room`'s composite in `dir` (created if missing). The file is
    /// created now, so an unwritable directory is an error here.
    #[allow(clippy::too_many_arguments)]
    pub fn start(
        dir: &Path,
        room: &str,
        filename: Option<&str>,
        tracks: bool,
        composite: FileLayout,
        profile: Option<mcu_pipeline::VideoProfile>,
        participants: Vec<String>,
        changed: impl Fn(&Arc<Session>) + Send + Sync + 'static,
    ) -> std::io::Result<Arc<Session>> {
        std::fs::create_dir_all(dir)?;
        let id = format!("{:016x}", rand::random::<u64>());
        let unix = SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default();
        let stamp = utc_stamp(unix.as_secs());
        let name = match filename {
            Some(f) => format!("{f}.{}", extension(&composite)),
            None => format!("{room}-{stamp}-{}.{}", &id[..8], extension(&composite)),
        };
        let path = dir.join(name);
        let file = File::create(&path)?;
        Ok(Arc::new_cyclic(|weak: &Weak<Session>| {
            let w = weak.clone();
            let changed: Arc<dyn Fn() + Send + Sync> = Arc::new(move || {
                if let Some(s) = w.upgrade() {
                    changed(&s);
                }
            });
            // Who was there when it started; a clean stop writes everyone who took part.
            let tags = composite_tags(room, &participants, &stamp, &id);
            let writer = FileWriter::start(file, path, None, composite, format!("room {room}"), tags, changed.clone());
            Session {
                id,
                room: room.into(),
                started_unix_ms: unix.as_millis() as i64,
                tracks,
                composite: writer,
                track_files: Mutex::default(),
                stopped: AtomicBool::new(false),
                dir: dir.to_path_buf(),
                stamp,
                changed,
                profile,
                participants: Mutex::new(participants),
            }
        }))
    }

    /// `name` joined the room: the files' final tags name them.
    pub fn saw(&self, name: &str) {
        let mut p = self.participants.lock();
        if !p.iter().any(|n| n == name) {
            p.push(name.to_string());
        }
    }

    fn participant_list(&self) -> String {
        self.participants.lock().join(", ")
    }

    fn track_tags(&self, track: &str) -> Vec<(String, String)> {
        vec![
            ("ROOM".to_string(), self.room.clone()),
            ("TRACK".to_string(), track.to_string()),
            ("PARTICIPANTS".to_string(), self.participant_list()),
            ("RECORDING_ID".to_string(), self.id.clone()),
        ]
    }

    /// The file of a track (created at its first use), while the session records tracks.
    pub fn track_writer(&self, track: &TrackId, layout: FileLayout) -> Option<Arc<FileWriter>> {
        if !self.tracks || self.stopped.load(Ordering::Relaxed) {
            return None;
        }
        let mut files = self.track_files.lock();
        if let Some(w) = files.get(track) {
            return Some(w.clone());
        }
        let safe: String = track.chars().map(|c| if c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.') { c } else { '_' }).collect();
        let path = self.dir.join(format!("{}-{}-{safe}-{}.{}", self.room, self.stamp, &self.id[..8], extension(&layout)));
        let file = match File::create(&path) {
            Ok(f) => f,
            Err(e) => {
                tracing::error!(path = %path.display(), error = %e, "track recording not started");
                return None;
            }
        };
        let tags = self.track_tags(track);
        let w = FileWriter::start(file, path, Some(track.to_string()), layout, format!("{} in {}", track, self.room), tags, self.changed.clone());
        files.insert(track.clone(), w.clone());
        drop(files);
        (self.changed)();
        Some(w)
    }

    /// Whether it still records.
    pub fn active(&self) -> bool {
        !self.stopped.load(Ordering::Relaxed)
    }

    /// Finishes every file (blocking until they are closed). True if it was running.
    pub fn stop(&self) -> bool {
        if self.stopped.swap(true, Ordering::Relaxed) {
            return false;
        }
        let everyone: Vec<String> = self.participants.lock().clone();
        self.composite.stop(composite_tags(&self.room, &everyone, &self.stamp, &self.id));
        let files: Vec<(TrackId, Arc<FileWriter>)> = self.track_files.lock().iter().map(|(t, f)| (t.clone(), f.clone())).collect();
        for (track, f) in files {
            f.stop(self.track_tags(&track));
        }
        true
    }

    /// Every file's status: the composite first, then the tracks by id.
    pub fn files(&self) -> Vec<FileStatus> {
        let mut out = vec![self.composite.status()];
        let mut tracks: Vec<FileStatus> = self.track_files.lock().values().map(|f| f.status()).collect();
        tracks.sort_by(|a, b| a.track.cmp(&b.track));
        out.extend(tracks);
        out
    }

    /// What the API shows of it.
    pub fn snapshot(&self) -> Snapshot {
        Snapshot { id: self.id.clone(), room: self.room.clone(), state: self.state(), started_unix_ms: self.started_unix_ms, files: self.files() }
    }

    /// The session's state: active while running; failed if every file failed; else stopped.
    pub fn state(&self) -> FileState {
        let files = self.files();
        if files.iter().all(|f| f.state == FileState::Failed) {
            FileState::Failed
        } else if self.active() {
            FileState::Active
        } else {
            FileState::Stopped
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn utc_stamps() {
        assert_eq!(utc_stamp(0), "19700101T000000Z");
        assert_eq!(utc_stamp(1_795_000_000), "20261118T110640Z");
        assert_eq!(utc_stamp(951_782_400), "20000229T000000Z");
    }
}
