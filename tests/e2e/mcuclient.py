#!/usr/bin/env python3
"""WHIP/WHEP end-to-end test client for the `mcu` server, built on aiortc.

Three layers, kept apart so each can be tested on its own (see selftest.py):

* Media: `ColourVideoTrack` and `ToneAudioTrack` generate a known picture and sound;
  `MediaSink` receives remote tracks and analyses them (mean colour of a region, dominant
  tones by FFT). `publisher_pc()` / `player_pc()` build peer connections around them and
  `create_offer()` / `apply_answer()` run the local half of the offer/answer exchange.
* HTTP: `post_sdp()` and `delete_resource()` speak the WHIP/WHEP HTTP exchange (stdlib
  urllib, run in a thread so the event loop keeps the media flowing).
* Sessions: `publish()` (WHIP) and `play()` (WHEP) glue the two together and return a
  `Publisher` / `Player` whose `close()` sends the HTTP DELETE and closes the connection.

ICE and loopback: aioice (aiortc's ICE agent) never gathers a 127.0.0.1 host candidate. The
tests run the server on loopback and keep all their traffic there, so when
the server URL's host is a loopback address the client gathers *only* loopback candidates
(`use_ice_host_addresses()`, a process-wide patch of aioice's address enumeration) and
keeps only the loopback candidates of the server's answer, so no packet is addressed off
loopback. The server's answer therefore has to carry a loopback candidate (the `ice_addresses`
argument overrides all this). No STUN/TURN servers are used
(`iceServers=[]`; aiortc's default would contact a public STUN server).

CLI (the JSON goes to stdout, logs to stderr):

    python mcuclient.py publish --url http://127.0.0.1:8080 --room r --colour 255,0,0 --tone 440 --seconds 10
    python mcuclient.py play --url http://127.0.0.1:8080 --path /whep/r/alice --seconds 5 --json
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import fractions
import ipaddress
import json
import logging
import signal
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass
from typing import Callable, Optional, Sequence, Union

import aioice.ice
import av
import numpy as np
from aiortc import (
    RTCConfiguration,
    RTCPeerConnection,
    RTCRtpSender,
    RTCSessionDescription,
)
from aiortc.mediastreams import MediaStreamError, MediaStreamTrack, VideoStreamTrack

log = logging.getLogger("mcuclient")

# What the publisher sends.
VIDEO_WIDTH = 640
VIDEO_HEIGHT = 360
VIDEO_FPS = 30  # aiortc's VideoStreamTrack pacing (VIDEO_PTIME = 1/30)
AUDIO_RATE = 48_000
AUDIO_PTIME = 0.020  # 20 ms frames
AUDIO_AMPLITUDE = 0.3  # of full scale

HTTP_TIMEOUT = 15.0  # seconds, for each WHIP/WHEP request

Colour = tuple[int, int, int]

# ----------------------------------------------------------------------------------------
# ICE candidate addresses
# ----------------------------------------------------------------------------------------

_aioice_get_host_addresses = aioice.ice.get_host_addresses


def use_ice_host_addresses(addresses: Optional[Sequence[str]]) -> None:
    """Make every peer connection created from now on gather host candidates on exactly
    `addresses` (e.g. ["127.0.0.1"]); None restores aioice's own choice (every interface
    address except loopback). Process-wide: aioice looks the function up at gathering time,
    which happens in setLocalDescription."""
    if addresses is None:
        aioice.ice.get_host_addresses = _aioice_get_host_addresses
        return
    fixed = list(addresses)

    def get_host_addresses(use_ipv4: bool, use_ipv6: bool) -> list[str]:
        return [a for a in fixed if (use_ipv6 if ":" in a else use_ipv4)]

    aioice.ice.get_host_addresses = get_host_addresses


def loopback_ice_addresses(base_url: str) -> Optional[list[str]]:
    """The host candidate addresses to use against a server at `base_url`: the loopback
    address of the URL's family when its host is loopback, else None (aioice's default)."""
    host = urllib.parse.urlsplit(base_url).hostname or ""
    if host == "localhost":
        return ["127.0.0.1"]
    try:
        ip = ipaddress.ip_address(host)
    except ValueError:
        return None
    if not ip.is_loopback:
        return None
    return ["::1"] if ip.version == 6 else ["127.0.0.1"]


def _apply_ice_addresses(base_url: str, ice_addresses: Union[str, Sequence[str], None]) -> Optional[list[str]]:
    """`ice_addresses` as the session functions take it: "auto" (loopback when the server
    is), None (aioice's default) or an explicit list. Returns the addresses now in force."""
    addresses = loopback_ice_addresses(base_url) if ice_addresses == "auto" else ice_addresses
    use_ice_host_addresses(addresses)  # type: ignore[arg-type]
    return list(addresses) if addresses is not None else None


def filter_candidates(sdp: str, allowed: Sequence[str]) -> str:
    """`sdp` without the a=candidate lines whose address is not in `allowed`. With our own
    candidates pinned to loopback, the server's other candidates (e.g. this machine's
    interface addresses, when it binds a wildcard) are dropped too, so no connectivity
    check is ever sent off loopback."""
    keep = set(allowed)
    lines = sdp.splitlines(keepends=True)
    return "".join(
        line for line in lines
        if not line.startswith("a=candidate:") or (len(line.split()) > 4 and line.split()[4] in keep)
    )


def sdp_section(sdp: str, kind: str) -> list[str]:
    """The lines of the first m-section of `kind` (asserts there is one)."""
    section: Optional[list[str]] = None
    for line in sdp.splitlines():
        if line.startswith("m="):
            if section is not None:
                break
            if line.startswith(f"m={kind} "):
                section = [line]
        elif section is not None:
            section.append(line)
    assert section is not None, f"no m={kind} section in\n{sdp}"
    return section


def first_codec(sdp: str, kind: str) -> str:
    """The encoding name of the first (preferred) payload type of the first `kind` m-section."""
    section = sdp_section(sdp, kind)
    pt = section[0].split()[3]
    rtpmap = next(line for line in section if line.startswith(f"a=rtpmap:{pt} "))
    return rtpmap.split()[1].split("/")[0]


# ----------------------------------------------------------------------------------------
# Media generation
# ----------------------------------------------------------------------------------------


class ColourVideoTrack(VideoStreamTrack):
    """Solid-colour frames of one RGB colour, 30 fps, paced in real time.

    The frame is converted to yuv420p once (BT.601 limited range, libswscale's default,
    the same conversion to_ndarray('rgb24') undoes at the receiver) and then reused, so
    the per-frame cost is only wrapping the array. `duration` (seconds) ends the track
    after that much media; None runs until stop()."""

    def __init__(
        self,
        colour: Colour,
        width: int = VIDEO_WIDTH,
        height: int = VIDEO_HEIGHT,
        duration: Optional[float] = None,
    ) -> None:
        super().__init__()
        self.colour = tuple(int(c) for c in colour)
        rgb = np.empty((height, width, 3), dtype=np.uint8)
        rgb[:, :] = self.colour
        self._yuv = av.VideoFrame.from_ndarray(rgb, format="rgb24").reformat(format="yuv420p").to_ndarray()
        self._duration = duration
        self.frames_sent = 0

    async def recv(self) -> av.VideoFrame:
        pts, time_base = await self.next_timestamp()
        if self._duration is not None and pts >= round(self._duration / time_base):
            self.stop()
            raise MediaStreamError
        frame = av.VideoFrame.from_ndarray(self._yuv, format="yuv420p")
        frame.pts = pts
        frame.time_base = time_base
        self.frames_sent += 1
        return frame


class ToneAudioTrack(MediaStreamTrack):
    """A sine at `frequency` Hz: 48 kHz s16 mono, 20 ms frames, amplitude 0.3 of full scale
    (−10.5 dBFS), continuous phase, paced in real time like aiortc's AudioStreamTrack.
    `duration` as for ColourVideoTrack.

    aiortc's Opus encoder upmixes mono to stereo with libswresample, which puts the centre
    channel into left and right at −3 dB: what goes on the wire is a stereo 0.21 (−13.5 dBFS)
    sine in both channels."""

    kind = "audio"

    def __init__(
        self,
        frequency: float,
        amplitude: float = AUDIO_AMPLITUDE,
        sample_rate: int = AUDIO_RATE,
        duration: Optional[float] = None,
    ) -> None:
        super().__init__()
        self.frequency = float(frequency)
        self._amplitude = amplitude
        self._rate = sample_rate
        self._samples = int(AUDIO_PTIME * sample_rate)
        self._duration = duration
        self._start: Optional[float] = None
        self._next = 0  # index of the next sample to produce

    async def recv(self) -> av.AudioFrame:
        if self.readyState != "live":
            raise MediaStreamError
        if self._duration is not None and self._next >= round(self._duration * self._rate):
            self.stop()
            raise MediaStreamError
        if self._start is None:
            self._start = time.time()
        else:
            await asyncio.sleep(self._start + self._next / self._rate - time.time())

        n = np.arange(self._next, self._next + self._samples)
        wave = self._amplitude * 32767 * np.sin(2 * np.pi * self.frequency * n / self._rate)
        frame = av.AudioFrame.from_ndarray(
            np.round(wave).astype(np.int16).reshape(1, -1), format="s16", layout="mono"
        )
        frame.pts = self._next
        frame.sample_rate = self._rate
        frame.time_base = fractions.Fraction(1, self._rate)
        self._next += self._samples
        return frame


# ----------------------------------------------------------------------------------------
# Media reception and analysis
# ----------------------------------------------------------------------------------------


def audio_frame_to_mono(frame: av.AudioFrame) -> np.ndarray:
    """An AudioFrame as float32 mono samples in [-1, 1]: packed (interleaved) or planar,
    integer or float formats, any channel count (channels are averaged)."""
    data = frame.to_ndarray()
    channels = len(frame.layout.channels)
    if frame.format.is_planar:
        planes = data.reshape(channels, -1)  # (channels, samples)
    else:
        planes = data.reshape(-1, channels).T  # interleaved -> (channels, samples)
    if planes.dtype == np.uint8:  # u8 is offset binary
        planes = (planes.astype(np.float32) - 128.0) / 128.0
    elif np.issubdtype(planes.dtype, np.integer):
        planes = planes.astype(np.float32) / (float(np.iinfo(planes.dtype).max) + 1.0)
    return planes.astype(np.float32).mean(axis=0)


@dataclass
class ToneSpectrum:
    """Amplitude spectrum of a window of audio: `amplitude[i]` is the amplitude (fraction of
    full scale) a sine at `freqs[i]` Hz would have; Hann-windowed, so a sine of amplitude A
    reads A at its peak (up to 1.4 dB less when between bins)."""

    freqs: np.ndarray
    amplitude: np.ndarray

    @classmethod
    def of(cls, samples: np.ndarray, sample_rate: int) -> "ToneSpectrum":
        window = np.hanning(len(samples))
        spectrum = np.fft.rfft(samples * window)
        return cls(
            freqs=np.fft.rfftfreq(len(samples), 1.0 / sample_rate),
            amplitude=2.0 * np.abs(spectrum) / window.sum(),
        )

    def peak_frequency(self, i: int) -> float:
        """Frequency of the peak at bin i, refined by parabolic interpolation of the log
        amplitude (well within a bin for a Hann window)."""
        if 0 < i < len(self.amplitude) - 1:
            a, b, c = np.log(self.amplitude[i - 1 : i + 2] + 1e-12)
            denom = a - 2 * b + c
            offset = 0.5 * (a - c) / denom if denom != 0 else 0.0
        else:
            offset = 0.0
        return float(self.freqs[i] + offset * (self.freqs[1] - self.freqs[0]))

    def amplitude_near(self, freq_hz: float, tolerance_hz: float = 5.0) -> float:
        band = (self.freqs >= freq_hz - tolerance_hz) & (self.freqs <= freq_hz + tolerance_hz)
        return float(self.amplitude[band].max()) if band.any() else 0.0

    def tones(
        self,
        k: int,
        min_amplitude: float = 0.01,
        relative: float = 0.1,
        min_hz: float = 20.0,
        separation_hz: float = 10.0,
    ) -> list[float]:
        """Up to k tones, strongest first: local maxima of at least `min_amplitude` (−40 dBFS
        by default) and `relative` times the strongest peak, at least `separation_hz` apart
        (so a peak's own skirt is not reported as a second tone)."""
        amp = self.amplitude
        if len(amp) < 3:
            return []
        inner = amp[1:-1]
        is_peak = (inner >= amp[:-2]) & (inner > amp[2:])
        peaks = np.nonzero(is_peak)[0] + 1
        peaks = peaks[self.freqs[peaks] >= min_hz]
        if len(peaks) == 0:
            return []
        peaks = peaks[np.argsort(amp[peaks])[::-1]]
        floor = max(min_amplitude, relative * amp[peaks[0]])
        chosen: list[float] = []
        for i in peaks:
            if amp[i] < floor or len(chosen) == k:
                break
            f = self.peak_frequency(int(i))
            if all(abs(f - g) >= separation_hz for g in chosen):
                chosen.append(f)
        return chosen


class MediaSink:
    """Consumes the remote tracks of a peer connection and keeps what the analyses need:
    the last `keep_frames` video frames as RGB arrays, and the last `keep_audio_s` seconds
    of audio as mono float samples. Attach it before the offer/answer exchange."""

    def __init__(self, keep_frames: int = 30, keep_audio_s: float = 3.0) -> None:
        self.video_frames: collections.deque[np.ndarray] = collections.deque(maxlen=keep_frames)
        self.video_frame_count = 0
        self.audio_frame_count = 0
        self.audio_sample_count = 0
        self.audio_rate: Optional[int] = None
        self.tracks: list[MediaStreamTrack] = []
        self._keep_audio_s = keep_audio_s
        self._audio: collections.deque[np.ndarray] = collections.deque()
        self._audio_buffered = 0
        self._tasks: list[asyncio.Task] = []
        self._changed = asyncio.Event()

    def attach(self, pc: RTCPeerConnection) -> None:
        pc.on("track", self.consume)

    def consume(self, track: MediaStreamTrack) -> None:
        """Start reading `track` until it ends (also usable for a local track)."""
        log.info("receiving %s track %s", track.kind, track.id)
        self.tracks.append(track)
        self._tasks.append(asyncio.ensure_future(self._run(track)))

    async def _run(self, track: MediaStreamTrack) -> None:
        try:
            while True:
                frame = await track.recv()
                if track.kind == "video":
                    self.add_video_frame(frame)
                else:
                    self.add_audio_frame(frame)
        except MediaStreamError:
            log.info("%s track %s ended", track.kind, track.id)

    def add_video_frame(self, frame: av.VideoFrame) -> None:
        self.video_frames.append(frame.to_ndarray(format="rgb24"))
        self.video_frame_count += 1
        self._changed.set()

    def add_audio_frame(self, frame: av.AudioFrame) -> None:
        if frame.sample_rate != self.audio_rate:  # (re)start the buffer on a rate change
            self.audio_rate = frame.sample_rate
            self._audio.clear()
            self._audio_buffered = 0
        samples = audio_frame_to_mono(frame)
        self._audio.append(samples)
        self._audio_buffered += len(samples)
        while self._audio_buffered - len(self._audio[0]) >= self._keep_audio_s * self.audio_rate:
            self._audio_buffered -= len(self._audio.popleft())
        self.audio_frame_count += 1
        self.audio_sample_count += len(samples)
        self._changed.set()

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._tasks.clear()

    # -- waiting ------------------------------------------------------------------------

    @property
    def audio_seconds(self) -> float:
        """Seconds of audio currently buffered (at most keep_audio_s)."""
        return self._audio_buffered / self.audio_rate if self.audio_rate else 0.0

    async def wait_media(
        self, timeout: float = 10.0, video_frames: int = 15, audio_seconds: float = 1.0
    ) -> None:
        """Wait until at least `video_frames` video frames and `audio_seconds` of audio have
        arrived (0 for a kind not wanted). Raises TimeoutError saying what is missing."""
        deadline = asyncio.get_running_loop().time() + timeout
        while self.video_frame_count < video_frames or self.audio_seconds < audio_seconds:
            remaining = deadline - asyncio.get_running_loop().time()
            if remaining <= 0:
                raise TimeoutError(
                    f"no media within {timeout:g} s: {self.video_frame_count}/{video_frames} "
                    f"video frames, {self.audio_seconds:.2f}/{audio_seconds:g} s of audio"
                )
            self._changed.clear()
            try:
                await asyncio.wait_for(self._changed.wait(), remaining)
            except asyncio.TimeoutError:
                pass

    # -- video analysis -----------------------------------------------------------------

    @property
    def last_frame(self) -> Optional[np.ndarray]:
        """The newest frame as an (height, width, 3) uint8 RGB array."""
        return self.video_frames[-1] if self.video_frames else None

    @property
    def frame_size(self) -> Optional[tuple[int, int]]:
        """(width, height) of the newest frame."""
        f = self.last_frame
        return (f.shape[1], f.shape[0]) if f is not None else None

    def mean_colour(
        self, frames: int = 10, region: tuple[float, float, float, float] = (0.25, 0.25, 0.75, 0.75)
    ) -> Optional[tuple[float, float, float]]:
        """Mean RGB over `region` (x0, y0, x1, y1 as fractions of the frame; the central
        half in each dimension by default) of the last `frames` frames; None before any
        frame. Frames of different sizes are fine: each is averaged on its own first."""
        recent = list(self.video_frames)[-frames:]
        if not recent:
            return None
        x0, y0, x1, y1 = region
        means = []
        for f in recent:
            h, w = f.shape[:2]
            crop = f[int(y0 * h) : max(int(y1 * h), int(y0 * h) + 1), int(x0 * w) : max(int(x1 * w), int(x0 * w) + 1)]
            means.append(crop.reshape(-1, 3).mean(axis=0))
        r, g, b = np.mean(means, axis=0)
        return (float(r), float(g), float(b))

    # -- audio analysis -----------------------------------------------------------------

    def recent_audio(self, seconds: float = 1.0) -> np.ndarray:
        """The last `seconds` of audio (fewer if not yet received) as mono float samples."""
        if not self._audio:
            return np.zeros(0, dtype=np.float32)
        samples = np.concatenate(list(self._audio))
        return samples[-int(seconds * self.audio_rate) :]

    def spectrum(self, seconds: float = 1.0) -> Optional[ToneSpectrum]:
        """Spectrum of the last `seconds` of audio (1 Hz bins for 1 s); None with less than
        0.1 s of audio."""
        samples = self.recent_audio(seconds)
        if self.audio_rate is None or len(samples) < 0.1 * self.audio_rate:
            return None
        return ToneSpectrum.of(samples, self.audio_rate)

    def dominant_tones(self, k: int = 3, seconds: float = 1.0, **criteria: float) -> list[float]:
        """Frequencies (Hz, strongest first, accurate to well within ±5 Hz) of up to k tones
        in the last `seconds` of audio; [] for silence. `criteria`: see ToneSpectrum.tones."""
        spec = self.spectrum(seconds)
        return spec.tones(k, **criteria) if spec is not None else []

    def has_tone(self, freq_hz: float, tolerance_hz: float = 5.0, k: int = 3) -> bool:
        """Whether one of the k dominant tones is within `tolerance_hz` of `freq_hz`."""
        return any(abs(f - freq_hz) <= tolerance_hz for f in self.dominant_tones(k))

    def tone_amplitude(self, freq_hz: float, tolerance_hz: float = 5.0, seconds: float = 1.0) -> float:
        """Amplitude (fraction of full scale) of the strongest component within
        `tolerance_hz` of `freq_hz`: ~0.21 for the publisher's tone relayed unchanged (0.3
        generated, −3 dB in aiortc's mono-to-stereo upmix; see ToneAudioTrack)."""
        spec = self.spectrum(seconds)
        return spec.amplitude_near(freq_hz, tolerance_hz) if spec is not None else 0.0

    def tone_power(self, freq_hz: float, tolerance_hz: float = 5.0, seconds: float = 1.0) -> float:
        """tone_amplitude in dBFS (20·log10, a full-scale sine is 0 dB; the publisher's tone
        arrives at about −13.5 dB); −120 for nothing there."""
        return 20.0 * float(np.log10(max(self.tone_amplitude(freq_hz, tolerance_hz, seconds), 1e-6)))

    def summary(self, tones: int = 4) -> dict:
        size = self.frame_size
        colour = self.mean_colour()
        return {
            "frames": self.video_frame_count,
            "mean_rgb": [round(c, 1) for c in colour] if colour else None,
            "tones": [round(f, 1) for f in self.dominant_tones(tones)],
            "width": size[0] if size else None,
            "height": size[1] if size else None,
            "audio_seconds": round(self.audio_sample_count / self.audio_rate, 2) if self.audio_rate else 0.0,
        }


# ----------------------------------------------------------------------------------------
# Peer connections and the local half of offer/answer
# ----------------------------------------------------------------------------------------


def new_peer_connection() -> RTCPeerConnection:
    """A peer connection with no STUN/TURN servers: host candidates only."""
    return RTCPeerConnection(configuration=RTCConfiguration(iceServers=[]))


def codec_preferences(kind: str, mime_subtype: str) -> list:
    """aiortc's codec capabilities of `kind` restricted to one codec (every profile aiortc
    has of it) plus RTX. Raises ValueError for a codec aiortc lacks."""
    caps = RTCRtpSender.getCapabilities(kind).codecs
    wanted = [c for c in caps if c.mimeType.lower() == f"{kind}/{mime_subtype}".lower()]
    if not wanted:
        have = sorted({c.mimeType.split("/")[1] for c in caps})
        raise ValueError(f"aiortc has no {kind} codec {mime_subtype!r} (it has {', '.join(have)})")
    return wanted + [c for c in caps if c.mimeType.lower() == f"{kind}/rtx"]


def publisher_pc(
    colour: Optional[Colour] = (255, 0, 0),
    tone_hz: Optional[float] = 440.0,
    video_codec: str = "VP8",
    duration: Optional[float] = None,
    direction: str = "sendonly",
    ssrcs: Optional[dict[str, int]] = None,
) -> tuple[RTCPeerConnection, list[MediaStreamTrack]]:
    """A peer connection sending a ColourVideoTrack (unless colour is None; offered with
    `video_codec` only) and a ToneAudioTrack (unless tone_hz is None), both `direction`
    (sendonly; sendrecv for an MCU participant). `ssrcs` fixes the senders' SSRCs by kind
    ("video", "video-rtx", "audio"), as encoders with fixed SSRCs do; aiortc picks random ones
    otherwise."""
    pc = new_peer_connection()
    tracks: list[MediaStreamTrack] = []
    ssrcs = ssrcs or {}

    def fix_ssrcs(transceiver, kind: str) -> None:
        # aiortc has no API for this; its offer writes the sender's _ssrc/_rtx_ssrc.
        if kind in ssrcs:
            transceiver.sender._ssrc = ssrcs[kind]
        if f"{kind}-rtx" in ssrcs:
            transceiver.sender._rtx_ssrc = ssrcs[f"{kind}-rtx"]

    if colour is not None:
        track = ColourVideoTrack(colour, duration=duration)
        transceiver = pc.addTransceiver(track, direction=direction)
        transceiver.setCodecPreferences(codec_preferences("video", video_codec))
        fix_ssrcs(transceiver, "video")
        tracks.append(track)
    if tone_hz is not None:
        track = ToneAudioTrack(tone_hz, duration=duration)
        fix_ssrcs(pc.addTransceiver(track, direction=direction), "audio")
        tracks.append(track)
    return pc, tracks


def player_pc(video: bool = True, audio: bool = True, **sink_options) -> tuple[RTCPeerConnection, MediaSink]:
    """A peer connection with recvonly video and/or audio transceivers and a MediaSink on it."""
    pc = new_peer_connection()
    sink = MediaSink(**sink_options)
    sink.attach(pc)
    if video:
        pc.addTransceiver("video", direction="recvonly")
    if audio:
        pc.addTransceiver("audio", direction="recvonly")
    return pc, sink


async def create_offer(pc: RTCPeerConnection) -> str:
    """Create and set the local offer; returns its SDP with every candidate in it (aiortc's
    setLocalDescription returns only once ICE gathering is complete)."""
    await pc.setLocalDescription(await pc.createOffer())
    if pc.iceGatheringState != "complete":
        raise RuntimeError(f"ICE gathering is {pc.iceGatheringState} after setLocalDescription")
    return pc.localDescription.sdp


async def apply_answer(pc: RTCPeerConnection, sdp: str, only_addresses: Optional[Sequence[str]] = None) -> None:
    """Set the remote answer; with `only_addresses`, keep only the candidates on those
    addresses (see filter_candidates)."""
    if only_addresses is not None:
        sdp = filter_candidates(sdp, only_addresses)
    await pc.setRemoteDescription(RTCSessionDescription(sdp=sdp, type="answer"))


async def answer_offer(pc: RTCPeerConnection, offer_sdp: str, before_answer: Optional[Callable[[], None]] = None) -> str:
    """The answering side, for loopback tests and fakes: set the remote offer, run
    `before_answer` (e.g. to add tracks), create and set the answer; returns its SDP."""
    await pc.setRemoteDescription(RTCSessionDescription(sdp=offer_sdp, type="offer"))
    if before_answer is not None:
        before_answer()
    await pc.setLocalDescription(await pc.createAnswer())
    return pc.localDescription.sdp


# ----------------------------------------------------------------------------------------
# WHIP/WHEP over HTTP
# ----------------------------------------------------------------------------------------


class HttpStatusError(Exception):
    """The server answered with an unexpected HTTP status; `.status` and `.body` say what."""

    def __init__(self, method: str, url: str, status: int, body: str, headers: Optional[dict] = None) -> None:
        super().__init__(f"{method} {url}: HTTP {status}: {body.strip()[:500]}")
        self.method = method
        self.url = url
        self.status = status
        self.body = body
        self.headers = headers or {}


class ProtocolError(Exception):
    """The server accepted the request but its answer breaks WHIP/WHEP (no Location, no
    ETag, not application/sdp...)."""


@dataclass
class SdpExchange:
    """A successful WHIP/WHEP POST: the answer and the resource it created."""

    status: int
    location: str  # absolute URL of the session resource
    etag: str
    answer_sdp: str
    headers: dict


def _request(method: str, url: str, body: Optional[bytes], headers: dict) -> tuple[int, dict, bytes]:
    """One blocking HTTP request; returns (status, headers, body) whatever the status."""
    req = urllib.request.Request(url, data=body, method=method, headers=headers)
    try:
        with urllib.request.urlopen(req, timeout=HTTP_TIMEOUT) as resp:
            return resp.status, dict(resp.headers.items()), resp.read()
    except urllib.error.HTTPError as e:
        with e:
            return e.code, dict(e.headers.items()), e.read()


def _header(headers: dict, name: str) -> Optional[str]:
    for k, v in headers.items():
        if k.lower() == name.lower():
            return v
    return None


async def post_sdp(url: str, offer_sdp: str, token: Optional[str] = None) -> SdpExchange:
    """POST an SDP offer (WHIP or WHEP). Expects 201 Created with a Location (relative or
    absolute; returned absolute), an ETag and an application/sdp answer. Raises
    HttpStatusError on another status, ProtocolError on a malformed 201."""
    headers = {"Content-Type": "application/sdp", "Accept": "application/sdp"}
    if token is not None:
        headers["Authorization"] = f"Bearer {token}"
    status, resp_headers, body = await asyncio.to_thread(_request, "POST", url, offer_sdp.encode(), headers)
    text = body.decode("utf-8", errors="replace")
    if status != 201:
        raise HttpStatusError("POST", url, status, text, resp_headers)
    location = _header(resp_headers, "Location")
    etag = _header(resp_headers, "ETag")
    content_type = (_header(resp_headers, "Content-Type") or "").split(";")[0].strip().lower()
    problems = []
    if not location:
        problems.append("no Location header")
    if not etag:
        problems.append("no ETag header")
    if content_type != "application/sdp":
        problems.append(f"Content-Type is {content_type or 'missing'}, not application/sdp")
    if not text.startswith("v=0"):
        problems.append("the body is not an SDP answer")
    if problems:
        raise ProtocolError(f"POST {url}: 201 but " + "; ".join(problems))
    return SdpExchange(status, urllib.parse.urljoin(url, location), etag, text, resp_headers)


async def delete_resource(url: str, token: Optional[str] = None) -> int:
    """DELETE a WHIP/WHEP session resource; expects 200 or 204 (returned)."""
    headers = {"Authorization": f"Bearer {token}"} if token is not None else {}
    status, resp_headers, body = await asyncio.to_thread(_request, "DELETE", url, None, headers)
    if status not in (200, 204):
        raise HttpStatusError("DELETE", url, status, body.decode("utf-8", errors="replace"), resp_headers)
    return status


def whip_url(base_url: str, room: str, name: Optional[str] = None) -> str:
    url = f"{base_url.rstrip('/')}/whip/{urllib.parse.quote(room, safe='')}"
    if name is not None:
        url += "?" + urllib.parse.urlencode({"name": name})
    return url


# ----------------------------------------------------------------------------------------
# Sessions
# ----------------------------------------------------------------------------------------


class Session:
    """A negotiated WHIP/WHEP session: the peer connection and its HTTP resource."""

    def __init__(self, pc: RTCPeerConnection, offer_sdp: str, exchange: SdpExchange, token: Optional[str]) -> None:
        self.pc = pc
        self.offer_sdp = offer_sdp
        self.answer_sdp = exchange.answer_sdp
        self.location = exchange.location
        self.etag = exchange.etag
        self.headers = exchange.headers  # of the 201, e.g. a server's own X-Participant
        self.token = token
        self.delete_status: Optional[int] = None
        self._closed = False

    async def wait_connected(self, timeout: float = 10.0) -> None:
        """Wait for the peer connection to reach "connected" (ICE + DTLS done)."""
        deadline = asyncio.get_running_loop().time() + timeout
        while self.pc.connectionState != "connected":
            if self.pc.connectionState in ("failed", "closed"):
                raise ConnectionError(f"peer connection {self.pc.connectionState}")
            if asyncio.get_running_loop().time() > deadline:
                raise TimeoutError(f"peer connection still {self.pc.connectionState} after {timeout:g} s")
            await asyncio.sleep(0.05)

    async def close(self) -> None:
        """DELETE the session resource (expects 200/204; raises HttpStatusError otherwise),
        then close the peer connection whatever the DELETE did. Idempotent."""
        if self._closed:
            return
        self._closed = True
        try:
            self.delete_status = await delete_resource(self.location, self.token)
        finally:
            await self._close_media()

    async def _close_media(self) -> None:
        await self.pc.close()

    async def __aenter__(self):
        return self

    async def __aexit__(self, *exc) -> None:
        await self.close()


class Publisher(Session):
    """A WHIP publisher; `.tracks` are the local ColourVideoTrack / ToneAudioTrack."""

    def __init__(self, pc, offer_sdp, exchange, token, tracks: list[MediaStreamTrack]) -> None:
        super().__init__(pc, offer_sdp, exchange, token)
        self.tracks = tracks

    async def _close_media(self) -> None:
        for track in self.tracks:
            track.stop()
        await super()._close_media()


class Player(Session):
    """A WHEP subscriber; the received media is in `.media` (a MediaSink), and the common
    analyses are available on the player itself."""

    def __init__(self, pc, offer_sdp, exchange, token, media: MediaSink) -> None:
        super().__init__(pc, offer_sdp, exchange, token)
        self.media = media

    async def wait_media(self, timeout: float = 10.0, video_frames: int = 15, audio_seconds: float = 1.0) -> None:
        await self.media.wait_media(timeout, video_frames, audio_seconds)

    @property
    def video_frame_count(self) -> int:
        return self.media.video_frame_count

    @property
    def frame_size(self) -> Optional[tuple[int, int]]:
        return self.media.frame_size

    def mean_colour(self, frames: int = 10, region=(0.25, 0.25, 0.75, 0.75)):
        return self.media.mean_colour(frames, region)

    def dominant_tones(self, k: int = 3, seconds: float = 1.0, **criteria) -> list[float]:
        return self.media.dominant_tones(k, seconds, **criteria)

    def has_tone(self, freq_hz: float, tolerance_hz: float = 5.0, k: int = 3) -> bool:
        return self.media.has_tone(freq_hz, tolerance_hz, k)

    def tone_amplitude(self, freq_hz: float, tolerance_hz: float = 5.0, seconds: float = 1.0) -> float:
        return self.media.tone_amplitude(freq_hz, tolerance_hz, seconds)

    def tone_power(self, freq_hz: float, tolerance_hz: float = 5.0, seconds: float = 1.0) -> float:
        return self.media.tone_power(freq_hz, tolerance_hz, seconds)

    def summary(self, tones: int = 4) -> dict:
        return self.media.summary(tones)

    async def _close_media(self) -> None:
        await self.media.stop()
        await super()._close_media()


async def _negotiate(
    pc: RTCPeerConnection,
    url: str,
    token: Optional[str],
    addresses: Optional[list[str]],
    tracks: Sequence[MediaStreamTrack] = (),
    sink: Optional["MediaSink"] = None,
):
    """Offer from `pc`, POSTed to `url`, answer applied: returns (offer SDP, exchange). On any
    failure the local `tracks` are stopped, the `sink` too, and `pc` is closed before the error
    goes on."""
    try:
        offer = await create_offer(pc)
        exchange = await post_sdp(url, offer, token)
        await apply_answer(pc, exchange.answer_sdp, addresses)
    except BaseException:
        for track in tracks:
            track.stop()
        if sink is not None:
            await sink.stop()
        await pc.close()
        raise
    return offer, exchange


async def publish(
    base_url: str,
    room: str,
    colour: Optional[Colour] = (255, 0, 0),
    tone_hz: Optional[float] = 440.0,
    token: Optional[str] = None,
    name: Optional[str] = None,
    video_codec: str = "VP8",
    duration: Optional[float] = None,
    ice_addresses: Union[str, Sequence[str], None] = "auto",
    ssrcs: Optional[dict[str, int]] = None,
) -> Publisher:
    """Publish to `{base_url}/whip/{room}` (`?name=` when given) over WHIP: solid `colour`
    video (640x360, 30 fps, offered as `video_codec` only; None for no video) and a sine at
    `tone_hz` (None for no audio). `duration` ends the media after that many seconds (the
    session stays until close()); `ssrcs` fixes SSRCs (see publisher_pc). Raises
    HttpStatusError (with .status, .body) when the server does not answer 201; the peer
    connection is closed then."""
    addresses = _apply_ice_addresses(base_url, ice_addresses)
    pc, tracks = publisher_pc(colour, tone_hz, video_codec, duration, ssrcs=ssrcs)
    offer, exchange = await _negotiate(pc, whip_url(base_url, room, name), token, addresses, tracks=tracks)
    log.info("publishing to %s", exchange.location)
    return Publisher(pc, offer, exchange, token, tracks)


async def play(
    base_url: str,
    path: str,
    token: Optional[str] = None,
    video: bool = True,
    audio: bool = True,
    ice_addresses: Union[str, Sequence[str], None] = "auto",
) -> Player:
    """Subscribe over WHEP at `{base_url}{path}` (path like /whep/room1/alice) with
    recvonly video and audio. Raises HttpStatusError when the server does not answer 201."""
    addresses = _apply_ice_addresses(base_url, ice_addresses)
    pc, sink = player_pc(video, audio)
    offer, exchange = await _negotiate(pc, base_url.rstrip("/") + path, token, addresses, sink=sink)
    log.info("playing %s", exchange.location)
    return Player(pc, offer, exchange, token, sink)


class McuParticipant(Player):
    """An MCU participant (`POST /mcu/{room}`): publishes like a Publisher and receives, on the
    same connection, the room composite and its own mix (everyone but itself) in `.media`."""

    def __init__(self, pc, offer_sdp, exchange, token, media: MediaSink, tracks: list[MediaStreamTrack]) -> None:
        super().__init__(pc, offer_sdp, exchange, token, media)
        self.tracks = tracks

    async def _close_media(self) -> None:
        for track in self.tracks:
            track.stop()
        await super()._close_media()


async def join_mcu(
    base_url: str,
    room: str,
    colour: Optional[Colour] = (255, 0, 0),
    tone_hz: Optional[float] = 440.0,
    token: Optional[str] = None,
    name: Optional[str] = None,
    video_codec: str = "VP8",
    ice_addresses: Union[str, Sequence[str], None] = "auto",
) -> McuParticipant:
    """Join `{base_url}/mcu/{room}` as an MCU participant with sendrecv video and audio."""
    addresses = _apply_ice_addresses(base_url, ice_addresses)
    pc, tracks = publisher_pc(colour, tone_hz, video_codec, None, direction="sendrecv")
    sink = MediaSink()
    sink.attach(pc)
    url = base_url.rstrip("/") + f"/mcu/{room}" + (f"?name={name}" if name else "")
    offer, exchange = await _negotiate(pc, url, token, addresses, tracks=tracks, sink=sink)
    log.info("joined the MCU at %s", exchange.location)
    return McuParticipant(pc, offer, exchange, token, sink, tracks)


# ----------------------------------------------------------------------------------------
# CLI
# ----------------------------------------------------------------------------------------


def _parse_colour(text: str) -> Colour:
    parts = [int(p) for p in text.split(",")]
    if len(parts) != 3 or not all(0 <= p <= 255 for p in parts):
        raise argparse.ArgumentTypeError("a colour is R,G,B with each 0..255")
    return (parts[0], parts[1], parts[2])


async def _sleep_or_signal(seconds: float) -> None:
    """Sleep `seconds`, or less if SIGINT/SIGTERM arrives (so the session is still DELETEd)."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    try:
        await asyncio.wait_for(stop.wait(), seconds)
    except asyncio.TimeoutError:
        pass
    finally:
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(sig)


async def _cli_publish(args: argparse.Namespace) -> int:
    session = await publish(
        args.url,
        args.room,
        colour=None if args.no_video else args.colour,
        tone_hz=None if args.no_audio else args.tone,
        token=args.token,
        name=args.name,
        video_codec=args.codec,
    )
    print(json.dumps({"location": session.location, "etag": session.etag}), flush=True)
    try:
        await _sleep_or_signal(args.seconds)
    finally:
        await session.close()
    return 0


async def _cli_play(args: argparse.Namespace) -> int:
    session = await play(args.url, args.path, token=args.token, video=not args.no_video, audio=not args.no_audio)
    try:
        await _sleep_or_signal(args.seconds)
        summary = session.summary()
    finally:
        await session.close()
    if args.json:
        print(json.dumps(summary), flush=True)
    else:
        for key, value in summary.items():
            print(f"{key}: {value}")
    return 0


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("-v", "--verbose", action="count", default=0, help="-v: our log, -vv: aiortc's too")
    sub = parser.add_subparsers(dest="command", required=True)

    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--url", required=True, help="server base URL, e.g. http://127.0.0.1:8080")
    common.add_argument("--token", help="bearer token (JWT)")
    common.add_argument("--seconds", type=float, default=10.0, help="how long to stay (default 10)")
    common.add_argument("--no-video", action="store_true")
    common.add_argument("--no-audio", action="store_true")

    p = sub.add_parser("publish", parents=[common], help="publish colour + tone over WHIP; prints the Location as JSON")
    p.add_argument("--room", required=True)
    p.add_argument("--name", help="participant name (?name=)")
    p.add_argument("--colour", "--color", type=_parse_colour, default=(255, 0, 0), help="R,G,B (default 255,0,0)")
    p.add_argument("--tone", type=float, default=440.0, help="Hz (default 440)")
    p.add_argument("--codec", default="VP8", help="video codec to offer: VP8 or H264 (default VP8)")

    p = sub.add_parser("play", parents=[common], help="subscribe over WHEP and summarise what arrived")
    p.add_argument("--path", required=True, help="e.g. /whep/room1/alice")
    p.add_argument("--json", action="store_true", help="print the summary as one JSON object")

    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.WARNING if args.verbose == 0 else logging.INFO if args.verbose == 1 else logging.DEBUG,
        format="%(asctime)s %(name)s %(levelname)s %(message)s",
        stream=sys.stderr,
    )
    if args.verbose == 1:
        logging.getLogger("aiortc").setLevel(logging.WARNING)
        logging.getLogger("aioice").setLevel(logging.WARNING)
    runner = _cli_publish if args.command == "publish" else _cli_play
    try:
        return asyncio.run(runner(args))
    except HttpStatusError as e:
        print(f"mcuclient: {e}", file=sys.stderr)
        return 2
    except (ProtocolError, TimeoutError, ConnectionError, OSError) as e:
        print(f"mcuclient: {type(e).__name__}: {e}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
