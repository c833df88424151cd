//! Recording to Matroska (`.mkv`) and WebM: a streaming muxer over any `Write + Seek`, built on
//! the `webm-iterable` EBML writer.
//!
//! Crash safety comes from the layout: the EBML header, an unknown-size Segment, the SeekHead,
//! Info, Tracks and Tags are written first; then every Cluster is written and flushed whole as
//! it completes (about a second of media, starting at a video keyframe). A process killed
//! mid-recording leaves a file that plays up to its last complete cluster. [`MkvWriter::finish`]
//! writes the last cluster and the Cues, then patches the placeholders written at the start:
//! the Segment's size, the Duration, and the SeekHead's pointer to the Cues.
//!
//! Sans-IO in spirit: no clock, no threads; the caller passes each frame's pts.
#![deny(missing_docs)]

use std::{
    io::{Seek, SeekFrom, Write},
    time::Duration,
};

use webm_iterable::{
    WebmWriter,
    matroska_spec::{Master, MatroskaSpec, SimpleBlock},
};

/// Why a recording cannot go on.
#[derive(Debug, thiserror::Error)]
pub enum RecordError {
    /// Writing failed (disk full, directory gone, permissions).
    #[error("writing the recording: {0}")]
    Io(#[from] std::io::Error),
    /// The EBML writer refused an element.
    #[error("encoding the recording: {0}")]
    Ebml(String),
    /// A caller's mistake: an unknown track, no tracks.
    #[error("{0}")]
    Usage(String),
}

impl From<webm_iterable::errors::TagWriterError> for RecordError {
    fn from(e: webm_iterable::errors::TagWriterError) -> Self {
        match e {
            webm_iterable::errors::TagWriterError::WriteError { source } => RecordError::Io(source),
            other => RecordError::Ebml(other.to_string()),
        }
    }
}

/// What a track carries.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TrackCodec {
    /// VP8 frames as RTP depacketizes them.
    Vp8,
    /// VP9 frames.
    Vp9,
    /// AV1 temporal units (low-overhead OBUs); `config` is the `av1C` record.
    Av1 {
        /// `av1C` (4 bytes plus any configuration OBUs).
        config: Vec<u8>,
    },
    /// H.264 in Annex B (start codes), converted here to length-prefixed NAL units; the `avcC`
    /// record is built from the first SPS and PPS of `first_keyframe`.
    H264 {
        /// The first keyframe (Annex B) with SPS and PPS in it.
        first_keyframe: Vec<u8>,
    },
    /// Opus packets.
    Opus {
        /// 1 or 2.
        channels: u8,
    },
}

impl TrackCodec {
    fn id(&self) -> &'static str {
        match self {
            TrackCodec::Vp8 => "V_VP8",
            TrackCodec::Vp9 => "V_VP9",
            TrackCodec::Av1 { .. } => "V_AV1",
            TrackCodec::H264 { .. } => "V_MPEG4/ISO/AVC",
            TrackCodec::Opus { .. } => "A_OPUS",
        }
    }

    fn is_video(&self) -> bool {
        !matches!(self, TrackCodec::Opus { .. })
    }

    /// Whether WebM may carry it (else the file is Matroska).
    pub fn webm_compatible(&self) -> bool {
        !matches!(self, TrackCodec::H264 { .. })
    }
}

/// A track of the file.
#[derive(Debug, Clone)]
pub struct TrackSpec {
    /// Its codec.
    pub codec: TrackCodec,
    /// Its name (shown by players).
    pub name: String,
    /// Picture size, for video.
    pub width: u32,
    /// Picture height, for video.
    pub height: u32,
}

/// A frame waiting for its cluster.
struct Pending {
    track: usize,
    pts_ms: u64,
    keyframe: bool,
    data: Vec<u8>,
}

/// Bytes at the start of the Segment kept for the SeekHead (and a Void filling the rest), so
/// that `finish` can add the Cues entry in place.
const SEEK_REGION: usize = 96;
/// Bytes kept after the Tags for tags that grow before the end (a few hundred names).
const TAGS_RESERVE: usize = 4096;
/// The smallest Void: its ID and a one-byte size.
const MIN_VOID: usize = 2;
/// How much media a cluster holds at most.
const CLUSTER_TARGET_MS: u64 = 1000;

/// The destination, counting what is written and keeping a copy of the head.
struct Sink<W: Write> {
    inner: W,
    pos: u64,
    head: Option<Vec<u8>>,
}

impl<W: Write> Write for Sink<W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.inner.write_all(buf)?;
        self.pos += buf.len() as u64;
        if let Some(h) = &mut self.head {
            h.extend_from_slice(buf);
        }
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        self.inner.flush()
    }
}

/// Writes one recording.
pub struct MkvWriter<W: Write + Seek> {
    out: WebmWriter<Sink<W>>,
    tracks: Vec<TrackSpec>,
    /// File offset where the Segment's data starts (positions are relative to it).
    segment_data_start: u64,
    /// File offset of Info (its size is fixed, so of the Void kept for the Duration too).
    info_at: u64,
    tracks_at: u64,
    cluster: Vec<Pending>,
    cluster_start_ms: Option<u64>,
    /// (time ms, cluster offset from the segment data start) of each cluster that starts with
    /// a video keyframe.
    cues: Vec<(u64, u64)>,
    last_pts_ms: u64,
    has_video: bool,
    /// File offset of the Tags, and the bytes of Tags plus the Void after them.
    tags_at: u64,
    tags_region: usize,
    /// What `finish` writes there (Tags and Void, `tags_region` bytes).
    final_tags: Option<Vec<u8>>,
    /// Everything before the first cluster, as written: `finish` patches and rewrites it.
    head: Vec<u8>,
}

/// Encodes Segment children (the writer checks the hierarchy, so they are encoded inside an
/// unknown-size Segment whose 12-byte header is then dropped).
fn encode_in_segment(tags: &[MatroskaSpec]) -> Result<Vec<u8>, RecordError> {
    let mut buf = Vec::new();
    {
        let mut w = WebmWriter::new(&mut buf);
        w.write_advanced(&MatroskaSpec::Segment(Master::Start), webm_iterable::WriteOptions::is_unknown_sized_element())?;
        for t in tags {
            w.write(t)?;
        }
        w.flush()?;
    }
    Ok(buf.split_off(12))
}

/// Tags with one Tag for the whole file (TargetTypeValue 50) holding `tags`.
fn tags_element(tags: &[(String, String)]) -> MatroskaSpec {
    use MatroskaSpec as M;
    let mut tag = vec![M::Targets(Master::Full(vec![M::TargetTypeValue(50)]))];
    tag.extend(tags.iter().map(|(k, v)| M::SimpleTag(Master::Full(vec![M::TagName(k.clone()), M::TagString(v.clone())]))));
    M::Tags(Master::Full(vec![M::Tag(Master::Full(tag))]))
}

/// Void elements filling exactly `total` bytes (at least [`MIN_VOID`]), encoded.
fn void_bytes(total: usize) -> Result<Vec<u8>, RecordError> {
    // The size field takes 1–8 bytes as the writer chooses; some totals (129: 127 bytes of data
    // need a 2-byte size) have no single Void, and then a 2-byte Void goes first.
    for size_len in 1..=8 {
        let Some(data) = total.checked_sub(1 + size_len) else { break };
        let bytes = encode_in_segment(&[MatroskaSpec::Void(vec![0; data])])?;
        if bytes.len() == total {
            return Ok(bytes);
        }
    }
    if total >= 2 * MIN_VOID {
        let mut bytes = encode_in_segment(&[MatroskaSpec::Void(Vec::new())])?;
        if bytes.len() == MIN_VOID {
            bytes.extend(void_bytes(total - MIN_VOID)?);
            return Ok(bytes);
        }
    }
    Err(RecordError::Ebml(format!("no Void of {total} bytes")))
}

/// The SeekHead for these positions followed by a Void up to [`SEEK_REGION`] bytes: the
/// elements and their encoding.
fn seek_region(entries: &[(u32, u64)]) -> Result<([MatroskaSpec; 2], Vec<u8>), RecordError> {
    use MatroskaSpec as M;
    let seeks = entries.iter().map(|&(id, pos)| M::Seek(Master::Full(vec![M::SeekID(id.to_be_bytes().to_vec()), M::SeekPosition(pos)]))).collect();
    let head = M::SeekHead(Master::Full(seeks));
    let mut bytes = encode_in_segment(std::slice::from_ref(&head))?;
    let fill = SEEK_REGION.checked_sub(bytes.len() + 2).ok_or_else(|| RecordError::Ebml("SeekHead larger than its region".into()))?;
    let void = M::Void(vec![0; fill]);
    bytes.extend(encode_in_segment(std::slice::from_ref(&void))?);
    if bytes.len() != SEEK_REGION {
        return Err(RecordError::Ebml(format!("seek region of {} bytes", bytes.len())));
    }
    Ok(([head, void], bytes))
}

const INFO_ID: u32 = 0x1549_A966;
const TRACKS_ID: u32 = 0x1654_AE6B;
const CUES_ID: u32 = 0x1C53_BB6B;

/// Annex B → (start offsets of NAL units' payloads, their ends).
fn annex_b_nals(data: &[u8]) -> Vec<&[u8]> {
    let mut starts = Vec::new();
    let mut i = 0;
    while i + 3 <= data.len() {
        if data[i] == 0 && data[i + 1] == 0 && data[i + 2] == 1 {
            starts.push((i, i + 3));
            i += 3;
        } else {
            i += 1;
        }
    }
    let mut nals = Vec::with_capacity(starts.len());
    for (k, &(code, begin)) in starts.iter().enumerate() {
        let mut end = starts.get(k + 1).map(|&(c, _)| c).unwrap_or(data.len());
        // A four-byte start code's leading zero belongs to neither unit.
        while end > begin && k + 1 < starts.len() && data[end - 1] == 0 {
            end -= 1;
        }
        let _ = code;
        if end > begin {
            nals.push(&data[begin..end]);
        }
    }
    nals
}

/// Annex B to length-prefixed (4-byte) NAL units, as Matroska's AVC track wants.
pub fn annex_b_to_avcc(data: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(data.len() + 16);
    for nal in annex_b_nals(data) {
        out.extend_from_slice(&(nal.len() as u32).to_be_bytes());
        out.extend_from_slice(nal);
    }
    out
}

/// The `AVCDecoderConfigurationRecord` from the first SPS and PPS in `keyframe` (Annex B).
pub fn avcc_record(keyframe: &[u8]) -> Result<Vec<u8>, RecordError> {
    let nals = annex_b_nals(keyframe);
    let sps = nals.iter().find(|n| n[0] & 0x1f == 7 && n.len() >= 4).ok_or_else(|| RecordError::Usage("no SPS in the first H.264 keyframe".into()))?;
    let pps = nals.iter().find(|n| n[0] & 0x1f == 8).ok_or_else(|| RecordError::Usage("no PPS in the first H.264 keyframe".into()))?;
    let mut r = vec![1, sps[1], sps[2], sps[3], 0xff, 0xe1];
    r.extend_from_slice(&(sps.len() as u16).to_be_bytes());
    r.extend_from_slice(sps);
    r.push(1);
    r.extend_from_slice(&(pps.len() as u16).to_be_bytes());
    r.extend_from_slice(pps);
    Ok(r)
}

/// The `OpusHead` Matroska's Opus track carries (RFC 7845 §5.1; pre-skip 312 at 48 kHz).
pub fn opus_head(channels: u8) -> Vec<u8> {
    let mut h = b"OpusHead".to_vec();
    h.push(1);
    h.push(channels);
    h.extend_from_slice(&312u16.to_le_bytes());
    h.extend_from_slice(&48_000u32.to_le_bytes());
    h.extend_from_slice(&0i16.to_le_bytes());
    h.push(0);
    h
}

/// What an MkvWriter was told and wrote.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Summary {
    /// Last pts written (ms).
    pub duration_ms: u64,
    /// Bytes in the file.
    pub bytes: u64,
    /// Clusters with a cue point.
    pub cues: usize,
}

impl<W: Write + Seek> MkvWriter<W> {
    /// Starts a file: header, track list and `tags` (name, value) written at once. WebM when
    /// every track allows it, Matroska otherwise.
    pub fn new(dest: W, tracks: Vec<TrackSpec>, title: &str, tags: &[(String, String)], date_utc_ns: i64) -> Result<MkvWriter<W>, RecordError> {
        if tracks.is_empty() {
            return Err(RecordError::Usage("a recording needs a track".into()));
        }
        let webm = tracks.iter().all(|t| t.codec.webm_compatible());
        use MatroskaSpec as M;
        // Info keeps an 11-byte Void where `finish` puts the Duration (same size), so a file
        // cut short has no wrong duration and the Info never moves.
        let info = M::Info(Master::Full(vec![
            M::TimestampScale(1_000_000),
            M::Void(vec![0; 9]),
            M::DateUTC(date_utc_ns),
            M::Title(title.into()),
            M::MuxingApp(concat!("mcu-recorder ", env!("CARGO_PKG_VERSION")).into()),
            M::WritingApp("mcu".into()),
        ]));
        let mut entries = Vec::new();
        for (i, t) in tracks.iter().enumerate() {
            let n = i as u64 + 1;
            let mut e = vec![M::TrackNumber(n), M::TrackUID(n), M::Name(t.name.clone()), M::CodecID(t.codec.id().into()), M::FlagLacing(0)];
            match &t.codec {
                TrackCodec::Opus { channels } => {
                    e.push(M::TrackType(2));
                    e.push(M::CodecPrivate(opus_head(*channels)));
                    e.push(M::CodecDelay(6_500_000));
                    e.push(M::SeekPreRoll(80_000_000));
                    e.push(M::Audio(Master::Full(vec![M::SamplingFrequency(48_000.0), M::Channels(*channels as u64)])));
                }
                video => {
                    e.push(M::TrackType(1));
                    match video {
                        TrackCodec::H264 { first_keyframe } => e.push(M::CodecPrivate(avcc_record(first_keyframe)?)),
                        TrackCodec::Av1 { config } => e.push(M::CodecPrivate(config.clone())),
                        _ => {}
                    }
                    e.push(M::Video(Master::Full(vec![M::PixelWidth(t.width as u64), M::PixelHeight(t.height as u64)])));
                }
            }
            entries.push(M::TrackEntry(Master::Full(e)));
        }
        let tracks_el = M::Tracks(Master::Full(entries));
        let tags_el = tags_element(tags);
        // Room for tags that change before the end (who took part): `finish` rewrites the Tags
        // and this Void in place.
        let tags_len = encode_in_segment(std::slice::from_ref(&tags_el))?.len();
        let tags_void = void_bytes(TAGS_RESERVE)?;

        let info_len = encode_in_segment(std::slice::from_ref(&info))?.len() as u64;
        let tracks_len = encode_in_segment(std::slice::from_ref(&tracks_el))?.len() as u64;
        let (info_rel, tracks_rel) = (SEEK_REGION as u64, SEEK_REGION as u64 + info_len);
        let tags_rel = tracks_rel + tracks_len;
        let seek = seek_region(&[(INFO_ID, info_rel), (TRACKS_ID, tracks_rel)])?;

        let mut out = WebmWriter::new(Sink { inner: dest, pos: 0, head: Some(Vec::new()) });
        out.write(&M::Ebml(Master::Full(vec![
            M::EbmlVersion(1),
            M::EbmlReadVersion(1),
            M::EbmlMaxIdLength(4),
            M::EbmlMaxSizeLength(8),
            M::DocType(if webm { "webm" } else { "matroska" }.into()),
            M::DocTypeVersion(4),
            M::DocTypeReadVersion(2),
        ])))?;
        out.write_advanced(&M::Segment(Master::Start), webm_iterable::WriteOptions::is_unknown_sized_element())?;
        // The unknown-size Segment stays open in this writer for the rest of the file; each
        // child written whole goes to the destination at once.
        for el in seek.0.iter().chain([&info, &tracks_el, &tags_el]) {
            out.write(el)?;
        }
        out.get_mut().write_all(&tags_void)?;
        out.get_mut().flush()?;
        let head = out.get_mut().head.take().unwrap_or_default();
        let segment_data_start = head
            .windows(12)
            .position(|w| w[..4] == [0x18, 0x53, 0x80, 0x67] && w[4..] == [0x01, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff])
            .ok_or_else(|| RecordError::Ebml("segment header not found".into()))? as u64
            + 12;
        let has_video = tracks.iter().any(|t| t.codec.is_video());
        Ok(MkvWriter {
            out,
            tracks,
            segment_data_start,
            info_at: segment_data_start + info_rel,
            tracks_at: segment_data_start + tracks_rel,
            tags_at: segment_data_start + tags_rel,
            tags_region: tags_len + TAGS_RESERVE,
            final_tags: None,
            cluster: Vec::new(),
            cluster_start_ms: None,
            cues: Vec::new(),
            last_pts_ms: 0,
            has_video,
            head,
        })
    }

    /// Tags to replace the first ones when the file is finished (e.g. everyone who took part,
    /// where the header named those present at the start). A file that is never finished
    /// keeps the first ones. Tags larger than the space kept for them are refused.
    pub fn set_final_tags(&mut self, tags: &[(String, String)]) -> Result<(), RecordError> {
        let mut bytes = encode_in_segment(std::slice::from_ref(&tags_element(tags)))?;
        let len = bytes.len();
        if len + MIN_VOID > self.tags_region {
            return Err(RecordError::Usage(format!("tags of {len} bytes do not fit the {} bytes kept for them", self.tags_region)));
        }
        bytes.extend(void_bytes(self.tags_region - len)?);
        self.final_tags = Some(bytes);
        Ok(())
    }

    /// Adds a frame of track `track` (0-based, in the order given to `new`) at `pts`.
    pub fn push(&mut self, track: usize, pts: Duration, keyframe: bool, data: &[u8]) -> Result<(), RecordError> {
        let spec = self.tracks.get(track).ok_or_else(|| RecordError::Usage(format!("no track {track}")))?;
        let (is_video, is_h264) = (spec.codec.is_video(), matches!(spec.codec, TrackCodec::H264 { .. }));
        let pts_ms = pts.as_millis() as u64;
        if let Some(start) = self.cluster_start_ms {
            let age = pts_ms.saturating_sub(start);
            // A keyframe after half a cluster starts the next one (so seeking lands on clusters
            // that open with a keyframe); else a cluster ends after a second, so a killed
            // recording loses at most about a second.
            let at_keyframe = is_video && keyframe && age >= CLUSTER_TARGET_MS / 2;
            if at_keyframe || age >= CLUSTER_TARGET_MS {
                self.close_cluster()?;
            }
        }
        let data = if is_h264 { annex_b_to_avcc(data) } else { data.to_vec() };
        if self.cluster_start_ms.is_none() {
            self.cluster_start_ms = Some(pts_ms);
        }
        self.last_pts_ms = self.last_pts_ms.max(pts_ms);
        self.cluster.push(Pending { track, pts_ms, keyframe: keyframe || !is_video, data });
        Ok(())
    }

    /// Writes the pending cluster and flushes it to the destination.
    fn close_cluster(&mut self) -> Result<(), RecordError> {
        let Some(start) = self.cluster_start_ms.take() else { return Ok(()) };
        let mut frames = std::mem::take(&mut self.cluster);
        frames.sort_by_key(|f| f.pts_ms);
        // The cluster's time is its earliest frame (late audio may precede the first video).
        let start = frames.first().map(|f| f.pts_ms).unwrap_or(start);
        let position = self.written() - self.segment_data_start;
        if frames.iter().any(|f| f.keyframe && self.tracks[f.track].codec.is_video()) || !self.has_video {
            self.cues.push((start, position));
        }
        let mut blocks = vec![MatroskaSpec::Timestamp(start)];
        for f in &frames {
            let rel = (f.pts_ms - start).min(i16::MAX as u64) as i16;
            blocks.push(SimpleBlock::new_uncheked(&f.data, f.track as u64 + 1, rel, false, None, false, f.keyframe).into());
        }
        self.out.write(&MatroskaSpec::Cluster(Master::Full(blocks)))?;
        self.out.get_mut().flush()?;
        Ok(())
    }

    /// Media pushed so far (ms): the latest pts.
    pub fn duration_ms(&self) -> u64 {
        self.last_pts_ms
    }

    /// Bytes written so far.
    pub fn bytes(&self) -> u64 {
        self.written()
    }

    fn written(&self) -> u64 {
        self.out.get_ref().pos
    }

    /// Ends the file: the last cluster, the Cues, and the head patched (Segment size,
    /// Duration, the SeekHead's Cues entry).
    pub fn finish(mut self) -> Result<(W, Summary), RecordError> {
        self.close_cluster()?;
        use MatroskaSpec as M;
        let video_track = self.tracks.iter().position(|t| t.codec.is_video()).unwrap_or(0) as u64 + 1;
        let cues_rel = self.written() - self.segment_data_start;
        let points: Vec<MatroskaSpec> = self
            .cues
            .iter()
            .map(|&(t, pos)| {
                M::CuePoint(Master::Full(vec![M::CueTime(t), M::CueTrackPositions(Master::Full(vec![M::CueTrack(video_track), M::CueClusterPosition(pos)]))]))
            })
            .collect();
        let mut entries = vec![(INFO_ID, self.info_at - self.segment_data_start), (TRACKS_ID, self.tracks_at - self.segment_data_start)];
        if !points.is_empty() {
            self.out.write(&M::Cues(Master::Full(points)))?;
            entries.push((CUES_ID, cues_rel));
        }
        self.out.get_mut().flush()?;
        let end = self.written();
        let mut head = std::mem::take(&mut self.head);
        let seg = self.segment_data_start as usize;
        head[seg - 8..seg].copy_from_slice(&((end - self.segment_data_start) | (1 << 56)).to_be_bytes());
        let (_, seek) = seek_region(&entries)?;
        head[seg..seg + SEEK_REGION].copy_from_slice(&seek);
        // The Duration takes the place of the Void kept for it in Info (both 11 bytes).
        let duration = encode_in_segment(&[M::Info(Master::Full(vec![M::Duration(self.last_pts_ms as f64)]))])?;
        let duration = &duration[duration.len() - 11..];
        let info = self.info_at as usize;
        let slot = head[info..]
            .windows(11)
            .position(|w| w == [0xEC, 0x89, 0, 0, 0, 0, 0, 0, 0, 0, 0])
            .ok_or_else(|| RecordError::Ebml("duration slot not found".into()))?;
        head[info + slot..info + slot + 11].copy_from_slice(duration);
        if let Some(bytes) = self.final_tags.take().filter(|b| b.len() == self.tags_region) {
            let at = self.tags_at as usize;
            head[at..at + self.tags_region].copy_from_slice(&bytes);
        }
        let sink = self.out.get_mut();
        sink.inner.seek(SeekFrom::Start(0))?;
        sink.inner.write_all(&head)?;
        sink.inner.seek(SeekFrom::Start(end))?;
        sink.inner.flush()?;
        let summary = Summary { duration_ms: self.last_pts_ms, bytes: end, cues: self.cues.len() };
        let sink = self.out.into_inner()?;
        Ok((sink.inner, summary))
    }
}

#[cfg(test)]
mod tests;
