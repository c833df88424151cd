#!/usr/bin/env python3
"""End-to-end tests of `mcu serve` as an SFU: aiortc publishers and players over WHIP/WHEP.

Each group of tests starts its own server (`target/debug/mcu`, or $MCU_BIN) on 127.0.0.1
port 0, reads the address it prints, and stops it afterwards, also when a test fails; on
Ctrl-C/SIGTERM the run stops the servers and exits, and a server dies with this process in
any case (PR_SET_PDEATHSIG). All media stays on loopback (mcuclient gathers and accepts
only 127.0.0.1 candidates).

    1 two_way_call       alice (red, 440 Hz, VP8) and bob (blue, 660 Hz) each play the other:
                         the other's colour and tone, their own tone far below it
    2 h264               an H.264 publisher played back (H.264 decoder) with the right colour
    3 delete_session     DELETE ends a publisher: WHEP 404, gauges drop, second DELETE 404
    8 metrics            /metrics on the same server afterwards: packet counters moved, the
                         text parses as Prometheus exposition, every gauge back to 0
    4 auth               server with MCU_JWT_SECRET: 401 (+ WWW-Authenticate) / 403 for bad
                         tokens, the identity is the token's sub, a subscribe token plays
    5 bad_input          400/404/412/413/415 for malformed requests; the server survives them
                         and still publishes and plays
    5b refused_offers_leave_nothing_behind
                         offers the WebRTC stack refuses leave no empty room and no sockets
    6 limits             --max-tracks/--max-participants/--max-subscribers → 429, the same
                         name twice → 409, the admitted publisher keeps flowing
    7 vanishing_publisher  a publisher process SIGKILLed without DELETE is dropped by the
                         server (ICE failure) within 60 s; the measured time is printed

Run: scripts/e2e-setup.sh && target/e2e-venv/bin/python tests/e2e/test_sfu.py [-v] [name...]
(`name` selects tests whose name contains it; MCU_E2E_SERVER_LOG sets the servers' log
filter). Prints measured colours, tone powers and times, keeps the server logs of a failed
run (the directory is printed), closes with "e2e sfu: N passed, M failed" and exits non-zero
on any failure.
"""

from __future__ import annotations

import asyncio
import base64
import ctypes
import functools
import hashlib
import hmac
import http.client
import json
import logging
import os
import queue
import re
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import unittest
import urllib.parse
from pathlib import Path
from typing import Optional

sys.path.insert(0, str(Path(__file__).resolve().parent))
import mcuclient as mc  # noqa: E402
import aiortc.rtcrtpreceiver  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]
MCU_BIN = os.environ.get("MCU_BIN") or str(ROOT / "target" / "debug" / "mcu")
# Flags every server of the run gets (scripts/test.sh runs the MCU suite a second time with
# `--render-path gpu --mix-path gpu`).
EXTRA_SERVER_ARGS = tuple(shlex.split(os.environ.get("MCU_E2E_SERVER_ARGS", "")))


def forced_path(flag: str) -> Optional[str]:
    """The value EXTRA_SERVER_ARGS gives `flag` (e.g. --render-path), if any."""
    args = list(EXTRA_SERVER_ARGS)
    for i, a in enumerate(args):
        if a == flag and i + 1 < len(args):
            return args[i + 1]
        if a.startswith(flag + "="):
            return a.split("=", 1)[1]
    return None
MCUCLIENT = str(Path(__file__).resolve().parent / "mcuclient.py")

COLOUR_TOLERANCE = 30  # per channel
TONE_TOLERANCE = 5.0  # Hz
OWN_TONE_MARGIN_DB = 30.0  # a player's own tone must be at least this far below the other's
CONNECT_TIMEOUT = 20.0  # s, ICE + DTLS
MEDIA_TIMEOUT = 25.0  # s, for the first seconds of media to arrive
TEST_TIMEOUT = 120.0  # s, a whole test
VANISH_LIMIT = 60.0  # s, for the server to drop a publisher that vanished
SECRET = "e2e-test-secret-0123456789abcdef-0123456789abcdef"  # ≥ 32 bytes

RED, BLUE, GREEN, YELLOW = (255, 0, 0), (0, 0, 255), (0, 255, 0), (255, 255, 0)

LOG_DIR = Path(tempfile.mkdtemp(prefix="mcu-e2e-"))


class _DecodeFailures(logging.Handler):
    """Counts aiortc's "failed to decode" warnings (frames a player could not decode, e.g.
    inter frames before its first keyframe) instead of printing each one."""

    count = 0

    def emit(self, record: logging.LogRecord) -> None:
        if "failed to decode" in record.getMessage():
            _DecodeFailures.count += 1


DECODERS: list[str] = []  # MIME type of every decoder a player created, in order
_get_decoder = aiortc.rtcrtpreceiver.get_decoder


def _recording_get_decoder(codec):
    """aiortc's get_decoder, noting which codec each receiver actually decodes (the codec is
    chosen by the payload type of the packets that arrive, not by the answer's order)."""
    DECODERS.append(codec.mimeType)
    return _get_decoder(codec)


aiortc.rtcrtpreceiver.get_decoder = _recording_get_decoder


def _quiet_decoder_warnings() -> None:
    receiver_log = logging.getLogger("aiortc.rtcrtpreceiver")
    receiver_log.addHandler(_DecodeFailures())
    receiver_log.propagate = False

# ----------------------------------------------------------------------------------------
# Server processes
# ----------------------------------------------------------------------------------------

_PR_SET_PDEATHSIG = 1


def _die_with_parent() -> None:
    """In the child before exec: SIGKILL it when this process dies (Linux), so a killed test
    run leaves no server behind."""
    try:
        ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)
    except Exception:
        pass


_live_processes: list[subprocess.Popen] = []


def _kill_all() -> None:
    for p in _live_processes:
        if p.poll() is None:
            p.kill()
            p.wait()
    _live_processes.clear()


class McuServer:
    """One `mcu serve` process on 127.0.0.1 port 0. Its log (stderr) goes to a file in
    LOG_DIR. `dev` adds --dev; `secret` sets MCU_JWT_SECRET; `args` are more flags. The gRPC
    control API listens on a free port too (`--grpc-listen 127.0.0.1:0` unless `args` say
    otherwise; its default port would collide between servers): start() waits for its
    "grpc listening on" line as well (`grpc_url`, and `grpc_target` as host:port)."""

    _count = 0

    def __init__(self, *args: str, dev: bool = True, secret: Optional[str] = None, label: str = "mcu") -> None:
        McuServer._count += 1
        self.label = f"{McuServer._count:02d}-{label}"
        grpc = [] if any(a == "--grpc-listen" or a.startswith("--grpc-listen=") for a in args) else ["--grpc-listen", "127.0.0.1:0"]
        self.argv = [MCU_BIN, "serve", "--http-listen", "127.0.0.1:0", *grpc, *(["--dev"] if dev else []), *args, *EXTRA_SERVER_ARGS]
        # The server reads MCU_* variables as flags: only ours reach it.
        self.env = {k: v for k, v in os.environ.items() if not k.startswith("MCU_")}
        self.env["MCU_LOG"] = os.environ.get("MCU_E2E_SERVER_LOG", "info,webrtc=warn,rtc=warn")
        self.env["NO_COLOR"] = "1"
        if secret is not None:
            self.env["MCU_JWT_SECRET"] = secret
        self.log_path = LOG_DIR / f"{self.label}.log"
        self.proc: Optional[subprocess.Popen] = None
        self.url = ""
        self.grpc_url = ""

    def start(self, timeout: float = 30.0) -> "McuServer":
        if not os.access(MCU_BIN, os.X_OK):
            raise FileNotFoundError(f"{MCU_BIN} is missing: cargo build -p mcu-server (or set MCU_BIN)")
        log = open(self.log_path, "wb")
        self.proc = subprocess.Popen(
            self.argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=log, env=self.env,
            preexec_fn=_die_with_parent,
        )
        log.close()
        _live_processes.append(self.proc)
        lines: queue.Queue = queue.Queue()

        def read_stdout(stream) -> None:  # keeps draining stdout for the process's life
            for raw in stream:
                lines.put(raw.decode("utf-8", "replace"))
            lines.put(None)

        threading.Thread(target=read_stdout, args=(self.proc.stdout,), daemon=True).start()
        deadline = time.monotonic() + timeout
        while True:
            try:
                line = lines.get(timeout=max(0.0, deadline - time.monotonic()))
            except queue.Empty:
                self.stop()
                raise TimeoutError(f"{self.label}: no 'listening on' and 'grpc listening on' lines within {timeout:g} s\n{self.log_tail()}")
            if line is None:
                code = self.proc.wait()
                raise RuntimeError(f"{self.label}: exited with {code} before listening\n{self.log_tail()}")
            m = re.match(r"(grpc )?listening on (https?://\S+)", line.strip())
            if m and m.group(1):
                self.grpc_url = m.group(2)
            elif m:
                self.url = m.group(2)
            if self.url and self.grpc_url:
                return self

    @property
    def grpc_target(self) -> str:
        """The gRPC address as gRPC clients take it: "127.0.0.1:PORT"."""
        return urllib.parse.urlsplit(self.grpc_url).netloc

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def stop(self) -> Optional[int]:
        """SIGINT (graceful shutdown), SIGKILL after 5 s. Returns the exit status."""
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        if self.proc in _live_processes:
            _live_processes.remove(self.proc)
        return self.proc.returncode

    def log_tail(self, lines: int = 25) -> str:
        try:
            text = self.log_path.read_text(errors="replace").splitlines()
        except OSError:
            return ""
        return "\n".join(f"  [{self.label}] {line}" for line in text[-lines:])

    # -- HTTP ---------------------------------------------------------------------------

    def request(self, method: str, path: str, body: Optional[bytes] = None, headers: Optional[dict] = None,
                timeout: float = 20.0) -> tuple[int, dict, str]:
        """One request with a raw path (sent as given: percent-escapes stay escaped).
        Returns (status, headers with lower-case names, body text)."""
        u = urllib.parse.urlsplit(self.url)
        conn = http.client.HTTPConnection(u.hostname, u.port, timeout=timeout)
        try:
            conn.request(method, path, body=body, headers=headers or {})
            resp = conn.getresponse()
            data = resp.read()
            return resp.status, {k.lower(): v for k, v in resp.getheaders()}, data.decode("utf-8", "replace")
        finally:
            conn.close()

    async def arequest(self, *args, **kwargs) -> tuple[int, dict, str]:
        return await asyncio.to_thread(self.request, *args, **kwargs)

    async def post_sdp(self, path: str, body, content_type: str = "application/sdp", token: Optional[str] = None,
                       extra: Optional[dict] = None) -> tuple[int, dict, str]:
        headers = {"Content-Type": content_type} if content_type is not None else {}
        if token is not None:
            headers["Authorization"] = f"Bearer {token}"
        headers.update(extra or {})
        if isinstance(body, str):
            body = body.encode()
        return await self.arequest("POST", path, body, headers)

    async def metrics(self) -> dict[str, float]:
        status, headers, text = await self.arequest("GET", "/metrics")
        assert status == 200, f"GET /metrics: {status} {text[:200]}"
        return parse_prometheus(text)

    async def wait_metrics(self, pred, timeout: float, what: str) -> dict[str, float]:
        """Polls /metrics until pred(metrics) holds; fails after `timeout` s with the last values."""
        deadline = time.monotonic() + timeout
        while True:
            m = await self.metrics()
            if pred(m):
                return m
            if time.monotonic() > deadline:
                raise AssertionError(f"{what}: not within {timeout:g} s; metrics now {gauges(m)}")
            await asyncio.sleep(0.2)


def gauges(m: dict[str, float]) -> dict[str, float]:
    return {k[len("mcu_"):]: v for k, v in m.items() if k in ("mcu_rooms", "mcu_participants", "mcu_tracks", "mcu_subscribers")}


# ----------------------------------------------------------------------------------------
# Prometheus text exposition (0.0.4)
# ----------------------------------------------------------------------------------------

_NAME = r"[a-zA-Z_:][a-zA-Z0-9_:]*"
_LABEL = r'[a-zA-Z_][a-zA-Z0-9_]*="(?:[^"\\\n]|\\[\\"n])*"'
_VALUE = r"[-+]?(?:[0-9]+(?:\.[0-9]*)?(?:[eE][-+]?[0-9]+)?|\.[0-9]+(?:[eE][-+]?[0-9]+)?|NaN|Inf)"
SAMPLE_RE = re.compile(rf"^({_NAME})(\{{(?:{_LABEL}(?:,{_LABEL})*,?)?\}})? ({_VALUE})(?: -?[0-9]+)?$")
TYPE_RE = re.compile(rf"^# TYPE ({_NAME}) (counter|gauge|histogram|summary|untyped)$")
HELP_RE = re.compile(rf"^# HELP ({_NAME}) .*$")


def parse_prometheus(text: str) -> dict[str, float]:
    """Samples keyed `name` or `name{labels}` (labels as written). Raises AssertionError at
    the first line that is not exposition format: a sample `name{labels} value`, `# HELP`,
    `# TYPE` (once per name, before its samples), another comment, or blank."""
    assert text.endswith("\n"), "the exposition does not end with a newline"
    samples: dict[str, float] = {}
    types: dict[str, str] = {}
    for n, line in enumerate(text.split("\n")[:-1], 1):
        if not line.strip():
            continue
        if line.startswith("#"):
            t = TYPE_RE.match(line)
            if t:
                assert t.group(1) not in types, f"line {n}: second TYPE for {t.group(1)}"
                types[t.group(1)] = t.group(2)
            elif line.startswith("# TYPE") or (line.startswith("# HELP") and not HELP_RE.match(line)):
                raise AssertionError(f"line {n}: malformed {line!r}")
            continue
        s = SAMPLE_RE.match(line)
        assert s, f"line {n}: not a sample line: {line!r}"
        name, labels, value = s.group(1), s.group(2) or "", s.group(3)
        assert name in types, f"line {n}: sample of {name} before (or without) its TYPE"
        if types[name] == "counter":
            assert name.endswith("_total"), f"line {n}: counter {name} not named *_total"
        key = name + labels
        assert key not in samples, f"line {n}: duplicate sample {key}"
        samples[key] = float(value.replace("Inf", "inf"))
    return samples


# ----------------------------------------------------------------------------------------
# Tokens (HS256 JWT, stdlib only)
# ----------------------------------------------------------------------------------------


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def mint(claims: dict, secret: str = SECRET, alg: str = "HS256") -> str:
    header = _b64url(json.dumps({"alg": alg, "typ": "JWT"}, separators=(",", ":")).encode())
    payload = _b64url(json.dumps(claims, separators=(",", ":")).encode())
    signing_input = f"{header}.{payload}"
    if alg == "none":
        return signing_input + "."
    sig = hmac.new(secret.encode(), signing_input.encode(), hashlib.sha256).digest()
    return f"{signing_input}.{_b64url(sig)}"


def claims(sub: str, room: str, publish: bool = False, subscribe: bool = False, ttl: int = 3600,
           iat: Optional[int] = None) -> dict:
    now = int(time.time()) if iat is None else iat
    return {"sub": sub, "room": room, "grants": {"publish": publish, "subscribe": subscribe, "admin": False},
            "iat": now, "exp": now + ttl}


def cli_token(room: str, identity: str, *grants: str, ttl: str = "1h") -> str:
    """A token from `mcu token` (the same minting code the server's operators use)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("MCU_")}
    env["MCU_JWT_SECRET"] = SECRET
    out = subprocess.run([MCU_BIN, "token", "--room", room, "--identity", identity, *grants, "--ttl", ttl],
                         env=env, capture_output=True, text=True, timeout=30, check=True)
    return out.stdout.strip()


# ----------------------------------------------------------------------------------------
# SDP and media helpers
# ----------------------------------------------------------------------------------------


first_codec = mc.first_codec


async def make_offer(kind: str) -> str:
    """An offer SDP from an aiortc peer connection (closed again): "publish" (VP8 video +
    audio, sendonly), "play" (recvonly video + audio) or "datachannel" (no media at all)."""
    if kind == "publish":
        pc, tracks = mc.publisher_pc(RED, 440.0)
    elif kind == "play":
        pc, _ = mc.player_pc()
        tracks = []
    else:
        pc, tracks = mc.new_peer_connection(), []
        pc.createDataChannel("chat")
    try:
        return await mc.create_offer(pc)
    finally:
        for t in tracks:
            t.stop()
        await pc.close()


def cut_after_first_m_line(sdp: str) -> str:
    """The session part of `sdp` and its first m= line, nothing more (no ICE credentials)."""
    head, sep, rest = sdp.partition("\r\nm=")
    return head + sep + rest.split("\r\n", 1)[0] + "\r\n"


def open_sockets(srv: "McuServer") -> Optional[int]:
    """Sockets the server process has open (Linux /proc); None elsewhere."""
    try:
        fds = os.listdir(f"/proc/{srv.proc.pid}/fd")
    except OSError:
        return None
    n = 0
    for fd in fds:
        try:
            n += os.readlink(f"/proc/{srv.proc.pid}/fd/{fd}").startswith("socket:")
        except OSError:
            pass
    return n


def free_udp_port() -> int:
    """A UDP port free on 127.0.0.1 now (for a server's --rtc-udp)."""
    import socket
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def fmt_rgb(c) -> str:
    return "(" + ",".join(f"{v:.0f}" for v in c) + ")" if c else "none"


def out(msg: str) -> None:
    print(f"    {msg}", flush=True)


def async_test(timeout: float = TEST_TIMEOUT):
    """Bounds an async test's run time (a hung exchange fails the test instead of the run)."""
    def wrap(fn):
        @functools.wraps(fn)
        async def run(self, *a, **kw):
            await asyncio.wait_for(fn(self, *a, **kw), timeout)
        return run
    return wrap


class E2ETest(unittest.IsolatedAsyncioTestCase):
    """Sessions opened through self.publish()/self.play() are closed (DELETE, errors ignored)
    after each test; servers from self.server() are stopped after each test."""

    def shortDescription(self) -> None:  # the test's name is enough in the report
        return None

    def setUp(self) -> None:
        self._sessions: list[mc.Session] = []
        self._servers: list[McuServer] = []

    async def asyncSetUp(self) -> None:
        # IsolatedAsyncioTestCase runs its loop in debug mode, which slows aiortc's media
        # handling and logs every slow callback.
        asyncio.get_running_loop().set_debug(False)

    async def asyncTearDown(self) -> None:
        for s in reversed(self._sessions):
            await close_quietly(s)

    def tearDown(self) -> None:
        for srv in self._servers:
            srv.stop()

    def server(self, *args: str, **kw) -> McuServer:
        srv = McuServer(*args, **kw).start()
        self._servers.append(srv)
        return srv

    async def publish(self, srv: McuServer, room: str, **kw) -> mc.Publisher:
        p = await mc.publish(srv.url, room, **kw)
        self._sessions.append(p)
        return p

    async def play(self, srv: McuServer, path: str, **kw) -> mc.Player:
        p = await mc.play(srv.url, path, **kw)
        self._sessions.append(p)
        return p

    async def expect_refused(self, status: int, coro) -> mc.HttpStatusError:
        with self.assertRaises(mc.HttpStatusError) as cm:
            await coro
        self.assertEqual(cm.exception.status, status, f"{cm.exception}")
        return cm.exception

    async def watch(self, player: mc.Player, video_frames: int = 45, audio_seconds: float = 2.0) -> None:
        """Connect and receive the first seconds of media."""
        await player.wait_connected(CONNECT_TIMEOUT)
        await player.wait_media(MEDIA_TIMEOUT, video_frames=video_frames, audio_seconds=audio_seconds)

    def assert_colour(self, actual, expected, what: str) -> None:
        self.assertIsNotNone(actual, f"{what}: no video frames")
        diff = max(abs(a - e) for a, e in zip(actual, expected))
        self.assertLessEqual(diff, COLOUR_TOLERANCE, f"{what}: mean colour {fmt_rgb(actual)}, expected {expected}")

    async def assert_plays(self, srv: McuServer, path: str, colour, tone_hz: float, said: str, what: str) -> mc.Player:
        """Plays `path` for a moment: the picture is `colour`, the loudest tone `tone_hz`
        (printed after `said`; `what` names the check in a failure)."""
        player = await self.play(srv, path)
        await self.watch(player, video_frames=30, audio_seconds=1.0)
        rgb, tones = player.mean_colour(), player.dominant_tones(3)
        out(f"{said} {fmt_rgb(rgb)}, tones {[round(t, 1) for t in tones]}")
        self.assert_colour(rgb, colour, what)
        self.assertTrue(tones and abs(tones[0] - tone_hz) <= TONE_TOLERANCE, f"tones {tones}")
        return player


async def close_quietly(s: mc.Session) -> None:
    try:
        await asyncio.wait_for(s.close(), 20)
    except Exception:
        try:
            await s._close_media()
        except Exception:
            pass


# ----------------------------------------------------------------------------------------
# Media through the SFU (one shared dev server; `metrics` reads it after the others)
# ----------------------------------------------------------------------------------------


class SfuMedia(E2ETest):
    srv: McuServer
    media_flowed = False

    @classmethod
    def setUpClass(cls) -> None:
        # One UDP port for every connection (the mux): every test of this class goes through it.
        cls.udp_port = free_udp_port()
        cls.srv = McuServer("--rtc-udp", f"127.0.0.1:{cls.udp_port}", label="sfu").start()

    @classmethod
    def tearDownClass(cls) -> None:
        cls.srv.stop()

    @async_test()
    async def test_1_two_way_call(self) -> None:
        srv = self.srv
        undecodable = _DecodeFailures.count
        alice = await self.publish(srv, "call", colour=RED, tone_hz=440.0, name="alice")
        bob = await self.publish(srv, "call", colour=BLUE, tone_hz=660.0, name="bob")
        self.assertEqual(mc._header(alice.headers, "x-participant"), "alice")
        self.assertEqual(mc._header(bob.headers, "x-participant"), "bob")
        self.assertEqual(first_codec(alice.answer_sdp, "video"), "VP8")
        # Each plays the other (a separate receive-only connection each).
        alice_sees = await self.play(srv, "/whep/call/bob?name=alice")
        bob_sees = await self.play(srv, "/whep/call/alice?name=bob")
        await asyncio.gather(self.watch(alice_sees), self.watch(bob_sees))
        for who, player, colour, tone, own in (("alice", alice_sees, BLUE, 660.0, 440.0),
                                               ("bob", bob_sees, RED, 440.0, 660.0)):
            rgb = player.mean_colour()
            tones = player.dominant_tones(3)
            p_other, p_own = player.tone_power(tone), player.tone_power(own)
            out(f"{who} sees {fmt_rgb(rgb)} (want {colour}), {player.video_frame_count} frames "
                f"{player.frame_size}; tones {[round(t, 1) for t in tones]}; "
                f"{tone:g} Hz {p_other:.1f} dBFS, own {own:g} Hz {p_own:.1f} dBFS")
            self.assert_colour(rgb, colour, f"{who} playing the other")
            self.assertTrue(tones, f"{who}: no tone heard")
            self.assertLessEqual(abs(tones[0] - tone), TONE_TOLERANCE, f"{who}: dominant tones {tones}, want {tone:g} first")
            self.assertGreater(p_other, -25.0, f"{who}: the other's tone is only {p_other:.1f} dBFS")
            self.assertLess(p_own, p_other - OWN_TONE_MARGIN_DB,
                            f"{who} hears their own {own:g} Hz at {p_own:.1f} dBFS (the other's: {p_other:.1f})")
            self.assertFalse(any(abs(t - own) <= TONE_TOLERANCE for t in tones), f"{who} hears their own tone: {tones}")
        out(f"frames the two players could not decode (before a keyframe): {_DecodeFailures.count - undecodable}")
        m = await srv.metrics()
        self.assertEqual((m["mcu_rooms"], m["mcu_participants"], m["mcu_tracks"], m["mcu_subscribers"]), (1, 2, 4, 2), gauges(m))
        # Four connections, one UDP port: every host candidate the server offered names it.
        ports = {int(c.split()[5]) for p in (alice, bob, alice_sees, bob_sees)
                 for c in re.findall(r"a=candidate:(.*)", p.answer_sdp) if c.split()[7] == "host"}
        unroutable = m.get('mcu_udp_mux_dropped_total{reason="unroutable"}', 0)
        out(f"host candidate ports of the four answers: {sorted(ports)} (shared port {self.udp_port}); "
            f"{unroutable:.0f} datagrams unroutable")
        self.assertEqual(ports, {self.udp_port})
        self.assertEqual(m["mcu_udp_mux_port"], self.udp_port)
        SfuMedia.media_flowed = True

    @async_test()
    async def test_2_h264(self) -> None:
        srv = self.srv
        undecodable = _DecodeFailures.count
        pub = await self.publish(srv, "h264", colour=GREEN, tone_hz=None, name="carol", video_codec="H264")
        self.assertEqual(first_codec(pub.answer_sdp, "video"), "H264", "the WHIP answer's video codec")
        decoders = len(DECODERS)
        player = await self.play(srv, "/whep/h264/carol", audio=False)
        self.assertIn("H264/90000", player.answer_sdp, "the WHEP answer offers no H.264")
        await self.watch(player, video_frames=45, audio_seconds=0)
        used = DECODERS[decoders:]
        rgb = player.mean_colour()
        out(f"H.264: {player.video_frame_count} frames {player.frame_size} through decoders {used}, mean colour "
            f"{fmt_rgb(rgb)} (want {GREEN}); {_DecodeFailures.count - undecodable} frames not decodable")
        self.assertEqual(used, ["video/H264"], "the player's decoders")
        self.assertEqual(player.frame_size, (mc.VIDEO_WIDTH, mc.VIDEO_HEIGHT))
        self.assert_colour(rgb, GREEN, "H.264 played back")
        SfuMedia.media_flowed = True

    @async_test()
    async def test_3_delete_session(self) -> None:
        srv = self.srv
        base, sockets0 = await srv.metrics(), open_sockets(srv)
        alice = await self.publish(srv, "del", colour=RED, tone_hz=440.0, name="alice")
        bob = await self.publish(srv, "del", colour=None, tone_hz=660.0, name="bob")  # keeps the room open
        player = await self.play(srv, "/whep/del/alice")
        await self.watch(player, video_frames=10, audio_seconds=0.5)
        m = await srv.metrics()
        self.assertEqual(m["mcu_participants"], base["mcu_participants"] + 2, gauges(m))
        self.assertEqual(m["mcu_tracks"], base["mcu_tracks"] + 3, gauges(m))
        self.assertEqual(m["mcu_subscribers"], base["mcu_subscribers"] + 1, gauges(m))
        session = urllib.parse.urlsplit(alice.location).path
        self.assertRegex(session, r"^/session/[^/]+$")

        status, _, body = await srv.arequest("DELETE", session)
        self.assertEqual(status, 200, f"DELETE {session}: {body}")
        alice._closed = True  # the test did the DELETE itself
        await alice._close_media()
        m = await srv.metrics()
        out(f"after DELETE of alice: {gauges(m)} (before the test: {gauges(base)})")
        self.assertEqual(m["mcu_participants"], base["mcu_participants"] + 1, gauges(m))
        self.assertEqual(m["mcu_tracks"], base["mcu_tracks"] + 1, gauges(m))
        # The room still exists (bob), so this 404 is about alice herself.
        await self.expect_refused(404, mc.play(srv.url, "/whep/del/alice"))
        status, _, body = await srv.arequest("DELETE", session)
        self.assertEqual(status, 404, f"second DELETE {session}: {body}")
        status, _, body = await srv.arequest("PATCH", session, b"a=end-of-candidates\r\n",
                                             {"Content-Type": "application/trickle-ice-sdpfrag"})
        self.assertEqual(status, 404, f"PATCH of the deleted {session}: {body}")

        await player.close()
        self.assertEqual(player.delete_status, 200)
        await bob.close()
        await asyncio.sleep(0.5)
        m, sockets1 = await srv.metrics(), open_sockets(srv)
        out(f"after every DELETE: {gauges(m)}; server sockets {sockets0} -> {sockets1}")
        self.assertEqual(gauges(m), gauges(base))
        if sockets1 is not None:
            self.assertLessEqual(sockets1, sockets0 + 2, "sockets left open after DELETE")

    @async_test()
    async def test_3c_lossy_viewer_gets_retransmissions(self) -> None:
        """A WHEP viewer that loses every fifth video packet NACKs it (aiortc's receiver does,
        RFC 4585 generic NACK) and the server sends it again from its send cache, on the media
        SSRC (no RTX is negotiated): the lost sequence numbers arrive a second time. The loss
        is made before SRTP, as on a network: a packet SRTP has seen once is a replay."""
        import pylibsrtp

        srv = self.srv
        await self.publish(srv, "nack", colour=GREEN, tone_hz=550.0, name="gus")
        player = await self.play(srv, "/whep/nack/gus")
        await player.wait_connected(CONNECT_TIMEOUT)
        receiver = next(r for r in player.pc.getReceivers() if r.track and r.track.kind == "video")
        video_pts = set(receiver._RTCRtpReceiver__codecs)
        dtls = receiver.transport
        dropped: set[int] = set()
        recovered: set[int] = set()
        losing = True

        class LosingSrtp:
            def __init__(self, inner) -> None:
                self.inner = inner

            def unprotect(self, data: bytes) -> bytes:
                seq = int.from_bytes(data[2:4], "big")
                if data[1] & 0x7F in video_pts:
                    if seq in dropped:
                        recovered.add(seq)
                    elif losing and seq % 5 == 0:
                        dropped.add(seq)
                        raise pylibsrtp.Error("dropped by the test")
                return self.inner.unprotect(data)

            def unprotect_rtcp(self, data: bytes) -> bytes:
                return self.inner.unprotect_rtcp(data)

        for _ in range(100):
            if dtls._rx_srtp is not None:
                break
            await asyncio.sleep(0.05)
        self.assertIsNotNone(dtls._rx_srtp, "the viewer's SRTP session never started")
        dtls._rx_srtp = LosingSrtp(dtls._rx_srtp)
        await self.watch(player, video_frames=15, audio_seconds=1.0)
        await asyncio.sleep(3.0)
        losing = False
        await asyncio.sleep(1.0)  # the last NACKs' answers
        out(f"lost {len(dropped)} video packets before SRTP, {len(recovered)} of them came again")
        self.assertGreaterEqual(len(dropped), 15, "too few video packets to judge")
        self.assertGreaterEqual(len(recovered), 0.9 * len(dropped), f"not retransmitted: {sorted(dropped - recovered)[:20]}")
        self.assert_colour(player.mean_colour(), GREEN, "the picture through the loss")
        for s in reversed(self._sessions):
            await s.close()

    @async_test()
    async def test_3b_websocket_choices(self) -> None:
        """A full client: its WebSocket sees the WHIP publisher and its tracks, and what it
        subscribes to there decides what its WHEP session (same identity) receives."""
        import websockets

        srv = self.srv
        ws_url = srv.url.replace("http://", "ws://") + "/ws"
        async with websockets.connect(ws_url) as ws:
            async def recv(kind: str) -> dict:
                while True:
                    msg = json.loads(await asyncio.wait_for(ws.recv(), 10))
                    if msg["type"] == "error":
                        self.fail(f"server error: {msg}")
                    if msg["type"] == kind:
                        return msg

            await ws.send(json.dumps({"type": "join", "room": "choose", "identity": "dora"}))
            joined = await recv("joined")
            self.assertEqual(joined["participants"], [])
            await self.publish(srv, "choose", colour=RED, tone_hz=440.0, name="erin")
            # The publisher's tracks reach the socket as it publishes them.
            tracks = {}
            while len(tracks) < 2:
                msg = await recv("track_published")
                self.assertEqual(msg["participant"], "erin")
                tracks[msg["track"]["kind"]] = msg["track"]["track_id"]
            out(f"the socket saw erin's tracks {tracks}")
            player = await self.play(srv, "/whep/choose/erin?name=dora")
            await self.watch(player, video_frames=15, audio_seconds=1.0)
            self.assert_colour(player.mean_colour(), RED, "before any choice")

            async def counts(seconds: float) -> tuple[int, int]:
                v0, a0 = player.video_frame_count, player.media.audio_sample_count
                await asyncio.sleep(seconds)
                return player.video_frame_count - v0, player.media.audio_sample_count - a0

            # Audio only: the video stops, the audio goes on.
            await ws.send(json.dumps({"type": "subscribe", "participant": "erin", "track_ids": [tracks["audio"]]}))
            subs = await recv("subscriptions")
            self.assertEqual([t[1] for t in subs["tracks"]], [tracks["audio"]])
            await asyncio.sleep(0.5)  # what was in flight
            video, audio = await counts(2.0)
            out(f"audio only: {video} video frames, {audio} audio samples in 2 s")
            self.assertLessEqual(video, 2, "video still arrives after choosing audio only")
            self.assertGreater(audio, 48000, "the audio stopped too")
            # Both again: the video resumes (at a keyframe the forwarder asks for).
            await ws.send(json.dumps({"type": "subscribe", "participant": "erin", "track_ids": [tracks["audio"], tracks["video"]]}))
            await recv("subscriptions")
            await asyncio.sleep(1.0)
            video, audio = await counts(2.0)
            out(f"both again: {video} video frames, {audio} audio samples in 2 s")
            self.assertGreater(video, 20, "the video did not resume")
            self.assertGreater(audio, 48000)
            self.assert_colour(player.mean_colour(), RED, "after resuming")
            # Unsubscribing the audio stops it.
            await ws.send(json.dumps({"type": "unsubscribe", "participant": "erin", "track_id": tracks["audio"]}))
            await recv("subscriptions")
            await asyncio.sleep(0.5)
            video, audio = await counts(2.0)
            out(f"video only: {video} video frames, {audio} audio samples in 2 s")
            self.assertGreater(video, 20)
            self.assertLess(audio, 4800, "audio still arrives after unsubscribing it")
        # The socket closed: erin is still there for a new one (a media session, no socket).
        async with websockets.connect(ws_url) as ws:
            await ws.send(json.dumps({"type": "join", "room": "choose", "identity": "fay"}))
            joined = json.loads(await asyncio.wait_for(ws.recv(), 10))
            self.assertEqual(joined["type"], "joined", joined)
            self.assertEqual([(p["id"], sorted(t["kind"] for t in p["tracks"])) for p in joined["participants"]], [("erin", ["audio", "video"])])
        for s in reversed(self._sessions):
            await s.close()

    @async_test()
    async def test_8_metrics(self) -> None:
        srv = self.srv
        # While a viewer plays, its session has an RTT gauge (the selected ICE pair's).
        await self.publish(srv, "rtt", colour=RED, tone_hz=440.0, name="alice")
        viewer = await self.play(srv, "/whep/rtt/alice")
        await self.watch(viewer, video_frames=10, audio_seconds=0.5)
        _, _, live = await srv.arequest("GET", "/metrics")
        rtts = {k: v for k, v in parse_prometheus(live).items() if k.startswith("mcu_subscriber_rtt_seconds{")}
        out(f"while playing: {rtts}")
        self.assertEqual(len(rtts), 1, live)
        self.assertTrue(all(0 < v < 0.5 for v in rtts.values()), rtts)
        for s in reversed(self._sessions):
            await s.close()
        if not SfuMedia.media_flowed:  # run on its own: make some media flow first
            await self.publish(srv, "m", colour=RED, tone_hz=440.0, name="alice")
            await self.watch(await self.play(srv, "/whep/m/alice"), video_frames=10, audio_seconds=0.5)
            for s in reversed(self._sessions):
                await s.close()
        status, headers, text = await srv.arequest("GET", "/metrics")
        self.assertEqual(status, 200)
        self.assertTrue(headers.get("content-type", "").startswith("text/plain; version=0.0.4"), headers.get("content-type"))
        m = parse_prometheus(text)  # raises on any non-exposition line
        for name in ("mcu_rooms", "mcu_participants", "mcu_tracks", "mcu_subscribers", "mcu_rtp_received_packets_total",
                     "mcu_rtp_forwarded_packets_total", "mcu_rtp_sent_packets_total", "mcu_sessions_refused_total",
                     'mcu_plis_total{result="sent"}', 'mcu_plis_total{result="throttled"}',
                     'mcu_rtp_dropped_packets_total{reason="composite_behind"}',
                     'mcu_rtp_dropped_packets_total{reason="audio_playout"}', "mcu_mix_audio_concealed_frames_total",
                     "mcu_rtp_sent_direct_packets_total", 'mcu_rtp_dropped_packets_total{reason="direct_send"}'):
            self.assertIn(name, m, f"/metrics lacks {name}")
        keys = ("mcu_rtp_received_packets_total", "mcu_rtp_forwarded_packets_total", "mcu_rtp_sent_packets_total",
                'mcu_plis_total{result="sent"}', "mcu_keyframe_requests_received_total", "mcu_nacks_total",
                'mcu_rtp_dropped_packets_total{reason="queue_full"}')
        out("; ".join(f"{k.replace('mcu_', '')} {m.get(k, 0):.0f}" for k in keys) + f"; {len(m)} samples parsed")
        self.assertGreater(m["mcu_rtp_received_packets_total"], 0)
        self.assertGreater(m["mcu_rtp_forwarded_packets_total"], 0)
        self.assertGreater(m["mcu_rtp_sent_packets_total"], 0)
        # Written packets include the forwarder's retransmissions (answers to the viewers' NACKs).
        self.assertLessEqual(m["mcu_rtp_sent_packets_total"], m["mcu_rtp_forwarded_packets_total"] + m["mcu_retransmissions_total"])
        # On the shared UDP port every WHEP viewer is on the direct send path: the SFU
        # encrypts and sends its packets itself (the viewers above decoded them).
        self.assertGreater(m["mcu_rtp_sent_direct_packets_total"], 0)
        self.assertEqual(m["mcu_rtp_sent_direct_packets_total"], m["mcu_rtp_sent_packets_total"])
        # Every session above was DELETEd: nothing is left, rooms included.
        self.assertEqual(gauges(m), {"rooms": 0, "participants": 0, "tracks": 0, "subscribers": 0})
        status, _, body = await srv.arequest("GET", "/healthz")
        self.assertEqual((status, body.strip()), (200, "ok"))
        self.assertTrue(srv.alive())


# ----------------------------------------------------------------------------------------
# Access tokens (a server without --dev)
# ----------------------------------------------------------------------------------------


class Auth(E2ETest):
    @async_test()
    async def test_4_auth(self) -> None:
        # Without --dev the server gathers no loopback candidate unless told to bind one.
        srv = self.server("--rtc-udp", "127.0.0.1:0", dev=False, secret=SECRET, label="auth")
        room = "secure"
        offer = await make_offer("publish")
        now = int(time.time())
        cases = [
            ("no token", None, 401),
            ("forged signature", mint(claims("eve", room, publish=True, subscribe=True), secret="not-the-server-secret-" + "z" * 20), 401),
            ("expired", mint(claims("eve", room, publish=True, iat=now - 7200, ttl=3600)), 401),
            ("not yet valid", mint({**claims("eve", room, publish=True), "nbf": now + 3600}), 401),
            ("alg none", mint(claims("eve", room, publish=True), alg="none"), 401),
            ("garbage", "not.a.jwt", 401),
            ("another room", mint(claims("eve", "other-room", publish=True, subscribe=True)), 403),
            ("subscribe-only on WHIP", mint(claims("eve", room, subscribe=True)), 403),
        ]
        refused = 0
        for what, token, want in cases:
            status, headers, body = await srv.post_sdp(f"/whip/{room}?name=eve", offer, token=token)
            refused += 1
            out(f"WHIP, {what}: {status} {body.strip()[:70]!r}")
            self.assertEqual(status, want, f"WHIP with {what}: {status} {body}")
            if want == 401:
                self.assertTrue(headers.get("www-authenticate", "").lower().startswith("bearer"),
                                f"WHIP with {what}: 401 without WWW-Authenticate: Bearer ({headers})")

        # A valid publish token from `mcu token`: the identity is the token's sub, not ?name=.
        pub_token = cli_token(room, "carol", "--publish")
        pub = await self.publish(srv, room, colour=YELLOW, tone_hz=440.0, token=pub_token, name="mallory")
        self.assertEqual(mc._header(pub.headers, "x-participant"), "carol")

        play_offer = await make_offer("play")
        for what, token, want in (("no token", None, 401),
                                  ("publish-only token", pub_token, 403),
                                  ("expired subscribe token", mint(claims("dave", room, subscribe=True, iat=now - 7200, ttl=3600)), 401),
                                  ("subscribe token for another room", mint(claims("dave", "other-room", subscribe=True)), 403)):
            status, headers, body = await srv.post_sdp(f"/whep/{room}/carol", play_offer, token=token)
            refused += 1
            out(f"WHEP, {what}: {status} {body.strip()[:70]!r}")
            self.assertEqual(status, want, f"WHEP with {what}: {status} {body}")
            if want == 401:
                self.assertTrue(headers.get("www-authenticate", "").lower().startswith("bearer"), headers)
        m = await srv.metrics()
        self.assertEqual(m["mcu_sessions_refused_total"], refused)
        self.assertEqual(m["mcu_participants"], 1, gauges(m))

        # A valid subscribe token (minted here) plays.
        player = await self.play(srv, f"/whep/{room}/carol", token=mint(claims("dave", room, subscribe=True)))
        self.assertEqual(mc._header(player.headers, "x-participant"), "dave")
        await self.watch(player, video_frames=30, audio_seconds=1.0)
        rgb, tones = player.mean_colour(), player.dominant_tones(3)
        out(f"dave plays carol with a subscribe token: {fmt_rgb(rgb)}, tones {[round(t, 1) for t in tones]}")
        self.assert_colour(rgb, YELLOW, "subscriber with a token")
        self.assertTrue(tones and abs(tones[0] - 440.0) <= TONE_TOLERANCE, f"tones {tones}")


# ----------------------------------------------------------------------------------------
# Bad input
# ----------------------------------------------------------------------------------------


class BadInput(E2ETest):
    @async_test()
    async def test_5_bad_input(self) -> None:
        srv = self.server("--max-body-bytes", "4096", label="bad-input")
        offer = await make_offer("publish")
        self.assertLess(len(offer.encode()), 4096, "a normal offer must fit the limit under test")
        play_offer = await make_offer("play")
        datachannel_offer = await make_offer("datachannel")
        no_ice = "".join(l for l in offer.splitlines(keepends=True)
                         if not l.startswith(("a=ice-ufrag", "a=ice-pwd", "a=fingerprint", "a=candidate")))
        garbage = {
            "v=0 then junk lines": "v=0\r\nthis is not\r\nan SDP offer at all\r\n",
            "v=0, an m=video line, junk": "v=0\r\nm=video 9 UDP/TLS/RTP/SAVPF 96\r\n%%%junk%%%\r\nzz\r\n",
            "m=video with a bad port": "v=0\r\nm=video port UDP/TLS/RTP/SAVPF 96\r\na=sendonly\r\n",
            "offer cut after its first m= line": cut_after_first_m_line(offer),
            "no ICE credentials or fingerprint": no_ice,
            "v=0 and 3000 junk characters": "v=0\r\n" + "x" * 3000,
        }
        checks: list[tuple[str, str, str, bytes | str, Optional[str], tuple[int, ...]]] = [
            # (what, method, path, body, content type, acceptable statuses)
            ("non-SDP body", "POST", "/whip/r5", "hello, server", "application/sdp", (400,)),
            ("non-UTF-8 body", "POST", "/whip/r5", b"v=0\r\n\xff\xfe\xfd", "application/sdp", (400,)),
            ("non-SDP body (WHEP)", "POST", "/whep/r5/alice", "hello", "application/sdp", (400,)),
            ("text/plain offer", "POST", "/whip/r5", offer, "text/plain", (415,)),
            ("offer without Content-Type", "POST", "/whip/r5", offer, None, (415,)),
            ("application/json offer (WHEP)", "POST", "/whep/r5/alice", play_offer, "application/json", (415,)),
            ("5000-byte body (limit 4096)", "POST", "/whip/r5", "v=0\r\n" + "a=x-pad:" + "p" * 4990 + "\r\n", "application/sdp", (413,)),
            ("5000-byte body (WHEP)", "POST", "/whep/r5/alice", "v=0\r\n" + "a=x-pad:" + "p" * 4990 + "\r\n", "application/sdp", (413,)),
            ("65-character room", "POST", "/whip/" + "r" * 65, offer, "application/sdp", (400,)),
            ("room with %2F", "POST", "/whip/a%2Fb", offer, "application/sdp", (400,)),
            ("room with a space", "POST", "/whip/a%20b", offer, "application/sdp", (400,)),
            ("room with a dot-dot", "POST", "/whip/..%2F..", offer, "application/sdp", (400,)),
            ("participant with a space (WHEP)", "POST", "/whep/r5/al%20ice", play_offer, "application/sdp", (400,)),
            ("unknown room (WHEP)", "POST", "/whep/nosuchroom/alice", play_offer, "application/sdp", (404,)),
            ("data channel only", "POST", "/whip/r5", datachannel_offer, "application/sdp", (400,)),
            ("all recvonly", "POST", "/whip/r5", play_offer, "application/sdp", (400,)),
            ("PATCH of an unknown session", "PATCH", "/session/0000", "a=end-of-candidates\r\n", "application/trickle-ice-sdpfrag", (404,)),
            ("DELETE of an unknown session", "DELETE", "/session/0000", None, None, (404,)),
        ]
        for what, sdp in garbage.items():
            checks.append((f"garbage: {what}", "POST", "/whip/r5", sdp, "application/sdp", tuple(range(400, 500))))
        failures: list[str] = []

        async def run_checks(checks) -> None:
            for what, method, path, body, ctype, want in checks:
                headers = {"Content-Type": ctype} if ctype else {}
                t0 = time.monotonic()
                try:
                    status, _, text = await srv.arequest(method, path, body.encode() if isinstance(body, str) else body, headers)
                except Exception as e:  # a reset connection or a timeout is a failure too
                    status, text = None, f"{type(e).__name__}: {e}"
                ms = (time.monotonic() - t0) * 1000
                ok = status in want and srv.alive()
                out(f"{'ok  ' if ok else 'FAIL'} {what}: {method} {path[:40]} -> {status} ({ms:.0f} ms) {text.strip()[:80]!r}")
                if not ok:
                    failures.append(f"{what}: {method} {path} -> {status} {text.strip()[:200]!r}, want {want[0] if len(want) == 1 else '4xx'}"
                                    + ("" if srv.alive() else " (the server died)"))
            self.assertTrue(srv.alive(), f"the server died\n{srv.log_tail()}")

        await run_checks(checks)
        # A normal publish and play still work, and the bad requests in between change nothing.
        pub = await self.publish(srv, "r5", colour=RED, tone_hz=440.0, name="alice")
        # Garbage WHEP offers for a participant who exists (so they reach the WebRTC stack).
        await run_checks([(f"garbage (WHEP of a live publisher): {what}", "POST", "/whep/r5/alice", sdp, "application/sdp",
                           tuple(range(400, 500))) for what, sdp in garbage.items()])
        status, _, text = await srv.post_sdp("/whep/r5/nobody", play_offer)
        out(f"unknown participant in a live room: {status} {text.strip()!r}")
        if status != 404:
            failures.append(f"unknown participant: POST /whep/r5/nobody -> {status} {text.strip()!r}, want 404")
        session = urllib.parse.urlsplit(pub.location).path
        for what, headers, want in (("application/sdp", {"Content-Type": "application/sdp"}, 415),
                                    ("no Content-Type", {}, 415),
                                    ("If-Match of another session", {"Content-Type": "application/trickle-ice-sdpfrag", "If-Match": '"nope"'}, 412)):
            status, _, text = await srv.arequest("PATCH", session, b"a=end-of-candidates\r\n", headers)
            out(f"PATCH with {what}: {status}")
            if status != want:
                failures.append(f"PATCH {session} with {what} -> {status} {text.strip()!r}, want {want}")
        await self.assert_plays(srv, "/whep/r5/alice", RED, 440.0, "after the bad requests: alice plays", "publish/play after bad input")
        self.assertTrue(srv.alive(), f"the server died\n{srv.log_tail()}")
        self.assertFalse(failures, "\n" + "\n".join(failures))

    @async_test()
    async def test_5b_refused_offers_leave_nothing_behind(self) -> None:
        """Offers refused by the WebRTC stack (after the room name and the counting of
        sending sections passed) must leave nothing behind: no empty room (it would count
        against --max-rooms and show in mcu_rooms) and no open sockets (Linux: /proc)."""
        srv = self.server("--max-rooms", "2", label="leaks")
        offer, play_offer = await make_offer("publish"), await make_offer("play")
        no_ice = "".join(l for l in offer.splitlines(keepends=True)
                         if not l.startswith(("a=ice-ufrag", "a=ice-pwd", "a=fingerprint", "a=candidate")))
        bad_offers = (("no ICE credentials or fingerprint", no_ice),
                      ("offer cut after its first m= line", cut_after_first_m_line(offer)))
        problems = []
        sockets0 = open_sockets(srv)
        rounds = 5
        for i in range(rounds):
            for j, (what, sdp) in enumerate(bad_offers):
                status, _, text = await srv.post_sdp(f"/whip/leak{j}", sdp)
                if i == 0:
                    out(f"WHIP, {what}, into a new room: {status} {text.strip()[:80]!r}")
                self.assertTrue(400 <= status < 500, f"{what}: {status} {text}")
        await asyncio.sleep(0.5)
        m, sockets1 = await srv.metrics(), open_sockets(srv)
        out(f"after {rounds * len(bad_offers)} refused WHIP offers: {gauges(m)}; server sockets {sockets0} -> {sockets1}")
        if m["mcu_rooms"] != 0:
            problems.append(f"refused WHIP offers left {m['mcu_rooms']:.0f} empty room(s) behind: {gauges(m)}")
        if sockets1 is not None and sockets1 > sockets0 + 2:
            problems.append(f"{rounds * len(bad_offers)} refused WHIP offers left {sockets1 - sockets0} more sockets open")
        # A new room under --max-rooms 2, whatever was refused before.
        try:
            await close_quietly(await self.publish(srv, "fresh", colour=None, tone_hz=440.0, name="alice"))
            out("WHIP into a new room under --max-rooms 2: 201")
        except mc.HttpStatusError as e:
            out(f"WHIP into a new room under --max-rooms 2: {e.status} {e.body.strip()!r}")
            problems.append(f"a publisher in a new room after the refusals: {e.status} {e.body.strip()!r}, want 201")
        # WHEP offers refused after the subscriber's peer connection was made (a room name
        # refused above: it exists whether or not the refusals left it behind).
        pub = await self.publish(srv, "leak0", colour=None, tone_hz=440.0, name="bob")
        await pub.wait_connected(CONNECT_TIMEOUT)
        await srv.wait_metrics(lambda m: m["mcu_tracks"] == 1, 20, "bob's track")
        sockets2 = open_sockets(srv)
        for i in range(rounds):
            status, _, text = await srv.post_sdp("/whep/leak0/bob", cut_after_first_m_line(play_offer))
            self.assertTrue(400 <= status < 500, f"WHEP: {status} {text}")
        await asyncio.sleep(0.5)
        sockets3 = open_sockets(srv)
        out(f"after {rounds} refused WHEP offers ({status} {text.strip()[:40]!r}): server sockets {sockets2} -> {sockets3}")
        if sockets3 is not None and sockets3 > sockets2 + 2:
            problems.append(f"{rounds} refused WHEP offers left {sockets3 - sockets2} more sockets open")
        self.assertTrue(srv.alive())
        self.assertFalse(problems, "\n" + "\n".join(problems))


# ----------------------------------------------------------------------------------------
# Limits
# ----------------------------------------------------------------------------------------


class Limits(E2ETest):
    @async_test()
    async def test_6_limits(self) -> None:
        srv = self.server("--max-tracks", "1", "--max-participants", "1", "--max-subscribers", "1", label="limits")
        e = await self.expect_refused(429, mc.publish(srv.url, "lim", colour=RED, tone_hz=440.0, name="alice"))
        out(f"audio+video with --max-tracks 1: {e.status} {e.body.strip()!r}")
        alice = await self.publish(srv, "lim", colour=RED, tone_hz=None, name="alice")
        player = await self.play(srv, "/whep/lim/alice", audio=False)
        await self.watch(player, video_frames=20, audio_seconds=0)

        e = await self.expect_refused(429, mc.publish(srv.url, "lim", colour=BLUE, tone_hz=None, name="bob"))
        out(f"second publisher with --max-participants 1: {e.status} {e.body.strip()!r}")
        e = await self.expect_refused(409, mc.publish(srv.url, "lim", colour=BLUE, tone_hz=None, name="alice"))
        out(f"alice publishing twice: {e.status} {e.body.strip()!r}")
        e = await self.expect_refused(429, mc.play(srv.url, "/whep/lim/alice", audio=False))
        out(f"second subscriber with --max-subscribers 1: {e.status} {e.body.strip()!r}")

        # The admitted publisher kept flowing through all that.
        before = player.video_frame_count
        await player.wait_media(MEDIA_TIMEOUT, video_frames=before + 45, audio_seconds=0)
        rgb = player.mean_colour()
        out(f"alice's player meanwhile: {player.video_frame_count - before} more frames, {fmt_rgb(rgb)}")
        self.assert_colour(rgb, RED, "the first publisher after the refusals")
        m = await srv.metrics()
        self.assertEqual((m["mcu_participants"], m["mcu_tracks"], m["mcu_subscribers"]), (1, 1, 1), gauges(m))
        self.assertEqual(m["mcu_sessions_refused_total"], 4)

        # The limits are per room, and a place freed is free again.
        other = await self.publish(srv, "lim2", colour=None, tone_hz=660.0, name="bob")
        await other.close()
        await player.close()
        await alice.close()
        bob = await self.publish(srv, "lim", colour=None, tone_hz=660.0, name="bob")
        self.assertEqual(mc._header(bob.headers, "x-participant"), "bob")


# ----------------------------------------------------------------------------------------
# A publisher that vanishes
# ----------------------------------------------------------------------------------------


class Vanish(E2ETest):
    @async_test(timeout=VANISH_LIMIT + 60)
    async def test_7_vanishing_publisher(self) -> None:
        srv = self.server(label="vanish")
        log = open(LOG_DIR / "vanish-publisher.log", "wb")
        proc = subprocess.Popen(
            [sys.executable, MCUCLIENT, "publish", "--url", srv.url, "--room", "v", "--name", "ghost",
             "--colour", "0,255,0", "--tone", "440", "--seconds", "600"],
            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=log, preexec_fn=_die_with_parent,
        )
        log.close()
        _live_processes.append(proc)
        try:
            line = await asyncio.wait_for(asyncio.to_thread(proc.stdout.readline), 30)
            self.assertTrue(line, "the publisher process printed nothing: see vanish-publisher.log")
            self.assertIn("/session/", json.loads(line)["location"])
            # Media flows: both tracks published, packets arriving.
            m1 = await srv.wait_metrics(lambda m: m["mcu_tracks"] == 2, 30, "the publisher's two tracks")
            m2 = await srv.wait_metrics(lambda m: m["mcu_rtp_received_packets_total"] > m1["mcu_rtp_received_packets_total"] + 50,
                                        15, "packets from the publisher")
            self.assertEqual(m2["mcu_participants"], 1)
            proc.kill()  # SIGKILL: no DELETE, no DTLS close_notify, just silence
            proc.wait()
            t0 = time.monotonic()
            gone = None
            while time.monotonic() - t0 < VANISH_LIMIT:
                m = await srv.metrics()
                if m["mcu_participants"] == 0:
                    gone = time.monotonic() - t0
                    break
                await asyncio.sleep(0.25)
            if gone is None:
                m = await srv.metrics()
                out(f"still listed {VANISH_LIMIT:g} s after SIGKILL: {gauges(m)}")
                self.fail(f"the server did not drop a publisher that vanished within {VANISH_LIMIT:g} s: {gauges(m)}")
            out(f"publisher dropped {gone:.1f} s after SIGKILL; now {gauges(m)}")
            self.assertEqual(gauges(m), {"rooms": 0, "participants": 0, "tracks": 0, "subscribers": 0})
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
            _live_processes.remove(proc)

        # The name is free again, and the server works for a new publisher.
        ghost = await self.publish(srv, "v", colour=GREEN, tone_hz=660.0, name="ghost")
        await self.assert_plays(srv, "/whep/v/ghost", GREEN, 660.0, "new publisher under the same name:", "new publisher after the vanished one")
        self.assertEqual(mc._header(ghost.headers, "x-participant"), "ghost")


# ----------------------------------------------------------------------------------------

ORDER = [
    (SfuMedia, ["test_1_two_way_call", "test_2_h264", "test_3_delete_session", "test_3b_websocket_choices", "test_3c_lossy_viewer_gets_retransmissions", "test_8_metrics"]),
    (Auth, ["test_4_auth"]),
    (BadInput, ["test_5_bad_input", "test_5b_refused_offers_leave_nothing_behind"]),
    (Limits, ["test_6_limits"]),
    (Vanish, ["test_7_vanishing_publisher"]),
]


class _Result(unittest.TextTestResult):
    passed = 0

    def addSuccess(self, test) -> None:
        super().addSuccess(test)
        self.passed += 1


def run_suite(order, label: str, argv: list[str]) -> int:
    """Runs the tests of `order` ([(class, [test names])], filtered by name fragments in `argv`;
    `-v` logs aiortc) and prints `{label}: N passed, M failed`. Shared by test_sfu and test_mcu."""
    verbose = "-v" in argv
    selected = [a for a in argv if a != "-v"]
    logging.basicConfig(level=logging.INFO if verbose else logging.WARNING, stream=sys.stderr,
                        format="%(asctime)s %(name)s %(levelname)s %(message)s")
    _quiet_decoder_warnings()
    if verbose:
        logging.getLogger("aiortc").setLevel(logging.WARNING)
        logging.getLogger("aioice").setLevel(logging.WARNING)
    suite = unittest.TestSuite()
    for cls, names in order:
        for name in names:
            if not selected or any(s in name for s in selected):
                suite.addTest(cls(name))
    # Ctrl-C or SIGTERM (e.g. a CI timeout) stops the servers and the run at once (unittest
    # and asyncio would turn either into an exception some test may absorb, and carry on).
    def on_signal(signum, _frame) -> None:
        _kill_all()
        print(f"{label}: interrupted by {signal.Signals(signum).name}", flush=True)
        os._exit(128 + signum)

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    start = time.monotonic()
    try:
        result = unittest.TextTestRunner(stream=sys.stdout, verbosity=2, resultclass=_Result).run(suite)
    finally:
        _kill_all()
    # A failed setUpClass counts once (its tests did not run).
    failed = len(result.failures) + len(result.errors) + len(result.unexpectedSuccesses)
    passed = result.passed
    if failed:
        print(f"server logs: {LOG_DIR}")
    else:
        shutil.rmtree(LOG_DIR, ignore_errors=True)
    print(f"({time.monotonic() - start:.1f} s)")
    print(f"{label}: {passed} passed, {failed} failed", flush=True)
    return 1 if failed or not passed else 0


def main(argv: list[str]) -> int:
    return run_suite(ORDER, "e2e sfu", argv)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
