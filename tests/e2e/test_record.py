#!/usr/bin/env python3
"""End-to-end tests of server-side recording (`mcu.v1.RecordingService`, `--recording-dir`,
`--auto-record`) of `mcu serve`.

Publishers are test_mcu.py's people (aiortc over WHIP: solid colours and sine tones); the
recordings are started and stopped over gRPC (grpcio, stubs from test_grpc.py) and the files
they leave are examined with ffprobe and ffmpeg (decoded to RGB frames and 48 kHz PCM) and with
a small EBML reader of our own (DocType, Segment size, Duration, Clusters, Cues), independent of
the server's muxer.

Each test starts its own server (`target/debug/mcu`, or $MCU_BIN) with a 640x360 30 fps canvas
(test_mcu.py's SERVER_ARGS), a gRPC port and a recording directory of its own under one
temporary directory (kept, with the server logs, when a test fails; its path is printed).

    1 composite_and_tracks
                          alice bob carol dave in the 2x2 grid (seen by a WHEP viewer);
                          StartRecording(tracks) for ~6 s, StopRecording: events active then
                          stopped; the composite is WebM (DocType webm), VP8 640x360 + mono
                          Opus, its duration that of the recording (±1.5 s), the tags ROOM,
                          PARTICIPANTS, DATE_RECORDED, RECORDING_ID; every decoded frame shows
                          the grid colours; every second of audio holds the four tones. One
                          file per track (8): each video file VP8 of its publisher's colour,
                          each audio file stereo Opus with its tone alone
    2 h264_composite      --mix-codec h264: the composite file is .mkv (DocType matroska), H.264
                          + Opus, the grid colours decode
    3 kill_9              recording (composite and tracks) for ~5 s, the server SIGKILLed: the
                          files open in ffprobe and decode to at least (time recorded - 2 s) of
                          media, every cluster in them complete, colours and tones right
    4 sigterm_finishes    recording, SIGTERM: the server exits 0, every file has its Segment
                          size, Duration and Cues (after the last cluster); ffmpeg -ss 3 lands
                          on the grid at once
    5 full_disk           a healthy recording, then one whose file is a symlink to /dev/full
                          (ENOSPC on every write): events active then failed (error "No space
                          left"), ListRecordings shows it failed; the healthy one and the
                          composite viewer go on; the healthy file is whole (no gap)
    6 unwritable_dir      --recording-dir under /proc (and under a regular file, with
                          --auto-record *): StartRecording -> FAILED_PRECONDITION naming the
                          directory; the automatic recording is skipped; the server still
                          serves (GetRoom, WHEP of a publisher and of the composite). Bad file
                          names -> INVALID_ARGUMENT, unknown recording -> NOT_FOUND
    7 auto_record         --auto-record autoroom with --record-codec h264 --record-size
                          1280x720: the four join (nobody watching), a recording
                          of the composite and every track starts by itself (not in another
                          room), StopRecording ends it, the composite is H.264 1280x720 in
                          .mkv, the files play: the grid at the end,
                          the tones, each track its colour and tone; the composite's
                          PARTICIPANTS tag names all four (it started with alice alone)
    8 own_profiles        beside the live VP8 640x360 composite, a recording in H.264 1280x720
                          (.mkv) and one in AV1 320x180 (rav1e, .webm): each file has its codec
                          and size, its duration, no frame gap over 0.5 s, the grid in every
                          frame and the four tones; the live viewer keeps its 640x360 grid; an
                          odd width is INVALID_ARGUMENT naming video.width

Run: scripts/e2e-setup.sh && target/e2e-venv/bin/python tests/e2e/test_record.py [-v] [name...]
(`name` selects tests whose name contains it; MCU_E2E_SERVER_LOG sets the servers' log
filter). Prints what the files hold (codecs, durations, colours, tone levels) and times, keeps
the recordings and server logs of a failed run (the directories are printed), closes with
"e2e record: N passed, M failed" and exits non-zero on any failure.
"""

from __future__ import annotations

import asyncio
import json
import math
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional, Sequence

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import mcuclient as mc  # noqa: E402
import test_grpc as tg  # noqa: E402  (stubs, the gRPC client, event watches, GrpcTest)
import test_mcu as tm  # noqa: E402  (people, grid probes)
import test_sfu as sfu  # noqa: E402  (server processes, the suite runner)
from test_grpc import Code, fmt_event, fmt_msg, pb, pb_grpc  # noqa: E402
from test_mcu import (  # noqa: E402
    ALICE, ALL_TONES, BOB, CAROL, DAVE, FOUR, HEIGHT, MEDIA_TIMEOUT, TONE_GONE_DB, TONE_MIN_DBFS, TONE_OVER_FLOOR_DB,
    TONE_TOLERANCE, WIDTH, Person, describe, look,
)
from test_sfu import async_test, fmt_rgb, out  # noqa: E402

# ----------------------------------------------------------------------------------------
# Constants
# ----------------------------------------------------------------------------------------

REC_ROOT = Path(tempfile.mkdtemp(prefix="mcu-e2e-rec-"))  # a directory per test; kept on failure
RECORD_SECONDS = 6.0  # s, the recording of test 1
DURATION_RANGE = (5.0, 8.0)  # s, its file's duration
DURATION_TOLERANCE = 1.5  # s, a file's duration against the time between start and stop
KILL_AFTER = 5.0  # s of recording before SIGKILL
KILL_LOSS = 2.0  # s, the most a killed file may lack of what was recorded
EXIT_TIMEOUT = 20.0  # s, for a server to exit after SIGTERM
SEEK_LIMIT = 5.0  # s of wall time for ffmpeg -ss 3 to give a frame of a finished file
FRAME_GAP_LIMIT = 0.5  # s, the longest a recorded video may go without a frame
FILES_TIMEOUT = 20.0  # s, for the files of a recording to appear in ListRecordings
SAMPLE_FPS = 2  # decoded frames per second of recording examined
TOOL_TIMEOUT = 120.0  # s, one ffprobe/ffmpeg run
RATE = 48000

ACTIVE, STOPPED, FAILED = pb.RECORDING_STATE_ACTIVE, pb.RECORDING_STATE_STOPPED, pb.RECORDING_STATE_FAILED


def state_name(s: int) -> str:
    return pb.RecordingState.Name(s).removeprefix("RECORDING_STATE_").lower()


def fmt_rec(r) -> str:
    files = "; ".join(f"{Path(f.path).name} [{f.track_id or 'composite'}] {state_name(f.state)} {f.bytes} B {f.duration_ms} ms"
                      + (f" error {f.error!r}" if f.error else "") for f in r.files)
    return f"recording {r.id} of {r.room!r} {state_name(r.state)}: {files}"


# ----------------------------------------------------------------------------------------
# Matroska, read independently of the server's muxer
# ----------------------------------------------------------------------------------------

EBML_ID, SEGMENT_ID, SEEKHEAD_ID, INFO_ID, TRACKS_ID, TAGS_ID, CLUSTER_ID, CUES_ID = (
    0x1A45DFA3, 0x18538067, 0x114D9B74, 0x1549A966, 0x1654AE6B, 0x1254C367, 0x1F43B675, 0x1C53BB6B)
DOCTYPE_ID, TIMESCALE_ID, DURATION_ID, CUEPOINT_ID, SEEK_ID, SEEKID_ID = 0x4282, 0x2AD7B1, 0x4489, 0xBB, 0x4DBB, 0x53AB


def read_id(buf: bytes, i: int) -> tuple[int, int]:
    """An element id (marker bits kept) at i, and where it ends."""
    if i >= len(buf):
        raise EOFError
    n = 1
    while n <= 4 and not buf[i] & (0x80 >> (n - 1)):
        n += 1
    if n > 4 or i + n > len(buf):
        raise EOFError if i + n > len(buf) else ValueError(f"bad element id at {i}")
    return int.from_bytes(buf[i:i + n], "big"), i + n


def read_size(buf: bytes, i: int) -> tuple[Optional[int], int]:
    """An element size at i (None: unknown), and where it ends."""
    if i >= len(buf):
        raise EOFError
    n = 1
    while n <= 8 and not buf[i] & (0x80 >> (n - 1)):
        n += 1
    if n > 8 or i + n > len(buf):
        raise EOFError if i + n > len(buf) else ValueError(f"bad element size at {i}")
    mask = (1 << (7 * n)) - 1
    v = int.from_bytes(buf[i:i + n], "big") & mask
    return (None if v == mask else v), i + n


def children(buf: bytes, start: int, end: int) -> list[tuple[int, int, int]]:
    """(id, data start, data end) of the elements in buf[start:end] (known sizes only)."""
    got, i = [], start
    while i < end:
        eid, j = read_id(buf, i)
        size, k = read_size(buf, j)
        if size is None or k + size > end:
            break
        got.append((eid, k, k + size))
        i = k + size
    return got


@dataclass
class MkvLayout:
    """What a Matroska file holds at its top level, read element by element."""

    size: int
    doctype: str = ""
    segment_size: Optional[int] = None  # None: unknown (a file never finished)
    segment_data: int = 0  # offset of the Segment's data
    duration_ms: Optional[float] = None  # Info's Duration, scaled to ms
    timescale_ns: int = 1_000_000
    top: list[tuple[int, int, int]] = field(default_factory=list)  # (id, offset, end) of each whole element
    trailing: int = 0  # bytes after the last whole element (a cut-off element)
    cue_points: int = 0
    seek_ids: list[int] = field(default_factory=list)

    @property
    def clusters(self) -> int:
        return sum(1 for e in self.top if e[0] == CLUSTER_ID)

    @property
    def cues_after_last_cluster(self) -> bool:
        ids = [e[0] for e in self.top]
        return CUES_ID in ids and CLUSTER_ID in ids and ids.index(CUES_ID) > max(i for i, e in enumerate(ids) if e == CLUSTER_ID)

    def describe(self) -> str:
        names = {SEEKHEAD_ID: "SeekHead", INFO_ID: "Info", TRACKS_ID: "Tracks", TAGS_ID: "Tags", CLUSTER_ID: "Cluster",
                 CUES_ID: "Cues", 0xEC: "Void"}
        seq: list[str] = []
        for eid, _, _ in self.top:
            n = names.get(eid, hex(eid))
            if seq and seq[-1].startswith(n + " x"):
                seq[-1] = f"{n} x{int(seq[-1].split('x')[-1]) + 1}"
            elif seq and seq[-1] == n:
                seq[-1] = f"{n} x2"
            else:
                seq.append(n)
        seg = "unknown" if self.segment_size is None else str(self.segment_size)
        dur = "none" if self.duration_ms is None else f"{self.duration_ms:.0f} ms"
        return (f"DocType {self.doctype}, {self.size} bytes, Segment size {seg}, Duration {dur}, {', '.join(seq)}"
                f"{f', {self.trailing} bytes of a cut-off element' if self.trailing else ''}"
                f"{f', {self.cue_points} cue points' if self.cue_points else ''}")


def mkv_layout(path: Path) -> MkvLayout:
    buf = path.read_bytes()
    lay = MkvLayout(size=len(buf))
    eid, i = read_id(buf, 0)
    assert eid == EBML_ID, f"{path.name}: no EBML header (starts with {buf[:4].hex()})"
    size, i = read_size(buf, i)
    for cid, a, b in children(buf, i, i + size):
        if cid == DOCTYPE_ID:
            lay.doctype = buf[a:b].decode("ascii", "replace").rstrip("\0")
    i += size
    eid, i = read_id(buf, i)
    assert eid == SEGMENT_ID, f"{path.name}: no Segment after the EBML header"
    lay.segment_size, i = read_size(buf, i)
    lay.segment_data = i
    end = len(buf) if lay.segment_size is None else min(len(buf), i + lay.segment_size)
    while i < end:
        try:
            eid, j = read_id(buf, i)
            size, k = read_size(buf, j)
        except EOFError:
            break
        if size is None or k + size > len(buf):
            break
        lay.top.append((eid, i, k + size))
        if eid == INFO_ID:
            duration = None
            for cid, a, b in children(buf, k, k + size):
                if cid == TIMESCALE_ID:
                    lay.timescale_ns = int.from_bytes(buf[a:b], "big")
                elif cid == DURATION_ID:
                    duration = np.frombuffer(buf[a:b], dtype=">f4" if b - a == 4 else ">f8")[0]
            if duration is not None:
                lay.duration_ms = float(duration) * lay.timescale_ns / 1e6
        elif eid == CUES_ID:
            lay.cue_points = sum(1 for c in children(buf, k, k + size) if c[0] == CUEPOINT_ID)
        elif eid == SEEKHEAD_ID:
            for cid, a, b in children(buf, k, k + size):
                if cid == SEEK_ID:
                    for sid, x, y in children(buf, a, b):
                        if sid == SEEKID_ID:
                            lay.seek_ids.append(int.from_bytes(buf[x:y], "big"))
        i = k + size
    lay.trailing = end - i
    return lay


# ----------------------------------------------------------------------------------------
# ffprobe / ffmpeg
# ----------------------------------------------------------------------------------------


def run_tool(argv: Sequence[str], what: str, timeout: float = TOOL_TIMEOUT) -> subprocess.CompletedProcess:
    run = subprocess.run(list(argv), capture_output=True, timeout=timeout)
    if run.returncode != 0:
        raise AssertionError(f"{what}: {' '.join(argv)} exited with {run.returncode}: "
                             f"{run.stderr.decode(errors='replace')[-800:]}")
    return run


def decode_errors(path: Path) -> list[str]:
    """What ffmpeg's decoders say while decoding every frame of `path` (video and audio): its
    error lines from a decoder, or about a packet it could not decode. (The null muxer's
    complaints about variable frame timing are not decode errors and are left out.)"""
    run = subprocess.run(["ffmpeg", "-nostdin", "-v", "error", "-i", str(path), "-f", "null", "-"],
                         capture_output=True, timeout=TOOL_TIMEOUT)
    lines = run.stderr.decode(errors="replace").splitlines()
    return [l for l in lines if "Error while decoding" in l or re.match(r"\[(vp8|h264|libdav1d|av1|opus|libopus) @", l)]


@dataclass
class Probe:
    """ffprobe's view of a file."""

    path: Path
    format: dict
    streams: list[dict]
    errors: str  # what ffprobe said on stderr (-v error)

    def stream(self, kind: str) -> Optional[dict]:
        return next((s for s in self.streams if s.get("codec_type") == kind), None)

    @property
    def duration(self) -> Optional[float]:
        d = self.format.get("duration")
        return float(d) if d not in (None, "N/A") else None

    @property
    def tags(self) -> dict[str, str]:
        return {k.upper(): v for k, v in self.format.get("tags", {}).items()}

    def describe(self) -> str:
        parts = []
        for s in self.streams:
            if s.get("codec_type") == "video":
                parts.append(f"{s.get('codec_name')} {s.get('width')}x{s.get('height')}")
            elif s.get("codec_type") == "audio":
                parts.append(f"{s.get('codec_name')} {s.get('sample_rate')} Hz {s.get('channels')} ch")
        d = self.duration
        return (f"{self.path.name}: {self.format.get('format_name')}, {' + '.join(parts) or 'no streams'}, "
                f"duration {'none' if d is None else f'{d:.2f} s'}" + (f"; ffprobe says {self.errors.strip()[:300]!r}" if self.errors.strip() else ""))


def ffprobe(path: Path) -> Probe:
    run = run_tool(["ffprobe", "-v", "error", "-show_format", "-show_streams", "-of", "json", str(path)], f"ffprobe {path.name}")
    data = json.loads(run.stdout)
    return Probe(path, data.get("format", {}), data.get("streams", []), run.stderr.decode(errors="replace"))


def frame_times(path: Path) -> list[float]:
    """The timestamps (s) of every decoded video frame."""
    run = run_tool(["ffprobe", "-v", "error", "-select_streams", "v:0", "-show_entries", "frame=best_effort_timestamp_time",
                    "-of", "csv=p=0", str(path)], f"frames of {path.name}")
    return [float(x) for x in run.stdout.decode().split() if x.strip() not in ("", "N/A")]


def video_frames(path: Path, size: tuple[int, int], fps: float = SAMPLE_FPS, start: Optional[float] = None,
                 count: Optional[int] = None) -> list[np.ndarray]:
    """Decoded frames as (h, w, 3) RGB arrays, `fps` of them per second of the file (from
    `start`, seeking; at most `count`), scaled to `size` when the file's picture is another."""
    w, h = size
    argv = ["ffmpeg", "-nostdin", "-v", "error"] + (["-ss", f"{start:.3f}"] if start is not None else []) + ["-i", str(path), "-an"]
    argv += ["-vf", (f"fps={fps}," if fps else "") + f"scale={w}:{h}"]
    if count is not None:
        argv += ["-frames:v", str(count)]
    argv += ["-f", "rawvideo", "-pix_fmt", "rgb24", "-"]
    data = run_tool(argv, f"decoding the video of {path.name}").stdout
    n = len(data) // (w * h * 3)
    return [np.frombuffer(data, np.uint8, w * h * 3, i * w * h * 3).reshape(h, w, 3) for i in range(n)]


def audio_samples(path: Path) -> np.ndarray:
    """The audio decoded to 48 kHz mono floats (full scale 1.0)."""
    data = run_tool(["ffmpeg", "-nostdin", "-v", "error", "-i", str(path), "-vn", "-f", "s16le", "-ac", "1", "-ar", str(RATE), "-"],
                    f"decoding the audio of {path.name}").stdout
    return np.frombuffer(data, dtype="<i2").astype(np.float32) / 32768.0


def mean_colour(frame: np.ndarray) -> tuple[float, float, float]:
    h, w = frame.shape[:2]
    r, g, b = frame[h // 4:3 * h // 4, w // 4:3 * w // 4].reshape(-1, 3).mean(axis=0)
    return float(r), float(g), float(b)


def levels_of(samples: np.ndarray, tones: Sequence[float]) -> tuple[dict[float, float], float]:
    """test_mcu.tone_levels for a window of samples: each tone's level (dBFS) and the noise floor."""
    spec = mc.ToneSpectrum.of(samples, RATE)
    levels = {t: 20 * math.log10(max(spec.amplitude_near(t, TONE_TOLERANCE), 1e-6)) for t in tones}
    band = (spec.freqs >= 100) & (spec.freqs <= 2000)
    for tone in ALL_TONES:
        band &= np.abs(spec.freqs - tone) > 30
    return levels, 20 * math.log10(max(float(np.median(spec.amplitude[band])), 1e-7))


# ----------------------------------------------------------------------------------------
# The tests
# ----------------------------------------------------------------------------------------


class RecApi(tg.Api):
    """test_grpc's client with the RecordingService too."""

    def __init__(self, target: str, metadata: Sequence[tuple[str, str]] = ()) -> None:
        super().__init__(target, metadata)
        self.recordings = pb_grpc.RecordingServiceStub(self.channel)


class RecordTest(tg.GrpcTest):
    def api(self, srv: sfu.McuServer, metadata: Sequence[tuple[str, str]] = ()) -> RecApi:
        a = RecApi(srv.grpc_target, metadata)
        self._apis.append(a)
        return a

    def rec_dir(self, label: str) -> Path:
        d = REC_ROOT / f"{self._testMethodName}-{label}"
        d.mkdir(parents=True, exist_ok=True)
        return d

    def rec_server(self, label: str, *args: str, directory: Optional[Path] = None) -> tuple[sfu.McuServer, Path]:
        d = directory if directory is not None else self.rec_dir(label)
        return self.grpc_server(label, "--recording-dir", str(d), *args), d

    async def start(self, api: RecApi, room: str, tracks: bool = False, filename: str = "") -> tuple[object, float, float]:
        """StartRecording; returns the Recording and the monotonic times before and after."""
        t0 = time.monotonic()
        rec = await api.call(api.recordings.StartRecording, pb.StartRecordingRequest(room=room, tracks=tracks, filename=filename))
        t1 = time.monotonic()
        out(f"StartRecording(room={room!r}, tracks={tracks}, filename={filename!r}) in {(t1 - t0) * 1000:.0f} ms: {fmt_rec(rec)}")
        self.assertEqual(rec.room, room)
        self.assertEqual(rec.state, ACTIVE, fmt_rec(rec))
        self.assertTrue(rec.id, fmt_rec(rec))
        self.assertTrue(rec.files and rec.files[0].track_id == "", f"the composite's file first: {fmt_rec(rec)}")
        self.assertLess(abs(rec.started_unix_ms / 1000 - time.time()), 5.0, f"started_unix_ms {rec.started_unix_ms}")
        return rec, t0, t1

    async def stop(self, api: RecApi, rec_id: str, want: int = STOPPED):
        t0 = time.monotonic()
        rec = await api.call(api.recordings.StopRecording, pb.StopRecordingRequest(recording_id=rec_id))
        out(f"StopRecording in {(time.monotonic() - t0) * 1000:.0f} ms: {fmt_rec(rec)}")
        self.assertEqual(rec.state, want, fmt_rec(rec))
        return rec

    async def listed(self, api: RecApi, room: str = "") -> list:
        return list((await api.call(api.recordings.ListRecordings, pb.ListRecordingsRequest(room=room))).recordings)

    async def wait_files(self, api: RecApi, room: str, rec_id: Optional[str], n: int, what: str, timeout: float = FILES_TIMEOUT):
        """Polls ListRecordings until the recording (`rec_id`, or the room's only one) lists `n`
        files, each with bytes written."""
        deadline = time.monotonic() + timeout
        while True:
            recs = await self.listed(api, room)
            rec = next((r for r in recs if rec_id is None or r.id == rec_id), None)
            if rec is not None and len(rec.files) >= n and all(f.bytes > 0 for f in rec.files):
                out(f"{what}: {fmt_rec(rec)}")
                return rec
            if time.monotonic() > deadline:
                raise AssertionError(f"{what}: not {n} files with data within {timeout:g} s; "
                                     f"ListRecordings: {'; '.join(fmt_rec(r) for r in recs) or 'none'}")
            await asyncio.sleep(0.25)

    # -- checks of files ----------------------------------------------------------------

    def check_finished(self, f, lay: MkvLayout, what: str) -> None:
        """A cleanly finished file: Segment size, Duration, Cues after the last cluster (and in
        the SeekHead), nothing cut off, the size and duration the API reported."""
        self.assertEqual(f.state, STOPPED, f"{what}: {state_name(f.state)} {f.error}")
        self.assertEqual(f.bytes, lay.size, f"{what}: the API's bytes against the file's size")
        self.assertIsNotNone(lay.segment_size, f"{what}: the Segment's size is unknown ({lay.describe()})")
        self.assertEqual(lay.segment_data + lay.segment_size, lay.size, f"{what}: the Segment does not end at the file's end")
        self.assertIsNotNone(lay.duration_ms, f"{what}: no Duration ({lay.describe()})")
        self.assertLess(abs(lay.duration_ms - f.duration_ms), 50, f"{what}: Duration against the API's duration_ms {f.duration_ms}")
        self.assertTrue(lay.cues_after_last_cluster and lay.cue_points >= 1, f"{what}: no Cues after the last cluster ({lay.describe()})")
        self.assertIn(CUES_ID, lay.seek_ids, f"{what}: the SeekHead does not point to the Cues")
        self.assertEqual(lay.trailing, 0, f"{what}: {lay.describe()}")
        errors = decode_errors(Path(f.path))
        self.assertEqual(errors, [], f"{what}: decoding the file")

    def check_grid_frames(self, path: Path, people: Sequence[Person], what: str, start: Optional[float] = None,
                          every: bool = True) -> list[np.ndarray]:
        """Frames decoded from the composite file (SAMPLE_FPS a second, from `start`) show the
        grid of `people`: every one of them (`every`), else the last."""
        frames = video_frames(path, (WIDTH, HEIGHT), start=start)
        self.assertTrue(frames, f"{what}: no frames decoded from {path.name}")
        probes = tm.grid_probes(people)
        wrong = [i for i, f in enumerate(frames) if not look([f], probes)[0]]
        mid = frames[len(frames) // 2]
        out(f"{what}: {len(frames)} frames decoded at {SAMPLE_FPS}/s; the middle one: {describe(look([mid], probes)[1])}"
            + (f"; {len(wrong)} not the grid, first at {wrong[0] / SAMPLE_FPS:.1f} s: "
               f"{describe(look([frames[wrong[0]]], probes)[1])}" if wrong else "; every one the grid"))
        checked = frames if every else frames[-1:]
        ok, seen = look(checked, probes)
        self.assertTrue(ok, f"{what}: {describe(seen)} (frames {wrong} of {len(frames)} wrong)")
        return frames

    def check_tones(self, samples: np.ndarray, present: Sequence[float], absent: Sequence[float], what: str,
                    start: float = 1.0, last: Optional[float] = None) -> None:
        """Every whole second of `samples` from `start` (to `last` s from the end, when given
        only those) holds each `present` tone loud and far above the floor and each `absent`
        one TONE_GONE_DB below the quietest present."""
        seconds = len(samples) / RATE
        begin = start if last is None else max(start, seconds - last)
        windows = [t for t in np.arange(begin, seconds - 1.0 + 1e-9, 1.0)]
        self.assertTrue(windows, f"{what}: {seconds:.2f} s of audio, not a whole second from {begin:g} s")
        bad, worst = [], None
        for t in windows:
            levels, floor = levels_of(samples[int(t * RATE):int((t + 1) * RATE)], [*present, *absent])
            quietest = min(levels[x] for x in present)
            ok = all(levels[x] >= TONE_MIN_DBFS and levels[x] >= floor + TONE_OVER_FLOOR_DB for x in present)
            ok = ok and all(levels[x] <= quietest - TONE_GONE_DB for x in absent)
            if worst is None or quietest - floor < worst[1]:
                worst = (t, quietest - floor, levels, floor)
            if not ok:
                bad.append(f"{t:.1f}-{t + 1:.1f} s: {tm.fmt_levels(levels, floor)}")
        t, _, levels, floor = worst
        out(f"{what}: {seconds:.2f} s of audio, {len(windows)} whole seconds examined; the weakest ({t:.1f}-{t + 1:.1f} s): "
            f"{tm.fmt_levels(levels, floor)}")
        self.assertFalse(bad, f"{what}: want {list(present)} Hz present" + (f" and {list(absent)} Hz absent" if absent else "")
                         + " in every second; " + "; ".join(bad[:4]))

    def check_composite(self, f, d: Path, room: str, people: Sequence[Person], codec: str, what: str,
                        recorded: Optional[float] = None, rec_id: str = "", every: bool = True, tones_last: Optional[float] = None) -> Probe:
        """The composite's file: in `d`, the container and codecs, the tags, the duration
        against `recorded`, the grid and the tones."""
        path = Path(f.path)
        self.assertEqual(path.parent, d, f"{what}: {path} not in the recording directory")
        self.assertTrue(path.is_file(), f"{what}: {path} missing")
        probe = ffprobe(path)
        lay = mkv_layout(path)
        out(f"{what}: {probe.describe()}; {lay.describe()}")
        out(f"{what}: tags {probe.tags}")
        webm = codec == "vp8"
        self.assertEqual(path.suffix, ".webm" if webm else ".mkv", f"{what}: {path.name}")
        self.assertEqual(lay.doctype, "webm" if webm else "matroska", f"{what}: DocType")
        self.assertIn("matroska", probe.format.get("format_name", ""), probe.describe())
        v, a = probe.stream("video"), probe.stream("audio")
        self.assertTrue(v and a and len(probe.streams) == 2, f"{what}: want one video and one audio stream: {probe.describe()}")
        self.assertEqual((v["codec_name"], v["width"], v["height"]), (codec, WIDTH, HEIGHT), probe.describe())
        self.assertEqual((a["codec_name"], int(a["sample_rate"]), a["channels"]), ("opus", RATE, 1), probe.describe())
        tags = probe.tags
        self.assertEqual(tags.get("ROOM"), room, f"{what}: tags {tags}")
        for p in people:
            self.assertIn(p.name, tags.get("PARTICIPANTS", ""), f"{what}: tags {tags}")
        self.assertTrue(re.fullmatch(r"\d{8}T\d{6}Z", tags.get("DATE_RECORDED", "")) or re.match(r"\d{4}-\d\d-\d\d", tags.get("DATE_RECORDED", "")),
                        f"{what}: DATE_RECORDED in {tags}")
        if rec_id:
            self.assertEqual(tags.get("RECORDING_ID"), rec_id, f"{what}: tags {tags}")
        if recorded is not None:
            self.assertIsNotNone(probe.duration, probe.describe())
            out(f"{what}: duration {probe.duration:.2f} s for {recorded:.2f} s between StartRecording and StopRecording")
            self.assertLess(abs(probe.duration - recorded), DURATION_TOLERANCE, f"{what}: duration {probe.duration:.2f} s, recorded {recorded:.2f} s")
        times = frame_times(path)
        gaps = np.diff(times) if len(times) > 1 else np.zeros(0)
        out(f"{what}: {len(times)} video frames, {times[0] if times else 0:.2f}-{times[-1] if times else 0:.2f} s, "
            f"{len(times) / max(times[-1] - times[0], 1e-3) if len(times) > 1 else 0:.1f}/s, longest gap {gaps.max() if len(gaps) else 0:.3f} s")
        self.assertGreater(len(times), 1, what)
        self.assertLessEqual(float(gaps.max()), FRAME_GAP_LIMIT, f"{what}: a {gaps.max():.3f} s gap between frames")
        self.check_grid_frames(path, people, f"{what}: frames", every=every)
        self.check_tones(audio_samples(path), [p.tone for p in people], [], f"{what}: the room mix", last=tones_last)
        return probe

    def check_track_files(self, rec, d: Path, room: str, people: Sequence[Person], what: str,
                          finished: bool = True, recorded: Optional[float] = None) -> None:
        """One file per track of each of `people`: named for the room, the track and the
        recording; video: VP8 of the person's colour; audio: stereo Opus of their tone alone."""
        files = [f for f in rec.files if f.track_id]
        want = sorted(f"{p.name}/{k}" for p in people for k in ("video", "audio"))
        got = sorted(f.track_id.rsplit("-", 1)[0] for f in files)
        self.assertEqual(got, want, f"{what}: track files {[f.track_id for f in files]}")
        self.assertEqual(len({f.path for f in files}), len(files), f"{what}: two tracks in one file")
        by_name = {p.name: p for p in people}
        for f in files:
            p = by_name[f.track_id.split("/")[0]]
            kind = f.track_id.split("/")[1].split("-")[0]
            path = Path(f.path)
            label = f"{what}: {f.track_id}"
            self.assertEqual(path.parent, d, label)
            safe = f.track_id.replace("/", "_")
            self.assertTrue(path.name.startswith(f"{room}-") and safe in path.name and rec.id[:8] in path.name and path.suffix == ".webm",
                            f"{label}: file name {path.name}")
            probe = ffprobe(path)
            lay = mkv_layout(path)
            out(f"{label}: {probe.describe()}; {lay.describe()}")
            self.assertEqual(lay.doctype, "webm", label)
            self.assertEqual(len(probe.streams), 1, f"{label}: {probe.describe()}")
            if finished:
                self.check_finished(f, lay, label)
            if recorded is not None:
                self.assertIsNotNone(probe.duration, probe.describe())
                self.assertLess(abs(probe.duration - recorded), DURATION_TOLERANCE, f"{label}: duration {probe.duration:.2f} s, recorded {recorded:.2f} s")
            self.assertEqual(probe.tags.get("ROOM"), room, f"{label}: tags {probe.tags}")
            if kind == "video":
                v = probe.stream("video")
                self.assertEqual((v["codec_name"], v["width"], v["height"]), ("vp8", 640, 360), probe.describe())
                frames = video_frames(path, (v["width"], v["height"]))
                self.assertTrue(frames, f"{label}: no frames decoded")
                colours = [mean_colour(fr) for fr in frames]
                wrong = [i for i, c in enumerate(colours) if not tm.near(c, p.colour, tm.COLOUR_TOLERANCE)]
                out(f"{label}: {len(frames)} frames at {SAMPLE_FPS}/s, mean colour {fmt_rgb(tuple(np.mean(colours, axis=0)))} "
                    f"(want {p.colour})" + (f"; {len(wrong)} wrong: {fmt_rgb(colours[wrong[0]])}" if wrong else ""))
                self.assertFalse(wrong, f"{label}: frames {wrong} of {len(frames)} not {p.colour}: {fmt_rgb(colours[wrong[0]]) if wrong else ''}")
            else:
                a = probe.stream("audio")
                self.assertEqual((a["codec_name"], int(a["sample_rate"]), a["channels"]), ("opus", RATE, 2), probe.describe())
                others = [q.tone for q in FOUR if q is not p]
                self.check_tones(audio_samples(path), [p.tone], others, f"{label}: its tone alone", start=0.5)

    def check_killed(self, path: Path, elapsed: float, what: str) -> MkvLayout:
        """A file of a killed server: ffprobe opens it, every cluster whole, frames (or audio)
        to within KILL_LOSS of `elapsed`."""
        probe = ffprobe(path)
        lay = mkv_layout(path)
        out(f"{what}: {probe.describe()}; {lay.describe()}")
        self.assertIsNone(lay.segment_size, f"{what}: a Segment size in a file never finished? {lay.describe()}")
        self.assertGreaterEqual(lay.clusters, 1, f"{what}: no complete cluster: {lay.describe()}")
        if probe.stream("video"):
            times = frame_times(path)
            self.assertTrue(times, f"{what}: no frame decoded")
            covered = times[-1]
            gaps = np.diff(times) if len(times) > 1 else np.zeros(1)
            out(f"{what}: {len(times)} frames decoded, the last at {covered:.2f} s ({elapsed:.2f} s recorded before the kill), "
                f"longest gap {gaps.max():.3f} s")
            self.assertLessEqual(float(gaps.max()), FRAME_GAP_LIMIT, f"{what}: a {gaps.max():.3f} s gap between frames")
        else:
            samples = audio_samples(path)
            covered = len(samples) / RATE
            out(f"{what}: {covered:.2f} s of audio decoded ({elapsed:.2f} s recorded before the kill)")
        self.assertGreaterEqual(covered, elapsed - KILL_LOSS, f"{what}: plays to {covered:.2f} s of {elapsed:.2f} s recorded")
        self.assertLessEqual(covered, elapsed + 0.5, f"{what}: {covered:.2f} s of media in {elapsed:.2f} s?")
        return lay

    # -- 1 ------------------------------------------------------------------------------

    @async_test(timeout=tg.LONG_TEST)
    async def test_1_composite_and_tracks(self) -> None:
        srv, d = self.rec_server("tracks")
        api = self.api(srv)
        room = "rec"
        await self.publish_all(srv, room, FOUR)
        player = await self.composite(srv, room)
        await self.show_grid(player, FOUR, MEDIA_TIMEOUT, "the composite viewer: 2x2 grid")
        watch = self.watch_events(api, room)

        rec, t0, t1 = await self.start(api, room, tracks=True)
        started = await watch.wait_kind("recording_changed", pred=lambda ev: ev.recording_changed.recording.id == rec.id)
        out(f"event: {fmt_event(started)}")
        self.assertEqual(started.recording_changed.recording.state, ACTIVE)
        running = await self.wait_files(api, room, rec.id, 9, "ListRecordings while recording (composite + 8 tracks)")
        self.assertEqual(running.state, ACTIVE)
        self.assertTrue(all(f.state == ACTIVE for f in running.files), fmt_rec(running))
        await asyncio.sleep(max(0.0, t1 + RECORD_SECONDS - time.monotonic()))
        t2 = time.monotonic()
        stopped = await self.stop(api, rec.id)
        t3 = time.monotonic()
        recorded = (t2 + t3) / 2 - (t0 + t1) / 2
        ev = await watch.wait_kind("recording_changed", after=started.sequence,
                                   pred=lambda ev: ev.recording_changed.recording.id == rec.id and ev.recording_changed.recording.state == STOPPED)
        out(f"event: {fmt_event(ev)[:400]}")
        self.assertEqual(len(stopped.files), 9, fmt_rec(stopped))
        for f in stopped.files:
            self.assertEqual(f.state, STOPPED, fmt_rec(stopped))
        listed = await self.listed(api, room)
        self.assertEqual([(r.id, r.state) for r in listed], [(rec.id, STOPPED)], "; ".join(fmt_rec(r) for r in listed))

        comp = stopped.files[0]
        self.assertEqual(Path(comp.path).name, Path(rec.files[0].path).name)
        self.assertTrue(re.fullmatch(rf"{room}-\d{{8}}T\d{{6}}Z-{rec.id[:8]}\.webm", Path(comp.path).name), comp.path)
        probe = self.check_composite(comp, d, room, FOUR, "vp8", "composite", recorded=recorded, rec_id=rec.id)
        self.assertTrue(DURATION_RANGE[0] <= probe.duration <= DURATION_RANGE[1], f"composite: duration {probe.duration:.2f} s")
        self.check_finished(comp, mkv_layout(Path(comp.path)), "composite")
        self.check_track_files(stopped, d, room, FOUR, "track", recorded=recorded)
        self.assertEqual(sorted(p.name for p in d.iterdir()), sorted(Path(f.path).name for f in stopped.files), "files in the directory")
        self.check_alive(srv)

    # -- 2 ------------------------------------------------------------------------------

    @async_test(timeout=tg.LONG_TEST)
    async def test_2_h264_composite(self) -> None:
        srv, d = self.rec_server("h264", "--mix-codec", "h264")
        api = self.api(srv)
        room = "h264"
        await self.publish_all(srv, room, FOUR)
        player = await self.composite(srv, room)
        await self.show_grid(player, FOUR, MEDIA_TIMEOUT, "the composite viewer (H.264): 2x2 grid")
        rec, t0, t1 = await self.start(api, room, filename="grid-h264")
        self.assertEqual(Path(rec.files[0].path), d / "grid-h264.mkv", fmt_rec(rec))
        self.assertEqual(len(rec.files), 1, fmt_rec(rec))
        await asyncio.sleep(max(0.0, t1 + 5.0 - time.monotonic()))
        t2 = time.monotonic()
        stopped = await self.stop(api, rec.id)
        recorded = (t2 + time.monotonic()) / 2 - (t0 + t1) / 2
        comp = stopped.files[0]
        self.check_composite(comp, d, room, FOUR, "h264", "H.264 composite", recorded=recorded, rec_id=rec.id)
        self.check_finished(comp, mkv_layout(Path(comp.path)), "H.264 composite")
        self.check_alive(srv)

    # -- 8 ------------------------------------------------------------------------------

    @async_test(timeout=tg.LONG_TEST)
    async def test_8_own_profiles(self) -> None:
        """Recordings with encodes of their own beside the live VP8 640x360 composite."""
        srv, d = self.rec_server("profiles")
        api = self.api(srv)
        room = "profiles"
        await self.publish_all(srv, room, FOUR)
        player = await self.composite(srv, room)
        await self.show_grid(player, FOUR, MEDIA_TIMEOUT, "the live composite (VP8)")
        wants = {
            "wide": (pb.RecordingVideo(codec=pb.RECORDING_CODEC_H264, width=1280, height=720, bitrate_bps=2_000_000), "h264", (1280, 720), ".mkv"),
            "small-av1": (pb.RecordingVideo(codec=pb.RECORDING_CODEC_AV1, width=320, height=180, bitrate_bps=300_000), "av1", (320, 180), ".webm"),
        }
        t0 = time.monotonic()
        recs = {}
        for name, (video, *_rest) in wants.items():
            recs[name] = await api.call(api.recordings.StartRecording, pb.StartRecordingRequest(room=room, filename=name, video=video))
            out(f"StartRecording({name}, {video.width}x{video.height}): {fmt_rec(recs[name])}")
        t1 = time.monotonic()
        # The live viewers keep their own encode meanwhile.
        await self.show_grid(player, FOUR, MEDIA_TIMEOUT, "the live composite while recording")
        self.assertEqual(player.frame_size, (WIDTH, HEIGHT))
        await asyncio.sleep(max(0.0, t1 + RECORD_SECONDS - time.monotonic()))
        t2 = time.monotonic()
        stopped = {name: await self.stop(api, rec.id) for name, rec in recs.items()}
        recorded = (t2 + time.monotonic()) / 2 - (t0 + t1) / 2
        for name, (_, codec, size, suffix) in wants.items():
            f = stopped[name].files[0]
            path = Path(f.path)
            self.assertEqual(path, d / f"{name}{suffix}", fmt_rec(stopped[name]))
            probe = ffprobe(path)
            out(f"{name}: {probe.describe()}")
            v = probe.stream("video")
            self.assertEqual((v["codec_name"], v["width"], v["height"]), (codec, *size), probe.describe())
            self.assertLess(abs(probe.duration - recorded), DURATION_TOLERANCE, f"{name}: duration {probe.duration:.2f} s, recorded {recorded:.2f} s")
            times = frame_times(path)
            gaps = np.diff(times)
            out(f"{name}: {len(times)} frames, {len(times) / max(times[-1] - times[0], 1e-3):.1f}/s, longest gap {gaps.max():.3f} s")
            self.assertLessEqual(float(gaps.max()), FRAME_GAP_LIMIT, f"{name}: a {gaps.max():.3f} s gap")
            self.assertEqual(decode_errors(path), [], f"{name}: decoding the file")
            self.check_grid_frames(path, FOUR, f"{name}: frames")
            self.check_tones(audio_samples(path), [p.tone for p in FOUR], [], f"{name}: the room mix")
        bad = await api.error(api.recordings.StartRecording, pb.StartRecordingRequest(room=room, video=pb.RecordingVideo(width=641)))
        self.assertEqual(bad.code().name, "INVALID_ARGUMENT", bad.details())
        self.assertIn("video.width", bad.details())
        self.check_alive(srv)

    # -- 3 ------------------------------------------------------------------------------

    @async_test(timeout=tg.LONG_TEST)
    async def test_3_kill_9(self) -> None:
        srv, d = self.rec_server("kill")
        api = self.api(srv)
        room = "kill"
        await self.publish_all(srv, room, FOUR)
        player = await self.composite(srv, room)
        await self.show_grid(player, FOUR, MEDIA_TIMEOUT, "the composite viewer: 2x2 grid")
        rec, t0, t1 = await self.start(api, room, tracks=True)
        running = await self.wait_files(api, room, rec.id, 9, "recording")
        await asyncio.sleep(max(0.0, t0 + KILL_AFTER - time.monotonic()))
        tk = time.monotonic()
        srv.proc.kill()  # SIGKILL, our own server by its pid
        srv.proc.wait(10)
        elapsed = tk - t0
        out(f"SIGKILL {elapsed:.2f} s after StartRecording was sent; exit status {srv.proc.returncode}")
        self.assertEqual(srv.proc.returncode, -signal.SIGKILL)

        comp = Path(running.files[0].path)
        lay = self.check_killed(comp, elapsed, "composite (killed)")
        self.assertEqual(lay.doctype, "webm")
        probe = ffprobe(comp)
        self.assertEqual((probe.stream("video")["codec_name"], probe.stream("audio")["codec_name"]), ("vp8", "opus"), probe.describe())
        self.check_grid_frames(comp, FOUR, "composite (killed): frames")
        self.check_tones(audio_samples(comp), [p.tone for p in FOUR], [], "composite (killed): the room mix")
        for f in running.files[1:]:
            self.check_killed(Path(f.path), elapsed - (t1 - t0), f"{f.track_id} (killed)")
        self.assertEqual(sorted(p.name for p in d.iterdir()), sorted(Path(f.path).name for f in running.files), "files in the directory")

    # -- 4 ------------------------------------------------------------------------------

    @async_test(timeout=tg.LONG_TEST)
    async def test_4_sigterm_finishes(self) -> None:
        srv, d = self.rec_server("sigterm")
        api = self.api(srv)
        room = "term"
        people = (ALICE, BOB)
        await self.publish_all(srv, room, people)
        player = await self.composite(srv, room)
        await self.show_grid(player, people, MEDIA_TIMEOUT, "the composite viewer: two tiles")
        rec, t0, t1 = await self.start(api, room, tracks=True, filename="term")
        running = await self.wait_files(api, room, rec.id, 5, "recording")
        await asyncio.sleep(max(0.0, t1 + 5.0 - time.monotonic()))
        t2 = time.monotonic()
        srv.proc.send_signal(signal.SIGTERM)
        try:
            await asyncio.to_thread(srv.proc.wait, EXIT_TIMEOUT)
        except subprocess.TimeoutExpired:
            raise AssertionError(f"the server still runs {EXIT_TIMEOUT:g} s after SIGTERM\n{srv.log_tail()}") from None
        took = time.monotonic() - t2
        log = srv.log_path.read_text(errors="replace")
        finished = [line for line in log.splitlines() if "recording finished" in line]
        out(f"SIGTERM: exit status {srv.proc.returncode} after {took:.2f} s; {len(finished)} 'recording finished' lines")
        self.assertEqual(srv.proc.returncode, 0, f"exit status after SIGTERM\n{srv.log_tail()}")
        self.assertEqual(len(finished), len(running.files), "\n".join(finished))
        recorded = t2 - (t0 + t1) / 2

        comp = Path(running.files[0].path)
        self.assertEqual(comp, d / "term.webm")
        for f in running.files:
            path = Path(f.path)
            lay = mkv_layout(path)
            probe = ffprobe(path)
            label = f"{f.track_id or 'composite'} after SIGTERM"
            out(f"{label}: {probe.describe()}; {lay.describe()}")
            self.assertIsNotNone(lay.segment_size, f"{label}: Segment size unknown: {lay.describe()}")
            self.assertEqual(lay.segment_data + lay.segment_size, lay.size, f"{label}: {lay.describe()}")
            self.assertIsNotNone(lay.duration_ms, f"{label}: no Duration: {lay.describe()}")
            self.assertTrue(lay.cues_after_last_cluster and lay.cue_points >= 1, f"{label}: no Cues after the last cluster: {lay.describe()}")
            self.assertIn(CUES_ID, lay.seek_ids, f"{label}: the SeekHead does not point to the Cues")
            self.assertIsNotNone(probe.duration, probe.describe())
            self.assertLess(abs(probe.duration - lay.duration_ms / 1000), 0.1, f"{label}: ffprobe's duration against the header's")
            self.assertLess(abs(probe.duration - recorded), DURATION_TOLERANCE, f"{label}: duration {probe.duration:.2f} s, recorded {recorded:.2f} s")
        # Cues let a player seek: ffmpeg -ss 3 gives the grid at once.
        t = time.monotonic()
        frames = video_frames(comp, (WIDTH, HEIGHT), fps=0, start=3.0, count=1)
        took = time.monotonic() - t
        ok, seen = look(frames, tm.grid_probes(people))
        out(f"ffmpeg -ss 3: {len(frames)} frame in {took:.2f} s: {describe(seen)}")
        self.assertTrue(frames and ok, f"the frame at 3 s: {describe(seen)}")
        self.assertLess(took, SEEK_LIMIT)
        self.check_grid_frames(comp, people, "composite after SIGTERM: frames")
        self.check_tones(audio_samples(comp), [p.tone for p in people], [], "composite after SIGTERM: the room mix")

    # -- 5 ------------------------------------------------------------------------------

    @async_test(timeout=tg.LONG_TEST)
    async def test_5_full_disk(self) -> None:
        srv, d = self.rec_server("full")
        (d / "full.webm").symlink_to("/dev/full")
        api = self.api(srv)
        room = "full"
        people = (ALICE, BOB)
        await self.publish_all(srv, room, people)
        player = await self.composite(srv, room)
        await self.show_grid(player, people, MEDIA_TIMEOUT, "the composite viewer: two tiles")
        watch = self.watch_events(api, room)
        healthy, h0, h1 = await self.start(api, room, filename="healthy")
        await self.wait_files(api, room, healthy.id, 1, "the healthy recording")
        full, _, _ = await self.start(api, room, filename="full")
        self.assertEqual(Path(full.files[0].path), d / "full.webm")
        t_full = time.monotonic()
        is_full = lambda ev: ev.recording_changed.recording.id == full.id  # noqa: E731
        ev_active = await watch.wait_kind("recording_changed", pred=lambda ev: is_full(ev) and ev.recording_changed.recording.state == ACTIVE)
        ev_failed = await watch.wait_kind("recording_changed", pred=lambda ev: is_full(ev) and ev.recording_changed.recording.files[0].state == FAILED)
        out(f"events: {fmt_event(ev_active)}; then {fmt_event(ev_failed)} ({time.monotonic() - t_full:.2f} s after StartRecording)")
        self.assertLess(ev_active.sequence, ev_failed.sequence)
        failed = ev_failed.recording_changed.recording
        self.assertEqual(failed.state, FAILED, fmt_rec(failed))
        self.assertIn("No space left", failed.files[0].error, fmt_rec(failed))
        for ev in watch.events:  # nothing said the healthy one failed
            if ev.WhichOneof("event") == "recording_changed" and ev.recording_changed.recording.id == healthy.id:
                self.assertNotEqual(ev.recording_changed.recording.state, FAILED, fmt_event(ev))
        listed = {r.id: r for r in await self.listed(api, room)}
        out("ListRecordings: " + "; ".join(fmt_rec(r) for r in listed.values()))
        self.assertEqual(listed[full.id].state, FAILED, fmt_rec(listed[full.id]))
        self.assertIn("No space left", listed[full.id].files[0].error)
        self.assertEqual(listed[healthy.id].state, ACTIVE, fmt_rec(listed[healthy.id]))
        log_lines = [line for line in srv.log_path.read_text(errors="replace").splitlines() if "recording failed" in line]
        out(f"server log: {log_lines[-1].strip() if log_lines else '(no recording failed line)'}")

        # The rest goes on: the viewer, the healthy recording.
        await self.show_grid(player, people, tm.REFLOW_LIMIT, "the composite viewer after the failure")
        await asyncio.sleep(max(0.0, t_full + 4.0 - time.monotonic()))
        grown = (await self.wait_files(api, room, healthy.id, 1, "the healthy recording")).files[0].bytes
        stopped = await self.stop(api, healthy.id)
        recorded = time.monotonic() - (h0 + h1) / 2
        self.assertGreaterEqual(stopped.files[0].bytes, grown)
        again = await self.stop(api, full.id, want=FAILED)
        self.assertEqual(again.files[0].state, FAILED, fmt_rec(again))
        self.check_composite(stopped.files[0], d, room, people, "vp8", "the healthy recording", recorded=recorded, rec_id=healthy.id)
        self.check_finished(stopped.files[0], mkv_layout(Path(stopped.files[0].path)), "the healthy recording")
        # A new recording after the failure works too.
        after, a0, a1 = await self.start(api, room, filename="after")
        await asyncio.sleep(3.0)
        after_stopped = await self.stop(api, after.id)
        self.check_composite(after_stopped.files[0], d, room, people, "vp8", "a recording after the failure",
                             recorded=time.monotonic() - (a0 + a1) / 2, rec_id=after.id)
        self.check_alive(srv)

    # -- 6 ------------------------------------------------------------------------------

    @async_test(timeout=tg.LONG_TEST)
    async def test_6_unwritable_dir(self) -> None:
        bad = "/proc/mcu-nope/rec"
        srv, _ = self.rec_server("nope", directory=Path(bad))
        api = self.api(srv)
        room = "nope"
        await self.publish_person(srv, room, ALICE)
        e = await self.expect_code(api, Code.FAILED_PRECONDITION, api.recordings.StartRecording,
                                   pb.StartRecordingRequest(room=room, tracks=True), f"StartRecording into {bad}")
        self.assertIn(bad, e.details())
        self.assertEqual(await self.listed(api, room), [])
        got = await api.call(api.rooms.GetRoom, pb.GetRoomRequest(room=room))
        out(f"GetRoom afterwards: {fmt_msg(got)[:200]}")
        own = await self.play(srv, f"/whep/{room}/{ALICE.name}")
        await self.watch(own, video_frames=10, audio_seconds=1.0)
        out(f"WHEP of alice afterwards: {fmt_rgb(own.mean_colour())}")
        self.assertTrue(tm.near(own.mean_colour(), ALICE.colour, tm.COLOUR_TOLERANCE), fmt_rgb(own.mean_colour()))
        viewer = await self.composite(srv, room)
        await self.show_grid(viewer, [ALICE], MEDIA_TIMEOUT, "the composite afterwards")

        # Bad names and ids.
        for name in ("../escape", "a/b", ".hidden", "a\\b"):
            await self.expect_code(api, Code.INVALID_ARGUMENT, api.recordings.StartRecording,
                                   pb.StartRecordingRequest(room=room, filename=name), f"filename {name!r}")
        await self.expect_code(api, Code.NOT_FOUND, api.recordings.StopRecording, pb.StopRecordingRequest(recording_id="0123456789abcdef"),
                               "StopRecording of no recording")
        self.check_alive(srv)

        # A directory under a regular file, with automatic recording of every room: the
        # recording is skipped, the room works.
        plain = self.rec_dir("plain") / "a-file"
        plain.write_text("not a directory\n")
        srv2, _ = self.rec_server("notdir", "--auto-record", "*", directory=plain / "rec")
        api2 = self.api(srv2)
        await self.publish_person(srv2, "auto", BOB)
        viewer2 = await self.composite(srv2, "auto")
        await self.show_grid(viewer2, [BOB], MEDIA_TIMEOUT, "auto-recorded room with an unwritable directory: the composite")
        self.assertEqual(await self.listed(api2, ""), [])
        e = await self.expect_code(api2, Code.FAILED_PRECONDITION, api2.recordings.StartRecording,
                                   pb.StartRecordingRequest(room="auto"), "StartRecording into a directory under a file")
        self.assertIn(str(plain / "rec"), e.details())
        skipped = [line for line in srv2.log_path.read_text(errors="replace").splitlines() if "automatic recording not started" in line]
        out(f"server log: {skipped[-1].strip() if skipped else '(no line)'}")
        self.assertTrue(skipped, "no 'automatic recording not started' in the log")
        self.check_alive(srv2)

        # Read-only directory (not for root, who writes anyway).
        if os.geteuid() != 0:
            ro = self.rec_dir("readonly")
            ro.chmod(0o555)
            try:
                srv3, _ = self.rec_server("readonly", directory=ro)
                api3 = self.api(srv3)
                await self.publish_person(srv3, "ro", CAROL)
                await self.expect_code(api3, Code.FAILED_PRECONDITION, api3.recordings.StartRecording,
                                       pb.StartRecordingRequest(room="ro"), "StartRecording into a read-only directory")
                self.check_alive(srv3)
            finally:
                ro.chmod(0o755)
        else:
            out("read-only directory: skipped (root writes anyway)")

    # -- 7 ------------------------------------------------------------------------------

    @async_test(timeout=tg.LONG_TEST)
    async def test_7_auto_record(self) -> None:
        room = "autoroom"
        # Automatic recordings with an encode of their own (the live composite stays VP8 640x360).
        srv, d = self.rec_server("auto", "--auto-record", f"{room},another", "--record-codec", "h264", "--record-size", "1280x720")
        api = self.api(srv)
        watch = self.watch_events(api, "")
        t0 = time.monotonic()
        await self.publish_all(srv, room, FOUR)
        await self.publish(srv, "other", colour=DAVE.colour, tone_hz=DAVE.tone, name="olga")
        rec = await self.wait_files(api, room, None, 9, "the automatic recording (composite + 8 tracks)", timeout=FILES_TIMEOUT + 10)
        out(f"9 files {time.monotonic() - t0:.2f} s after the first publisher's POST")
        self.assertEqual(rec.state, ACTIVE)
        recs = await self.listed(api, "")
        self.assertEqual([r.room for r in recs], [room], "; ".join(fmt_rec(r) for r in recs))
        ev = await watch.wait_kind("recording_changed", pred=lambda ev: ev.recording_changed.recording.id == rec.id)
        out(f"event: {fmt_event(ev)}")
        self.assertEqual((ev.room, ev.recording_changed.recording.state), (room, ACTIVE))
        self.assertEqual(await self.listed(api, "other"), [])
        await asyncio.sleep(5.0)
        stopped = await self.stop(api, rec.id)
        for f in stopped.files:
            self.assertEqual(f.state, STOPPED, fmt_rec(stopped))
        comp = stopped.files[0]
        self.assertTrue(re.fullmatch(rf"{room}-\d{{8}}T\d{{6}}Z-{rec.id[:8]}\.mkv", Path(comp.path).name), comp.path)
        # The composite began with the first publisher alone: the grid of four at its end.
        probe = ffprobe(Path(comp.path))
        out(f"automatic composite: {probe.describe()}; tags {probe.tags}")
        v = probe.stream("video")
        self.assertEqual((v["codec_name"], v["width"], v["height"], probe.stream("audio")["codec_name"]), ("h264", 1280, 720, "opus"))
        self.assertEqual(probe.tags.get("ROOM"), room)
        self.assertEqual(probe.tags.get("RECORDING_ID"), rec.id)
        # It started when alice joined; the finished file names everyone who took part.
        named = [n.strip() for n in probe.tags.get("PARTICIPANTS", "").split(",")]
        self.assertEqual(sorted(named), sorted(p.name for p in FOUR), f"PARTICIPANTS in {probe.tags}")
        self.check_finished(comp, mkv_layout(Path(comp.path)), "automatic composite")
        frames = video_frames(Path(comp.path), (WIDTH, HEIGHT), start=max(0.0, probe.duration - 1.5))
        ok, seen = look(frames[-2:], tm.grid_probes(FOUR))
        out(f"automatic composite, its last second: {describe(seen)}")
        self.assertTrue(ok, f"automatic composite at its end: {describe(seen)}")
        self.check_tones(audio_samples(Path(comp.path)), [p.tone for p in FOUR], [], "automatic composite: the room mix", last=3.0)
        self.check_track_files(stopped, d, room, FOUR, "automatic track")
        self.check_alive(srv)


ORDER = [
    (RecordTest, ["test_1_composite_and_tracks", "test_2_h264_composite", "test_3_kill_9", "test_4_sigterm_finishes",
                  "test_5_full_disk", "test_6_unwritable_dir", "test_7_auto_record", "test_8_own_profiles"]),
]


def main(argv: list[str]) -> int:
    for tool in ("ffprobe", "ffmpeg"):
        if shutil.which(tool) is None:
            print(f"{tool} is missing (apt-get install ffmpeg)", flush=True)
            return 1
    print(f"recordings: {REC_ROOT} (removed if every test passes)", flush=True)
    code = sfu.run_suite(ORDER, "e2e record", argv)
    if code == 0:
        shutil.rmtree(REC_ROOT, ignore_errors=True)
    return code


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
