#!/usr/bin/env python3
"""SIP end-to-end test clients for the `mcu` server's SIP gateway: baresip, sipp and raw SIP.

Three parts, each usable on its own (sip_selftest.py checks them without the server):

* `Baresip`: one baresip 1.0.0 process, configured in a directory of its own (config and
  accounts files written there), on 127.0.0.1 only, driven over its ctrl_tcp interface
  (netstring-framed JSON commands and events): `start()`, `dial(uri)`, `hangup()`,
  `wait_event("CALL_ESTABLISHED")`, `snapshot(path)` (a PNG of the received video, via the
  snapshot module's `snapshot_recv`), `received_wav()` (the decoded received audio the sndfile
  module dumps), `stop()`. It sends a sine (ausine) at a chosen frequency and fakevideo's
  picture: three vertical bars, red | green | blue, each a third of the width.
* `run_sipp()`: runs one sipp UAC scenario of tests/e2e/sip/ against a target, with its
  message and error logs in a directory, and returns the exit status and the statistics.
* Raw SIP (`sip_exchange()`, `build_request()`, `parse_responses()`): single messages over UDP
  or TCP, for malformed requests sipp cannot write.

What baresip 1.0.0 needs (found by reading its v1.0.0 sources and trying):

* `net_interface 127.0.0.1` (an address: `net_interface lo` fails, "could not get IPv4
  address"); `sip_listen 127.0.0.1:PORT` (UDP and TCP).
* `audio_source ausine,FREQ` (an integer 10..20000 Hz; ausine only runs at 48 kHz stereo, hence
  `ausrc_srate 48000` and `ausrc_channels 2`); amplitude 0.5 of full scale.
* No sound card: `audio_player aubridge,nil` (a player that accepts audio and plays nothing;
  decoding and the filters run on RTP arrival regardless).
* `module sndfile.so` + `snd_path DIR`: every audio stream writes DIR/dump-<local time to the
  second>-dec.wav (received, after decoding, at the codec's rate: 48 kHz stereo for Opus,
  8 kHz mono for G.711) and ...-enc.wav (sent). Two baresips must not share DIR (the names
  collide within a second). The WAV header's sizes are only written when the stream ends, so
  `read_wav()` reads up to the end of the file.
* `module snapshot.so`: the command `snapshot_recv PATH` saves the next decoded received
  frame as a PNG at PATH (under 100 characters); `snapshot_send PATH` the next sent one.
* `video_source fakevideo,nil`, `video_display fakevideo,nil` (frames are decoded and dropped).
* `module_app ctrl_tcp.so` + `ctrl_tcp_listen 127.0.0.1:PORT` (one client at a time). The
  stdio module cannot be used with stdin not a terminal (epoll_ctl on fd 0 fails).
* Accounts line: `<sip:USER@127.0.0.1:PORT>;regint=0;answermode=auto` (regint=0: no
  REGISTER); `;audio_codecs=PCMU` / `;video_codecs=vp8` restrict the offer;
  `;auth_pass=SECRET` (and `;auth_user=NAME`, default USER) answers a 401/407 challenge once:
  a second challenge for the same realm (wrong password) closes the call with "401
  Unauthorized". Without auth_pass it answers with an empty password.
* `statmode_default off`, or the menu module prints a status line 10 times a second.

baresip 1.0.0's offer (all modules above, nothing restricted), as captured with -s:

    m=audio PORT RTP/AVP 96 0 8 101
    a=rtpmap:96 opus/48000/2
    a=fmtp:96 stereo=1;sprop-stereo=1
    a=rtpmap:0 PCMU/8000
    a=rtpmap:8 PCMA/8000
    a=rtpmap:101 telephone-event/8000
    a=fmtp:101 0-15
    a=sendrecv / a=label:1 / a=rtcp-rsize / a=ssrc:... / a=minptime:20 / a=ptime:20
    m=video PORT RTP/AVP 96 97 34 98 99 100
    a=rtpmap:96 H264/90000
    a=fmtp:96 packetization-mode=0;profile-level-id=42e01f
    a=rtpmap:97 H264/90000
    a=fmtp:97 packetization-mode=1;profile-level-id=42e01f
    a=rtpmap:34 H263/90000 ...  98 MP4V-ES, 99 H265, 100 VP8 (max-fs=3600)
    a=sendrecv / a=label:2 / a=rtcp-rsize / a=ssrc:... / a=framerate:25.00 /
    a=rtcp-fb:* nack pli / a=content:main

(no rtcp-mux, no a=imageattr; payload type 96 in both sections; H.264 packetization-mode 0
comes first.)

The configuration is sip/baresip.config.template filled in; the accounts file is one line.

CLI:  python sipclient.py offer     # prints the SDP baresip offers (INVITE to a dead port)
"""

from __future__ import annotations

import contextlib
import ctypes
import itertools
import json
import os
import queue
import random
import re
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterable, Optional, Sequence, Union

import numpy as np

BARESIP = os.environ.get("BARESIP_BIN") or shutil.which("baresip") or "baresip"
SIPP = os.environ.get("SIPP_BIN") or shutil.which("sipp") or "sipp"
BARESIP_MODULES = "/usr/lib/baresip/modules"
SCENARIOS = Path(__file__).resolve().parent / "sip"
PCAP_DIR = Path("/usr/share/sip-tester")
LOCALHOST = "127.0.0.1"

# What fakevideo draws: three vertical bars of these colours, left to right.
FAKEVIDEO_BARS = ((255, 0, 0), (0, 255, 0), (0, 0, 255))

# ----------------------------------------------------------------------------------------
# Processes and ports
# ----------------------------------------------------------------------------------------

_PR_SET_PDEATHSIG = 1


def die_with_parent() -> None:
    """preexec_fn: SIGKILL the child when this process dies (Linux)."""
    try:
        ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)
    except Exception:
        pass


LIVE: list[subprocess.Popen] = []  # every process started here and not yet reaped


def kill_all() -> None:
    """SIGKILL every process this module started that still runs (for signal handlers)."""
    for p in list(LIVE):
        if p.poll() is None:
            p.kill()
            with contextlib.suppress(Exception):
                p.wait(5)
        with contextlib.suppress(ValueError):
            LIVE.remove(p)


def _spawn(argv: Sequence[str], log_path: Path, cwd: Optional[Path] = None) -> subprocess.Popen:
    log = open(log_path, "wb")
    try:
        proc = subprocess.Popen(list(argv), stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                                cwd=cwd, preexec_fn=die_with_parent)
    finally:
        log.close()
    LIVE.append(proc)
    return proc


def _reap(proc: subprocess.Popen, grace: float = 5.0, sig: int = signal.SIGTERM) -> Optional[int]:
    if proc.poll() is None:
        proc.send_signal(sig)
        try:
            proc.wait(grace)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    with contextlib.suppress(ValueError):
        LIVE.remove(proc)
    return proc.returncode


def free_port(udp: bool = True, tcp: bool = True, host: str = LOCALHOST) -> int:
    """A port free on `host` for UDP and/or TCP at the time of asking (baresip's sip_listen
    binds both)."""
    for _ in range(200):
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM if udp else socket.SOCK_STREAM) as s:
            s.bind((host, 0))
            port = s.getsockname()[1]
        if udp and tcp:
            with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as t:
                try:
                    t.bind((host, port))
                except OSError:
                    continue
        return port
    raise OSError("no free port")


def free_port_block(count: int, step: int = 1, low: int = 30000, high: int = 60000, host: str = LOCALHOST) -> int:
    """A base port such that base, base+step, ... (count of them) are all free for UDP now."""
    for _ in range(500):
        base = random.randrange(low, high - count * step) & ~1
        ok = True
        for i in range(count):
            with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
                try:
                    s.bind((host, base + i * step))
                except OSError:
                    ok = False
                    break
        if ok:
            return base
    raise OSError(f"no block of {count} free UDP ports")


# ----------------------------------------------------------------------------------------
# Audio and pictures
# ----------------------------------------------------------------------------------------


@dataclass
class Wav:
    rate: int
    channels: int
    samples: np.ndarray  # float32 mono (channels averaged), in [-1, 1]

    @property
    def seconds(self) -> float:
        return len(self.samples) / self.rate if self.rate else 0.0

    def last(self, seconds: float) -> np.ndarray:
        return self.samples[-int(seconds * self.rate):] if seconds else self.samples


def read_wav(path: Union[str, Path]) -> Wav:
    """A PCM16 or float32 WAV as float mono samples. Reads the data chunk to the end of the
    file whatever its header says: baresip's sndfile only writes the sizes on close, so a
    dump still being written says 0 (or less than there is)."""
    data = Path(path).read_bytes()
    if len(data) < 12 or data[:4] != b"RIFF" or data[8:12] != b"WAVE":
        raise ValueError(f"{path}: not a RIFF/WAVE file ({len(data)} bytes)")
    pos, fmt = 12, None
    while pos + 8 <= len(data):
        cid, size = data[pos:pos + 4], int.from_bytes(data[pos + 4:pos + 8], "little")
        body = pos + 8
        if cid == b"fmt ":
            tag, channels, rate = (int.from_bytes(data[body:body + 2], "little"), int.from_bytes(data[body + 2:body + 4], "little"),
                                   int.from_bytes(data[body + 4:body + 8], "little"))
            bits = int.from_bytes(data[body + 14:body + 16], "little")
            if tag == 0xFFFE and size >= 40:  # WAVE_FORMAT_EXTENSIBLE: the sub-format's first two bytes
                tag = int.from_bytes(data[body + 24:body + 26], "little")
            fmt = (tag, channels, rate, bits)
        elif cid == b"data":
            if fmt is None:
                raise ValueError(f"{path}: data before fmt")
            tag, channels, rate, bits = fmt
            raw = data[body:]  # to the end of the file (see above)
            if tag == 1 and bits == 16:
                x = np.frombuffer(raw[: len(raw) // (2 * channels) * 2 * channels], dtype="<i2").astype(np.float32) / 32768.0
            elif tag == 3 and bits == 32:
                x = np.frombuffer(raw[: len(raw) // (4 * channels) * 4 * channels], dtype="<f4").astype(np.float32)
            else:
                raise ValueError(f"{path}: unsupported WAV format tag {tag}, {bits} bits")
            return Wav(rate, channels, x.reshape(-1, channels).mean(axis=1))
        pos = body + size + (size & 1)
    raise ValueError(f"{path}: no data chunk")


def tone_levels_db(samples: np.ndarray, rate: int, tones: Iterable[float], tolerance_hz: float = 5.0,
                   avoid: Iterable[float] = ()) -> tuple[dict[float, float], float]:
    """Level (dBFS of a sine's amplitude) of each of `tones` in `samples`, and the noise floor:
    the median bin from 100 Hz to min(2 kHz, Nyquist) away (±30 Hz) from `tones` and `avoid`.
    Hann window, as mcuclient.ToneSpectrum (a sine of amplitude A reads A)."""
    tones = list(tones)
    if len(samples) < rate // 10:
        return {t: -120.0 for t in tones}, -120.0
    window = np.hanning(len(samples))
    amp = 2.0 * np.abs(np.fft.rfft(samples * window)) / window.sum()
    freqs = np.fft.rfftfreq(len(samples), 1.0 / rate)
    levels = {}
    for t in tones:
        band = (freqs >= t - tolerance_hz) & (freqs <= t + tolerance_hz)
        levels[t] = 20 * np.log10(max(float(amp[band].max()) if band.any() else 0.0, 1e-6))
    band = (freqs >= 100) & (freqs <= min(2000, rate / 2 - 50))
    for t in [*tones, *avoid]:
        band &= np.abs(freqs - t) > 30
    floor = 20 * np.log10(max(float(np.median(amp[band])) if band.any() else 0.0, 1e-7))
    return levels, float(floor)


def peak_frequency(samples: np.ndarray, rate: int) -> float:
    """The frequency of the strongest bin above 20 Hz (parabolic interpolation)."""
    window = np.hanning(len(samples))
    amp = np.abs(np.fft.rfft(samples * window))
    freqs = np.fft.rfftfreq(len(samples), 1.0 / rate)
    amp[freqs < 20] = 0
    i = int(amp.argmax())
    if 0 < i < len(amp) - 1:
        a, b, c = np.log(amp[i - 1:i + 2] + 1e-12)
        d = a - 2 * b + c
        return float(freqs[i] + (0.5 * (a - c) / d if d else 0.0) * (freqs[1] - freqs[0]))
    return float(freqs[i])


def read_png(path: Union[str, Path]) -> np.ndarray:
    """A PNG as an (height, width, 3) uint8 RGB array (decoded by PyAV/FFmpeg)."""
    import av  # PyAV, in the e2e venv

    with av.open(str(path)) as container:
        for frame in container.decode(video=0):
            return frame.to_ndarray(format="rgb24")
    raise ValueError(f"{path}: no picture")


def colour_share(rgb: np.ndarray, colour: Sequence[int], tolerance: int = 60) -> float:
    """Share of the pixels within `tolerance` (per channel) of `colour`."""
    diff = np.abs(rgb.astype(np.int16) - np.array(colour, dtype=np.int16)).max(axis=2)
    return float((diff <= tolerance).mean())


def colour_centroid_x(rgb: np.ndarray, colour: Sequence[int], tolerance: int = 60) -> Optional[float]:
    """Mean x (fraction of the width) of the pixels near `colour`; None when there are none."""
    diff = np.abs(rgb.astype(np.int16) - np.array(colour, dtype=np.int16)).max(axis=2)
    ys, xs = np.nonzero(diff <= tolerance)
    return float(xs.mean() / rgb.shape[1]) if len(xs) else None


# ----------------------------------------------------------------------------------------
# baresip
# ----------------------------------------------------------------------------------------


class BaresipError(Exception):
    pass


def _netstring(payload: bytes) -> bytes:
    return str(len(payload)).encode() + b":" + payload + b","


class Baresip:
    """One baresip process in `workdir` (created; config, accounts, its log `baresip.log`, the
    WAV dumps and snapshots go there).

    user         the account's user part: the From of its calls (the server names the
                 participant sip-<user>)
    tone_hz      ausine's frequency (integer Hz)
    answer       "auto" (answers incoming calls at once) or "manual"
    audio_codecs e.g. "opus/48000/2,pcmu" or "pcma" (None: every loaded codec: opus, PCMU, PCMA)
    video_codecs e.g. "h264" or "vp8" (None: all); video=False loads no video modules at all
    auth_pass    the password it answers digest challenges (401/407) with (account parameter
                 auth_pass; without one, a challenged call fails)
    auth_user    the digest username (auth_user; default: `user`)
    """

    _tokens = itertools.count(1)

    def __init__(self, workdir: Union[str, Path], user: str = "alice", tone_hz: int = 1000, answer: str = "manual",
                 audio_codecs: Optional[str] = None, video_codecs: Optional[str] = None, video: bool = True,
                 video_size: tuple[int, int] = (640, 360), video_fps: int = 25, sip_trace: bool = True,
                 extra_config: Sequence[str] = (), auth_user: Optional[str] = None, auth_pass: Optional[str] = None) -> None:
        if not (10 <= int(tone_hz) <= 20000):
            raise ValueError("ausine takes 10..20000 Hz")
        self.dir = Path(workdir)
        self.user = user
        self.tone_hz = int(tone_hz)
        self.answer = answer
        self.audio_codecs = audio_codecs
        self.video_codecs = video_codecs
        self.video = video
        self.video_size = video_size
        self.video_fps = video_fps
        self.sip_trace = sip_trace
        self.extra_config = list(extra_config)
        self.auth_user = auth_user
        self.auth_pass = auth_pass
        self.sip_port = 0
        self.ctrl_port = 0
        self.proc: Optional[subprocess.Popen] = None
        self.log_path = self.dir / "baresip.log"
        self.events: list[dict] = []
        self._responses: dict[str, dict] = {}
        self._cond = threading.Condition()
        self._sock: Optional[socket.socket] = None
        self._reader: Optional[threading.Thread] = None

    # -- set-up -------------------------------------------------------------------------

    @property
    def aor(self) -> str:
        return f"sip:{self.user}@{LOCALHOST}:{self.sip_port}"

    def config_text(self) -> str:
        """sip/baresip.config.template filled in."""
        w, h = self.video_size
        video_config = "\n".join([
            "# Video: fakevideo's three bars out, received frames decoded and dropped",
            "video_source\t\tfakevideo,nil",
            "video_display\t\tfakevideo,nil",
            f"video_size\t\t{w}x{h}",
            "video_bitrate\t\t1000000",
            f"video_fps\t\t{self.video_fps}",
        ]) if self.video else "# no video"
        video_modules = "\n".join([
            "module\t\t\tavcodec.so",
            "module\t\t\tvp8.so",
            "module\t\t\tfakevideo.so",
            "# snapshot: the command snapshot_recv PATH saves the next received frame as PNG",
            "module\t\t\tsnapshot.so",
        ]) if self.video else ""
        template = (SCENARIOS / "baresip.config.template").read_text()
        return template.format(sip_port=self.sip_port, ctrl_port=self.ctrl_port, tone_hz=self.tone_hz, snd_path=self.dir,
                               video_config=video_config, video_modules=video_modules, extra="\n".join(self.extra_config))

    def accounts_text(self) -> str:
        params = [f"regint=0", f"answermode={self.answer}"]
        if self.audio_codecs:
            params.append(f"audio_codecs={self.audio_codecs}")
        if self.video_codecs:
            params.append(f"video_codecs={self.video_codecs}")
        if self.auth_user:
            params.append(f"auth_user={self.auth_user}")
        if self.auth_pass:
            params.append(f"auth_pass={self.auth_pass}")
        return f"\"{self.user}\" <{self.aor}>;" + ";".join(params) + "\n"

    def start(self, timeout: float = 15.0) -> "Baresip":
        self.dir.mkdir(parents=True, exist_ok=True)
        for attempt in range(3):
            self.sip_port = free_port()
            self.ctrl_port = free_port(udp=False)
            (self.dir / "config").write_text(self.config_text())
            (self.dir / "accounts").write_text(self.accounts_text())
            (self.dir / "contacts").write_text("")
            argv = [BARESIP, "-f", str(self.dir), *(["-s"] if self.sip_trace else [])]
            self.proc = _spawn(argv, self.log_path, cwd=self.dir)
            try:
                self._connect(timeout)
                return self
            except BaresipError:
                _reap(self.proc, 2)
                if attempt == 2 or "Address already in use" not in self.log_text():
                    raise
        return self

    def _connect(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while True:
            if self.proc.poll() is not None:
                raise BaresipError(f"baresip exited with {self.proc.returncode} at start-up:\n{self.log_tail()}")
            if "baresip is ready" in self.log_text():
                try:
                    self._sock = socket.create_connection((LOCALHOST, self.ctrl_port), timeout=2)
                    break
                except OSError:
                    pass
            if time.monotonic() > deadline:
                raise BaresipError(f"baresip not ready within {timeout:g} s:\n{self.log_tail()}")
            time.sleep(0.05)
        self._sock.settimeout(None)
        self._reader = threading.Thread(target=self._read, name=f"baresip-{self.user}", daemon=True)
        self._reader.start()

    def _read(self) -> None:
        buf = b""
        sock = self._sock
        try:
            while True:
                chunk = sock.recv(65536)
                if not chunk:
                    break
                buf += chunk
                while True:
                    colon = buf.find(b":")
                    if colon < 0 or not buf[:colon].isdigit():
                        break
                    n = int(buf[:colon])
                    if len(buf) < colon + 1 + n + 1:
                        break
                    payload = buf[colon + 1: colon + 1 + n]
                    buf = buf[colon + 1 + n + 1:]
                    try:
                        msg = json.loads(payload.decode("utf-8", "replace"))
                    except ValueError:
                        continue
                    with self._cond:
                        if msg.get("response"):
                            self._responses[str(msg.get("token", ""))] = msg
                        elif msg.get("event"):
                            msg["_t"] = time.monotonic()
                            self.events.append(msg)
                        self._cond.notify_all()
        except OSError:
            pass
        finally:
            with self._cond:
                self._cond.notify_all()

    # -- commands and events ------------------------------------------------------------

    def command(self, command: str, params: Optional[str] = None, timeout: float = 10.0) -> dict:
        """Runs a baresip command (the long form: "dial", "hangup", "snapshot_recv"...);
        returns its response {"ok": bool, "data": text}. Raises BaresipError on a failed or
        missing response."""
        if self._sock is None:
            raise BaresipError("not started")
        token = f"t{next(self._tokens)}"
        msg = {"command": command, "token": token}
        if params is not None:
            msg["params"] = params
        self._sock.sendall(_netstring(json.dumps(msg).encode()))
        deadline = time.monotonic() + timeout
        with self._cond:
            while token not in self._responses:
                left = deadline - time.monotonic()
                if left <= 0 or (self.proc is not None and self.proc.poll() is not None):
                    raise BaresipError(f"no response to {command!r} within {timeout:g} s")
                self._cond.wait(min(left, 0.2))
            resp = self._responses.pop(token)
        if not resp.get("ok"):
            raise BaresipError(f"{command} {params or ''}: {resp.get('data')}")
        return resp

    def wait_event(self, *types: str, timeout: float = 20.0, after: int = 0) -> dict:
        """The first event of one of `types` (e.g. "CALL_ESTABLISHED", "CALL_CLOSED") among
        events[after:]; raises BaresipError after `timeout` s, listing what came."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while True:
                for ev in self.events[after:]:
                    if ev.get("type") in types:
                        return ev
                left = deadline - time.monotonic()
                if left <= 0 or (self.proc is not None and self.proc.poll() is not None):
                    seen = ", ".join(f"{e.get('type')}({e.get('param', '')})" for e in self.events[after:]) or "none"
                    raise BaresipError(f"{self.user}: no {'/'.join(types)} within {timeout:g} s; events: {seen}")
                self._cond.wait(min(left, 0.2))

    def event_types(self) -> list[str]:
        return [str(e.get("type")) for e in self.events]

    def dial(self, uri: str) -> int:
        """Starts a call to `uri` (e.g. sip:1000@127.0.0.1:5060, ;transport=tcp for TCP);
        returns the event index to wait from."""
        mark = len(self.events)
        self.command("dial", uri)
        return mark

    def call(self, uri: str, timeout: float = 20.0) -> dict:
        """dial() and wait for the call to be established (CALL_CLOSED first fails)."""
        mark = self.dial(uri)
        ev = self.wait_event("CALL_ESTABLISHED", "CALL_CLOSED", timeout=timeout, after=mark)
        if ev.get("type") != "CALL_ESTABLISHED":
            raise BaresipError(f"call to {uri} closed: {ev.get('param')}")
        return ev

    def hangup(self, timeout: float = 10.0) -> dict:
        """Hangs up the current call; returns its CALL_CLOSED event."""
        mark = len(self.events)
        self.command("hangup")
        return self.wait_event("CALL_CLOSED", timeout=timeout, after=mark)

    def hold(self) -> None:
        self.command("hold")

    def resume(self) -> None:
        self.command("resume")

    def snapshot(self, path: Union[str, Path], timeout: float = 10.0) -> np.ndarray:
        """Saves the next received video frame as a PNG at `path` and returns it decoded
        (RGB array). Raises BaresipError when no frame is decoded within `timeout` s."""
        path = Path(path)
        if len(str(path)) >= 100:
            raise ValueError(f"snapshot path too long for baresip (99 characters at most): {path}")
        with contextlib.suppress(FileNotFoundError):
            path.unlink()
        self.command("snapshot_recv", str(path))
        deadline = time.monotonic() + timeout
        last_error: Optional[Exception] = None
        while time.monotonic() < deadline:
            if path.exists() and path.stat().st_size > 0:
                try:
                    return read_png(path)
                except Exception as e:  # still being written
                    last_error = e
            time.sleep(0.1)
        raise BaresipError(f"{self.user}: no received video frame saved within {timeout:g} s"
                           + (f" ({last_error})" if last_error else ""))

    # -- what it received ---------------------------------------------------------------

    def wavs(self, kind: str = "dec") -> list[Path]:
        """sndfile's dumps of `kind` ("dec": received, "enc": sent), oldest first."""
        return sorted(self.dir.glob(f"dump-*-{kind}.wav"), key=lambda p: (p.stat().st_mtime, p.name))

    def received_wav(self) -> Optional[Path]:
        """The newest dump of received (decoded) audio, or None."""
        w = self.wavs("dec")
        return w[-1] if w else None

    def received_audio(self) -> Wav:
        path = self.received_wav()
        if path is None:
            raise BaresipError(f"{self.user}: no received-audio dump in {self.dir}")
        return read_wav(path)

    # -- the SIP trace ------------------------------------------------------------------

    def log_text(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except OSError:
            return ""

    def log_tail(self, lines: int = 30) -> str:
        return "\n".join(f"  [baresip {self.user}] {l}" for l in self.log_text().splitlines()[-lines:])

    def sip_messages(self) -> list[tuple[str, str, str, str]]:
        """The SIP trace (-s) as (transport, source, destination, message text)."""
        text = re.sub(r"\x1b\[[0-9;]*m", "\x00", self.log_text())
        found = []
        for m in re.finditer(r"(UDP|TCP|TLS) (\S+) -> (\S+)\n(.*?)(?:\x00|\Z)", text, re.S):
            found.append((m.group(1), m.group(2), m.group(3), m.group(4)))
        return found

    def _ours(self, msg: str) -> bool:
        """Whether `msg` belongs to a dialog this phone started (its From is our account);
        addresses do not tell over TCP, where the local port is the connection's."""
        head = msg.split("\n\n", 1)[0]
        m = re.search(r"^(?:From|f):(.*)$", head, re.M | re.I)
        return bool(m) and f"sip:{self.user}@" in m.group(1)

    def sent_sdp(self, method: str = "INVITE") -> Optional[str]:
        """The SDP body of the first `method` request of a call it made (its offer)."""
        for transport, src, dst, msg in self.sip_messages():
            if msg.startswith(method + " ") and self._ours(msg):
                return _body(msg)
        return None

    def received_offer_sdp(self) -> Optional[str]:
        """The SDP body of the last INVITE it received (a call to it: the caller's offer)."""
        body = None
        for transport, src, dst, msg in self.sip_messages():
            if msg.startswith("INVITE ") and not self._ours(msg):
                body = _body(msg) or body
        return body

    def sent_answer_sdp(self) -> Optional[str]:
        """The SDP body of the last 2xx it sent to an INVITE it received (its answer)."""
        body = None
        for transport, src, dst, msg in self.sip_messages():
            if msg.startswith("SIP/2.0 2") and not self._ours(msg) and re.search(r"^CSeq: *\d+ INVITE", msg, re.M | re.I):
                b = _body(msg)
                if b and b.startswith("v=0"):
                    body = b
        return body

    def received_requests(self, method: str) -> list[str]:
        """The `method` requests it received (the SIP trace's messages to its own port), as text."""
        mine = f"{LOCALHOST}:{self.sip_port}"
        return [msg for transport, src, dst, msg in self.sip_messages() if msg.startswith(method + " ") and dst == mine]

    def received_answer_sdp(self) -> Optional[str]:
        """The SDP body of the last 2xx to one of its INVITEs (the answer)."""
        body = None
        for transport, src, dst, msg in self.sip_messages():
            if msg.startswith("SIP/2.0 2") and self._ours(msg) and re.search(r"^CSeq: *\d+ INVITE", msg, re.M | re.I):
                b = _body(msg)
                if b and b.startswith("v=0"):
                    body = b
        return body

    # -- the end ------------------------------------------------------------------------

    def stop(self, timeout: float = 5.0) -> Optional[int]:
        """SIGTERM (baresip hangs up its calls, sending BYE, and exits), SIGKILL after
        `timeout` s. The WAV dumps are complete (their headers written) afterwards."""
        if self._sock is not None:
            with contextlib.suppress(OSError):
                self._sock.shutdown(socket.SHUT_RDWR)
            self._sock.close()
            self._sock = None
        if self.proc is None:
            return None
        return _reap(self.proc, timeout)

    def kill(self) -> None:
        """SIGKILL: no BYE, the media just stops."""
        if self.proc is not None:
            _reap(self.proc, 0.1, signal.SIGKILL)

    def __enter__(self) -> "Baresip":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()


def _body(msg: str) -> Optional[str]:
    head, sep, body = msg.replace("\r\n", "\n").partition("\n\n")
    return body.strip() + "\n" if sep and body.strip() else None


def sdp_media(sdp: str, kind: str) -> list[str]:
    """The lines of the first m=`kind` section of `sdp` ([] if none)."""
    out: list[str] = []
    inside = False
    for line in sdp.replace("\r\n", "\n").split("\n"):
        if line.startswith("m="):
            if inside:
                break
            inside = line.startswith(f"m={kind} ")
        if inside and line:
            out.append(line)
    return out


def sdp_codec(sdp: str, kind: str) -> Optional[str]:
    """"NAME/RATE[/CH] (fmtp)" of the first payload type of the first m=`kind` section."""
    section = sdp_media(sdp, kind)
    if not section:
        return None
    parts = section[0].split()
    if len(parts) < 4 or parts[1] == "0":
        return None
    pt = parts[3]
    rtpmap = next((l.split(" ", 1)[1] for l in section if l.startswith(f"a=rtpmap:{pt} ")), pt)
    fmtp = next((l.split(" ", 1)[1] for l in section if l.startswith(f"a=fmtp:{pt} ")), "")
    return rtpmap + (f" ({fmtp})" if fmtp else "")


# ----------------------------------------------------------------------------------------
# sipp
# ----------------------------------------------------------------------------------------


@dataclass
class SippResult:
    scenario: str
    returncode: int
    seconds: float
    stdout: str
    errors: str
    messages: str
    workdir: Path
    argv: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return self.returncode == 0

    def _count(self, label: str) -> Optional[int]:
        # the final screen's "Successful call | <periodic> | <cumulative>" lines
        found = re.findall(rf"{label}\s*\|\s*(\d+)\s*\|\s*(\d+)", self.stdout)
        return int(found[-1][1]) if found else None

    @property
    def successful(self) -> Optional[int]:
        return self._count("Successful call")

    @property
    def failed(self) -> Optional[int]:
        return self._count("Failed call")

    def message_texts(self, direction: str, pattern: str = "") -> list[str]:
        """The SIP messages of the message log (-trace_msg) sipp "received" or "sent", whose
        first line matches the regex `pattern`, in order, as text."""
        out = []
        for block in re.split(r"\n-{40,}[^\n]*\n", "\n" + self.messages):
            m = re.match(rf"\w+ message {direction}[^\n]*:\n\n(.*)", block, re.S)
            if m:
                text = m.group(1).rstrip("\n") + "\n"
                if re.search(pattern, text.split("\n", 1)[0]):
                    out.append(text)
        return out

    def received(self, pattern: str) -> list[str]:
        """First lines of the messages sipp received matching `pattern` (a regex on the
        first line, e.g. r"^SIP/2.0 487" or r"^BYE ")."""
        return [t.split("\n", 1)[0] for t in self.message_texts("received", pattern)]

    def sent(self, pattern: str) -> list[str]:
        return [t.split("\n", 1)[0] for t in self.message_texts("sent", pattern)]

    def received_sdps(self, pattern: str = r"^SIP/2.0 2") -> list[str]:
        """The SDP bodies of the received messages matching `pattern` (the answers, by
        default), in order."""
        out = []
        for text in self.message_texts("received", pattern):
            body = _body(text)
            if body and body.startswith("v=0"):
                out.append(body)
        return out

    def summary(self) -> str:
        return (f"sipp {self.scenario}: exit {self.returncode} in {self.seconds:.1f} s, "
                f"{self.successful} successful, {self.failed} failed")

    def why(self, limit: int = 1500) -> str:
        """The error log (or the end of the screen output) for a failure message."""
        text = self.errors.strip() or self.stdout.strip()[-limit:]
        return text[:limit]


@dataclass
class SippMessage:
    """One entry of sipp's message log (-trace_msg): when, "sent" or "received", the text."""

    time: float  # seconds since the epoch
    direction: str
    text: str

    @property
    def first_line(self) -> str:
        return self.text.split("\n", 1)[0]

    def header(self, name: str) -> Optional[str]:
        return request_header(self.text, name)


def sipp_log(text: str) -> list[SippMessage]:
    """The messages of a sipp message log, in order. Its entries are a line of dashes with the
    local date and time, "UDP message received [N] bytes :" (or "... sent (N bytes):"), an
    empty line and the message."""
    import datetime

    found = []
    for m in re.finditer(r"^-{40,} (\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d+)\n\w+ message (sent|received)[^\n]*:\n\n(.*?)(?=^-{40,} \d{4}-|\Z)",
                         text, re.M | re.S):
        when = datetime.datetime.strptime(m.group(1), "%Y-%m-%d %H:%M:%S.%f").timestamp()
        found.append(SippMessage(when, m.group(2), m.group(3).rstrip("\n") + "\n"))
    return found


def sipp_argv(scenario: str, target: str, service: str, workdir: Path, transport: str = "u1", calls: int = 1,
              limit: Optional[int] = None, rate: Optional[float] = None, rate_period_ms: int = 1000,
              duration_ms: Optional[int] = None, media_port: Optional[int] = None, timeout_s: float = 60.0,
              recv_timeout_ms: int = 20000, extra: Sequence[str] = ()) -> list[str]:
    name = Path(scenario).stem
    path = scenario if os.sep in scenario else str(SCENARIOS / (scenario if scenario.endswith(".xml") else scenario + ".xml"))
    if media_port is None:
        media_port = free_port_block(1, low=40000, high=60000)
    argv = [SIPP, target, "-sf", path, "-s", service, "-t", transport,
            "-i", LOCALHOST, "-mi", LOCALHOST, "-mp", str(media_port),
            "-m", str(calls), "-l", str(limit or calls),
            "-r", str(rate if rate is not None else calls), "-rp", str(rate_period_ms),
            "-recv_timeout", str(recv_timeout_ms), "-timeout", f"{int(timeout_s)}s", "-timeout_error",
            "-nostdin", "-aa", "-trace_err", "-error_file", str(workdir / f"{name}_errors.log"),
            "-trace_msg", "-message_file", str(workdir / f"{name}_messages.log")]
    if duration_ms is not None:
        argv += ["-d", str(duration_ms)]
    return argv + list(extra)


def run_sipp(scenario: str, target: str, service: str, workdir: Union[str, Path], **kw) -> SippResult:
    """Runs sipp with tests/e2e/sip/`scenario` (.xml optional) as UAC against `target`
    ("127.0.0.1:PORT"), dialling `service`; blocks until it exits (its own -timeout bounds
    that). kw: transport ("u1" UDP, "t1" TCP), calls (-m), limit (-l), rate (-r),
    rate_period_ms (-rp), duration_ms (-d), media_port (-mp; +4 per call with
    [auto_media_port]), timeout_s, recv_timeout_ms, extra (more argv). The message and error
    logs stay in `workdir`."""
    workdir = Path(workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    argv = sipp_argv(scenario, target, service, workdir, **kw)
    name = Path(scenario).stem
    start = time.monotonic()
    proc = _spawn(argv, workdir / f"{name}_stdout.log", cwd=workdir)
    try:
        proc.wait(kw.get("timeout_s", 60.0) + 30)
    except subprocess.TimeoutExpired:
        pass
    code = _reap(proc, 1, signal.SIGKILL)
    seconds = time.monotonic() - start

    def read(p: Path) -> str:
        try:
            return p.read_text(errors="replace")
        except OSError:
            return ""

    return SippResult(name, code if code is not None else -1, seconds, read(workdir / f"{name}_stdout.log"),
                      read(workdir / f"{name}_errors.log"), read(workdir / f"{name}_messages.log"), workdir, argv)


class SippProcess:
    """A sipp run in the background (start(), then wait() for its SippResult)."""

    def __init__(self, scenario: str, target: str, service: str, workdir: Union[str, Path], **kw) -> None:
        self.scenario, self.target, self.service, self.kw = scenario, target, service, kw
        self.workdir = Path(workdir)
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.name = Path(scenario).stem
        self.argv = sipp_argv(scenario, target, service, self.workdir, **kw)
        self.proc: Optional[subprocess.Popen] = None
        self.start_time = 0.0

    def start(self) -> "SippProcess":
        self.start_time = time.monotonic()
        self.proc = _spawn(self.argv, self.workdir / f"{self.name}_stdout.log", cwd=self.workdir)
        return self

    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def messages(self) -> str:
        try:
            return (self.workdir / f"{self.name}_messages.log").read_text(errors="replace")
        except OSError:
            return ""

    def wait(self, timeout: Optional[float] = None, kill: bool = False) -> SippResult:
        """Waits for the exit (SIGKILL after `timeout` s, or at once with kill=True)."""
        assert self.proc is not None
        if kill:
            _reap(self.proc, 0.1, signal.SIGKILL)
        else:
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                pass
            _reap(self.proc, 1, signal.SIGKILL)

        def read(p: Path) -> str:
            try:
                return p.read_text(errors="replace")
            except OSError:
                return ""

        w, n = self.workdir, self.name
        return SippResult(n, self.proc.returncode, time.monotonic() - self.start_time, read(w / f"{n}_stdout.log"),
                          read(w / f"{n}_errors.log"), read(w / f"{n}_messages.log"), w, self.argv)


def sipp_uas(scenario: str, port: int, workdir: Union[str, Path], media_port: Optional[int] = None,
             transport: str = "u1", calls: Optional[int] = None, extra: Sequence[str] = ()) -> subprocess.Popen:
    """A sipp UAS (a stand-in for the server, to check the UAC scenarios) on 127.0.0.1:`port`
    with tests/e2e/sip/`scenario` (or "uas" for sipp's built-in one). Stop it with
    stop_process()."""
    workdir = Path(workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    name = Path(scenario).stem
    which = ["-sn", "uas"] if scenario == "uas" else ["-sf", str(SCENARIOS / (scenario if scenario.endswith(".xml") else scenario + ".xml"))]
    argv = [SIPP, *which, "-t", transport, "-i", LOCALHOST, "-p", str(port), "-mi", LOCALHOST,
            "-mp", str(media_port or free_port_block(1, step=1, low=40000, high=60000)), "-nostdin",
            "-trace_err", "-error_file", str(workdir / f"uas_{name}_errors.log"),
            "-trace_msg", "-message_file", str(workdir / f"uas_{name}_messages.log")]
    if calls is not None:
        argv += ["-m", str(calls)]
    proc = _spawn(argv + list(extra), workdir / f"uas_{name}_stdout.log", cwd=workdir)
    wait_bound(port, udp=transport.startswith("u"), proc=proc)
    return proc


def port_bound(port: int, udp: bool = True) -> bool:
    """Whether a socket is bound to IPv4 `port` (UDP) or listening on it (TCP), read from
    /proc/net rather than by trying to bind it, which would race the process starting."""
    want = f":{port:04X}"
    with open("/proc/net/udp" if udp else "/proc/net/tcp") as f:
        for line in f.readlines()[1:]:
            fields = line.split()
            # TCP: state 0A is LISTEN
            if len(fields) > 3 and fields[1].endswith(want) and (udp or fields[3] == "0A"):
                return True
    return False


def wait_bound(port: int, udp: bool = True, proc: Optional[subprocess.Popen] = None, timeout: float = 10.0) -> None:
    """Waits until something has bound 127.0.0.1:`port` (UDP or TCP), so that a first
    request sent over UDP is not lost to a process still starting (a loaded CI machine can take
    seconds to start sipp). Raises if `proc` exits first or the port is still free at the end."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"{proc.args[0]} exited with {proc.returncode} before binding port {port}")
        if port_bound(port, udp):
            return
        time.sleep(0.05)
    raise RuntimeError(f"nothing bound {'udp' if udp else 'tcp'} port {port} within {timeout} s")


def stop_process(proc: subprocess.Popen, timeout: float = 3.0) -> Optional[int]:
    return _reap(proc, timeout)


# ----------------------------------------------------------------------------------------
# Raw SIP
# ----------------------------------------------------------------------------------------


def new_branch() -> str:
    return "z9hG4bK-e2e-" + os.urandom(6).hex()


def new_call_id() -> str:
    return os.urandom(8).hex() + "@e2e"


def build_request(method: str, uri: str, local: tuple[str, int], transport: str = "UDP",
                  headers: Optional[Sequence[tuple[str, str]]] = None, body: str = "",
                  omit: Sequence[str] = (), replace: Optional[dict] = None, content_length: Optional[str] = None,
                  user: str = "raw") -> str:
    """A SIP request as text (CRLF line ends). The usual headers (Via with a fresh branch,
    Max-Forwards, From with a tag, To, Call-ID, CSeq 1 METHOD, Contact, Content-Type when
    there is a body, Content-Length) unless named in `omit`; `replace` overrides a header's
    whole value by name; `headers` are appended as they are; `content_length` overrides the
    computed value (e.g. "-5" or "999")."""
    host, port = local
    std = [
        ("Via", f"SIP/2.0/{transport} {host}:{port};branch={new_branch()};rport"),
        ("Max-Forwards", "70"),
        ("From", f"<sip:{user}@{host}:{port}>;tag={os.urandom(4).hex()}"),
        ("To", f"<{uri}>"),
        ("Call-ID", new_call_id()),
        ("CSeq", f"1 {method}"),
        ("Contact", f"<sip:{user}@{host}:{port};transport={transport.lower()}>"),
    ]
    if body:
        std.append(("Content-Type", "application/sdp"))
    replace = replace or {}
    lines = [f"{method} {uri} SIP/2.0"]
    for name, value in std:
        if name in omit:
            continue
        lines.append(f"{name}: {replace.get(name, value)}")
    for name, value in headers or ():
        lines.append(f"{name}: {value}" if value is not None else name)
    if "Content-Length" not in omit:
        lines.append(f"Content-Length: {content_length if content_length is not None else len(body.encode())}")
    return "\r\n".join(lines) + "\r\n\r\n" + body


def sdp_offer(host: str = LOCALHOST, port: int = 0, payloads: str = "0 8 101", direction: str = "sendrecv",
              video: Optional[str] = None) -> str:
    """A plain RTP/AVP offer (audio; `video` is an m=video section's payload list and
    attribute lines, e.g. "96\r\na=rtpmap:96 VP8/90000")."""
    port = port or free_port_block(1, low=40000, high=60000)
    rtpmaps = {"0": "PCMU/8000", "8": "PCMA/8000", "9": "G722/8000", "18": "G729/8000", "101": "telephone-event/8000"}
    s = (f"v=0\r\no=e2e {random.randint(1, 10**9)} 1 IN IP4 {host}\r\ns=-\r\nc=IN IP4 {host}\r\nt=0 0\r\n"
         f"m=audio {port} RTP/AVP {payloads}\r\n")
    for pt in payloads.split():
        if pt in rtpmaps:
            s += f"a=rtpmap:{pt} {rtpmaps[pt]}\r\n"
    if "101" in payloads.split():
        s += "a=fmtp:101 0-15\r\n"
    s += f"a={direction}\r\n"
    if video:
        s += f"m=video {port + 2} RTP/AVP {video}\r\na={direction}\r\n"
    return s


@dataclass
class SipResponse:
    status: int
    reason: str
    headers: list[tuple[str, str]]
    body: str
    raw: bytes
    version: str = "2.0"

    def header(self, name: str) -> Optional[str]:
        compact = {"v": "via", "f": "from", "t": "to", "i": "call-id", "m": "contact", "l": "content-length", "c": "content-type",
                   "x": "session-expires", "k": "supported"}
        for k, v in self.headers:
            if k.lower() == name.lower() or compact.get(k.lower()) == name.lower():
                return v
        return None

    def __str__(self) -> str:
        return f"{self.status} {self.reason}" + (f" (SIP/{self.version})" if self.version != "2.0" else "")


def parse_responses(data: bytes) -> list[SipResponse]:
    """The SIP responses in `data` (one UDP datagram, or a TCP stream's bytes: several
    messages framed by Content-Length). Non-responses are skipped."""
    out = []
    rest = data
    while rest:
        rest = rest.lstrip(b"\r\n")
        head, sep, tail = rest.partition(b"\r\n\r\n")
        if not sep:
            break
        lines = head.decode("utf-8", "replace").split("\r\n")
        headers = []
        for line in lines[1:]:
            if ":" in line:
                k, v = line.split(":", 1)
                headers.append((k.strip(), v.strip()))
        length = 0
        for k, v in headers:
            if k.lower() in ("content-length", "l"):
                with contextlib.suppress(ValueError):
                    length = max(0, int(v))
        body, rest = tail[:length], tail[length:]
        m = re.match(r"SIP/(\d+\.\d+) (\d{3}) ?(.*)", lines[0])
        if m:
            out.append(SipResponse(int(m.group(2)), m.group(3), headers, body.decode("utf-8", "replace"), head + sep + body,
                                   m.group(1)))
    return out


def request_header(text: str, name: str) -> Optional[str]:
    """The first header `name` of a request's text (case-insensitive), or None."""
    head = text.replace("\r\n", "\n").split("\n\n", 1)[0]
    for line in head.split("\n")[1:]:
        if ":" in line and line.split(":", 1)[0].strip().lower() == name.lower():
            return line.split(":", 1)[1].strip()
    return None


def ack_for(request: str, response: SipResponse) -> str:
    """The ACK of a non-2xx final response to `request` (an INVITE as text): the same
    Request-URI, Via (branch), From, Call-ID and CSeq number, the response's To (with its
    tag). Missing headers are taken from the response, or left out."""
    ruri = request.split("\r\n", 1)[0].split(" ")[1] if " " in request.split("\r\n", 1)[0] else "sip:invalid"
    cseq = (request_header(request, "CSeq") or response.header("CSeq") or "1").split()[0]
    if not cseq.isdigit():
        cseq = "1"
    lines = [f"ACK {ruri} SIP/2.0"]
    for name, value in (("Via", request_header(request, "Via") or response.header("Via")),
                        ("Max-Forwards", "70"),
                        ("From", request_header(request, "From") or response.header("From")),
                        ("To", response.header("To") or request_header(request, "To")),
                        ("Call-ID", request_header(request, "Call-ID") or response.header("Call-ID")),
                        ("CSeq", f"{cseq} ACK"), ("Content-Length", "0")):
        if value:
            lines.append(f"{name}: {value}")
    return "\r\n".join(lines) + "\r\n\r\n"


def cancel_for(request: str) -> str:
    """The CANCEL of a pending INVITE (its text): the same Request-URI, Via, From, To, Call-ID
    and CSeq number."""
    ruri = request.split("\r\n", 1)[0].split(" ")[1]
    cseq = (request_header(request, "CSeq") or "1").split()[0]
    lines = [f"CANCEL {ruri} SIP/2.0"]
    for name in ("Via", "From", "To", "Call-ID"):
        value = request_header(request, name)
        if value:
            lines.append(f"{name}: {value}")
    lines += ["Max-Forwards: 70", f"CSeq: {cseq if cseq.isdigit() else '1'} CANCEL", "Content-Length: 0"]
    return "\r\n".join(lines) + "\r\n\r\n"


def bye_after_2xx(request: str, response: SipResponse, local: tuple[str, int], transport: str) -> tuple[str, str]:
    """(ACK, BYE) ending a call an INVITE set up by mistake (a malformed request accepted):
    both to the 2xx's Contact, with its To tag."""
    contact = response.header("Contact") or ""
    m = re.search(r"<([^>]+)>", contact)
    target = m.group(1) if m else (contact.split(";")[0].strip() or request.split(" ")[1])
    cseq = (request_header(request, "CSeq") or "1").split()[0]
    cseq = cseq if cseq.isdigit() else "1"
    common = [("Max-Forwards", "70"), ("From", request_header(request, "From") or ""), ("To", response.header("To") or ""),
              ("Call-ID", request_header(request, "Call-ID") or response.header("Call-ID") or "")]
    via = f"SIP/2.0/{transport.upper()} {local[0]}:{local[1]};branch={new_branch()};rport"

    def msg(method: str, n: str) -> str:
        lines = [f"{method} {target} SIP/2.0", f"Via: {via}"] + [f"{k}: {v}" for k, v in common if v]
        return "\r\n".join(lines + [f"CSeq: {n} {method}", "Content-Length: 0"]) + "\r\n\r\n"

    bye_via = f"SIP/2.0/{transport.upper()} {local[0]}:{local[1]};branch={new_branch()};rport"
    return msg("ACK", cseq), msg("BYE", str(int(cseq) + 1)).replace(via, bye_via)


@dataclass
class Exchange:
    """What one raw request got: its text, the responses (in order) and what was sent after
    them (ACK, BYE)."""

    request: Union[str, bytes]
    responses: list[SipResponse]
    followups: list[str] = field(default_factory=list)

    @property
    def final(self) -> Optional[SipResponse]:
        """The first final response to the request itself (not to a CANCEL sent after it)."""
        text = self.request if isinstance(self.request, str) else self.request.decode("utf-8", "replace")
        cancelling = text.split(" ", 1)[0] != "CANCEL"
        for r in self.responses:
            cseq = (r.header("CSeq") or "").split()
            if r.status >= 200 and not (cancelling and len(cseq) >= 2 and cseq[1] == "CANCEL"):
                return r
        return None

    def describe(self) -> str:
        if not self.responses:
            return "no response"
        return ", ".join(str(r) for r in self.responses) + (f" (then {', '.join(f.split(' ')[0] for f in self.followups)})" if self.followups else "")


def sip_exchange(target: tuple[str, int], message: Union[str, bytes], transport: str = "udp", wait: float = 2.0,
                 until_final: bool = True, close_after_send: bool = False) -> list[SipResponse]:
    """Sends one message (from a fresh socket on 127.0.0.1) and returns the responses that
    come back within `wait` s (up to the first final one with until_final). See
    sip_exchange_with."""
    return sip_exchange_with(target, lambda local: message, transport, wait, until_final, close_after_send).responses


def sip_exchange_with(target: tuple[str, int], make, transport: str = "udp", wait: float = 2.0,
                      until_final: bool = True, close_after_send: bool = False, finish_invites: bool = True) -> Exchange:
    """Sends the message make((host, port)) builds, knowing the local socket's address, from
    a fresh UDP socket (or over a new TCP connection, half-closed after the send with
    close_after_send), and collects the responses for up to `wait` s (stopping at the first
    final one with until_final). With finish_invites, an INVITE's non-2xx final response is
    ACKed and a 2xx one ACKed and BYEd (a call set up by mistake), from the same socket."""
    responses: list[SipResponse] = []
    followups: list[str] = []
    udp = transport.lower() == "udp"
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM if udp else socket.SOCK_STREAM) as s:
        s.bind((LOCALHOST, 0))
        s.settimeout(wait)
        if not udp:
            s.connect(target)
        local = s.getsockname()
        msg = make(local)
        data = msg.encode() if isinstance(msg, str) else msg
        if udp:
            s.sendto(data, target)
        else:
            try:
                s.sendall(data)
                if close_after_send:
                    s.shutdown(socket.SHUT_WR)
            except (BrokenPipeError, ConnectionResetError):
                pass  # the server closed the connection on us: see what it said before
        buf = b""
        deadline = time.monotonic() + wait
        while time.monotonic() < deadline:
            s.settimeout(max(0.01, deadline - time.monotonic()))
            try:
                chunk = s.recvfrom(65536)[0] if udp else s.recv(65536)
            except (socket.timeout, ConnectionRefusedError):
                if udp:
                    continue
                break
            except ConnectionResetError:
                break
            if not udp and not chunk:
                break
            if udp:
                responses += parse_responses(chunk)
            else:
                buf += chunk
                responses = parse_responses(buf)
            if until_final and any(r.status >= 200 for r in responses):
                break
        final = next((r for r in responses if r.status >= 200), None)
        text = msg if isinstance(msg, str) else msg.decode("utf-8", "replace")
        if finish_invites and final is None and responses and text.startswith("INVITE "):
            # still ringing after `wait`: CANCEL it, and take the 487 (ACKed below)
            cancel = cancel_for(text)
            followups.append(cancel)
            with contextlib.suppress(OSError):
                s.sendto(cancel.encode(), target) if udp else s.sendall(cancel.encode())
            end = time.monotonic() + 2.0
            while final is None and time.monotonic() < end:
                s.settimeout(max(0.01, end - time.monotonic()))
                try:
                    chunk = s.recvfrom(65536)[0] if udp else s.recv(65536)
                except (socket.timeout, ConnectionRefusedError, ConnectionResetError):
                    break
                if not chunk:
                    break
                if udp:
                    got = parse_responses(chunk)
                else:
                    buf += chunk
                    got = parse_responses(buf)[len(responses):]
                responses += got
                final = next((r for r in got if r.status >= 200 and "INVITE" in (r.header("CSeq") or "")), None)
        if finish_invites and final is not None and text.startswith("INVITE "):
            if final.status >= 300:
                followups.append(ack_for(text, final))
            else:
                followups += list(bye_after_2xx(text, final, local, transport))
            for f in followups:
                with contextlib.suppress(OSError):
                    if udp:
                        s.sendto(f.encode(), target)
                    else:
                        s.sendall(f.encode())
            if final.status < 300:
                time.sleep(0.3)  # the BYE's 200 (not waited for otherwise)
    return Exchange(msg, responses, followups)


# ----------------------------------------------------------------------------------------
# Digest authentication (RFC 2617 without qop, as the server challenges; RFC 3261 §22)
# ----------------------------------------------------------------------------------------


def digest_params(value: str) -> dict[str, str]:
    """The parameters of a `Digest k="v", k=v, ...` challenge or credentials (names lower-case;
    quotes removed); {} when it is not Digest."""
    m = re.match(r"\s*Digest\s+(.*)", value or "", re.S | re.I)
    if not m:
        return {}
    return {k.lower(): quoted or bare for k, quoted, bare in re.findall(r'([\w-]+)\s*=\s*(?:"([^"]*)"|([^\s,]*))', m.group(1))}


def digest_response(username: str, realm: str, password: str, method: str, uri: str, nonce: str) -> str:
    """MD5(MD5(username:realm:password):nonce:MD5(method:uri)), hex."""
    import hashlib

    md5 = lambda text: hashlib.md5(text.encode()).hexdigest()  # noqa: E731
    return md5(f"{md5(f'{username}:{realm}:{password}')}:{nonce}:{md5(f'{method}:{uri}')}")


def digest_authorization(username: str, realm: str, password: str, method: str, uri: str, nonce: str) -> str:
    """An `Authorization` value answering a challenge (algorithm MD5, no qop)."""
    response = digest_response(username, realm, password, method, uri, nonce)
    return (f'Digest username="{username}", realm="{realm}", nonce="{nonce}", uri="{uri}", '
            f'response="{response}", algorithm=MD5')


def digest_valid(authorization: str, password: str, method: str) -> bool:
    """Whether `authorization` (an Authorization value) is right for `password` and `method`
    (its own username, realm, nonce and uri)."""
    p = digest_params(authorization)
    if not all(k in p for k in ("username", "realm", "nonce", "uri", "response")):
        return False
    return p["response"].lower() == digest_response(p["username"], p["realm"], password, method, p["uri"], p["nonce"])


# ----------------------------------------------------------------------------------------
# Malformed requests (test_sip.py sends them to the server, sip_selftest.py to baresip)
# ----------------------------------------------------------------------------------------

NO_RESPONSE = None


@dataclass(frozen=True)
class Malformed:
    """A malformed request: make((local host, port), request URI) -> the bytes or text to
    send; `expect` the acceptable outcomes (status codes, NO_RESPONSE for silence)."""

    name: str
    make: Callable[[tuple[str, int], str], Union[str, bytes]]
    expect: tuple[Optional[int], ...]
    transport: str = "udp"


def raw_invite(local, uri, transport="UDP", **kw) -> str:
    """An INVITE from user "raw" (participant sip-raw if it ever got in) with an SDP offer
    unless `body` is given; kw as build_request."""
    kw.setdefault("body", sdp_offer())
    return build_request("INVITE", uri, local, transport, user="raw", **kw)


def _swap_request_line(text: str, line: str) -> str:
    return line + text[text.index("\r\n"):]


MALFORMED: list[Malformed] = [
    # unparseable: dropped (or 400)
    Malformed("garbage", lambda local, uri: bytes(range(256)) * 2, (NO_RESPONSE, 400)),
    Malformed("http_request", lambda local, uri: b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n", (NO_RESPONSE, 400)),
    # rsipstack's parser skips a header line without a colon; what is left is a complete, valid
    # INVITE, so a call (which the exchange ends with ACK and BYE) is as right as a refusal.
    Malformed("broken_header_line", lambda local, uri: raw_invite(local, uri, headers=[("This line has no colon", None)]), (400, NO_RESPONSE, 200)),
    Malformed("bad_request_line", lambda local, uri: _swap_request_line(raw_invite(local, uri), "INVITE this is not a uri SIP/2.0"), (400, 416, NO_RESPONSE)),
    Malformed("missing_via", lambda local, uri: raw_invite(local, uri, omit=("Via",)), (NO_RESPONSE, 400)),
    Malformed("content_length_beyond_datagram", lambda local, uri: raw_invite(local, uri, content_length="5000"), (400, NO_RESPONSE)),
    Malformed("negative_content_length", lambda local, uri: raw_invite(local, uri, content_length="-1"), (400, NO_RESPONSE)),
    # a response can be built: 400 (or what the RFC names)
    Malformed("missing_call_id", lambda local, uri: raw_invite(local, uri, omit=("Call-ID",)), (400,)),
    Malformed("missing_from", lambda local, uri: raw_invite(local, uri, omit=("From",)), (400,)),
    Malformed("missing_to", lambda local, uri: raw_invite(local, uri, omit=("To",)), (400,)),
    Malformed("missing_cseq", lambda local, uri: raw_invite(local, uri, omit=("CSeq",)), (400,)),
    Malformed("bad_cseq_number", lambda local, uri: raw_invite(local, uri, replace={"CSeq": "abc INVITE"}), (400,)),
    Malformed("cseq_method_mismatch", lambda local, uri: raw_invite(local, uri, replace={"CSeq": "1 BYE"}), (400,)),
    Malformed("sip_version_3", lambda local, uri: _swap_request_line(raw_invite(local, uri), f"INVITE {uri} SIP/3.0"), (400, 505)),
    Malformed("sdp_not_sdp", lambda local, uri: raw_invite(local, uri, body="this is not an SDP body\r\n"), (400, 488)),
    Malformed("missing_call_id_tcp", lambda local, uri: raw_invite(local, uri, "TCP", omit=("Call-ID",)), (400,), "tcp"),
    Malformed("bad_cseq_tcp", lambda local, uri: raw_invite(local, uri, "TCP", replace={"CSeq": "-7 INVITE"}), (400,), "tcp"),
    # TCP framing: a stream that never ends its headers, a body cut short; then the close
    Malformed("tcp_endless_garbage", lambda local, uri: b"X" * 70000, (NO_RESPONSE, 400, 413, 513), "tcp"),
    Malformed("tcp_truncated_body", lambda local, uri: raw_invite(local, uri, "TCP", content_length="900"), (NO_RESPONSE, 400), "tcp"),
]

# ----------------------------------------------------------------------------------------
# CLI
# ----------------------------------------------------------------------------------------


def _cli_offer() -> int:
    """Starts a baresip, dials a port nobody listens on and prints the INVITE's SDP."""
    import tempfile

    d = Path(tempfile.mkdtemp(prefix="bs-offer-"))
    b = Baresip(d, user="offer").start()
    try:
        dead = free_port()
        b.dial(f"sip:1000@{LOCALHOST}:{dead}")
        deadline = time.monotonic() + 5
        sdp = None
        while sdp is None and time.monotonic() < deadline:
            time.sleep(0.1)
            sdp = b.sent_sdp()
        print(sdp or "no INVITE seen:\n" + b.log_tail())
    finally:
        b.stop()
        shutil.rmtree(d, ignore_errors=True)
    return 0


if __name__ == "__main__":
    if sys.argv[1:] == ["offer"]:
        sys.exit(_cli_offer())
    print(__doc__)
    sys.exit(2)
