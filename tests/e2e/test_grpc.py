#!/usr/bin/env python3
"""End-to-end tests of the gRPC control API (`mcu.v1`, api/proto/mcu/v1/mcu.proto) of `mcu serve`.

The API is driven with grpcio, a client independent of the server's tonic, from stubs that
protoc generates from the proto at test time (into target/e2e-grpc-stubs, not committed); what
it changes is observed with real aiortc WebRTC clients: publishers of solid colours and sine
tones, WHEP viewers of the room composite and MCU participants (test_mcu.py's people, grid
probes and tone levels).

Each test starts its own server (`target/debug/mcu`, or $MCU_BIN) with `--grpc-listen
127.0.0.1:0` next to the HTTP port (test_sfu.McuServer), a 640x360 30 fps canvas and
`--ice-failed-timeout-secs 3` (test_mcu.py's SERVER_ARGS), and stops it afterwards, also when
the test fails. Custom layout rectangles are in pixels of that canvas.

    1 reflection          grpc.reflection (v1alpha through grpcio-reflection's client, v1 by
                          hand): the four mcu.v1 services and reflection listed; SetLayout's
                          input type resolved, its fields as the proto says; a CreateRoom built
                          from the reflected descriptors alone
    2 grpc_web            gRPC-web (HTTP/1.1, binary and base64 text) on the gRPC port:
                          CreateRoom, ListRooms, NOT_FOUND as grpc-status 5; CORS preflight
    3 layout_live         alice bob carol dave in the 2x2 grid; SetLayout custom (bob small
                          top-left and carol bottom-right over alice, dave not named, a teal
                          background where nothing covers): each colour where it belongs, dave's
                          nowhere; active_speaker with spotlight carol: carol large, the others
                          in the bottom strip; grid with dave pinned: dave top-left. GetLayout
                          returns each; the time from SetLayout to the picture is printed
    4 room_mix_mute       the composite viewer hears all four tones; UpdateAudioMatrix mutes bob
                          for listener "" (the room mix): bob's tone gone, three left; reset:
                          all four again; the matrix as GetAudioMatrix shows it
    4b top_k              three audio-only publishers 6-8 dB apart: SetTopK 1 leaves the
                          loudest alone in the mix, 2 the two loudest, 0 everyone
    5 mcu_listener_gains  three MCU participants: alice stops hearing bob (the others still
                          do); carol hears alice 6 dB down (gain 0.5)
    6 events_in_order     WatchEvents: participant_joined(a), track_published(a) x2,
                          participant_left(a) (DELETE), participant_joined(b), strictly
                          increasing sequence numbers; composite_changed when a viewer comes,
                          active_speaker_changed naming b (the only one with a tone),
                          layout_changed on SetLayout; a watcher of every room sees them too
    7 rooms               CreateRoom (options, layout: a 3-column row) / ALREADY_EXISTS /
                          ListRooms / GetRoom / ListParticipants (names, kinds, tracks);
                          max_participants refuses a 4th publisher (429); MuteTrack of alice's
                          video (placeholder in her cell, her SFU viewer gets no frames) and
                          audio (her tone leaves the mix), unmute; RemoveParticipant (gone from
                          the list, the grid reflows, the publisher's connection closes, its
                          DELETE is 404); DeleteRoom (NOT_FOUND afterwards, sessions end,
                          room_closed); a room made by joining goes away when it empties;
                          start_composite
    8 auth_and_validation --api-key k3y and a JWT secret: no/wrong key or a bad token →
                          UNAUTHENTICATED, the key → OK; tokens without admin or for another
                          room → PERMISSION_DENIED, admin for room r → OK on r, room "*" for
                          ListRooms; INVALID_ARGUMENT naming the field (a viewer name over 128
                          bytes: "viewer"); NOT_FOUND, ALREADY_EXISTS; a viewer's own layout
                          set, read back and cleared without touching the room's
    9 jwt_only            without --dev, with a JWT secret only: tokens are required
   10 personal_layouts    MCU participants alice bob carol and a WHEP composite viewer, all on
                          the grid of three; SetLayout viewer=alice (custom: bob over the whole
                          canvas): alice sees bob's colour everywhere, bob and the WHEP viewer
                          the grid; viewer=carol (grid, hide_self): carol sees alice and bob in
                          two cells and herself nowhere; viewer=bob, alice's layout (one shared
                          canvas): bob sees himself whole; GetLayout per viewer (the room's for
                          anyone without one); layout_changed names the viewer; alice's layout
                          cleared: the grid again; each still hears the other two tones only
   11 classroom           CreateRoom with everyone_but_me: alice bob carol (MCU participants,
                          no layout set for anyone) each see the other two and themselves
                          nowhere, a WHEP viewer the grid of three; GetRoom and GET /rooms say
                          it is a classroom and where the composite draws and mixes; each hears
                          the other two. A server started with --everyone-but-me: a room made
                          by joining is one (alice and bob each see the other alone), a room
                          created with everyone_but_me=false is not

Run: scripts/e2e-setup.sh && target/e2e-venv/bin/python tests/e2e/test_grpc.py [-v] [name...]
(`name` selects tests whose name contains it; MCU_E2E_SERVER_LOG sets the servers' log
filter). Prints measured colours, tone levels, events and times, keeps the server logs of a
failed run (the directory is printed), closes with "e2e grpc: N passed, M failed" and exits
non-zero on any failure.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import http.client
import json
import math
import os
import re
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import urllib.parse
from pathlib import Path
from typing import Callable, Optional, Sequence

# Before grpc is imported: no fork handlers (the servers are started with fork+exec while
# channels are open), and only its errors on stderr.
os.environ.setdefault("GRPC_ENABLE_FORK_SUPPORT", "0")
os.environ.setdefault("GRPC_VERBOSITY", "ERROR")

import grpc  # noqa: E402
import numpy as np  # noqa: E402
from google.protobuf import descriptor_pb2, descriptor_pool, message_factory, text_format  # noqa: E402
from grpc_reflection.v1alpha import reflection_pb2 as refl_pb  # noqa: E402
from grpc_reflection.v1alpha.proto_reflection_descriptor_database import ProtoReflectionDescriptorDatabase  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
import mcuclient as mc  # noqa: E402
import test_mcu as tm  # noqa: E402  (people, grid probes, tone levels, the Composite test case)
import test_sfu as sfu  # noqa: E402  (server processes, tokens, the suite runner)
from test_mcu import (  # noqa: E402
    ALICE, BOB, CAROL, DAVE, FOUR, HEIGHT, MEDIA_TIMEOUT, PLACEHOLDER, PLACEHOLDER_LIMIT, REFLOW_LIMIT, SERVER_ARGS,
    WIDTH, Person, Probe, describe, fmt_levels, look, recent_frames, tone_levels, wait_tones,
)
from test_sfu import CONNECT_TIMEOUT, async_test, out  # noqa: E402

# ----------------------------------------------------------------------------------------
# Stubs, generated from the proto at test time
# ----------------------------------------------------------------------------------------

PROTO_ROOT = sfu.ROOT / "api" / "proto"
PROTO = PROTO_ROOT / "mcu" / "v1" / "mcu.proto"
STUB_ROOT = sfu.ROOT / "target" / "e2e-grpc-stubs"


def generate_stubs() -> Path:
    """mcu_pb2 / mcu_pb2_grpc from the proto with grpc_tools.protoc, in a directory of
    STUB_ROOT named for the proto's and grpcio-tools' versions: generated once per change,
    into a temporary directory renamed into place (concurrent runs do not see half a set)."""
    import grpc_tools

    tools = getattr(grpc_tools, "__version__", "") or _dist_version("grpcio-tools")
    digest = hashlib.sha256(PROTO.read_bytes() + tools.encode()).hexdigest()[:16]
    target = STUB_ROOT / digest
    if (target / "mcu" / "v1" / "mcu_pb2_grpc.py").is_file():
        return target
    STUB_ROOT.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=".gen-", dir=STUB_ROOT))
    try:
        run = subprocess.run([sys.executable, "-m", "grpc_tools.protoc", "-I", str(PROTO_ROOT), f"--python_out={tmp}",
                              f"--grpc_python_out={tmp}", str(PROTO)], capture_output=True, text=True, timeout=120)
        if run.returncode != 0:
            raise RuntimeError(f"grpc_tools.protoc failed ({run.returncode}):\n{run.stdout}{run.stderr}")
        try:
            os.rename(tmp, target)
        except OSError:  # another run renamed its copy first
            pass
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    for old in STUB_ROOT.iterdir():  # stubs of earlier protos
        if old.name != digest and not old.name.startswith(".gen-"):
            shutil.rmtree(old, ignore_errors=True)
    return target


def _dist_version(name: str) -> str:
    from importlib.metadata import version
    return version(name)


sys.path.insert(0, str(generate_stubs()))
from mcu.v1 import mcu_pb2 as pb  # noqa: E402
from mcu.v1 import mcu_pb2_grpc as pb_grpc  # noqa: E402

# ----------------------------------------------------------------------------------------
# Constants
# ----------------------------------------------------------------------------------------

SERVICES = ("mcu.v1.RoomService", "mcu.v1.LayoutService", "mcu.v1.AudioService", "mcu.v1.EventService")
RPC_TIMEOUT = 15.0  # s, each unary call (a loaded machine)
EVENT_TIMEOUT = 20.0  # s, for an event to arrive
LAYOUT_LIMIT = REFLOW_LIMIT  # s, from SetLayout's answer to the viewer's picture
CLOSE_LIMIT = 40.0  # s, for a client's connection to close after the server ended its session
API_KEY = "k3y"
TEAL = (0, 128, 128)  # the custom layout's background: no publisher's colour
ABSENT_TOLERANCE = 60  # per channel: a pixel this close to an absent colour counts as showing it
ABSENT_SHARE = 0.005  # of the canvas, at most (edges between tiles blend colours)
GAIN_DB_TOLERANCE = 1.5  # dB; the gains measure exact to 0.1 dB once settled
LONG_TEST = 300.0  # s, tests with four publishers and several phases

Code = grpc.StatusCode

# ----------------------------------------------------------------------------------------
# Geometry (the server's, compositor/src/layout.rs, on the test canvas)
# ----------------------------------------------------------------------------------------

Rect = tm.Rect


def snap(v: float) -> float:
    """To an even pixel, rounding halves away from zero (Rust's f32::round)."""
    return math.floor(v / 2 + 0.5) * 2


def fixed_grid_cells(n: int, cols: int, rows: int, gap: float = 0.0, width: int = WIDTH, height: int = HEIGHT) -> list[Rect]:
    """`n` cells of a cols x rows grid in reading order, the last row centred."""
    cw, ch = (width - gap * (cols + 1)) / cols, (height - gap * (rows + 1)) / rows
    cells = []
    for i in range(n):
        r, c = divmod(i, cols)
        shift = (cols - min(n - r * cols, cols)) * (cw + gap) / 2
        x, y = gap + c * (cw + gap) + shift, gap + r * (ch + gap)
        cells.append((snap(x), snap(y), snap(x + cw), snap(y + ch)))
    return cells


def bottom_strip(n: int, size: float = 0.2, gap: float = 4.0, width: int = WIDTH, height: int = HEIGHT) -> tuple[Rect, list[Rect]]:
    """The main area and `n` strip cells (16:9, centred) of a speaker layout with its strip at
    the bottom (the API's default: size 0.2, gap 4)."""
    thickness = height * size
    main = (0, 0, width, snap(height - thickness))
    across = max(thickness - 2 * gap, 2.0)
    along = max(min(across * 16 / 9, (width - gap * (n + 1)) / n), 2.0)
    start = (width - (n * along + (n - 1) * gap)) / 2
    y0 = height - thickness + gap
    cells = [(snap(start + i * (along + gap)), snap(y0), snap(start + i * (along + gap) + along), snap(y0 + across))
             for i in range(n)]
    return main, cells


def colour_share(frame: np.ndarray, colour, tolerance: int = ABSENT_TOLERANCE) -> float:
    """The share of the frame's pixels within `tolerance` (every channel) of `colour`."""
    return float(np.all(np.abs(frame.astype(np.int16) - np.array(colour, dtype=np.int16)) <= tolerance, axis=2).mean())


async def wait_view(player: mc.Player, probes: Sequence[Probe], timeout: float, what: str,
                    absent: Sequence[Person] = (), frames: int = 3) -> float:
    """Like test_mcu.wait_grid: until the last `frames` frames match every probe and show none
    of the `absent` people's colours (more than ABSENT_SHARE of the canvas); returns the
    seconds it took and prints what the probes saw."""
    loop = asyncio.get_running_loop()
    start = loop.time()
    while True:
        recent = recent_frames(player, frames)
        ok, seen = look(recent, probes) if len(recent) == frames else (False, [])
        shares = {p.name: max(colour_share(f, p.colour) for f in recent) for p in absent} if recent else {}
        ok = ok and all(s <= ABSENT_SHARE for s in shares.values())
        absent_text = "".join(f"; {name}'s colour on {s * 100:.2f} % of the canvas" for name, s in shares.items())
        if ok:
            took = loop.time() - start
            out(f"{what} after {took:.2f} s: {describe(seen)}{absent_text}")
            return took
        if loop.time() - start > timeout:
            raise AssertionError(f"{what}: not within {timeout:g} s; {player.video_frame_count} frames {player.frame_size}; "
                                 f"the last {frames} show {describe(seen) if seen else 'nothing'}{absent_text}")
        await asyncio.sleep(0.05)


def colour_pb(c) -> pb.Color:
    return pb.Color(r=c[0], g=c[1], b=c[2])


# ----------------------------------------------------------------------------------------
# The gRPC client
# ----------------------------------------------------------------------------------------


class Api:
    """A grpcio channel to one server with the stubs of the four services. Calls are blocking
    grpcio calls run in a thread (`await api.call(api.rooms.GetRoom, request)`), with
    `metadata` (the credential) on each unless a call gives its own."""

    def __init__(self, target: str, metadata: Sequence[tuple[str, str]] = ()) -> None:
        self.target = target
        self.channel = grpc.insecure_channel(target)
        self.metadata = tuple(metadata)
        self.rooms = pb_grpc.RoomServiceStub(self.channel)
        self.layouts = pb_grpc.LayoutServiceStub(self.channel)
        self.audio = pb_grpc.AudioServiceStub(self.channel)
        self.events = pb_grpc.EventServiceStub(self.channel)

    async def call(self, method, request, metadata: Optional[Sequence[tuple[str, str]]] = None, timeout: float = RPC_TIMEOUT):
        md = self.metadata if metadata is None else tuple(metadata)
        return await asyncio.to_thread(method, request, metadata=md, timeout=timeout)

    async def error(self, method, request, metadata: Optional[Sequence[tuple[str, str]]] = None) -> grpc.RpcError:
        """The RpcError the call fails with (AssertionError when it succeeds)."""
        try:
            response = await self.call(method, request, metadata)
        except grpc.RpcError as e:
            return e
        raise AssertionError(f"{rpc_name(method)}: succeeded ({fmt_msg(response)[:200]}), want an error")

    def watch(self, room: str, metadata: Optional[Sequence[tuple[str, str]]] = None) -> "EventWatch":
        return EventWatch(self, room, self.metadata if metadata is None else tuple(metadata))

    def close(self) -> None:
        self.channel.close()


def rpc_name(method) -> str:
    """"/mcu.v1.RoomService/GetRoom" of a grpcio stub method."""
    name = getattr(method, "_method", None)
    if isinstance(name, bytes):
        return name.decode()
    return name if isinstance(name, str) and name else repr(method)


def fmt_err(e: grpc.RpcError) -> str:
    return f"{e.code().name} {e.details()!r}"


def fmt_msg(m) -> str:
    return text_format.MessageToString(m, as_one_line=True)


def event_kind(ev) -> str:
    return ev.WhichOneof("event") or "?"


def event_who(ev) -> str:
    """The participant an event is about ("" for none)."""
    kind = event_kind(ev)
    body = getattr(ev, kind)
    if kind in ("participant_joined", "participant_left", "track_published", "active_speaker_changed"):
        return body.participant
    if kind == "track_muted":
        return body.track.id.split("/")[0]
    return ""


def fmt_event(ev) -> str:
    kind = event_kind(ev)
    return f"#{ev.sequence} {ev.room} {kind} {{{fmt_msg(getattr(ev, kind))}}}"


class EventWatch:
    """A WatchEvents stream read by a thread of its own into `events` (in arrival order).
    `close()` cancels the call."""

    def __init__(self, api: Api, room: str, metadata: Sequence[tuple[str, str]]) -> None:
        self.room = room
        self.events: list = []
        self.error: Optional[grpc.RpcError] = None
        self.ended = threading.Event()
        self.call = api.events.WatchEvents(pb.WatchEventsRequest(room=room), metadata=tuple(metadata))
        self._thread = threading.Thread(target=self._run, name=f"watch-{room or 'all'}", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        try:
            for ev in self.call:
                self.events.append(ev)
        except grpc.RpcError as e:
            self.error = e
        finally:
            self.ended.set()

    async def wait_for(self, pred: Callable, timeout: float, what: str, after: int = -1):
        """The first event (of sequence number above `after`) for which pred(event) holds;
        fails after `timeout` s listing what arrived."""
        deadline = time.monotonic() + timeout
        while True:
            for ev in list(self.events):
                if ev.sequence > after and pred(ev):
                    return ev
            if self.ended.is_set() or time.monotonic() > deadline:
                why = f"the stream ended: {fmt_err(self.error)}" if self.error is not None else (
                    "the stream ended" if self.ended.is_set() else f"not within {timeout:g} s")
                raise AssertionError(f"watch of room {self.room!r}: no {what}; {why}; events: "
                                     + ("; ".join(fmt_event(e) for e in self.events[-30:]) or "none"))
            await asyncio.sleep(0.05)

    async def wait_kind(self, kind: str, who: Optional[str] = None, timeout: float = EVENT_TIMEOUT, after: int = -1,
                        pred: Callable = lambda ev: True):
        what = kind + (f"({who})" if who is not None else "")
        return await self.wait_for(lambda ev: event_kind(ev) == kind and (who is None or event_who(ev) == who) and pred(ev),
                                   timeout, what, after)

    def close(self) -> None:
        self.call.cancel()
        self.ended.wait(5)


# ----------------------------------------------------------------------------------------
# gRPC-web over HTTP/1.1
# ----------------------------------------------------------------------------------------


def grpc_web_request(url: str, path: str, message: bytes, text: bool = False) -> tuple[int, dict, bytes]:
    """POSTs one gRPC-web request (a data frame: flag 0, length, message), binary or base64
    ("grpc-web-text"). Returns (status, headers with lower-case names, body decoded from
    base64 when text)."""
    kind = "application/grpc-web-text" if text else "application/grpc-web+proto"
    body = b"\x00" + len(message).to_bytes(4, "big") + message
    if text:
        body = base64.b64encode(body)
    u = urllib.parse.urlsplit(url)
    conn = http.client.HTTPConnection(u.hostname, u.port, timeout=RPC_TIMEOUT)
    try:
        conn.request("POST", path, body=body, headers={"Content-Type": kind, "Accept": kind, "X-Grpc-Web": "1",
                                                       "X-User-Agent": "grpc-web-e2e"})
        resp = conn.getresponse()
        data = resp.read()
        headers = {k.lower(): v for k, v in resp.getheaders()}
    finally:
        conn.close()
    if text and data:
        # Each chunk of a text response is base64 on its own (padding may fall mid-body).
        data = b"".join(base64.b64decode(piece) for piece in re.findall(rb"[A-Za-z0-9+/]+={0,2}", data))
    return resp.status, headers, data


def grpc_web_frames(data: bytes) -> tuple[list[bytes], dict[str, str]]:
    """The messages and the trailers (lower-case names) of a gRPC-web response body."""
    messages, trailers, i = [], {}, 0
    while i + 5 <= len(data):
        flag, n = data[i], int.from_bytes(data[i + 1:i + 5], "big")
        payload = data[i + 5:i + 5 + n]
        i += 5 + n
        if flag & 0x80:
            for line in payload.decode("utf-8", "replace").split("\r\n"):
                if ":" in line:
                    k, v = line.split(":", 1)
                    trailers[k.strip().lower()] = v.strip()
        else:
            messages.append(payload)
    assert i == len(data), f"{len(data) - i} bytes after the last gRPC-web frame"
    return messages, trailers


# ----------------------------------------------------------------------------------------
# Tokens
# ----------------------------------------------------------------------------------------


def admin_token(room: str, secret: str = sfu.SECRET, **kw) -> str:
    c = sfu.claims("operator", room, **kw)
    c["grants"]["admin"] = True
    return sfu.mint(c, secret)


def bearer(token: str) -> tuple[tuple[str, str]]:
    return (("authorization", f"Bearer {token}"),)


# ----------------------------------------------------------------------------------------
# The tests
# ----------------------------------------------------------------------------------------


class GrpcTest(tm.Composite):
    """test_mcu's Composite (publishers, composite viewers, grid checks) with a gRPC port on
    every server and grpcio channels that are closed after each test."""

    def setUp(self) -> None:
        super().setUp()
        self._apis: list[Api] = []
        self._watches: list[EventWatch] = []
        self._channels: list[grpc.Channel] = []

    def tearDown(self) -> None:
        for w in self._watches:
            w.close()
        for a in self._apis:
            a.close()
        for c in self._channels:
            c.close()
        super().tearDown()

    def grpc_server(self, label: str, *args: str, dev: bool = True, secret: Optional[str] = None) -> sfu.McuServer:
        srv = self.server(*SERVER_ARGS, *args, dev=dev, secret=secret, label=label)  # --grpc-listen 127.0.0.1:0
        out(f"{srv.label}: HTTP {srv.url}, gRPC {srv.grpc_url}")
        return srv

    def api(self, srv: sfu.McuServer, metadata: Sequence[tuple[str, str]] = ()) -> Api:
        a = Api(srv.grpc_target, metadata)
        self._apis.append(a)
        return a

    def watch_events(self, api: Api, room: str, metadata: Optional[Sequence[tuple[str, str]]] = None) -> EventWatch:
        w = api.watch(room, metadata)
        self._watches.append(w)
        return w

    async def set_layout(self, api: Api, room: str, layout: pb.Layout, what: str) -> pb.Layout:
        """SetLayout, and GetLayout returns what was set (the fields given; the server fills in
        defaults)."""
        resp = await api.call(api.layouts.SetLayout, pb.SetLayoutRequest(room=room, layout=layout))
        got = await api.call(api.layouts.GetLayout, pb.GetLayoutRequest(room=room))
        out(f"SetLayout {what}; GetLayout: {fmt_msg(got)[:300]}")
        for name, have in (("SetLayout's answer", resp.layout), ("GetLayout", got)):
            self.assert_layout(have, layout, f"{name} after SetLayout {what}")
        return got

    def assert_layout(self, have: pb.Layout, want: pb.Layout, what: str) -> None:
        self.assertEqual(have.WhichOneof("kind"), want.WhichOneof("kind"), f"{what}: {fmt_msg(have)}")
        kind = want.WhichOneof("kind")
        if kind == "custom":
            key = lambda t: (t.participant, t.x, t.y, t.width, t.height, t.z)  # noqa: E731
            self.assertEqual([key(t) for t in have.custom.tiles], [key(t) for t in want.custom.tiles], what)
        elif kind == "grid":
            self.assertEqual((have.grid.columns, have.grid.rows, have.grid.gap), (want.grid.columns, want.grid.rows, want.grid.gap), what)
        self.assertEqual(list(have.pinned), list(want.pinned), what)
        self.assertEqual(have.spotlight, want.spotlight, what)
        if want.HasField("background"):
            self.assertEqual(fmt_msg(have.background), fmt_msg(want.background), what)

    async def wait_participants(self, api: Api, room: str, pred: Callable, what: str, timeout: float = 20.0):
        """Polls ListParticipants until pred(participants by name) holds."""
        deadline = time.monotonic() + timeout
        while True:
            resp = await api.call(api.rooms.ListParticipants, pb.ListParticipantsRequest(room=room))
            by_name = {p.name: p for p in resp.participants}
            if pred(by_name):
                return by_name
            if time.monotonic() > deadline:
                raise AssertionError(f"{what}: not within {timeout:g} s; ListParticipants: {fmt_msg(resp)}")
            await asyncio.sleep(0.2)

    async def wait_closed(self, session: mc.Session, what: str, timeout: float = CLOSE_LIMIT) -> float:
        """Until the client's peer connection is closed or failed; returns the seconds."""
        t0 = time.monotonic()
        while session.pc.connectionState not in ("closed", "failed"):
            if time.monotonic() - t0 > timeout:
                raise AssertionError(f"{what}: the connection is still {session.pc.connectionState} after {timeout:g} s")
            await asyncio.sleep(0.1)
        took = time.monotonic() - t0
        out(f"{what}: connection {session.pc.connectionState} after {took:.1f} s")
        return took

    async def expect_code(self, api: Api, code: grpc.StatusCode, method, request, what: str,
                          metadata: Optional[Sequence[tuple[str, str]]] = None, details_start: Optional[str] = None) -> grpc.RpcError:
        e = await api.error(method, request, metadata)
        ok = e.code() == code and (details_start is None or (e.details() or "").startswith(details_start))
        out(f"{'ok  ' if ok else 'FAIL'} {what}: {rpc_name(method)} -> {fmt_err(e)}")
        self.assertEqual(e.code(), code, f"{what}: {rpc_name(method)} -> {fmt_err(e)}")
        if details_start is not None:
            self.assertTrue((e.details() or "").startswith(details_start),
                            f"{what}: details {e.details()!r} do not start with {details_start!r}")
        return e

    # -- 1 ------------------------------------------------------------------------------

    @async_test()
    async def test_1_reflection(self) -> None:
        srv = self.grpc_server("reflection")
        channel = grpc.insecure_channel(srv.grpc_target)
        self._channels.append(channel)
        await asyncio.to_thread(grpc.channel_ready_future(channel).result, RPC_TIMEOUT)

        # v1alpha, through grpcio-reflection's client.
        db = ProtoReflectionDescriptorDatabase(channel)
        services = sorted(await asyncio.to_thread(lambda: list(db.get_services())))
        out(f"services (grpc.reflection.v1alpha): {services}")
        for s in SERVICES:
            self.assertIn(s, services)
        self.assertTrue(any(s.startswith("grpc.reflection.") for s in services), f"no reflection service listed: {services}")
        pool = descriptor_pool.DescriptorPool(db)

        def resolve():
            service = pool.FindServiceByName("mcu.v1.LayoutService")
            return service, service.FindMethodByName("SetLayout"), pool.FindServiceByName("mcu.v1.EventService").FindMethodByName("WatchEvents")

        service, method, watch = await asyncio.to_thread(resolve)
        out(f"mcu.v1.LayoutService.SetLayout({method.input_type.full_name}) returns ({method.output_type.full_name}); "
            f"fields {[(f.name, f.number) for f in method.input_type.fields]}")
        self.assertEqual(method.input_type.full_name, "mcu.v1.SetLayoutRequest")
        self.assertEqual(method.output_type.full_name, "mcu.v1.SetLayoutResponse")
        fields = lambda d: sorted((f.name, f.number, f.type) for f in d.fields)  # noqa: E731
        self.assertEqual(fields(method.input_type), fields(pb.SetLayoutRequest.DESCRIPTOR))
        layout = method.input_type.fields_by_name["layout"].message_type
        self.assertEqual(fields(layout), fields(pb.Layout.DESCRIPTOR), "mcu.v1.Layout as reflected")
        self.assertEqual(sorted(layout.oneofs_by_name["kind"].fields, key=lambda f: f.number)[0].name, "grid")
        self.assertTrue(watch.server_streaming and not watch.client_streaming, "WatchEvents is a server stream")

        # A call made from the reflected descriptors alone (what grpcurl does).
        request_cls = message_factory.GetMessageClass(pool.FindMessageTypeByName("mcu.v1.CreateRoomRequest"))
        room_cls = message_factory.GetMessageClass(pool.FindMessageTypeByName("mcu.v1.Room"))
        create = channel.unary_unary("/mcu.v1.RoomService/CreateRoom", request_serializer=request_cls.SerializeToString,
                                     response_deserializer=room_cls.FromString)
        room = await asyncio.to_thread(create, request_cls(name="reflected"), timeout=RPC_TIMEOUT)
        out(f"CreateRoom from reflected descriptors: {fmt_msg(room)}")
        self.assertEqual(room.name, "reflected")
        api = self.api(srv)
        listed = await api.call(api.rooms.ListRooms, pb.ListRoomsRequest())
        self.assertIn("reflected", [r.name for r in listed.rooms])

        # v1, by hand (the same messages as v1alpha on the wire).
        info = channel.stream_stream("/grpc.reflection.v1.ServerReflection/ServerReflectionInfo",
                                     request_serializer=refl_pb.ServerReflectionRequest.SerializeToString,
                                     response_deserializer=refl_pb.ServerReflectionResponse.FromString)
        requests = [refl_pb.ServerReflectionRequest(list_services=""),
                    refl_pb.ServerReflectionRequest(file_containing_symbol="mcu.v1.AudioService")]
        responses = await asyncio.to_thread(lambda: list(info(iter(requests), timeout=RPC_TIMEOUT)))
        self.assertEqual(len(responses), 2, [fmt_msg(r)[:200] for r in responses])
        v1_services = sorted(s.name for s in responses[0].list_services_response.service)
        out(f"services (grpc.reflection.v1): {v1_services}")
        for s in SERVICES:
            self.assertIn(s, v1_services)
        files = [descriptor_pb2.FileDescriptorProto.FromString(b) for b in responses[1].file_descriptor_response.file_descriptor_proto]
        out(f"file containing mcu.v1.AudioService (v1): {[(f.name, f.package) for f in files]}")
        owner = [f for f in files if any(s.name == "AudioService" for s in f.service)]
        self.assertTrue(owner and owner[0].package == "mcu.v1", [(f.name, f.package) for f in files])
        self.assertEqual([m.name for m in next(s for s in owner[0].service if s.name == "AudioService").method],
                         [m.name for m in pb.DESCRIPTOR.services_by_name["AudioService"].methods], "AudioService's methods")
        self.check_alive(srv)

    # -- 2 ------------------------------------------------------------------------------

    @async_test()
    async def test_2_grpc_web(self) -> None:
        srv = self.grpc_server("grpc-web")
        status, headers, data = await asyncio.to_thread(grpc_web_request, srv.grpc_url, "/mcu.v1.RoomService/CreateRoom",
                                                        pb.CreateRoomRequest(name="webroom").SerializeToString())
        messages, trailers = grpc_web_frames(data)
        out(f"gRPC-web CreateRoom: HTTP {status} {headers.get('content-type')}, {len(messages)} message(s), trailers {trailers}")
        self.assertEqual(status, 200)
        self.assertTrue(headers.get("content-type", "").startswith("application/grpc-web"), headers)
        self.assertEqual(trailers.get("grpc-status", headers.get("grpc-status")), "0", (headers, trailers))
        self.assertEqual(len(messages), 1)
        self.assertEqual(pb.Room.FromString(messages[0]).name, "webroom")

        status, headers, data = await asyncio.to_thread(grpc_web_request, srv.grpc_url, "/mcu.v1.RoomService/ListRooms",
                                                        pb.ListRoomsRequest().SerializeToString(), True)
        messages, trailers = grpc_web_frames(data)
        out(f"gRPC-web-text ListRooms: HTTP {status} {headers.get('content-type')}, trailers {trailers}")
        self.assertEqual(status, 200)
        self.assertTrue(headers.get("content-type", "").startswith("application/grpc-web-text"), headers)
        self.assertEqual(trailers.get("grpc-status", headers.get("grpc-status")), "0", (headers, trailers))
        self.assertEqual([r.name for r in pb.ListRoomsResponse.FromString(messages[0]).rooms], ["webroom"])

        status, headers, data = await asyncio.to_thread(grpc_web_request, srv.grpc_url, "/mcu.v1.RoomService/GetRoom",
                                                        pb.GetRoomRequest(room="nosuchroom").SerializeToString())
        messages, trailers = grpc_web_frames(data)
        code = trailers.get("grpc-status", headers.get("grpc-status"))
        out(f"gRPC-web GetRoom of an unknown room: HTTP {status}, grpc-status {code} "
            f"{urllib.parse.unquote(trailers.get('grpc-message', headers.get('grpc-message', '')))!r}")
        self.assertEqual(status, 200)
        self.assertEqual(code, str(Code.NOT_FOUND.value[0]))
        self.assertEqual(messages, [])

        # A browser page of another origin may call (CORS preflight).
        u = urllib.parse.urlsplit(srv.grpc_url)
        conn = http.client.HTTPConnection(u.hostname, u.port, timeout=RPC_TIMEOUT)
        try:
            await asyncio.to_thread(conn.request, "OPTIONS", "/mcu.v1.RoomService/ListRooms", headers={
                "Origin": "http://page.example", "Access-Control-Request-Method": "POST",
                "Access-Control-Request-Headers": "content-type,x-grpc-web,x-api-key"})
            resp = await asyncio.to_thread(conn.getresponse)
            resp.read()
            cors = {k.lower(): v for k, v in resp.getheaders() if k.lower().startswith("access-control-")}
        finally:
            conn.close()
        out(f"CORS preflight: HTTP {resp.status} {cors}")
        self.assertIn(resp.status, (200, 204))
        self.assertIn(cors.get("access-control-allow-origin"), ("*", "http://page.example"))
        self.assertIn("POST", cors.get("access-control-allow-methods", "").upper())
        self.check_alive(srv)

    # -- 3 ------------------------------------------------------------------------------

    @async_test(timeout=LONG_TEST)
    async def test_3_layout_live(self) -> None:
        srv = self.grpc_server("layout")
        api = self.api(srv)
        room = "stage"
        await self.publish_all(srv, room, FOUR)
        player = await self.composite(srv, room)
        await self.show_grid(player, FOUR, MEDIA_TIMEOUT, "default layout: 2x2 grid sorted by name")
        initial = await api.call(api.layouts.GetLayout, pb.GetLayoutRequest(room=room))
        out(f"GetLayout before any SetLayout: {fmt_msg(initial)[:200]}")
        self.assertEqual(initial.WhichOneof("kind"), "grid")
        self.assertEqual(fmt_msg(initial.background), fmt_msg(colour_pb(tm.BACKGROUND)))

        # Custom: alice large (not the whole width), bob small top-left and carol bottom-right
        # on top of her (listed first, so z, not list order, puts them on top), dave unnamed.
        W, H = WIDTH, HEIGHT
        alice_rect, bob_rect, carol_rect = (0, 0, 480, 360), (16, 16, 160, 90), (320, 270, 160, 90)
        tile = lambda p, r, z: pb.CustomTile(participant=p.name, x=r[0], y=r[1], width=r[2], height=r[3], z=z)  # noqa: E731
        box = lambda r: (r[0], r[1], r[0] + r[2], r[1] + r[3])  # noqa: E731
        custom = pb.Layout(custom=pb.Custom(tiles=[tile(BOB, bob_rect, 1), tile(CAROL, carol_rect, 1), tile(ALICE, alice_rect, 0)]),
                           background=colour_pb(TEAL))
        old_dave = tm.grid_cells(4)[3]
        probes = [Probe("centre (alice)", (W / 2 - 120, H / 2 - 60, W / 2 + 40, H / 2 + 60), ALICE.colour),
                  Probe("bob's rect", box(bob_rect), BOB.colour),
                  Probe("carol's rect", box(carol_rect), CAROL.colour),
                  Probe("old dave cell above carol (alice)", (old_dave[0], old_dave[1], box(carol_rect)[2], carol_rect[1]), ALICE.colour),
                  Probe("right of alice (background)", (box(alice_rect)[2], 0, W, H), TEAL, tm.BACKGROUND_TOLERANCE)]
        await self.set_layout(api, room, custom, "custom")
        await wait_view(player, probes, LAYOUT_LIMIT, "custom layout", absent=[DAVE])

        # Active speaker with a spotlight: carol large whoever speaks, the others in the strip.
        speaker = pb.Layout(active_speaker=pb.ActiveSpeaker(), spotlight=CAROL.name)
        await self.set_layout(api, room, speaker, "active_speaker, spotlight carol")
        main, strip = bottom_strip(3)
        others = [ALICE, BOB, DAVE]
        probes = [Probe("main area (carol)", main, CAROL.colour)]
        probes += [Probe(f"strip {p.name}", cell, p.colour) for p, cell in zip(others, strip)]
        probes += [Probe("strip, left of the tiles (background)", (0, main[3] + 4, strip[0][0] - 4, H), tm.BACKGROUND, tm.BACKGROUND_TOLERANCE)]
        await wait_view(player, probes, LAYOUT_LIMIT, "carol in the spotlight")

        # Back to the grid, dave pinned: first cell.
        pinned = pb.Layout(grid=pb.Grid(), pinned=[DAVE.name])
        await self.set_layout(api, room, pinned, "grid, dave pinned")
        order = [DAVE, ALICE, BOB, CAROL]
        await wait_view(player, [Probe(p.name, cell, p.colour) for p, cell in zip(order, tm.grid_cells(4))], LAYOUT_LIMIT,
                        "grid with dave pinned first")
        got = await api.call(api.rooms.GetRoom, pb.GetRoomRequest(room=room))
        self.assert_layout(got.layout, pinned, "GetRoom's layout")
        self.check_alive(srv)

    # -- 4 ------------------------------------------------------------------------------

    @async_test(timeout=LONG_TEST)
    async def test_4_room_mix_mute(self) -> None:
        srv = self.grpc_server("room-mix")
        api = self.api(srv)
        room = "mix"
        await self.publish_all(srv, room, FOUR)
        player = await self.composite(srv, room)
        tones = [p.tone for p in FOUR]
        levels, floor = await wait_tones(player, tones, what="the room mix of four")
        out(f"before: {fmt_levels(levels, floor)}")

        edit = pb.GainEdit(listener="", source=BOB.name, mute=True)
        matrix = await api.call(api.audio.UpdateAudioMatrix, pb.UpdateAudioMatrixRequest(room=room, edits=[edit]))
        out(f"UpdateAudioMatrix mute bob for the room mix: {fmt_msg(matrix)}")
        gains = [(g.listener, g.source, round(g.gain, 3)) for g in matrix.gains]
        self.assertEqual(gains, [("", BOB.name, 0.0)])
        got = await api.call(api.audio.GetAudioMatrix, pb.GetAudioMatrixRequest(room=room))
        self.assertEqual([(g.listener, g.source, round(g.gain, 3)) for g in got.gains], gains, fmt_msg(got))
        t0 = time.monotonic()
        others = [p.tone for p in FOUR if p is not BOB]
        levels, floor = await wait_tones(player, others, absent=[BOB.tone], what="the room mix with bob muted")
        out(f"bob muted (after {time.monotonic() - t0:.1f} s, a second held): {fmt_levels(levels, floor)}")

        matrix = await api.call(api.audio.UpdateAudioMatrix, pb.UpdateAudioMatrixRequest(
            room=room, edits=[pb.GainEdit(listener="", source=BOB.name, reset=True)]))
        out(f"reset: {fmt_msg(matrix) or '(empty matrix)'}")
        self.assertEqual(list(matrix.gains), [])
        t0 = time.monotonic()
        levels, floor = await wait_tones(player, tones, what="the room mix after the reset")
        out(f"bob back (after {time.monotonic() - t0:.1f} s): {fmt_levels(levels, floor)}")
        self.check_alive(srv)

    async def publish_tone(self, srv: sfu.McuServer, room: str, name: str, tone_hz: float, amplitude: float) -> mc.Publisher:
        """An audio-only WHIP publisher of a sine at `amplitude` of full scale."""
        addresses = mc._apply_ice_addresses(srv.url, "auto")
        pc = mc.new_peer_connection()
        track = mc.ToneAudioTrack(tone_hz, amplitude=amplitude)
        pc.addTransceiver(track, direction="sendonly")
        offer, exchange = await mc._negotiate(pc, mc.whip_url(srv.url, room, name), None, addresses, tracks=[track])
        pub = mc.Publisher(pc, offer, exchange, None, [track])
        self._sessions.append(pub)
        return pub

    @async_test(timeout=LONG_TEST)
    async def test_4b_top_k(self) -> None:
        """SetTopK: only the K loudest sources in the mix. Three audio-only publishers 6-8 dB
        apart (so the ranking is clear): K=1 the loudest alone, K=2 the two loudest, 0 all."""
        srv = self.grpc_server("top-k")
        api = self.api(srv)
        room = "topk"
        loud, middle, quiet = (ALICE, 0.3), (BOB, 0.12), (CAROL, 0.06)  # -13.5, -21.5, -27.5 dBFS received
        for p, amplitude in (loud, middle, quiet):
            await self.publish_tone(srv, room, p.name, p.tone, amplitude)
        player = await self.composite(srv, room)
        tones = [p.tone for p, _ in (loud, middle, quiet)]
        levels, floor = await wait_tones(player, tones, what="the mix of three")
        out(f"top_k 0 (everyone): {fmt_levels(levels, floor)}")
        for k, present, absent in ((1, tones[:1], tones[1:]), (2, tones[:2], tones[2:]), (0, tones, [])):
            resp = await api.call(api.audio.SetTopK, pb.SetTopKRequest(room=room, top_k=k))
            self.assertEqual(resp.top_k, k)
            t0 = time.monotonic()
            levels, floor = await wait_tones(player, present, absent=absent, what=f"the mix with top_k {k}")
            out(f"top_k {k} (after {time.monotonic() - t0:.1f} s): {fmt_levels(levels, floor)}")
        self.check_alive(srv)

    async def join_mcu_people(self, srv, room: str, people) -> "dict[str, mc.McuParticipant]":
        """Each of `people` joins `room` as an MCU participant; returns them by name once each
        is connected and receiving video."""
        joined: dict[str, mc.McuParticipant] = {}
        for p in people:
            m = await mc.join_mcu(srv.url, room, p.colour, p.tone, name=p.name)
            self._sessions.append(m)
            joined[p.name] = m
        for m in joined.values():
            await m.wait_connected(CONNECT_TIMEOUT)
            await m.wait_media(MEDIA_TIMEOUT, video_frames=1, audio_seconds=0)
        return joined

    # -- 5 ------------------------------------------------------------------------------

    @async_test(timeout=LONG_TEST)
    async def test_5_mcu_listener_gains(self) -> None:
        srv = self.grpc_server("mcu-gains")
        api = self.api(srv)
        room = "circle"
        people = (ALICE, BOB, CAROL)
        joined = await self.join_mcu_people(srv, room, people)
        listed = await self.wait_participants(api, room, lambda ps: set(ps) == {p.name for p in people}, "the three participants")
        kinds = {n: pb.ParticipantKind.Name(p.kind) for n, p in listed.items()}
        out(f"ListParticipants: {kinds}")
        self.assertEqual(set(kinds.values()), {"PARTICIPANT_KIND_MCU"})
        for p in people:
            others = [q.tone for q in people if q is not p]
            levels, floor = await wait_tones(joined[p.name], others, absent=[p.tone], what=f"{p.name}'s own mix")
            out(f"{p.name} hears {fmt_levels(levels, floor)}")

        # alice no longer hears bob; bob and carol hear what they did.
        await api.call(api.audio.UpdateAudioMatrix, pb.UpdateAudioMatrixRequest(
            room=room, edits=[pb.GainEdit(listener=ALICE.name, source=BOB.name, mute=True)]))
        levels, floor = await wait_tones(joined[ALICE.name], [CAROL.tone], absent=[BOB.tone, ALICE.tone], what="alice's mix without bob")
        out(f"alice, bob muted for her: {fmt_levels(levels, floor)}")
        levels, floor = await wait_tones(joined[CAROL.name], [ALICE.tone, BOB.tone], absent=[CAROL.tone], what="carol's mix (unchanged)")
        out(f"carol meanwhile: {fmt_levels(levels, floor)}")
        levels, floor = await wait_tones(joined[BOB.name], [ALICE.tone, CAROL.tone], absent=[BOB.tone], what="bob's mix (unchanged)")
        out(f"bob meanwhile: {fmt_levels(levels, floor)}")

        # carol hears alice at half amplitude (-6 dB), bob as before.
        before, _ = tone_levels(joined[CAROL.name], [ALICE.tone, BOB.tone])
        matrix = await api.call(api.audio.UpdateAudioMatrix, pb.UpdateAudioMatrixRequest(
            room=room, edits=[pb.GainEdit(listener=CAROL.name, source=ALICE.name, gain=0.5)]))
        out(f"matrix: {fmt_msg(matrix)}")
        self.assertEqual(sorted((g.listener, g.source, round(g.gain, 3)) for g in matrix.gains),
                         [(ALICE.name, BOB.name, 0.0), (CAROL.name, ALICE.name, 0.5)])
        want = before[ALICE.tone] - before[BOB.tone] - 6.0
        deadline, held, diff = time.monotonic() + 15.0, None, None
        while True:
            levels, floor = tone_levels(joined[CAROL.name], [ALICE.tone, BOB.tone])
            diff = levels[ALICE.tone] - levels[BOB.tone]
            if abs(diff - want) <= GAIN_DB_TOLERANCE:
                held = held or time.monotonic()
                if time.monotonic() - held >= 1.0:
                    break
            else:
                held = None
            if time.monotonic() > deadline:
                self.fail(f"carol hears alice {diff:+.1f} dB against bob, want {want:+.1f} ± {GAIN_DB_TOLERANCE:g} "
                          f"(before the gain: {before[ALICE.tone] - before[BOB.tone]:+.1f}); {fmt_levels(levels, floor)}")
            await asyncio.sleep(0.25)
        out(f"carol, alice at gain 0.5: alice {diff:+.1f} dB against bob (before {before[ALICE.tone] - before[BOB.tone]:+.1f}); "
            f"{fmt_levels(levels, floor)}")
        self.check_alive(srv)

    # -- 6 ------------------------------------------------------------------------------

    @async_test(timeout=LONG_TEST)
    async def test_6_events_in_order(self) -> None:
        srv = self.grpc_server("events")
        api = self.api(srv)
        room = "evroom"
        created = await api.call(api.rooms.CreateRoom, pb.CreateRoomRequest(name=room))
        self.assertEqual(created.name, room)
        start = time.time()
        watch = self.watch_events(api, room)
        everything = self.watch_events(api, "")
        first = await self.sync_watches(api, room, [watch, everything])
        self.assertEqual(first.room, room)
        self.assertEqual(first.layout_changed.viewer, "")
        self.assertEqual(first.layout_changed.layout.grid.gap, 8, fmt_event(first))

        a = await self.publish(srv, room, colour=ALICE.colour, tone_hz=ALICE.tone, name="a")
        await a.wait_connected(CONNECT_TIMEOUT)
        for kind in ("audio", "video"):
            await watch.wait_kind("track_published", "a", pred=lambda ev, k=kind: ev.track_published.track.kind == k)
        await a.close()
        await watch.wait_kind("participant_left", "a")
        b = await self.publish(srv, room, colour=BOB.colour, tone_hz=BOB.tone, name="b")
        await b.wait_connected(CONNECT_TIMEOUT)
        await watch.wait_kind("participant_joined", "b")

        # The composite starts for a viewer; b, the only one with a tone, is the active speaker.
        viewer = await self.composite(srv, room)
        await watch.wait_kind("composite_changed", pred=lambda ev: ev.composite_changed.running)
        speaker = await watch.wait_kind("active_speaker_changed", "b", timeout=EVENT_TIMEOUT + 10)
        self.assertEqual(speaker.active_speaker_changed.participant, "b")
        await self.set_layout(api, room, pb.Layout(active_speaker=pb.ActiveSpeaker()), "active_speaker")
        changed = await watch.wait_kind("layout_changed", after=speaker.sequence)
        self.assertEqual(changed.layout_changed.layout.WhichOneof("kind"), "active_speaker", fmt_event(changed))
        await b.close()
        await watch.wait_kind("participant_left", "b")
        await viewer.close()

        events = list(watch.events)
        out("events of the room:")
        for ev in events:
            out(f"  {fmt_event(ev)}")
        seqs = [ev.sequence for ev in events]
        self.assertEqual(seqs, sorted(set(seqs)), f"sequence numbers not strictly increasing: {seqs}")
        self.assertTrue(all(ev.room == room for ev in events), [ev.room for ev in events])
        now_ms = time.time() * 1000
        self.assertTrue(all(start * 1000 - 5000 <= ev.unix_ms <= now_ms + 5000 for ev in events),
                        f"unix_ms outside the test's run: {[ev.unix_ms for ev in events]} (started {start * 1000:.0f})")
        ms = [ev.unix_ms for ev in events]
        self.assertEqual(ms, sorted(ms), "unix_ms goes backwards")
        # The membership events in order.
        members = [(event_kind(ev), event_who(ev)) for ev in events
                   if event_kind(ev) in ("participant_joined", "participant_left", "track_published")]
        want = [("participant_joined", "a"), ("track_published", "a"), ("track_published", "a"), ("participant_left", "a"),
                ("participant_joined", "b")]
        self.assertEqual(members[:len(want)], want, f"membership events: {members}")
        joined_a = next(ev for ev in events if event_kind(ev) == "participant_joined" and event_who(ev) == "a")
        self.assertEqual(joined_a.participant_joined.kind, pb.PARTICIPANT_KIND_PUBLISHER)
        tracks = [ev.track_published.track for ev in events if event_kind(ev) == "track_published" and event_who(ev) == "a"]
        self.assertEqual(sorted(t.kind for t in tracks), ["audio", "video"])
        for t in tracks:
            self.assertRegex(t.id, rf"^a/{t.kind}-\d+$")
            self.assertTrue(t.codec.lower().startswith(t.kind + "/"), t.codec)
            self.assertFalse(t.muted)
        self.assertIn(("participant_left", "b"), members)

        # A watcher of every room saw the same events of this room, in the same order.
        await everything.wait_kind("participant_left", "b")
        mine = [(ev.sequence, event_kind(ev), event_who(ev)) for ev in everything.events if ev.room == room]
        theirs = [(ev.sequence, event_kind(ev), event_who(ev)) for ev in events]
        since = max(mine[0][0], theirs[0][0])  # (either may have been subscribed a moment earlier)
        theirs = [e for e in theirs if e[0] >= since]
        mine = [e for e in mine if e[0] >= since]
        self.assertEqual(mine[:len(theirs)], theirs, "the watcher of every room saw the room's events otherwise")
        self.check_alive(srv)

    async def sync_watches(self, api: Api, room: str, watches: Sequence[EventWatch]):
        """Waits until the watches are live: SetLayout (grid, gap 8) until each has delivered
        its layout_changed (the server may subscribe a new watcher a moment after the call
        starts). Returns the first watch's layout_changed."""
        layout = pb.Layout(grid=pb.Grid(gap=8))
        for attempt in range(1, 6):
            await api.call(api.layouts.SetLayout, pb.SetLayoutRequest(room=room, layout=layout))
            try:
                seen = [await w.wait_kind("layout_changed", timeout=3.0 * attempt, pred=lambda ev: ev.room == room) for w in watches]
            except AssertionError as e:
                out(f"SetLayout {attempt}: not every watch saw it yet ({str(e)[:200]})")
                if attempt == 5:
                    raise
                continue
            out(f"the watches are live (layout_changed #{seen[0].sequence}, SetLayout {attempt} time(s))")
            return seen[0]

    # -- 7 ------------------------------------------------------------------------------

    @async_test(timeout=LONG_TEST)
    async def test_7_rooms(self) -> None:
        srv = self.grpc_server("rooms")
        api = self.api(srv)
        room = "lobby"
        row = pb.Layout(grid=pb.Grid(columns=3))
        created = await api.call(api.rooms.CreateRoom, pb.CreateRoomRequest(
            name=room, options=pb.RoomOptions(max_participants=3), layout=row))
        out(f"CreateRoom: {fmt_msg(created)[:300]}")
        self.assertEqual((created.name, created.participants, created.subscribers, created.persistent), (room, 0, 0, True))
        self.assertEqual(created.options.max_participants, 3)
        self.assert_layout(created.layout, row, "CreateRoom's layout")
        await self.expect_code(api, Code.ALREADY_EXISTS, api.rooms.CreateRoom, pb.CreateRoomRequest(name=room), "the same room again")
        listed = await api.call(api.rooms.ListRooms, pb.ListRoomsRequest())
        self.assertEqual([(r.name, r.persistent, r.participants) for r in listed.rooms], [(room, True, 0)], fmt_msg(listed))
        watch = self.watch_events(api, room)

        # alice and bob publish (WHIP), carol joins the MCU, a viewer watches the composite.
        alice = await self.publish_person(srv, room, ALICE)
        bob = await self.publish_person(srv, room, BOB)
        carol = await mc.join_mcu(srv.url, room, CAROL.colour, CAROL.tone, name=CAROL.name)
        self._sessions.append(carol)
        for s in (alice, bob, carol):
            await s.wait_connected(CONNECT_TIMEOUT)
        people = (ALICE, BOB, CAROL)
        listed = await self.wait_participants(api, room, lambda ps: set(ps) == {p.name for p in people}
                                              and all(len(p.tracks) == 2 for p in ps.values()), "three participants with two tracks each")
        for name, p in sorted(listed.items()):
            out(f"{name}: {pb.ParticipantKind.Name(p.kind)}, tracks {[fmt_msg(t) for t in p.tracks]}")
        self.assertEqual({n: p.kind for n, p in listed.items()},
                         {"alice": pb.PARTICIPANT_KIND_PUBLISHER, "bob": pb.PARTICIPANT_KIND_PUBLISHER, "carol": pb.PARTICIPANT_KIND_MCU})
        for name, p in listed.items():
            self.assertEqual(sorted(t.kind for t in p.tracks), ["audio", "video"], name)
            for t in p.tracks:
                self.assertRegex(t.id, rf"^{name}/{t.kind}-\d+$")
                self.assertFalse(t.muted)
                want_codec = "video/vp8" if t.kind == "video" else "audio/opus"
                self.assertEqual(t.codec.lower(), want_codec, f"{t.id}: codec {t.codec}")
        ids = {(n, t.kind): t.id for n, p in listed.items() for t in p.tracks}
        e = await self.expect_refused(429, mc.publish(srv.url, room, colour=DAVE.colour, tone_hz=DAVE.tone, name=DAVE.name))
        out(f"a 4th publisher with max_participants 3: {e.status} {e.body.strip()[:80]!r}")

        viewer = await self.composite(srv, room)
        cells = fixed_grid_cells(3, 3, 1)
        probes = {p.name: Probe(p.name, cell, p.colour) for p, cell in zip(people, cells)}
        await wait_view(viewer, list(probes.values()), MEDIA_TIMEOUT, "the created layout: one row of three")
        levels, floor = await wait_tones(viewer, [p.tone for p in people], what="the mix of three")
        out(f"tones: {fmt_levels(levels, floor)}")
        alice_sfu = await self.play(srv, f"/whep/{room}/alice")
        await self.watch(alice_sfu, video_frames=10, audio_seconds=0.5)
        got = await api.call(api.rooms.GetRoom, pb.GetRoomRequest(room=room))
        out(f"GetRoom: {fmt_msg(got)[:300]}")
        self.assertEqual((got.participants, got.subscribers, got.composite, got.persistent), (3, 3, True, True),
                         "participants alice bob carol; subscribers the viewer, carol, alice's SFU viewer")

        # Mute alice's video: the placeholder in her cell, nothing forwarded to her SFU viewer.
        muted = await api.call(api.rooms.MuteTrack, pb.MuteTrackRequest(room=room, track_id=ids["alice", "video"], muted=True))
        t0 = time.monotonic()
        self.assertEqual((muted.track.id, muted.track.muted), (ids["alice", "video"], True), fmt_msg(muted))
        ev = await watch.wait_kind("track_muted", "alice", pred=lambda ev: ev.track_muted.track.muted)
        self.assertEqual(ev.track_muted.track.id, ids["alice", "video"])
        placeholder = dict(probes, alice=Probe("alice (placeholder)", probes["alice"].rect, PLACEHOLDER))
        await wait_view(viewer, list(placeholder.values()), PLACEHOLDER_LIMIT, "alice's video muted")
        out(f"placeholder {time.monotonic() - t0:.1f} s after MuteTrack")
        await asyncio.sleep(1.0)
        before = alice_sfu.video_frame_count
        await asyncio.sleep(2.0)
        out(f"alice's SFU viewer: {alice_sfu.video_frame_count - before} frames in the 2 s from 1 s after the mute")
        self.assertLessEqual(alice_sfu.video_frame_count - before, 2, "alice's muted video is still forwarded")
        listed = await self.wait_participants(api, room, lambda ps: any(t.muted for t in ps["alice"].tracks), "alice's video listed muted")
        self.assertEqual({t.id: t.muted for t in listed["alice"].tracks}, {ids["alice", "video"]: True, ids["alice", "audio"]: False})

        # Mute her audio: her tone leaves the mix.
        await api.call(api.rooms.MuteTrack, pb.MuteTrackRequest(room=room, track_id=ids["alice", "audio"], muted=True))
        levels, floor = await wait_tones(viewer, [BOB.tone, CAROL.tone], absent=[ALICE.tone], what="the mix with alice's audio muted")
        out(f"alice's audio muted: {fmt_levels(levels, floor)}")

        # Unmute both: her colour and tone come back, and her SFU viewer gets frames again.
        for kind in ("video", "audio"):
            resp = await api.call(api.rooms.MuteTrack, pb.MuteTrackRequest(room=room, track_id=ids["alice", kind], muted=False))
            self.assertFalse(resp.track.muted)
        await watch.wait_kind("track_muted", "alice", pred=lambda ev: not ev.track_muted.track.muted)
        await wait_view(viewer, list(probes.values()), REFLOW_LIMIT, "alice unmuted")
        levels, floor = await wait_tones(viewer, [p.tone for p in people], what="the mix with alice unmuted")
        out(f"alice unmuted: {fmt_levels(levels, floor)}")
        before = alice_sfu.video_frame_count
        await alice_sfu.wait_media(MEDIA_TIMEOUT, video_frames=before + 15, audio_seconds=0)

        # Remove bob: gone from the list, his connection closes, the row reflows.
        await api.call(api.rooms.RemoveParticipant, pb.RemoveParticipantRequest(room=room, participant=BOB.name))
        await watch.wait_kind("participant_left", "bob")
        listed = await self.wait_participants(api, room, lambda ps: BOB.name not in ps, "bob gone")
        self.assertEqual(sorted(listed), ["alice", "carol"])
        await self.wait_closed(bob, "bob's publisher after RemoveParticipant")
        two = fixed_grid_cells(2, 3, 1)
        await wait_view(viewer, [Probe(p.name, c, p.colour) for p, c in zip((ALICE, CAROL), two)], REFLOW_LIMIT,
                        "the row without bob (two tiles, centred)", absent=[BOB])
        status, _, text = await srv.arequest("DELETE", urllib.parse.urlsplit(bob.location).path)
        out(f"bob's DELETE after his removal: {status} {text.strip()[:60]!r}")
        self.assertEqual(status, 404)

        # A room made by joining is listed, not persistent, and goes away when it empties.
        drop_in = await self.publish(srv, "adhoc", colour=None, tone_hz=DAVE.tone, name="dave")
        await drop_in.wait_connected(CONNECT_TIMEOUT)
        listed = await api.call(api.rooms.ListRooms, pb.ListRoomsRequest())
        self.assertEqual(sorted((r.name, r.persistent, r.participants) for r in listed.rooms), [("adhoc", False, 1), (room, True, 2)],
                         fmt_msg(listed))
        await drop_in.close()
        await self.wait_gone(api, "adhoc")

        # start_composite: the composite runs with no viewer.
        eager = await api.call(api.rooms.CreateRoom, pb.CreateRoomRequest(name="eager", options=pb.RoomOptions(start_composite=True)))
        deadline = time.monotonic() + 10
        while not eager.composite and time.monotonic() < deadline:
            await asyncio.sleep(0.2)
            eager = await api.call(api.rooms.GetRoom, pb.GetRoomRequest(room="eager"))
        out(f"CreateRoom with start_composite: {fmt_msg(eager)[:200]}")
        self.assertTrue(eager.composite, "start_composite: the composite is not running")

        # Delete the room: every session ends, it is gone, its watchers hear room_closed.
        resp = await api.call(api.rooms.DeleteRoom, pb.DeleteRoomRequest(room=room))
        out(f"DeleteRoom: {fmt_msg(resp)} (alice, carol, the viewer, alice's SFU viewer)")
        self.assertEqual(resp.sessions_ended, 4)
        await watch.wait_kind("room_closed")
        await self.expect_code(api, Code.NOT_FOUND, api.rooms.GetRoom, pb.GetRoomRequest(room=room), "GetRoom after DeleteRoom")
        await self.expect_code(api, Code.NOT_FOUND, api.rooms.ListParticipants, pb.ListParticipantsRequest(room=room),
                               "ListParticipants after DeleteRoom")
        listed = await api.call(api.rooms.ListRooms, pb.ListRoomsRequest())
        self.assertEqual([r.name for r in listed.rooms], ["eager"])
        resp = await api.call(api.rooms.DeleteRoom, pb.DeleteRoomRequest(room="eager"))
        self.assertEqual(resp.sessions_ended, 0, "the composite of an empty room is no session")
        for who, s in (("alice", alice), ("carol", carol), ("the viewer", viewer)):
            await self.wait_closed(s, f"{who} after DeleteRoom")
        await srv.wait_metrics(lambda m: sfu.gauges(m) == {"rooms": 0, "participants": 0, "tracks": 0, "subscribers": 0}, 20,
                               "every room and session gone")
        again = await api.call(api.rooms.CreateRoom, pb.CreateRoomRequest(name=room))
        self.assertEqual((again.name, again.participants), (room, 0))
        self.check_alive(srv)

    async def wait_gone(self, api: Api, room: str, timeout: float = 20.0) -> None:
        deadline = time.monotonic() + timeout
        while True:
            try:
                got = await api.call(api.rooms.GetRoom, pb.GetRoomRequest(room=room))
            except grpc.RpcError as e:
                self.assertEqual(e.code(), Code.NOT_FOUND, fmt_err(e))
                out(f"room {room} gone once empty: GetRoom -> {fmt_err(e)}")
                return
            if time.monotonic() > deadline:
                self.fail(f"room {room} still there {timeout:g} s after its last participant left: {fmt_msg(got)}")
            await asyncio.sleep(0.2)

    # -- 8 ------------------------------------------------------------------------------

    @async_test()
    async def test_8_auth_and_validation(self) -> None:
        srv = self.grpc_server("auth", "--api-key", API_KEY, secret=sfu.SECRET)
        api = self.api(srv)  # no credential by default
        key = (("x-api-key", API_KEY),)
        rooms = api.rooms

        await self.expect_code(api, Code.UNAUTHENTICATED, rooms.ListRooms, pb.ListRoomsRequest(), "no credential")
        await self.expect_code(api, Code.UNAUTHENTICATED, rooms.ListRooms, pb.ListRoomsRequest(), "a wrong key",
                               metadata=(("x-api-key", "k3y-not"),))
        await self.expect_code(api, Code.UNAUTHENTICATED, rooms.CreateRoom, pb.CreateRoomRequest(name="bad name"),
                               "no credential and a bad field (authentication first)")
        created = await api.call(rooms.CreateRoom, pb.CreateRoomRequest(name="r"), metadata=key)
        self.assertEqual(created.name, "r")
        await api.call(rooms.CreateRoom, pb.CreateRoomRequest(name="other"), metadata=key)
        listed = await api.call(rooms.ListRooms, pb.ListRoomsRequest(), metadata=key)
        out(f"with the key: ListRooms -> {[r.name for r in listed.rooms]}")
        self.assertEqual(sorted(r.name for r in listed.rooms), ["other", "r"])

        # Tokens.
        now = int(time.time())
        expired = sfu.claims("operator", "r", iat=now - 7200, ttl=3600)
        expired["grants"]["admin"] = True
        tokens = {
            "garbage": "not-a-jwt",
            "signed with another secret": admin_token("r", secret="another-secret-0123456789abcdef-0123456789"),
            "expired": sfu.mint(expired),
            "alg none": sfu.mint(dict(sfu.claims("operator", "r"), grants={"admin": True}), alg="none"),
        }
        for what, token in tokens.items():
            await self.expect_code(api, Code.UNAUTHENTICATED, rooms.GetRoom, pb.GetRoomRequest(room="r"), f"token: {what}",
                                   metadata=bearer(token))
        publish_only = sfu.mint(sfu.claims("alice", "r", publish=True, subscribe=True))
        admin_r, admin_all = admin_token("r"), admin_token("*")
        await self.expect_code(api, Code.PERMISSION_DENIED, rooms.GetRoom, pb.GetRoomRequest(room="r"), "publish/subscribe token",
                               metadata=bearer(publish_only))
        got = await api.call(rooms.GetRoom, pb.GetRoomRequest(room="r"), metadata=bearer(admin_r))
        self.assertEqual(got.name, "r")
        await api.call(api.layouts.SetLayout, pb.SetLayoutRequest(room="r", layout=pb.Layout(grid=pb.Grid(gap=2))), metadata=bearer(admin_r))
        out("admin token for r: GetRoom(r), SetLayout(r) ok")
        await self.expect_code(api, Code.PERMISSION_DENIED, rooms.GetRoom, pb.GetRoomRequest(room="other"), "admin for r, room other",
                               metadata=bearer(admin_r))
        await self.expect_code(api, Code.PERMISSION_DENIED, rooms.GetRoom, pb.GetRoomRequest(room="nosuchroom"),
                               "admin for r, an unknown room", metadata=bearer(admin_r))
        await self.expect_code(api, Code.PERMISSION_DENIED, rooms.ListRooms, pb.ListRoomsRequest(), "admin for r, ListRooms",
                               metadata=bearer(admin_r))
        listed = await api.call(rooms.ListRooms, pb.ListRoomsRequest(), metadata=bearer(admin_all))
        self.assertEqual(sorted(r.name for r in listed.rooms), ["other", "r"])
        out("admin token for *: ListRooms ok")
        # A stream: the credential is checked for WatchEvents too.
        denied = self.watch_events(api, "", metadata=bearer(admin_r))
        unauth = self.watch_events(api, "r", metadata=())
        for w, code, what in ((denied, Code.PERMISSION_DENIED, "WatchEvents of every room, admin for r"),
                              (unauth, Code.UNAUTHENTICATED, "WatchEvents without a credential")):
            await asyncio.to_thread(w.ended.wait, RPC_TIMEOUT)
            self.assertTrue(w.ended.is_set(), f"{what}: the stream is still open")
            out(f"{what}: {fmt_err(w.error) if w.error else 'ended without an error'}")
            self.assertIsNotNone(w.error, what)
            self.assertEqual(w.error.code(), code, what)

        # Bad fields, named.
        layouts, audio = api.layouts, api.audio
        bad_fields = [
            (rooms.CreateRoom, pb.CreateRoomRequest(name="bad name"), "name"),
            (rooms.CreateRoom, pb.CreateRoomRequest(name="_mix"), "name"),
            (rooms.CreateRoom, pb.CreateRoomRequest(name=""), "name"),
            (rooms.CreateRoom, pb.CreateRoomRequest(name="x" * 129), "name"),
            (layouts.SetLayout, pb.SetLayoutRequest(room="r", layout=pb.Layout(grid=pb.Grid(gap=999))), "layout.grid.gap"),
            (layouts.SetLayout, pb.SetLayoutRequest(room="r", layout=pb.Layout()), "layout.kind"),
            (layouts.SetLayout, pb.SetLayoutRequest(room="r", layout=pb.Layout(grid=pb.Grid(), background=pb.Color(r=256))),
             "layout.background.r"),
            (layouts.SetLayout, pb.SetLayoutRequest(room="r", layout=pb.Layout(custom=pb.Custom(tiles=[
                pb.CustomTile(participant="a", width=10, height=10), pb.CustomTile(participant="b", width=0, height=10)]))),
             "layout.custom.tiles[1].width"),
            (layouts.SetLayout, pb.SetLayoutRequest(room="r", layout=pb.Layout(
                active_speaker=pb.ActiveSpeaker(strip=pb.Strip(size=1.5)))), "layout.active_speaker.strip.size"),
            (rooms.CreateRoom, pb.CreateRoomRequest(name="r2", layout=pb.Layout(grid=pb.Grid(columns=17))), "layout.grid.columns"),
            (audio.UpdateAudioMatrix, pb.UpdateAudioMatrixRequest(room="r", edits=[
                pb.GainEdit(listener="", source="a", mute=True), pb.GainEdit(listener="a", source="b", gain=5.0)]), "edits[1].gain"),
            (audio.UpdateAudioMatrix, pb.UpdateAudioMatrixRequest(room="r", edits=[pb.GainEdit(listener="a", source="a", mute=True)]),
             "edits[0].source"),
            (audio.UpdateAudioMatrix, pb.UpdateAudioMatrixRequest(room="r", edits=[pb.GainEdit(listener="a", source="b")]),
             "edits[0].change"),
            (audio.SetTopK, pb.SetTopKRequest(room="r", top_k=65), "top_k"),
            (layouts.SetLayout, pb.SetLayoutRequest(room="r", viewer="v" * 129, layout=pb.Layout(grid=pb.Grid())), "viewer"),
            (layouts.SetLayout, pb.SetLayoutRequest(room="r", viewer="v" * 129), "viewer"),
            (layouts.GetLayout, pb.GetLayoutRequest(room="r", viewer="v" * 129), "viewer"),
            (layouts.SetLayout, pb.SetLayoutRequest(room="r", viewer="alice", layout=pb.Layout(grid=pb.Grid(gap=999))),
             "layout.grid.gap"),
            (layouts.SetLayout, pb.SetLayoutRequest(room="r"), "layout"),
        ]
        for method, request, field in bad_fields:
            await self.expect_code(api, Code.INVALID_ARGUMENT, method, request, f"bad {field}", metadata=key, details_start=field)
        self.assertIn("999", (await api.error(layouts.SetLayout, bad_fields[4][1], key)).details())

        # Unknown things, existing things.
        for method, request, what in (
            (rooms.GetRoom, pb.GetRoomRequest(room="nosuchroom"), "GetRoom"),
            (rooms.DeleteRoom, pb.DeleteRoomRequest(room="nosuchroom"), "DeleteRoom"),
            (rooms.ListParticipants, pb.ListParticipantsRequest(room="nosuchroom"), "ListParticipants"),
            (layouts.SetLayout, pb.SetLayoutRequest(room="nosuchroom", layout=pb.Layout(grid=pb.Grid())), "SetLayout"),
            (layouts.GetLayout, pb.GetLayoutRequest(room="nosuchroom"), "GetLayout"),
            (audio.GetAudioMatrix, pb.GetAudioMatrixRequest(room="nosuchroom"), "GetAudioMatrix"),
            (rooms.RemoveParticipant, pb.RemoveParticipantRequest(room="r", participant="nobody"), "RemoveParticipant of nobody"),
            (rooms.MuteTrack, pb.MuteTrackRequest(room="r", track_id="nobody/video-0", muted=True), "MuteTrack of no track"),
        ):
            await self.expect_code(api, Code.NOT_FOUND, method, request, f"unknown: {what}", metadata=key)
        unknown = self.watch_events(api, "nosuchroom", metadata=key)
        await asyncio.to_thread(unknown.ended.wait, RPC_TIMEOUT)
        out(f"WatchEvents of an unknown room: {fmt_err(unknown.error) if unknown.error else 'no error'}")
        self.assertIsNotNone(unknown.error, "WatchEvents of an unknown room: no error")
        self.assertEqual(unknown.error.code(), Code.NOT_FOUND)
        await self.expect_code(api, Code.ALREADY_EXISTS, rooms.CreateRoom, pb.CreateRoomRequest(name="r"), "CreateRoom of r again",
                               metadata=key)
        # A viewer's own layout (an MCU participant's, who need not have joined): set, read
        # back, cleared; the room's layout stays as it was.
        mine = pb.Layout(grid=pb.Grid(gap=6), hide_self=True)
        resp = await api.call(layouts.SetLayout, pb.SetLayoutRequest(room="r", viewer="alice", layout=mine), metadata=key)
        got = await api.call(layouts.GetLayout, pb.GetLayoutRequest(room="r", viewer="alice"), metadata=key)
        out(f"SetLayout viewer=alice: {fmt_msg(resp)}; GetLayout viewer=alice: {fmt_msg(got)[:200]}")
        for have in (resp.layout, got):
            self.assertEqual((have.WhichOneof("kind"), have.grid.gap, have.hide_self), ("grid", 6, True), fmt_msg(have))
        room_now = await api.call(layouts.GetLayout, pb.GetLayoutRequest(room="r"), metadata=key)
        self.assertEqual((room_now.grid.gap, room_now.hide_self), (2, False), f"the room's layout after a viewer's: {fmt_msg(room_now)}")
        cleared = await api.call(layouts.SetLayout, pb.SetLayoutRequest(room="r", viewer="alice"), metadata=key)
        got = await api.call(layouts.GetLayout, pb.GetLayoutRequest(room="r", viewer="alice"), metadata=key)
        out(f"SetLayout viewer=alice without a layout: {fmt_msg(cleared)}; GetLayout viewer=alice: {fmt_msg(got)[:200]}")
        for have in (cleared.layout, got):
            self.assertEqual((have.WhichOneof("kind"), have.grid.gap, have.hide_self), ("grid", 2, False),
                             f"alice's layout once cleared (the room's): {fmt_msg(have)}")
        # Nothing above changed anything.
        got = await api.call(layouts.GetLayout, pb.GetLayoutRequest(room="r"), metadata=key)
        self.assertEqual((got.WhichOneof("kind"), got.grid.gap), ("grid", 2), fmt_msg(got))
        listed = await api.call(rooms.ListRooms, pb.ListRoomsRequest(), metadata=key)
        self.assertEqual(sorted(r.name for r in listed.rooms), ["other", "r"])
        self.check_alive(srv)

    # -- 9 ------------------------------------------------------------------------------

    @async_test()
    async def test_9_jwt_only(self) -> None:
        """Without --dev, with only a JWT secret (and loopback UDP for WebRTC)."""
        srv = self.grpc_server("jwt", "--rtc-udp", "127.0.0.1:0", dev=False, secret=sfu.SECRET)
        api = self.api(srv)
        await self.expect_code(api, Code.UNAUTHENTICATED, api.rooms.ListRooms, pb.ListRoomsRequest(), "no credential")
        await self.expect_code(api, Code.UNAUTHENTICATED, api.rooms.ListRooms, pb.ListRoomsRequest(), "an API key (none configured)",
                               metadata=(("x-api-key", API_KEY),))
        admin_all = bearer(admin_token("*"))
        await api.call(api.rooms.CreateRoom, pb.CreateRoomRequest(name="r"), metadata=bearer(admin_token("r")))
        listed = await api.call(api.rooms.ListRooms, pb.ListRoomsRequest(), metadata=admin_all)
        out(f"admin token for *: ListRooms -> {[r.name for r in listed.rooms]}")
        self.assertEqual([r.name for r in listed.rooms], ["r"])
        await self.expect_code(api, Code.PERMISSION_DENIED, api.rooms.CreateRoom, pb.CreateRoomRequest(name="s"),
                               "CreateRoom(s), admin for r", metadata=bearer(admin_token("r")))
        self.check_alive(srv)


    # -- 10 -----------------------------------------------------------------------------

    @async_test(timeout=LONG_TEST)
    async def test_10_personal_layouts(self) -> None:
        """Personalised canvases: MCU participants with layouts of their own, a WHEP viewer of
        the composite (always the room's layout) beside them."""
        srv = self.grpc_server("personal")
        api = self.api(srv)
        room = "personal"
        people = (ALICE, BOB, CAROL)
        joined = await self.join_mcu_people(srv, room, people)
        viewer = await self.composite(srv, room)
        watch = self.watch_events(api, room)
        alice, bob, carol = (joined[p.name] for p in people)

        # Everyone on the room's grid of three (alice bob / carol centred).
        grid = tm.grid_probes(people)
        room_grid = {"the WHEP viewer": viewer, "alice": alice, "bob": bob, "carol": carol}
        for who, player in room_grid.items():
            await wait_view(player, grid, MEDIA_TIMEOUT, f"{who}: the room's grid of three")
        room_layout = await api.call(api.layouts.GetLayout, pb.GetLayoutRequest(room=room))
        self.assertEqual(room_layout.WhichOneof("kind"), "grid", fmt_msg(room_layout))

        # bob over the whole canvas, his colour everywhere (the centre, the corners), no one else's.
        W, H = WIDTH, HEIGHT
        bob_whole = pb.Layout(custom=pb.Custom(tiles=[pb.CustomTile(participant=BOB.name, x=0, y=0, width=W, height=H)]))
        cw, ch = W // 8, H // 8
        bob_everywhere = [Probe("centre (bob)", (W / 2 - cw, H / 2 - ch, W / 2 + cw, H / 2 + ch), BOB.colour)]
        bob_everywhere += [Probe(f"corner {name} (bob)", (x, y, x + cw, y + ch), BOB.colour)
                           for name, x, y in (("top-left", 0, 0), ("top-right", W - cw, 0), ("bottom-left", 0, H - ch),
                                              ("bottom-right", W - cw, H - ch))]

        async def unchanged(whom: Sequence[str], what: str) -> None:
            for who in whom:
                await wait_view(room_grid[who], grid, REFLOW_LIMIT, f"{who}: still the room's grid ({what})")

        # alice's own layout: bob whole. The others keep the room's grid.
        t0 = time.monotonic()
        resp = await api.call(api.layouts.SetLayout, pb.SetLayoutRequest(room=room, viewer=ALICE.name, layout=bob_whole))
        self.assert_layout(resp.layout, bob_whole, "SetLayout viewer=alice's answer")
        changed = await watch.wait_kind("layout_changed", pred=lambda ev: ev.layout_changed.viewer == ALICE.name)
        self.assertEqual(changed.layout_changed.layout.WhichOneof("kind"), "custom", fmt_event(changed))
        await wait_view(alice, bob_everywhere, LAYOUT_LIMIT, "alice: bob over her whole canvas", absent=[ALICE, CAROL])
        out(f"alice's own layout on her screen {time.monotonic() - t0:.2f} s after SetLayout")
        await unchanged(["the WHEP viewer", "bob", "carol"], "alice has her own layout")

        # carol's own layout: the grid without herself, alice and bob side by side.
        hide_self = pb.Layout(grid=pb.Grid(), hide_self=True)
        t0 = time.monotonic()
        resp = await api.call(api.layouts.SetLayout, pb.SetLayoutRequest(room=room, viewer=CAROL.name, layout=hide_self))
        self.assert_layout(resp.layout, hide_self, "SetLayout viewer=carol's answer")
        self.assertTrue(resp.layout.hide_self, fmt_msg(resp))
        two = tm.grid_cells(2)
        await wait_view(carol, [Probe(p.name, cell, p.colour) for p, cell in zip((ALICE, BOB), two)], LAYOUT_LIMIT,
                        "carol: alice and bob in two cells, herself left out", absent=[CAROL])
        out(f"carol's own layout on her screen {time.monotonic() - t0:.2f} s after SetLayout")
        await wait_view(alice, bob_everywhere, REFLOW_LIMIT, "alice: still bob whole", absent=[ALICE, CAROL])
        await unchanged(["the WHEP viewer", "bob"], "carol has her own layout")

        # bob's own layout: the same as alice's (one shared canvas): himself whole.
        t0 = time.monotonic()
        await api.call(api.layouts.SetLayout, pb.SetLayoutRequest(room=room, viewer=BOB.name, layout=bob_whole))
        await wait_view(bob, bob_everywhere, LAYOUT_LIMIT, "bob: himself over the whole canvas", absent=[ALICE, CAROL])
        out(f"bob's own layout on his screen {time.monotonic() - t0:.2f} s after SetLayout")
        await wait_view(alice, bob_everywhere, REFLOW_LIMIT, "alice: still bob whole (the canvas she now shares)", absent=[ALICE, CAROL])
        a, b = recent_frames(alice, 1)[0], recent_frames(bob, 1)[0]
        out(f"mean difference between alice's and bob's latest frames: {float(np.abs(a.astype(np.int16) - b.astype(np.int16)).mean()):.2f} per channel")
        await unchanged(["the WHEP viewer"], "bob has his own layout")

        # GetLayout: each viewer's own, the room's for anyone without one.
        for who, want in ((ALICE.name, bob_whole), (BOB.name, bob_whole), (CAROL.name, hide_self), ("nobody", room_layout),
                          ("", room_layout)):
            got = await api.call(api.layouts.GetLayout, pb.GetLayoutRequest(room=room, viewer=who))
            out(f"GetLayout viewer={who or '(none)'}: {fmt_msg(got)[:200]}")
            self.assert_layout(got, want, f"GetLayout viewer={who or '(none)'}")
            self.assertEqual(got.hide_self, want.hide_self, f"GetLayout viewer={who}: {fmt_msg(got)}")

        # alice's layout cleared: the room's grid again (bob and carol keep theirs).
        t0 = time.monotonic()
        resp = await api.call(api.layouts.SetLayout, pb.SetLayoutRequest(room=room, viewer=ALICE.name))
        self.assert_layout(resp.layout, room_layout, "SetLayout viewer=alice without a layout: the room's")
        got = await api.call(api.layouts.GetLayout, pb.GetLayoutRequest(room=room, viewer=ALICE.name))
        self.assert_layout(got, room_layout, "GetLayout viewer=alice once cleared")
        await wait_view(alice, grid, LAYOUT_LIMIT, "alice: the room's grid again")
        out(f"alice back on the room's grid {time.monotonic() - t0:.2f} s after clearing her layout")
        await wait_view(bob, bob_everywhere, REFLOW_LIMIT, "bob: still himself whole", absent=[ALICE, CAROL])
        await wait_view(carol, [Probe(p.name, cell, p.colour) for p, cell in zip((ALICE, BOB), two)], REFLOW_LIMIT,
                        "carol: still alice and bob", absent=[CAROL])
        await unchanged(["the WHEP viewer"], "alice's layout cleared")

        # The sound is as it was: each hears the other two, not itself.
        for p in people:
            others = [q.tone for q in people if q is not p]
            levels, floor = await wait_tones(joined[p.name], others, absent=[p.tone], what=f"{p.name}'s own mix")
            out(f"{p.name} hears {fmt_levels(levels, floor)}")
        self.check_alive(srv)

    # -- 11 -----------------------------------------------------------------------------

    @async_test(timeout=LONG_TEST)
    async def test_11_classroom(self) -> None:
        """A room option, no layout per viewer: every MCU participant sees everyone but itself."""
        srv = self.grpc_server("classroom")
        api = self.api(srv)
        room = "classroom"
        created = await api.call(api.rooms.CreateRoom, pb.CreateRoomRequest(name=room, options=pb.RoomOptions(everyone_but_me=True)))
        out(f"CreateRoom everyone_but_me: {fmt_msg(created)[:200]}")
        self.assertTrue(created.options.HasField("everyone_but_me") and created.options.everyone_but_me, fmt_msg(created))
        people = (ALICE, BOB, CAROL)
        joined = await self.join_mcu_people(srv, room, people)
        viewer = await self.composite(srv, room)
        two = tm.grid_cells(2)
        for p in people:
            others = [q for q in people if q is not p]
            await wait_view(joined[p.name], [Probe(q.name, cell, q.colour) for q, cell in zip(others, two)], MEDIA_TIMEOUT,
                            f"{p.name}: the other two in two cells, {p.name} nowhere", absent=[p])
        await wait_view(viewer, tm.grid_probes(people), MEDIA_TIMEOUT, "the WHEP viewer: the grid of all three")
        # No layout was set for anyone: GetLayout for each is the room's.
        for p in people:
            got = await api.call(api.layouts.GetLayout, pb.GetLayoutRequest(room=room, viewer=p.name))
            self.assertEqual(got.WhichOneof("kind"), "grid", fmt_msg(got))
        # GetRoom says it is a classroom and where its composite draws and mixes.
        info = await api.call(api.rooms.GetRoom, pb.GetRoomRequest(room=room))
        out(f"GetRoom: {fmt_msg(info)[:300]}")
        self.assertTrue(info.options.everyone_but_me and info.composite, fmt_msg(info))
        for got, flag in ((info.render_path, "--render-path"), (info.mix_path, "--mix-path")):
            want = sfu.forced_path(flag)
            self.assertIn(got, (want,) if want in ("gpu", "cpu") else ("gpu", "cpu"), f"{flag}: {fmt_msg(info)}")
        status, _, body = await srv.arequest("GET", f"/rooms/{room}")
        self.assertEqual((status, json.loads(body)["everyone_but_me"]), (200, True), body)
        # Each hears the other two, not itself (the audio was everyone-but-me already).
        for p in people:
            levels, floor = await wait_tones(joined[p.name], [q.tone for q in people if q is not p], absent=[p.tone], what=f"{p.name}'s mix")
            out(f"{p.name} hears {fmt_levels(levels, floor)}")
        self.check_alive(srv)

        # The server's default (`--everyone-but-me`): a room made by joining is a classroom;
        # one created with everyone_but_me=false is not.
        srv2 = self.grpc_server("classroom-default", "--everyone-but-me")
        api2 = self.api(srv2)
        pair = (ALICE, BOB)
        joined2 = await self.join_mcu_people(srv2, "joined", pair)
        centre = (WIDTH // 2 - WIDTH // 8, HEIGHT // 2 - HEIGHT // 8, WIDTH // 2 + WIDTH // 8, HEIGHT // 2 + HEIGHT // 8)
        for p, other in ((ALICE, BOB), (BOB, ALICE)):
            probe = [Probe(other.name, centre, other.colour)]
            await wait_view(joined2[p.name], probe, MEDIA_TIMEOUT, f"{p.name} (room made by joining): {other.name} alone", absent=[p])
        info = await api2.call(api2.rooms.GetRoom, pb.GetRoomRequest(room="joined"))
        self.assertTrue(info.options.everyone_but_me, fmt_msg(info))
        plain = await api2.call(api2.rooms.CreateRoom, pb.CreateRoomRequest(name="plain", options=pb.RoomOptions(everyone_but_me=False)))
        self.assertFalse(plain.options.everyone_but_me, fmt_msg(plain))
        joined3 = await self.join_mcu_people(srv2, "plain", pair)
        await wait_view(joined3[ALICE.name], tm.grid_probes(pair), MEDIA_TIMEOUT, "alice in a room created with everyone_but_me=false: both")
        self.check_alive(srv2)


ORDER = [
    (GrpcTest, ["test_1_reflection", "test_2_grpc_web", "test_3_layout_live", "test_4_room_mix_mute", "test_4b_top_k",
                "test_5_mcu_listener_gains", "test_6_events_in_order", "test_7_rooms", "test_8_auth_and_validation",
                "test_9_jwt_only", "test_10_personal_layouts", "test_11_classroom"]),
]


def main(argv: list[str]) -> int:
    return sfu.run_suite(ORDER, "e2e grpc", argv)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
