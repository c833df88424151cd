#!/usr/bin/env python3
"""End-to-end tests of `mcu serve` as an MCU: the room composite at `POST /whep/{room}`.

Publishers send solid colours and sine tones over WHIP (aiortc, as in test_sfu.py); a WHEP
player of `/whep/{room}` receives the composite: one VP8 canvas with every publisher's picture
in a grid sorted by name (columns ceil(sqrt(n)), reading order, the last row centred, no gap,
background RGB(16,16,24)), and the room's audio mix (Opus). The tests sample the centre half
of each cell of that grid (±35 per channel) and look for each publisher's tone in the mix.

Each test starts its own server (`target/debug/mcu`, or $MCU_BIN) on 127.0.0.1 port 0 with a
640x360 30 fps canvas (to spare a small CPU) and `--ice-failed-timeout-secs 3`, and stops it
afterwards, also when the test fails (the server processes, the base test case and the output
helpers are test_sfu.py's).

    1 grid_of_four        alice red 440 Hz, bob green 550, carol blue 660, dave yellow 770:
                          a 640x360 2x2 grid with each colour in its cell; all four tones in
                          the mix, each far above the noise floor (levels printed)
    1c publishers_with_the_same_ssrcs
                          the four of 1 all send with SSRCs 1111/2222/3333 (fixed-SSRC
                          encoders): the same grid and tones, and alice's and dave's forwarded
                          tracks each show their own colour
    2 fifth_publisher_reflows
                          erin (magenta, 930 Hz) joins: the grid becomes 3 columns (alice bob
                          carol / dave erin, centred, background beside them); erin's tone
    3 delete_reflows      of five, bob leaves with DELETE: 2x2 again (alice carol / dave erin),
                          frames keep coming throughout, bob's tone leaves the mix
    4 killed_publisher    carol is a CLI process SIGKILLed: frames keep coming and alice and bob
                          keep their colours through the outage, carol's cell shows the
                          placeholder within a few seconds, then (ICE failure) the grid reflows
                          without her and her tone is gone (times printed)
    5 late_viewer         a second viewer joins a running composite: time from its POST to its
                          first decoded frame printed (target 500 ms on loopback; not asserted),
                          both viewers see the same grid
    6 empty_room          a viewer of a room nobody publishes in: 201 and a canvas of the
                          background colour; then alice publishes and fills the canvas
    7 garbage_video       mallory's video track sends random bytes as VP8 (fake keyframes and
                          inter frames, correctly packetized): the composite keeps running,
                          alice's and bob's cells keep their colours, mallory's tone is mixed
    9 lossy_publisher     the four of 1, bob through 10 % random loss (seeded; everything his
                          connection sends: RTP, RTX, RTCP): for 6 s every composite frame is
                          sampled: close to 30 fps, no stall, the other cells always right,
                          bob's cell right in at least 90 % of frames (NACK/RTX, PLI); bob's
                          tone in the mix (loss applied, share, RTX and levels printed)

   10 remb_holds_the_shared_encode_down
                          alice sends random 32x32 blocks, new every frame, bob a colour; two viewers
                          of the composite (--mix-video-bitrate 1.2 Mbit/s): the first receives
                          well over half of it; while the second sends REMB 300 kbit/s the
                          first receives under half its earlier rate and under 480 kbit/s (one
                          encode for both follows the lowest estimate); 8 s after the REMB
                          stops (estimates expire after 5 s), over 70 % of the earlier rate
                          again (measured: 1246, 332 and 1194 kbit/s)

   11 loss_reports_hold_the_shared_encode_down
                          the same room; the second viewer loses every fourth video packet
                          (retransmissions too; no PLIs) and reports it in its receiver reports:
                          after 8 s the first receives under 60 % of its earlier rate (GCC's
                          loss-based rule; measured 1246 -> 340 kbit/s). The climb back (+8 %
                          a report) is not asserted: the target climbs, but libvpx, having
                          overshot a low target at its highest quantizer, follows it slowly
                          (343-866 kbit/s 14 s after the loss ended, across runs)

Tones: 440/550/660/770/930 Hz, no one an integer multiple of another (erin is not at 880 Hz,
the second harmonic of alice's 440).

Run: scripts/e2e-setup.sh && target/e2e-venv/bin/python tests/e2e/test_mcu.py [-v] [name...]
(`name` selects tests whose name contains it; MCU_E2E_SERVER_LOG sets the servers' log
filter). Prints measured colours, tone levels and times, keeps the server logs of a failed run
(the directory is printed), closes with "e2e mcu: N passed, M failed" and exits non-zero on any
failure.
"""

from __future__ import annotations

import asyncio
import collections
import fractions
import json
import logging
import math
import os
import random
import shutil
import signal
import subprocess
import sys
import time
import unittest
from dataclasses import dataclass
from pathlib import Path
from typing import Optional, Sequence

import av
import numpy as np
from aiortc.mediastreams import MediaStreamError, MediaStreamTrack
from aiortc.rtp import is_rtcp

sys.path.insert(0, str(Path(__file__).resolve().parent))
import mcuclient as mc  # noqa: E402
import test_sfu as sfu  # noqa: E402  (server processes, E2ETest, output helpers)
from test_sfu import CONNECT_TIMEOUT, E2ETest, async_test, fmt_rgb, out  # noqa: E402

WIDTH, HEIGHT, FPS = 640, 360, 30
ICE_FAILED_TIMEOUT = 3  # s, after the 5 s without traffic that make a connection "disconnected"
SERVER_ARGS = ("--mix-width", str(WIDTH), "--mix-height", str(HEIGHT), "--mix-fps", str(FPS),
               "--ice-failed-timeout-secs", str(ICE_FAILED_TIMEOUT))

BACKGROUND = (16, 16, 24)  # the canvas behind the grid (the room layout's grid, compositor crate)
PLACEHOLDER = (48, 48, 56)  # a tile without video (compositor TileStyle::default)
COLOUR_TOLERANCE = 35  # per channel, cells
BACKGROUND_TOLERANCE = 20  # per channel, background
TONE_TOLERANCE = 5.0  # Hz
TONE_MIN_DBFS = -30.0  # a publisher's tone in the mix is at least this loud...
TONE_OVER_FLOOR_DB = 30.0  # ...and this far above the noise floor
TONE_GONE_DB = 30.0  # a departed publisher's tone is this far below the others'
MEDIA_TIMEOUT = 25.0  # s, first picture (connect, keyframe) on a loaded machine
REFLOW_LIMIT = 10.0  # s, for the grid to show a publisher who joined or left
PLACEHOLDER_LIMIT = 6.0  # s after SIGKILL (the server waits 2 s without frames)
REMOVAL_LIMIT = 5 + ICE_FAILED_TIMEOUT + 12.0  # s after SIGKILL (disconnected 5 s, failed 3 s more)
STALL_LIMIT = 2.0  # s, the longest the composite may go without a new frame
LATE_JOIN_TARGET_MS = 500  # the target for a late viewer's first picture (reported only)
LOSS_RATE = 0.10  # of everything the lossy publisher sends (RTP, RTX, RTCP)
LOSS_SEED = 11  # its first 400-4000 draws drop 9.5-10.5 %
LOSS_SHARE_RANGE = (0.07, 0.13)  # the share the link really dropped (binomial, >1000 packets)
LOSSY_SECONDS = 6.0  # s, how long every composite frame is sampled
LOSSY_BOB_SHARE = 0.90  # of those frames at least show bob's colour in his cell (100 % measured)
LOSSY_MIN_RATE = 0.80  # of FPS, the composite's frame rate meanwhile

Colour = tuple[int, int, int]


@dataclass(frozen=True)
class Person:
    name: str
    colour: Colour
    tone: float


ALICE = Person("alice", (255, 0, 0), 440.0)
BOB = Person("bob", (0, 255, 0), 550.0)
CAROL = Person("carol", (0, 0, 255), 660.0)
DAVE = Person("dave", (255, 255, 0), 770.0)
ERIN = Person("erin", (255, 0, 255), 930.0)
FOUR = (ALICE, BOB, CAROL, DAVE)
MALLORY_TONE = 1230.0  # the garbage video publisher's (valid) audio
ALL_TONES = (*(p.tone for p in (ALICE, BOB, CAROL, DAVE, ERIN)), MALLORY_TONE)

# ----------------------------------------------------------------------------------------
# The grid and what to look for in it
# ----------------------------------------------------------------------------------------

Rect = tuple[float, float, float, float]  # x0, y0, x1, y1 in canvas pixels


def grid_cells(n: int, width: int = WIDTH, height: int = HEIGHT) -> list[Rect]:
    """The cells of n tiles as the server lays them out: ceil(sqrt(n)) columns, as many rows as
    needed, reading order, the last row centred when not full, no gap."""
    if n == 0:
        return []
    cols = math.ceil(math.sqrt(n))
    rows = math.ceil(n / cols)
    cw, ch = width / cols, height / rows
    cells = []
    for i in range(n):
        r, c = divmod(i, cols)
        shift = (cols - min(n - r * cols, cols)) * cw / 2
        x, y = c * cw + shift, r * ch
        cells.append((x, y, x + cw, y + ch))
    return cells


def grid_gaps(n: int, width: int = WIDTH, height: int = HEIGHT) -> list[Rect]:
    """The background left and right of a last row that is not full."""
    if n == 0:
        return [(0, 0, width, height)]
    cells = grid_cells(n, width, height)
    last = cells[-1]
    first_of_row = next(c for c in cells if c[1] == last[1])
    if first_of_row[0] <= 0.5:
        return []
    return [(0, last[1], first_of_row[0], last[3]), (last[2], last[1], width, last[3])]


@dataclass(frozen=True)
class Probe:
    """What the centre half of `rect` should show: `colour` ±`tolerance` per channel; with
    `not_colour`, also at least `tolerance` away from that colour in some channel."""

    label: str
    rect: Rect
    colour: Optional[Colour]
    tolerance: int = COLOUR_TOLERANCE
    not_colour: Optional[Colour] = None


def grid_probes(people: Sequence[Person], background: bool = True) -> list[Probe]:
    """Each person's colour in their cell (sorted by name) and the background in the gaps."""
    ordered = sorted(people, key=lambda p: p.name)
    probes = [Probe(p.name, cell, p.colour) for p, cell in zip(ordered, grid_cells(len(ordered)))]
    if background:
        probes += [Probe(f"gap{i}", gap, BACKGROUND, BACKGROUND_TOLERANCE) for i, gap in enumerate(grid_gaps(len(ordered)))]
    return probes


def centre_half(rect: Rect) -> tuple[int, int, int, int]:
    x0, y0, x1, y1 = rect
    w, h = x1 - x0, y1 - y0
    return int(round(x0 + w / 4)), int(round(y0 + h / 4)), int(round(x1 - w / 4)), int(round(y1 - h / 4))


def region_mean(frame: np.ndarray, rect: Rect) -> tuple[float, float, float]:
    x0, y0, x1, y1 = centre_half(rect)
    r, g, b = frame[y0:y1, x0:x1].reshape(-1, 3).mean(axis=0)
    return float(r), float(g), float(b)


def near(rgb, colour, tolerance: float) -> bool:
    return max(abs(a - b) for a, b in zip(rgb, colour)) <= tolerance


def probe_ok(probe: Probe, rgb) -> bool:
    if probe.colour is not None and not near(rgb, probe.colour, probe.tolerance):
        return False
    return probe.not_colour is None or not near(rgb, probe.not_colour, probe.tolerance)


def look(frames: Sequence[np.ndarray], probes: Sequence[Probe]) -> tuple[bool, list[tuple[Probe, tuple[float, float, float]]]]:
    """Whether every probe holds in every frame, and each probe's mean colour over them."""
    sized = bool(frames) and all(f.shape[:2] == (HEIGHT, WIDTH) for f in frames)
    ok, seen = sized, []
    for p in probes:
        colours = [region_mean(f, p.rect) for f in frames] if sized else []
        ok = ok and all(probe_ok(p, c) for c in colours)
        seen.append((p, tuple(float(v) for v in np.mean(colours, axis=0)) if colours else None))
    return ok, seen


def describe(seen) -> str:
    return ", ".join(f"{p.label} {fmt_rgb(c)}" + ("" if c is None or probe_ok(p, c) else f" (want {p.colour or 'not ' + str(p.not_colour)})")
                     for p, c in seen)


def recent_frames(player: mc.Player, n: int) -> list[np.ndarray]:
    return list(player.media.video_frames)[-n:]


async def wait_grid(player: mc.Player, probes: Sequence[Probe], timeout: float, what: str, frames: int = 3) -> float:
    """Waits until the last `frames` frames all match `probes`; returns the seconds it took.
    Fails after `timeout` s saying what each probe saw."""
    loop = asyncio.get_running_loop()
    start = loop.time()
    while True:
        recent = recent_frames(player, frames)
        ok, seen = look(recent, probes) if len(recent) == frames else (False, [])
        if ok:
            return loop.time() - start
        if loop.time() - start > timeout:
            size = player.frame_size
            raise AssertionError(f"{what}: not within {timeout:g} s; {player.video_frame_count} frames {size}; "
                                 f"the last {frames} show {describe(seen) if seen else 'nothing'}")
        await asyncio.sleep(0.05)


class FrameProgress:
    """Samples a player's frame count every 50 ms in the background: how many frames arrived
    and the longest stretch without a new one (to within the 50 ms)."""

    def __init__(self, player: mc.Player) -> None:
        self.player = player
        self.start_count = player.video_frame_count
        self.start = time.monotonic()
        self._last_change = self.start
        self._last_count = self.start_count
        self.longest_stall = 0.0
        self._task = asyncio.ensure_future(self._run())

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(0.05)
            self._sample()

    def _sample(self) -> None:
        now, count = time.monotonic(), self.player.video_frame_count
        if count != self._last_count:
            self._last_count, self._last_change = count, now
        self.longest_stall = max(self.longest_stall, now - self._last_change)

    @property
    def frames(self) -> int:
        return self.player.video_frame_count - self.start_count

    def stop(self) -> str:
        self._sample()
        self._task.cancel()
        elapsed = time.monotonic() - self.start
        return f"{self.frames} frames in {elapsed:.1f} s ({self.frames / max(elapsed, 1e-6):.1f}/s), longest gap {self.longest_stall * 1000:.0f} ms"


# ----------------------------------------------------------------------------------------
# Tones in the mix
# ----------------------------------------------------------------------------------------


def tone_levels(player: mc.Player, tones: Sequence[float], seconds: float = 1.0) -> tuple[dict[float, float], float]:
    """The level (dBFS) of each of `tones` in the last `seconds` of the player's audio, and the
    noise floor: the median level of the 1 Hz bins from 100 Hz to 2 kHz, away (±30 Hz) from
    every publisher's tone."""
    spec = player.media.spectrum(seconds)
    if spec is None:
        return {t: -120.0 for t in tones}, -120.0
    levels = {t: 20 * math.log10(max(spec.amplitude_near(t, TONE_TOLERANCE), 1e-6)) for t in tones}
    band = (spec.freqs >= 100) & (spec.freqs <= 2000)
    for tone in ALL_TONES:
        band &= np.abs(spec.freqs - tone) > 30
    floor = 20 * math.log10(max(float(np.median(spec.amplitude[band])), 1e-7))
    return levels, floor


def fmt_levels(levels: dict[float, float], floor: float) -> str:
    return ", ".join(f"{t:g} Hz {db:.1f}" for t, db in levels.items()) + f" dBFS; floor {floor:.1f} dBFS"


async def wait_tones(player: mc.Player, present: Sequence[float], absent: Sequence[float] = (), timeout: float = 15.0,
                     what: str = "the mix") -> tuple[dict[float, float], float]:
    """Waits until the last second of audio has every `present` tone loud (TONE_MIN_DBFS) and
    far above the floor, and every `absent` tone TONE_GONE_DB below the quietest present one,
    and still has a second later (so the levels returned are of a whole second after the
    change). Returns the levels and the floor; fails after `timeout` s with them."""
    loop = asyncio.get_running_loop()
    start = loop.time()
    held_since: Optional[float] = None
    while True:
        levels, floor = tone_levels(player, [*present, *absent])
        quietest = min((levels[t] for t in present), default=0.0)
        ok = player.media.audio_seconds >= 1.0
        ok = ok and all(levels[t] >= TONE_MIN_DBFS and levels[t] >= floor + TONE_OVER_FLOOR_DB for t in present)
        ok = ok and all(levels[t] <= quietest - TONE_GONE_DB for t in absent)
        if not ok:
            held_since = None
        elif held_since is None:
            held_since = loop.time()
        elif loop.time() - held_since >= 1.0:
            return levels, floor
        if loop.time() - start > timeout:
            raise AssertionError(f"{what}: want {list(present)} Hz present"
                                 + (f" and {list(absent)} Hz gone" if absent else "")
                                 + f" within {timeout:g} s; now {fmt_levels(levels, floor)}; "
                                 f"{player.media.audio_seconds:.2f} s of audio buffered")
        await asyncio.sleep(0.25)


# ----------------------------------------------------------------------------------------
# A publisher of garbage video
# ----------------------------------------------------------------------------------------


class GarbageVideoTrack(MediaStreamTrack):
    """A video track whose "frames" are random bytes handed to aiortc already encoded
    (av.Packet: the sender packetizes them as VP8 with valid payload descriptors, without
    encoding), 30 per second. In turn: a fake keyframe (frame tag, start code, `size`, then
    random partitions), a fake inter frame (tag with the inter bit, random rest), and bytes
    that are random from the first."""

    kind = "video"

    def __init__(self, seed: int = 7, size: tuple[int, int] = (640, 360)) -> None:
        super().__init__()
        self._size = size
        self._rng = np.random.default_rng(seed)
        self._start: Optional[float] = None
        self.frames_sent = 0

    async def recv(self) -> av.Packet:
        if self.readyState != "live":
            raise MediaStreamError
        if self._start is None:
            self._start = time.time()
        else:
            await asyncio.sleep(self._start + self.frames_sent / FPS - time.time())
        size = int(self._rng.integers(100, 4000))
        data = bytearray(self._rng.integers(0, 256, size, dtype=np.uint8).tobytes())
        kind = self.frames_sent % 3
        if kind == 0:  # keyframe: show_frame, first partition size, start code, size
            tag = (1 << 4) | (int(self._rng.integers(10, size)) << 5)
            data[0:10] = bytes([tag & 0xFF, (tag >> 8) & 0xFF, (tag >> 16) & 0xFF, 0x9D, 0x01, 0x2A]) \
                + self._size[0].to_bytes(2, "little") + self._size[1].to_bytes(2, "little")
        elif kind == 1:  # inter frame
            data[0] |= 0x01
        packet = av.Packet(bytes(data))
        packet.pts = self.frames_sent * 3000
        packet.time_base = fractions.Fraction(1, 90000)
        self.frames_sent += 1
        return packet


# ----------------------------------------------------------------------------------------
# A lossy link for one peer connection
# ----------------------------------------------------------------------------------------


def rtp_payload_offset(rtp: bytes) -> int:
    """Where an (unencrypted) RTP packet's payload starts: after the CSRCs and the header
    extension."""
    off = 12 + 4 * (rtp[0] & 0x0F)
    if rtp[0] & 0x10 and len(rtp) >= off + 4:
        off += 4 + 4 * int.from_bytes(rtp[off + 2:off + 4], "big")
    return off


def vp8_keyframe_start(rtp: bytes) -> bool:
    """Whether an (unencrypted) RTP packet carrying VP8 starts a keyframe: S=1, PID 0 and the
    P bit of the frame tag clear (RFC 7741 §4.2-4.3)."""
    off = rtp_payload_offset(rtp) if len(rtp) >= 12 else len(rtp)
    if off >= len(rtp):
        return False
    d = rtp[off]
    off += 1
    if not d & 0x10 or d & 0x07:
        return False
    if d & 0x80 and off < len(rtp):  # X: I L T K
        x = rtp[off]
        off += 1
        if x & 0x80 and off < len(rtp):
            off += 2 if rtp[off] & 0x80 else 1
        if x & 0x40:
            off += 1
        if x & 0x30:
            off += 1
    return off < len(rtp) and rtp[off] & 0x01 == 0


class LossyLink:
    """Drops a seeded random `rate` of everything one aiortc peer connection sends over its
    DTLS transport(s) (RTP of every kind, RTX retransmissions and RTCP alike): wraps the
    instance's `_send_rtp`, where the senders hand over packets before SRTP protection, so
    nothing else in the process is affected. Install it right after the answer is applied
    (aiortc bundles the transports then, and connects only on the next turn of the loop).
    Counts what was sent and dropped by kind ("video", "rtx", "audio", "rtcp"), the VP8
    keyframes (their first packet), and which video packets were lost and which of them the
    receiver's NACKs got retransmitted (RTX, RFC 4588: the original sequence number first)."""

    def __init__(self, pc, rate: float, seed: int) -> None:
        self.rate = rate
        self._rng = random.Random(seed)
        self.sent: collections.Counter[str] = collections.Counter()  # offered to the link
        self.dropped: collections.Counter[str] = collections.Counter()
        self.keyframes = [0, 0]  # sent, dropped
        self.lost_video: set[int] = set()  # sequence numbers of dropped video packets
        self.rtx_for: collections.Counter[int] = collections.Counter()  # original seq -> RTX packets
        self.repaired: set[int] = set()  # original seqs of RTX packets that got through
        self._kinds: dict[int, str] = {}
        for t in pc.getTransceivers():
            self._kinds[t.sender._ssrc] = t.kind
            self._kinds[t.sender._rtx_ssrc] = "rtx"
        transports = {id(t.sender.transport): t.sender.transport for t in pc.getTransceivers()}
        for transport in transports.values():
            transport._send_rtp = self._wrap(transport._send_rtp)

    def _wrap(self, send):
        async def lossy_send_rtp(data: bytes) -> None:
            if is_rtcp(data):
                kind = "rtcp"
            else:
                kind = self._kinds.get(int.from_bytes(data[8:12], "big"), "other")
            keyframe = kind == "video" and vp8_keyframe_start(data)
            seq = int.from_bytes(data[2:4], "big")
            if kind == "rtx":
                off = rtp_payload_offset(data)
                seq = int.from_bytes(data[off:off + 2], "big")
                self.rtx_for[seq] += 1
            self.sent[kind] += 1
            self.keyframes[0] += keyframe
            if self._rng.random() < self.rate:
                self.dropped[kind] += 1
                self.keyframes[1] += keyframe
                if kind == "video":
                    self.lost_video.add(seq)
                return
            if kind == "rtx":
                self.repaired.add(seq)
            await send(data)
        return lossy_send_rtp

    def share(self, kinds: Optional[Sequence[str]] = None) -> tuple[int, int, float]:
        """Packets offered and dropped (of `kinds`, all by default) and the share dropped."""
        kinds = list(self.sent) if kinds is None else kinds
        sent = sum(self.sent[k] for k in kinds)
        dropped = sum(self.dropped[k] for k in kinds)
        return sent, dropped, dropped / max(sent, 1)

    def describe(self) -> str:
        sent, dropped, share = self.share()
        parts = ", ".join(f"{k} {self.dropped[k]}/{self.sent[k]}" for k in sorted(self.sent))
        spurious = len(set(self.rtx_for) - self.lost_video)
        most = max(self.rtx_for.values(), default=0)
        return (f"dropped {dropped} of {sent} packets ({share * 100:.1f} %): {parts}; "
                f"VP8 keyframes {self.keyframes[0]} sent, {self.keyframes[1]} of them hit; "
                f"RTX: {self.sent['rtx']} packets for {len(self.rtx_for)} sequence numbers ({spurious} never lost, "
                f"up to {most} for one), {len(self.lost_video & self.repaired)} of {len(self.lost_video)} lost video "
                f"packets repaired")


def exit_status(srv: sfu.McuServer) -> str:
    code = srv.proc.poll() if srv.proc is not None else None
    if code is None:
        return "the server is running"
    how = f"signal {signal.Signals(-code).name}" if code < 0 else f"status {code}"
    return f"the server exited on its own with {how} (SIGKILL/SIGTERM leave no line in its log)"


# ----------------------------------------------------------------------------------------
# The tests
# ----------------------------------------------------------------------------------------


class Composite(E2ETest):
    def setUp(self) -> None:
        super().setUp()
        self._composite_of: dict[int, tuple[sfu.McuServer, str]] = {}  # id(player) -> its server and room

    def mcu_server(self, label: str) -> sfu.McuServer:
        return self.server(*SERVER_ARGS, label=label)

    async def publish_person(self, srv: sfu.McuServer, room: str, p: Person) -> mc.Publisher:
        return await self.publish(srv, room, colour=p.colour, tone_hz=p.tone, name=p.name)

    async def publish_all(self, srv: sfu.McuServer, room: str, people: Sequence[Person]) -> list[mc.Publisher]:
        return [await self.publish_person(srv, room, p) for p in people]

    async def composite(self, srv: sfu.McuServer, room: str) -> mc.Player:
        player = await self.play(srv, f"/whep/{room}")
        self._composite_of[id(player)] = (srv, room)
        await player.wait_connected(CONNECT_TIMEOUT)
        await player.wait_media(MEDIA_TIMEOUT, video_frames=1, audio_seconds=0)
        return player

    async def show_grid(self, player: mc.Player, people: Sequence[Person], timeout: float, what: str) -> float:
        """wait_grid, printing what the cells show. A failure also says what the publishers
        whose cells are wrong send (each played on its own over WHEP), or how the server died."""
        try:
            took = await wait_grid(player, grid_probes(people), timeout, what)
        except AssertionError as e:
            srv, room = self._composite_of.get(id(player), (None, None))
            raise AssertionError(f"{e}{await self.diagnose(player, people, srv, room)}") from None
        _, seen = look(recent_frames(player, 3), grid_probes(people))
        out(f"{what} after {took:.2f} s: {describe(seen)}")
        return took

    async def diagnose(self, player: mc.Player, people: Sequence[Person], srv: Optional[sfu.McuServer], room: Optional[str]) -> str:
        if srv is None:
            return ""
        if not srv.alive():
            return f"\n{exit_status(srv)}\n{srv.log_tail()}"
        _, seen = look(recent_frames(player, 3), grid_probes(people, background=False))
        wrong = [p for p, c in seen if c is not None and not probe_ok(p, c)]
        notes = []
        for probe in wrong:
            try:
                direct = await mc.play(srv.url, f"/whep/{room}/{probe.label}", audio=False)
                try:
                    await direct.wait_connected(CONNECT_TIMEOUT)
                    await direct.wait_media(10, video_frames=10, audio_seconds=0)
                    notes.append(f"{probe.label}'s own stream (WHEP /whep/{room}/{probe.label}) shows {fmt_rgb(direct.mean_colour())}")
                finally:
                    await sfu.close_quietly(direct)
            except Exception as e:
                notes.append(f"{probe.label}'s own stream: {type(e).__name__}: {e}")
        return "".join(f"\n  {n}" for n in notes)

    def check_alive(self, srv: sfu.McuServer) -> None:
        self.assertTrue(srv.alive(), f"the server died: {exit_status(srv)}\n{srv.log_tail()}")

    def tearDown(self) -> None:
        for srv in self._servers:
            if srv.proc is not None and srv.proc.poll() is not None:
                out(f"{srv.label}: {exit_status(srv)}")
        super().tearDown()

    # -- 1 ------------------------------------------------------------------------------

    @async_test()
    async def test_1_grid_of_four(self) -> None:
        srv = self.mcu_server("grid4")
        await self.publish_all(srv, "four", FOUR)
        player = await self.composite(srv, "four")
        await self.show_grid(player, FOUR, MEDIA_TIMEOUT, "2x2 grid")
        self.assertEqual(player.frame_size, (WIDTH, HEIGHT))
        # Where the composite draws and mixes, as GET /rooms says: what the run forced, else
        # either (auto: the GPU on a hardware adapter, the CPU on lavapipe).
        status, _, body = await srv.arequest("GET", "/rooms/four")
        info = json.loads(body)
        out(f"GET /rooms/four: composite {info['composite']}, render path {info['render_path']}, mix path {info['mix_path']}")
        self.assertEqual(status, 200, body)
        for key, flag in (("render_path", "--render-path"), ("mix_path", "--mix-path")):
            want = sfu.forced_path(flag)
            self.assertIn(info[key], (want,) if want in ("gpu", "cpu") else ("gpu", "cpu"), f"{key}: {body}")
        levels, floor = await wait_tones(player, [p.tone for p in FOUR], what="the mix of four")
        dominant = player.dominant_tones(4)
        out(f"tones: {fmt_levels(levels, floor)}; the four strongest: {[round(t, 1) for t in dominant]}")
        for p in FOUR:  # and nothing else is as loud
            self.assertTrue(any(abs(t - p.tone) <= TONE_TOLERANCE for t in dominant), f"{p.tone:g} Hz not among the four strongest {dominant}")
        self.check_alive(srv)

    @async_test()
    async def test_1b_grid_in_h264(self) -> None:
        """--mix-codec h264: the same grid, encoded with openh264 and negotiated as H.264; an MCU
        participant whose offer has only VP8 is refused with 400 naming H264, one offering H.264
        joins and receives its picture."""
        srv = self.server(*SERVER_ARGS, "--mix-codec", "h264", label="grid-h264")
        people = (ALICE, CAROL)
        await self.publish_all(srv, "h264", people)
        player = await self.composite(srv, "h264")
        # The answer accepts the viewer's codecs; what the composite sends is H.264 (the server
        # says so when it starts it) and the grid below is decoded from it.
        self.assertIn("H264/90000", "\n".join(mc.sdp_section(player.answer_sdp, "video")))
        started = [line for line in srv.log_path.read_text(errors="replace").splitlines() if "room composite started" in line]
        out(f"composite: {started[-1].split('started')[-1].strip() if started else '(no log line)'}")
        self.assertTrue(started and "codec=H264" in started[-1], started)
        await self.show_grid(player, people, MEDIA_TIMEOUT, "two tiles in H.264")
        self.assertEqual(player.frame_size, (WIDTH, HEIGHT))
        await wait_tones(player, [p.tone for p in people], what="the mix of two")
        # An MCU participant must receive its picture in H.264 here: one whose offer has only
        # VP8 is refused with 400 naming the codec (not a 500), one offering H.264 joins.
        with self.assertRaises(mc.HttpStatusError) as refused:
            await mc.join_mcu(srv.url, "h264", BOB.colour, BOB.tone, name="bob-vp8", video_codec="VP8")
        out(f"VP8-only MCU participant: HTTP {refused.exception.status}: {refused.exception.body.strip()[:160]}")
        self.assertEqual(refused.exception.status, 400, refused.exception.body)
        self.assertIn("H264", refused.exception.body)
        bob = await mc.join_mcu(srv.url, "h264", BOB.colour, BOB.tone, name="bob", video_codec="H264")
        self._sessions.append(bob)
        await bob.wait_connected(CONNECT_TIMEOUT)
        await bob.wait_media(MEDIA_TIMEOUT, video_frames=5, audio_seconds=0)
        self.check_alive(srv)

    @async_test()
    async def test_1c_publishers_with_the_same_ssrcs(self) -> None:
        """SSRCs are unique per connection only: four publishers whose encoders all use the
        same fixed SSRCs (video 1111, RTX 2222, audio 3333) are all composited, mixed and
        forwarded (the server gives each track a room-unique SSRC)."""
        srv = self.mcu_server("same-ssrcs")
        same = {"video": 1111, "video-rtx": 2222, "audio": 3333}
        for p in FOUR:
            await self.publish(srv, "clones", colour=p.colour, tone_hz=p.tone, name=p.name, ssrcs=same)
        player = await self.composite(srv, "clones")
        await self.show_grid(player, FOUR, MEDIA_TIMEOUT, "2x2 grid of same-SSRC publishers")
        await wait_tones(player, [p.tone for p in FOUR], what="the mix of four same-SSRC publishers")
        # Forwarding keeps them apart too: each one's own track, played alone, is its colour.
        for p in (ALICE, DAVE):
            direct = await self.play(srv, f"/whep/clones/{p.name}", audio=False)
            await direct.wait_connected(CONNECT_TIMEOUT)
            await direct.wait_media(MEDIA_TIMEOUT, video_frames=10, audio_seconds=0)
            seen = direct.mean_colour()
            out(f"{p.name}'s forwarded track: {fmt_rgb(seen)}")
            self.assertTrue(all(abs(a - b) <= 35 for a, b in zip(seen, p.colour)), f"{p.name}: {seen} is not {p.colour}")
        self.check_alive(srv)

    # -- 2 ------------------------------------------------------------------------------

    @async_test()
    async def test_2_fifth_publisher_reflows(self) -> None:
        srv = self.mcu_server("grid5")
        await self.publish_all(srv, "five", FOUR)
        player = await self.composite(srv, "five")
        await self.show_grid(player, FOUR, MEDIA_TIMEOUT, "2x2 grid")
        progress = FrameProgress(player)
        t0 = time.monotonic()
        await self.publish_person(srv, "five", ERIN)
        took = await self.show_grid(player, (*FOUR, ERIN), REFLOW_LIMIT, "erin joined: 3+2 grid")
        out(f"erin in the grid {time.monotonic() - t0:.2f} s after her POST; meanwhile {progress.stop()}")
        levels, floor = await wait_tones(player, [p.tone for p in (*FOUR, ERIN)], what="the mix of five")
        out(f"tones: {fmt_levels(levels, floor)}")
        self.assertLess(took, REFLOW_LIMIT)
        self.check_alive(srv)

    # -- 3 ------------------------------------------------------------------------------

    @async_test()
    async def test_3_delete_reflows(self) -> None:
        srv = self.mcu_server("delete")
        five = (*FOUR, ERIN)
        pubs = dict(zip((p.name for p in five), await self.publish_all(srv, "del", five)))
        player = await self.composite(srv, "del")
        await self.show_grid(player, five, MEDIA_TIMEOUT, "3+2 grid")
        await wait_tones(player, [p.tone for p in five], what="the mix of five")
        progress = FrameProgress(player)
        t0 = time.monotonic()
        await pubs["bob"].close()  # DELETE, then the peer connection closes
        self.assertIn(pubs["bob"].delete_status, (200, 204))
        rest = (ALICE, CAROL, DAVE, ERIN)
        await self.show_grid(player, rest, REFLOW_LIMIT, "bob deleted: 2x2 grid")
        out(f"2x2 again {time.monotonic() - t0:.2f} s after the DELETE")
        before = player.video_frame_count
        await player.wait_media(MEDIA_TIMEOUT, video_frames=before + FPS, audio_seconds=0)
        levels, floor = await wait_tones(player, [p.tone for p in rest], absent=[BOB.tone], what="the mix without bob")
        out(f"tones: {fmt_levels(levels, floor)}")
        stats = progress.stop()
        out(f"frames since the DELETE: {stats}")
        self.assertLess(progress.longest_stall, STALL_LIMIT, f"the composite stalled: {stats}")
        await self.show_grid(player, rest, 1.0, "and still")
        self.check_alive(srv)

    # -- 4 ------------------------------------------------------------------------------

    @async_test(timeout=180)
    async def test_4_killed_publisher(self) -> None:
        srv = self.mcu_server("killed")
        await self.publish_all(srv, "kill", (ALICE, BOB))
        proc_log = open(sfu.LOG_DIR / "killed-publisher.log", "wb")
        proc = subprocess.Popen(
            [sys.executable, sfu.MCUCLIENT, "publish", "--url", srv.url, "--room", "kill", "--name", CAROL.name,
             "--colour", ",".join(map(str, CAROL.colour)), "--tone", str(CAROL.tone), "--seconds", "600"],
            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=proc_log, preexec_fn=sfu._die_with_parent,
        )
        proc_log.close()
        sfu._live_processes.append(proc)
        try:
            line = await asyncio.wait_for(asyncio.to_thread(proc.stdout.readline), 30)
            self.assertTrue(line, "the publisher process printed nothing: see killed-publisher.log")
            self.assertIn("/session/", json.loads(line)["location"])
            player = await self.composite(srv, "kill")
            three = (ALICE, BOB, CAROL)
            await self.show_grid(player, three, MEDIA_TIMEOUT, "2+1 grid")
            await wait_tones(player, [p.tone for p in three], what="the mix of three")

            # Probes that hold whether carol is there or not: the middle of the top-left and
            # top-right cells of the 2+1 grid lie in alice's and bob's halves of the 1x2 grid.
            cells3 = grid_cells(3)
            steady = [Probe("alice", cells3[0], ALICE.colour), Probe("bob", cells3[1], BOB.colour)]
            carol_placeholder = Probe("carol's cell", cells3[2], PLACEHOLDER, not_colour=CAROL.colour)
            without = grid_probes((ALICE, BOB))
            progress = FrameProgress(player)
            proc.kill()  # SIGKILL: no DELETE, no DTLS close_notify, just silence
            proc.wait()
            t0 = time.monotonic()
            placeholder_at = removed_at = None
            wrong: list[str] = []
            carol_seen = []
            while time.monotonic() - t0 < REMOVAL_LIMIT:
                frames = recent_frames(player, 3)
                ok, seen = look(frames[-1:], steady)
                if not ok:
                    wrong.append(f"{time.monotonic() - t0:.1f} s: {describe(seen)}")
                if placeholder_at is None:
                    ok, seen = look(frames, [carol_placeholder])
                    carol_seen = seen
                    if ok:
                        placeholder_at = time.monotonic() - t0
                        out(f"carol's cell shows the placeholder {placeholder_at:.2f} s after SIGKILL: {describe(seen)}")
                if look(frames, without)[0]:
                    removed_at = time.monotonic() - t0
                    break
                await asyncio.sleep(0.1)
            stats = progress.stop()
            out(f"during the outage: {stats}")
            self.check_alive(srv)
            m = await srv.metrics()
            out(f"carol out of the grid {removed_at if removed_at is None else f'{removed_at:.2f} s'} after SIGKILL; "
                f"server now {sfu.gauges(m)}")
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
            proc.stdout.close()
            sfu._live_processes.remove(proc)
        self.assertFalse(wrong, "alice's or bob's cell lost its colour during the outage:\n" + "\n".join(wrong[:10]))
        self.assertLess(progress.longest_stall, STALL_LIMIT, f"the composite stalled during the outage: {stats}")
        self.assertIsNotNone(placeholder_at, f"no placeholder in carol's cell (before her removal) after SIGKILL: {describe(carol_seen)}")
        self.assertLessEqual(placeholder_at, PLACEHOLDER_LIMIT)
        self.assertIsNotNone(removed_at, f"carol still in the grid {REMOVAL_LIMIT:g} s after SIGKILL: "
                                         f"{describe(look(recent_frames(player, 3), without)[1])}")
        await self.show_grid(player, (ALICE, BOB), 1.0, "1x2 grid")
        levels, floor = await wait_tones(player, [ALICE.tone, BOB.tone], absent=[CAROL.tone], what="the mix without carol")
        out(f"tones: {fmt_levels(levels, floor)}")
        self.check_alive(srv)

    # -- 5 ------------------------------------------------------------------------------

    async def play_timed(self, srv: sfu.McuServer, path: str) -> tuple[mc.Player, dict[str, float]]:
        """mc.play with times (ms) from the POST: the answer, "connected", the first decoded
        frame."""
        addresses = mc._apply_ice_addresses(srv.url, "auto")
        pc, sink = mc.player_pc()
        try:
            offer = await mc.create_offer(pc)
            t0 = time.monotonic()
            exchange = await mc.post_sdp(srv.url + path, offer)
            t_answer = time.monotonic()
            await mc.apply_answer(pc, exchange.answer_sdp, addresses)
        except BaseException:
            await sink.stop()
            await pc.close()
            raise
        player = mc.Player(pc, offer, exchange, None, sink)
        self._sessions.append(player)
        self._composite_of[id(player)] = (srv, path.rsplit("/", 1)[-1])
        times = {"answer": (t_answer - t0) * 1000}
        await player.wait_connected(CONNECT_TIMEOUT)
        times["connected"] = (time.monotonic() - t0) * 1000
        await player.wait_media(MEDIA_TIMEOUT, video_frames=1, audio_seconds=0)
        times["first frame"] = (time.monotonic() - t0) * 1000
        return player, times

    @async_test()
    async def test_5_late_viewer(self) -> None:
        srv = self.mcu_server("late")
        await self.publish_all(srv, "late", FOUR)
        first = await self.composite(srv, "late")
        await self.show_grid(first, FOUR, MEDIA_TIMEOUT, "first viewer: 2x2 grid")
        await asyncio.sleep(1.0)  # well into the stream: the next keyframe is the late viewer's
        undecodable = sfu._DecodeFailures.count
        second, times = await self.play_timed(srv, "/whep/late")
        first_frame = second.media.video_frames[0]
        ok, seen = look([first_frame], grid_probes(FOUR))
        out("second viewer, from its POST: " + ", ".join(f"{k} {v:.0f} ms" for k, v in times.items())
            + f" (target {LATE_JOIN_TARGET_MS} ms, not asserted); frames it could not decode before: "
            f"{sfu._DecodeFailures.count - undecodable}")
        out(f"its first frame: {first_frame.shape[1]}x{first_frame.shape[0]}, {'the grid' if ok else 'not the grid yet'}: {describe(seen)}")
        await self.show_grid(second, FOUR, MEDIA_TIMEOUT, "second viewer: 2x2 grid")
        await wait_grid(first, grid_probes(FOUR), 1.0, "first viewer, still")
        a, b = recent_frames(first, 1)[0], recent_frames(second, 1)[0]
        diff = float(np.abs(a.astype(np.int16) - b.astype(np.int16)).mean())
        out(f"mean difference between the viewers' latest frames: {diff:.2f} per channel")
        self.assertLess(diff, 8.0, "the two viewers see different pictures")
        levels, floor = await wait_tones(second, [p.tone for p in FOUR], what="the second viewer's mix")
        out(f"second viewer's tones: {fmt_levels(levels, floor)}")
        self.check_alive(srv)

    # -- 6 ------------------------------------------------------------------------------

    @async_test()
    async def test_6_empty_room(self) -> None:
        srv = self.mcu_server("empty")
        player = await self.composite(srv, "void")  # mc.play insists on 201 Created
        out(f"viewer of an empty room: 201 {player.location}")
        await player.wait_media(MEDIA_TIMEOUT, video_frames=15, audio_seconds=0)
        self.assertEqual(player.frame_size, (WIDTH, HEIGHT))
        frames = recent_frames(player, 5)
        whole = [f.reshape(-1, 3).mean(axis=0) for f in frames]
        extremes = [np.abs(f.astype(np.int16) - np.array(BACKGROUND)).max() for f in frames]
        out(f"empty canvas: mean {fmt_rgb(tuple(np.mean(whole, axis=0)))}, largest deviation of any pixel from "
            f"{BACKGROUND}: {max(extremes)}")
        for f in frames:
            self.assertTrue(near(f.reshape(-1, 3).mean(axis=0), BACKGROUND, BACKGROUND_TOLERANCE), f"mean {fmt_rgb(tuple(f.reshape(-1, 3).mean(axis=0)))}")
            self.assertLessEqual(int(np.abs(f.astype(np.int16) - np.array(BACKGROUND)).max()), BACKGROUND_TOLERANCE,
                                 "a pixel of the empty canvas is not the background colour")
        t0 = time.monotonic()
        await self.publish_person(srv, "void", ALICE)
        await self.show_grid(player, (ALICE,), REFLOW_LIMIT, "alice joined: one tile, the whole canvas")
        out(f"alice on the canvas {time.monotonic() - t0:.2f} s after her POST")
        levels, floor = await wait_tones(player, [ALICE.tone], what="alice's tone")
        out(f"tones: {fmt_levels(levels, floor)}")
        self.check_alive(srv)

    # -- 7 ------------------------------------------------------------------------------

    async def publish_garbage(self, srv: sfu.McuServer, room: str, name: str, tone_hz: float,
                              video: Optional[GarbageVideoTrack] = None) -> tuple[mc.Publisher, GarbageVideoTrack]:
        """mc.publish with a GarbageVideoTrack (offered as VP8) and a tone."""
        addresses = mc._apply_ice_addresses(srv.url, "auto")
        pc = mc.new_peer_connection()
        video, audio = video or GarbageVideoTrack(), mc.ToneAudioTrack(tone_hz)
        pc.addTransceiver(video, direction="sendonly").setCodecPreferences(mc.codec_preferences("video", "VP8"))
        pc.addTransceiver(audio, direction="sendonly")
        try:
            offer = await mc.create_offer(pc)
            exchange = await mc.post_sdp(mc.whip_url(srv.url, room, name), offer)
            await mc.apply_answer(pc, exchange.answer_sdp, addresses)
        except BaseException:
            video.stop()
            audio.stop()
            await pc.close()
            raise
        pub = mc.Publisher(pc, offer, exchange, None, [video, audio])
        self._sessions.append(pub)
        return pub, video

    @async_test()
    async def test_7_garbage_video(self) -> None:
        srv = self.mcu_server("garbage")
        await self.publish_all(srv, "junk", (ALICE, BOB))
        player = await self.composite(srv, "junk")
        await self.show_grid(player, (ALICE, BOB), MEDIA_TIMEOUT, "1x2 grid")
        mallory_tone = MALLORY_TONE
        mallory, garbage = await self.publish_garbage(srv, "junk", "mallory", mallory_tone)
        await mallory.wait_connected(CONNECT_TIMEOUT)
        # The 2+1 grid's top cells are alice's and bob's whether mallory gets a tile or not.
        cells3 = grid_cells(3)
        steady = [Probe("alice", cells3[0], ALICE.colour), Probe("bob", cells3[1], BOB.colour)]
        progress = FrameProgress(player)
        wrong: list[str] = []
        t0 = time.monotonic()
        while time.monotonic() - t0 < 5.0:
            ok, seen = look(recent_frames(player, 1), steady)
            if not ok:
                wrong.append(f"{time.monotonic() - t0:.1f} s: {describe(seen)}")
            await asyncio.sleep(0.1)
        stats = progress.stop()
        sent = next((s.packetsSent for s in (await mallory.pc.getStats()).values()
                     if s.type == "outbound-rtp" and s.kind == "video"), None)
        frames = recent_frames(player, 3)
        mallory_cell = look(frames, [Probe("mallory's cell (2+1 grid)", cells3[2], None)])[1]
        one_by_two = look(frames, grid_probes((ALICE, BOB)))[0]
        out(f"mallory sent {garbage.frames_sent} garbage frames in {sent} RTP packets; meanwhile {stats}")
        out(f"layout now {'1x2 (no tile for mallory)' if one_by_two else '2+1'}; {describe(mallory_cell)}")
        levels, floor = await wait_tones(player, [ALICE.tone, BOB.tone, mallory_tone], what="the mix with mallory")
        out(f"tones: {fmt_levels(levels, floor)}")
        self.check_alive(srv)
        self.assertGreater(garbage.frames_sent, 100)
        self.assertFalse(wrong, "alice's or bob's cell lost its colour while mallory sent garbage:\n" + "\n".join(wrong[:10]))
        self.assertGreater(progress.frames, 3 * FPS, f"the composite slowed down or stopped: {stats}")
        self.assertLess(progress.longest_stall, STALL_LIMIT, f"the composite stalled: {stats}")


    # -- 9 ------------------------------------------------------------------------------

    @async_test()
    async def test_9_lossy_publisher(self) -> None:
        srv = self.mcu_server("lossy")
        await self.publish_person(srv, "lossy", ALICE)
        bob = await self.publish_person(srv, "lossy", BOB)
        link = LossyLink(bob.pc, LOSS_RATE, LOSS_SEED)  # before bob's connection comes up
        await self.publish_all(srv, "lossy", (CAROL, DAVE))
        player = await self.composite(srv, "lossy")
        await self.show_grid(player, FOUR, MEDIA_TIMEOUT, "2x2 grid, bob through 10 % loss")

        # Every composite frame for LOSSY_SECONDS: the three others always right, bob's share.
        ordered = sorted(FOUR, key=lambda p: p.name)
        probes = {p.name: Probe(p.name, cell, p.colour) for p, cell in zip(ordered, grid_cells(4))}
        others = [probes[p.name] for p in ordered if p is not BOB]
        bob_probe = probes[BOB.name]
        progress = FrameProgress(player)
        counted = player.video_frame_count
        keep = player.media.video_frames.maxlen or 1
        missed = bob_ok = bob_total = run = longest_run = 0
        wrong_others: list[str] = []
        bob_wrong: list[str] = []
        bob_wrong_kinds: collections.Counter[str] = collections.Counter()
        t0 = time.monotonic()
        while time.monotonic() - t0 < LOSSY_SECONDS:
            await asyncio.sleep(0.05)
            count = player.video_frame_count
            new, counted = count - counted, count
            missed += max(new - keep, 0)  # more new frames than the sink keeps (a slow turn)
            when = time.monotonic() - t0
            for f in (recent_frames(player, min(new, keep)) if new > 0 else []):
                ok, seen = look([f], others)
                if not ok:
                    wrong_others.append(f"{when:.2f} s: {describe(seen)}")
                rgb = region_mean(f, bob_probe.rect)
                bob_total += 1
                if probe_ok(bob_probe, rgb):
                    bob_ok += 1
                    run = 0
                    continue
                run += 1
                longest_run = max(longest_run, run)
                bob_wrong_kinds["placeholder" if near(rgb, PLACEHOLDER, COLOUR_TOLERANCE) else "other"] += 1
                bob_wrong.append(f"{when:.2f} s: {fmt_rgb(rgb)}")
        stats = progress.stop()
        elapsed = time.monotonic() - progress.start
        bob_share = bob_ok / max(bob_total, 1)
        out(f"composite under bob's loss: {stats}; {bob_total} frames sampled ({missed} skipped)")
        out(f"bob's cell right in {bob_ok}/{bob_total} frames ({bob_share * 100:.1f} %, threshold "
            f"{LOSSY_BOB_SHARE * 100:.0f} %); longest wrong run {longest_run} frames; wrong: "
            f"{dict(bob_wrong_kinds) or 'none'}" + (f"; first: {', '.join(bob_wrong[:5])}" if bob_wrong else ""))
        levels, floor = await wait_tones(player, [p.tone for p in FOUR], what="the mix with bob lossy")
        loudest_other = max(levels[p.tone] for p in FOUR if p is not BOB)
        out(f"tones: {fmt_levels(levels, floor)}; bob {levels[BOB.tone] - loudest_other:+.1f} dB against "
            f"the loudest other")
        out(f"bob's link: {link.describe()}")
        self.check_alive(srv)
        # Bob's lost audio packets were concealed at the composite, and counted.
        _, _, text = await srv.arequest("GET", "/metrics")
        metrics = sfu.parse_prometheus(text)
        concealed = metrics.get("mcu_mix_audio_concealed_frames_total", 0)
        at_playout = metrics.get('mcu_rtp_dropped_packets_total{reason="audio_playout"}', 0)
        out(f"audio frames concealed at the composite: {concealed:.0f}; dropped at playout: {at_playout:.0f}")
        self.assertGreater(concealed, 0, "bob's lost audio should have been concealed and counted")

        sent, dropped, share = link.share()
        self.assertGreater(link.sent["video"], 100, f"the lossy link saw little of bob's video: {link.describe()}")
        self.assertTrue(link.sent["audio"] and link.sent["rtcp"], f"the lossy link missed a kind: {link.describe()}")
        self.assertTrue(LOSS_SHARE_RANGE[0] <= share <= LOSS_SHARE_RANGE[1], f"the link dropped {share * 100:.1f} %, "
                        f"not ~{LOSS_RATE * 100:g} %: {link.describe()}")
        self.assertFalse(wrong_others, "a cell other than bob's lost its colour:\n" + "\n".join(wrong_others[:10]))
        self.assertLess(progress.longest_stall, STALL_LIMIT, f"the composite stalled: {stats}")
        self.assertGreaterEqual(progress.frames, LOSSY_MIN_RATE * FPS * elapsed, f"the composite slowed down: {stats}")
        self.assertGreater(bob_total, 0.5 * FPS * LOSSY_SECONDS, f"too few frames sampled: {bob_total}")
        self.assertGreaterEqual(bob_share, LOSSY_BOB_SHARE,
                                f"bob's cell showed his colour in only {bob_ok}/{bob_total} frames; wrong: "
                                + ", ".join(bob_wrong[:20]) + f"\n{srv.log_tail()}")

    # -- 10 -----------------------------------------------------------------------------

    async def busy_room(self, srv: sfu.McuServer, room: str) -> None:
        """alice sends random 32x32 blocks, new every frame (content that fills any bitrate, so
        rates show), bob a colour."""
        alice = await self.publish(srv, room, colour=ALICE.colour, tone_hz=None, name=ALICE.name)
        noise = np.random.default_rng(7)

        async def noisy_recv() -> av.VideoFrame:
            pts, time_base = await alice.tracks[0].next_timestamp()
            rgb = noise.integers(0, 256, (12, 20, 3), dtype=np.uint8).repeat(32, axis=0).repeat(32, axis=1)[:360, :640]
            frame = av.VideoFrame.from_ndarray(rgb, format="rgb24")
            frame.pts, frame.time_base = pts, time_base
            return frame

        alice.tracks[0].recv = noisy_recv
        await self.publish(srv, room, colour=BOB.colour, tone_hz=None, name=BOB.name)

    @async_test()
    async def test_10_remb_holds_the_shared_encode_down(self) -> None:
        srv = self.server(*SERVER_ARGS, "--mix-video-bitrate", str(REMB_FULL_BPS), label="remb")
        room = "remb"
        await self.busy_room(srv, room)
        watcher = await self.composite(srv, room)
        limited = await self.composite(srv, room)
        counted = ReceivedBytes(watcher)
        await asyncio.sleep(3.0)
        full = await counted.kbps(REMB_WINDOW)
        # The second viewer says its link carries 300 kbit/s, as a browser's REMB would.
        remb = asyncio.ensure_future(send_remb(limited, REMB_LIMIT_BPS))
        try:
            await asyncio.sleep(REMB_SETTLE)
            _, _, text = await srv.arequest("GET", "/metrics")
            estimates = [line for line in text.splitlines() if line.startswith("mcu_subscriber_estimated_bitrate_bps")]
            out(f"estimates the server holds: {estimates}")
            held = await counted.kbps(REMB_WINDOW)
            if remb.done():
                remb.result()  # raises what stopped the sender
        finally:
            remb.cancel()
        await asyncio.sleep(REMB_EXPIRY)
        back = await counted.kbps(REMB_WINDOW)
        out(f"the first viewer receives the shared encode at {full:.0f} kbit/s; with the second viewer's REMB of "
            f"{REMB_LIMIT_BPS // 1000} kbit/s {held:.0f}; once its REMB stops {back:.0f}")
        self.assertGreater(full, 0.5 * REMB_FULL_BPS / 1000, "the noisy canvas should fill most of its bitrate")
        self.assertLess(held, 0.5 * full, "the shared encode should follow the lowest REMB")
        self.assertLess(held, 1.6 * REMB_LIMIT_BPS / 1000, "the shared encode should stay near the REMB")
        self.assertGreater(back, 0.7 * full, "without REMB the encode should return to its bitrate")
        self.check_alive(srv)

    # -- 11 -----------------------------------------------------------------------------

    @async_test()
    async def test_11_loss_reports_hold_the_shared_encode_down(self) -> None:
        await self.loss_holds_the_encode_down(in_sender_reports=False)

    @async_test()
    async def test_11b_loss_in_sender_reports_holds_the_shared_encode_down(self) -> None:
        """A peer that also sends (a browser MCU participant) reports its loss in the report
        blocks of its sender reports, not in receiver reports."""
        await self.loss_holds_the_encode_down(in_sender_reports=True)

    async def loss_holds_the_encode_down(self, in_sender_reports: bool) -> None:
        label = "loss-sr" if in_sender_reports else "loss"
        srv = self.server(*SERVER_ARGS, "--mix-video-bitrate", str(REMB_FULL_BPS), label=label)
        room = label
        await self.busy_room(srv, room)
        watcher = await self.composite(srv, room)
        lossy = await self.composite(srv, room)
        counted = ReceivedBytes(watcher)
        drop = LossyReceiver(lossy, in_sender_reports=in_sender_reports)
        await asyncio.sleep(3.0)
        full = await counted.kbps(REMB_WINDOW)
        # The second viewer loses every fourth video packet (retransmissions too) and says so
        # in its receiver reports; it asks for no keyframes (aiortc would ask at every gap).
        drop.on = True
        await asyncio.sleep(LOSS_SETTLE)
        held = await counted.kbps(REMB_WINDOW)
        reported = drop.reported[:]
        drop.on = False
        how = "sender" if in_sender_reports else "receiver"
        out(f"the first viewer receives the shared encode at {full:.0f} kbit/s; while the second loses 25 % "
            f"(it reported fractions {reported[-6:]} /256 in {how} reports) {held:.0f}")
        self.assertTrue(any(f >= 50 for f in reported), f"the lossy viewer should report its loss: {reported}")
        self.assertGreater(full, 0.5 * REMB_FULL_BPS / 1000, "the noisy canvas should fill most of its bitrate")
        self.assertLess(held, 0.6 * full, "the shared encode should back off under reported loss")
        self.check_alive(srv)

# ----------------------------------------------------------------------------------------

class McuParticipants(Composite):
    async def test_8_mcu_participants_hear_everyone_but_themselves(self) -> None:
        """POST /mcu/{room}: four sendrecv participants; each receives the 2x2 composite and a
        mix with the three other tones and not its own."""
        srv = self.mcu_server("mcu")
        joined: list[mc.McuParticipant] = []
        try:
            for p in FOUR:
                joined.append(await mc.join_mcu(srv.url, "mcuroom", p.colour, p.tone, name=p.name))
            for p, m in zip(FOUR, joined):
                await m.wait_connected(CONNECT_TIMEOUT)
                await m.wait_media(MEDIA_TIMEOUT, video_frames=1, audio_seconds=0)
            for p, m in zip(FOUR, joined):
                await self.show_grid(m, FOUR, REFLOW_LIMIT, f"{p.name}'s composite")
                others = [q.tone for q in FOUR if q is not p]
                levels, floor = await wait_tones(m, others, absent=[p.tone], what=f"{p.name}'s own mix")
                out(f"{p.name} hears {fmt_levels(levels, floor)}")
            self.check_alive(srv)
        finally:
            for m in joined:
                await m.close()


REMB_FULL_BPS = 1_200_000  # the composite's --mix-video-bitrate in test 10
REMB_LIMIT_BPS = 300_000  # what the limited viewer's REMB says
REMB_WINDOW = 3.0  # s, each bitrate measurement
REMB_SETTLE = 2.0  # s after the first REMB before measuring
REMB_EXPIRY = 8.0  # s after the last REMB (the server forgets estimates after 5 s; libvpx ramps up in ~2 s)


def video_receiver(player: mc.Player):
    """The player's video RTCRtpReceiver."""
    return next(r for r in player.pc.getReceivers() if r.track and r.track.kind == "video")


class ReceivedBytes:
    """Counts the RTP payload bytes a player's video receiver gets."""

    def __init__(self, player: mc.Player) -> None:
        self.total = 0
        receiver = video_receiver(player)
        inner = receiver._handle_rtp_packet

        async def counting(packet, arrival_time_ms):
            self.total += len(packet.payload)
            return await inner(packet, arrival_time_ms)

        receiver._handle_rtp_packet = counting

    async def kbps(self, seconds: float) -> float:
        start = self.total
        await asyncio.sleep(seconds)
        return (self.total - start) * 8 / seconds / 1000


LOSS_SETTLE = 8.0  # s of 25 % loss before measuring (a report a second, -12.5 % each)


class LossyReceiver:
    """While `on`, a player's video receiver loses every packet whose sequence number is a
    multiple of 4 (retransmissions of it too) and sends no PLI; `reported` collects the fraction
    lost (/256) of its receiver reports. With `in_sender_reports` those report blocks go out
    in sender reports instead, as a browser that also sends puts them."""

    def __init__(self, player: mc.Player, in_sender_reports: bool = False) -> None:
        from aiortc.rtp import RtcpRrPacket, RtcpSenderInfo, RtcpSrPacket
        self.on = False
        self.reported: list[int] = []
        receiver = video_receiver(player)
        inner_rtp, inner_rtcp = receiver._handle_rtp_packet, receiver._send_rtcp

        async def lossy(packet, arrival_time_ms):
            if self.on and packet.sequence_number % 4 == 0:
                return None
            return await inner_rtp(packet, arrival_time_ms)

        async def no_pli(media_ssrc: int) -> None:
            return None

        async def watch_reports(packet) -> None:
            for r in getattr(packet, "reports", []) or []:
                self.reported.append(r.fraction_lost)
            if in_sender_reports and isinstance(packet, RtcpRrPacket):
                info = RtcpSenderInfo(ntp_timestamp=0, rtp_timestamp=0, packet_count=0, octet_count=0)
                packet = RtcpSrPacket(ssrc=packet.ssrc, sender_info=info, reports=packet.reports)
            return await inner_rtcp(packet)

        receiver._handle_rtp_packet = lossy
        receiver._send_rtcp_pli = no_pli
        receiver._send_rtcp = watch_reports


async def send_remb(player: mc.Player, bitrate: int) -> None:
    """REMB (RTCP PSFB, draft-alvestrand-rmcat-remb) from the player's video receiver every
    0.5 s for the SSRC it receives, as browsers (and aiortc, when it can estimate) send them."""
    from aiortc.rtp import RTCP_PSFB_APP, RtcpPsfbPacket, pack_remb_fci

    receiver = video_receiver(player)
    while True:
        sender_ssrc = receiver._RTCRtpReceiver__rtcp_ssrc or 1
        media = list(receiver._RTCRtpReceiver__active_ssrc)
        await receiver._send_rtcp(RtcpPsfbPacket(fmt=RTCP_PSFB_APP, ssrc=sender_ssrc, media_ssrc=0, fci=pack_remb_fci(bitrate, media)))
        await asyncio.sleep(0.5)


ORDER = [
    (Composite, ["test_1_grid_of_four", "test_1b_grid_in_h264", "test_1c_publishers_with_the_same_ssrcs",
                 "test_2_fifth_publisher_reflows", "test_3_delete_reflows",
                 "test_4_killed_publisher", "test_5_late_viewer", "test_6_empty_room", "test_7_garbage_video",
                 "test_9_lossy_publisher", "test_10_remb_holds_the_shared_encode_down",
                 "test_11_loss_reports_hold_the_shared_encode_down",
                 "test_11b_loss_in_sender_reports_holds_the_shared_encode_down"]),
    (McuParticipants, ["test_8_mcu_participants_hear_everyone_but_themselves"]),
]


def main(argv: list[str]) -> int:
    return sfu.run_suite(ORDER, "e2e mcu", argv)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
