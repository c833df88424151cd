use std::io::Cursor;

use webm_iterable::{WebmIterator, matroska_spec::EbmlTag};

use super::*;

fn tracks() -> Vec<TrackSpec> {
    vec![
        TrackSpec { codec: TrackCodec::Vp8, name: "video".into(), width: 64, height: 48 },
        TrackSpec { codec: TrackCodec::Opus { channels: 2 }, name: "audio".into(), width: 0, height: 0 },
    ]
}

/// Three seconds: video at 10 fps with a keyframe every second, audio every 20 ms.
fn record(w: &mut MkvWriter<Cursor<Vec<u8>>>) {
    for ms in (0..3000u64).step_by(20) {
        if ms % 100 == 0 {
            let key = ms % 1000 == 0;
            w.push(0, Duration::from_millis(ms), key, &[if key { 0x10 } else { 0x11 }, 1, 2, 3]).unwrap();
        }
        w.push(1, Duration::from_millis(ms + 5), false, &[0xfc, 0xff, 0xfe]).unwrap();
    }
}

fn tags(bytes: &[u8]) -> Vec<MatroskaSpec> {
    WebmIterator::new(Cursor::new(bytes.to_vec()), &[]).collect::<Result<Vec<_>, _>>().expect("the file parses")
}

#[test]
fn a_clean_stop_writes_duration_cues_and_sizes() {
    let mut w = MkvWriter::new(Cursor::new(Vec::new()), tracks(), "room r", &[("ROOM".into(), "r".into()), ("PARTICIPANTS".into(), "a, b".into())], 0).unwrap();
    record(&mut w);
    let (out, summary) = w.finish().unwrap();
    let bytes = out.into_inner();
    assert_eq!(summary.bytes as usize, bytes.len());
    assert_eq!(summary.duration_ms, 2985);
    let all = tags(&bytes);
    assert!(all.iter().any(|t| matches!(t, MatroskaSpec::DocType(d) if d == "webm")), "VP8 + Opus is WebM");
    assert!(all.iter().any(|t| matches!(t, MatroskaSpec::Duration(d) if *d == 2985.0)), "duration patched");
    assert!(all.iter().any(|t| matches!(t, MatroskaSpec::TagString(s) if s == "a, b")));
    let clusters: Vec<&MatroskaSpec> = all.iter().filter(|t| matches!(t, MatroskaSpec::Cluster(Master::Start))).collect();
    assert_eq!(clusters.len(), 3, "a cluster per second, each opened by a keyframe");
    let cue_times: Vec<u64> = all.iter().filter_map(|t| if let MatroskaSpec::CueTime(t) = t { Some(*t) } else { None }).collect();
    assert_eq!(cue_times, [0, 1000, 2000]);
    // The Segment's size is real and covers the file; the seek entries point at their elements.
    let seg_data = bytes.windows(4).position(|w| w == [0x18, 0x53, 0x80, 0x67]).unwrap() + 12;
    let size = u64::from_be_bytes(bytes[seg_data - 8..seg_data].try_into().unwrap()) & ((1 << 56) - 1);
    assert_eq!(seg_data as u64 + size, bytes.len() as u64);
    let positions: Vec<u64> = all.iter().filter_map(|t| if let MatroskaSpec::SeekPosition(p) = t { Some(*p) } else { None }).collect();
    assert_eq!(positions.len(), 3);
    for (pos, id) in positions.iter().zip([[0x15u8, 0x49, 0xA9, 0x66], [0x16, 0x54, 0xAE, 0x6B], [0x1C, 0x53, 0xBB, 0x6B]]) {
        let at = seg_data + *pos as usize;
        assert_eq!(bytes[at..at + 4], id, "seek position {pos}");
    }
    let cluster_positions: Vec<u64> = all.iter().filter_map(|t| if let MatroskaSpec::CueClusterPosition(p) = t { Some(*p) } else { None }).collect();
    for p in cluster_positions {
        assert_eq!(bytes[seg_data + p as usize..seg_data + p as usize + 4], [0x1F, 0x43, 0xB6, 0x75], "cue points at clusters");
    }
}

#[test]
fn a_killed_recording_keeps_every_complete_cluster() {
    let mut w = MkvWriter::new(Cursor::new(Vec::new()), tracks(), "room r", &[], 0).unwrap();
    record(&mut w);
    // What is on "disk" before finish: never patched, the last second still in memory.
    let bytes = w.out.get_ref().inner.get_ref().clone();
    let all = tags(&bytes);
    let clusters = all.iter().filter(|t| matches!(t, MatroskaSpec::Cluster(Master::Start))).count();
    assert_eq!(clusters, 2, "the first two seconds are on disk");
    let blocks = all.iter().filter(|t| t.get_id() == 0xA3).count();
    assert_eq!(blocks, 2 * (10 + 50), "every frame of those seconds");
}

#[test]
fn h264_is_matroska_with_an_avc_record_and_length_prefixed_units() {
    let sps = [0x67, 0x42, 0xc0, 0x1f, 0xda, 0x01];
    let pps = [0x68, 0xce, 0x3c, 0x80];
    let idr = [0x65, 0x88, 0x84, 0x00];
    let mut key = vec![0, 0, 0, 1];
    key.extend_from_slice(&sps);
    key.extend_from_slice(&[0, 0, 0, 1]);
    key.extend_from_slice(&pps);
    key.extend_from_slice(&[0, 0, 1]);
    key.extend_from_slice(&idr);
    let avcc = avcc_record(&key).unwrap();
    assert_eq!(&avcc[..6], &[1, 0x42, 0xc0, 0x1f, 0xff, 0xe1]);
    assert_eq!(annex_b_to_avcc(&key), [&[0, 0, 0, 6][..], &sps, &[0, 0, 0, 4], &pps, &[0, 0, 0, 4], &idr].concat());
    let t = vec![TrackSpec { codec: TrackCodec::H264 { first_keyframe: key.clone() }, name: "v".into(), width: 64, height: 48 }];
    let mut w = MkvWriter::new(Cursor::new(Vec::new()), t, "h264", &[], 0).unwrap();
    w.push(0, Duration::ZERO, true, &key).unwrap();
    let (out, _) = w.finish().unwrap();
    let all = tags(&out.into_inner());
    assert!(all.iter().any(|t| matches!(t, MatroskaSpec::DocType(d) if d == "matroska")));
    assert!(all.iter().any(|t| matches!(t, MatroskaSpec::CodecPrivate(p) if *p == avcc)));
    assert!(avcc_record(&[0, 0, 1, 0x65, 1]).is_err(), "no SPS: an error, not a broken file");
}

#[test]
fn a_full_disk_is_an_error() {
    struct Full(u64);
    impl Write for Full {
        fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
            if self.0 > 2000 {
                return Err(std::io::Error::from_raw_os_error(28));
            }
            self.0 += b.len() as u64;
            Ok(b.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    impl Seek for Full {
        fn seek(&mut self, _: SeekFrom) -> std::io::Result<u64> {
            Ok(self.0)
        }
    }
    let mut w = MkvWriter::new(Full(0), tracks(), "full", &[], 0).unwrap();
    let mut failed = None;
    for ms in (0..5000u64).step_by(100) {
        if let Err(e) = w.push(0, Duration::from_millis(ms), ms % 1000 == 0, &[0u8; 400]) {
            failed = Some(e);
            break;
        }
    }
    assert!(matches!(failed, Some(RecordError::Io(e)) if e.raw_os_error() == Some(28)), "ENOSPC surfaces as an I/O error");
}

#[test]
fn final_tags_replace_the_first_ones_in_place() {
    let first = [("ROOM".to_string(), "r".to_string()), ("PARTICIPANTS".to_string(), "alice".to_string())];
    let mut w = MkvWriter::new(Cursor::new(Vec::new()), tracks(), "room r", &first, 0).unwrap();
    record(&mut w);
    let everyone: Vec<String> = (0..200).map(|i| format!("participant-{i}")).collect();
    let last = [("ROOM".to_string(), "r".to_string()), ("PARTICIPANTS".to_string(), everyone.join(", "))];
    w.set_final_tags(&last).unwrap();
    let (out, summary) = w.finish().unwrap();
    let bytes = out.into_inner();
    assert_eq!(summary.bytes as usize, bytes.len(), "nothing moved");
    let all = tags(&bytes);
    let strings: Vec<&String> = all.iter().filter_map(|t| if let MatroskaSpec::TagString(s) = t { Some(s) } else { None }).collect();
    assert_eq!(strings, [&"r".to_string(), &everyone.join(", ")]);
    assert_eq!(all.iter().filter(|t| matches!(t, MatroskaSpec::Cluster(Master::Start))).count(), 3, "the clusters are intact");
    assert!(all.iter().any(|t| matches!(t, MatroskaSpec::Duration(d) if *d == 2985.0)));
    // Too many to fit: refused, and the file keeps what it has.
    let mut w = MkvWriter::new(Cursor::new(Vec::new()), tracks(), "room r", &first, 0).unwrap();
    record(&mut w);
    assert!(w.set_final_tags(&[("PARTICIPANTS".to_string(), "x".repeat(10_000))]).is_err());
    let bytes = w.finish().unwrap().0.into_inner();
    assert!(tags(&bytes).iter().any(|t| matches!(t, MatroskaSpec::TagString(s) if s == "alice")));
}

#[test]
fn voids_of_every_size_exist() {
    for total in MIN_VOID..=TAGS_RESERVE + 512 {
        let v = void_bytes(total).unwrap_or_else(|e| panic!("{total}: {e}"));
        assert_eq!(v.len(), total);
        let parsed = tags(&[&[0x18, 0x53, 0x80, 0x67, 0x01, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff][..], &v].concat());
        assert!(parsed.iter().all(|t| matches!(t, MatroskaSpec::Void(_) | MatroskaSpec::Segment(_))), "{total}: {parsed:?}");
    }
}
