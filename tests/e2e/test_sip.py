#!/usr/bin/env python3
"""End-to-end tests of the SIP gateway of `mcu serve`: real SIP phones (baresip, sipp) calling
numbers routed to rooms, against WebRTC publishers and viewers (aiortc, mcuclient.py).

Each test starts its own server (`target/debug/mcu`, or $MCU_BIN) with test_mcu.py's 640x360
30 fps canvas and

    --sip-listen 127.0.0.1:0 --sip-route 1000=roomA --sip-route 2000=roomB

and reads the SIP port from its "sip listening on udp+tcp 127.0.0.1:PORT" line. Phones are
sipclient.py's: baresip 1.0.0 driven over ctrl_tcp (ausine tone, fakevideo's red | green | blue
bars, received audio dumped to WAV by sndfile, received video saved as PNG by snapshot) and
sipp with the scenarios of tests/e2e/sip/ (uac_*.xml; sip_selftest.py checks them against sipp
stand-ins). Participants are seen through GET /rooms/{room} (name, tracks, kinds).

    1 phone_in_room       alice (red, 440 Hz) and carol (blue, 660 Hz) publish to roomA over
                          WHIP, a composite viewer watches; baresip "phone" (1000 Hz; Opus,
                          H.264 packetization-mode 0 first in its offer) calls 1000 over UDP:
                          established; sip-phone listed with audio and video; its snapshot of
                          the received video is 640x360 with alice's cell red and carol's blue;
                          its received audio has 440 and 660 Hz and not its own 1000 Hz; the
                          viewer's composite shows its bars in the third cell and the mix has
                          1000 Hz; hang-up removes it
    1b phone_forwarded    baresip over TCP offering only PCMU and VP8: established; a WHEP
                          player of /whep/roomA/sip-phone2 hears 1000 Hz (transcoded to Opus)
                          and sees its bars; the phone hears alice (8 kHz WAV) and sees her in
                          its composite (VP8); BYE from the phone removes it
    2 sipp_g711_dtmf      uac_g711.xml: PCMA (g711a.pcap, 7 s) then DTMF 1 (RFC 4733), BYE;
                          exit 0, the answer keeps PCMA and telephone-event; sip-sipp1 listed
                          meanwhile and gone afterwards; one DtmfReceived event (room roomA,
                          sip-sipp1, digit 1) on WatchEvents; /metrics' sip/dtmf samples printed
                          (a *dtmf* counter, if any, has moved)
    3 cancel              --sip-answer-delay 3s; uac_cancel.xml: 180/100, CANCEL -> 200, 487, ACK;
                          nobody left in roomA
    4 reinvite            uac_reinvite.xml over UDP and over TCP: hold (sendonly -> recvonly or
                          inactive), resume (sendrecv), BYE; the caller listed during the call
    5 refusals            uac_unknown.xml to 9999 -> 404 (and a raw INVITE over TCP too); an
                          offer of G.729 and H.263 only -> 488; 2000 joins roomB, not roomA
    6 malformed           the MALFORMED catalogue over UDP/TCP: 400 where a response can be
                          built (missing Call-ID/From/To/CSeq, bad CSeq, CSeq method mismatch,
                          bad SDP may also be 488), 400 or silence for the unparseable; then the
                          server lives, nobody joined, and a good call succeeds
    7 fifty_calls         uac_light.xml -m 50 -l 50 -r 50 -d 5000: all 50 succeed (the most
                          listed at once printed); the room empties afterwards
    8 vanishing_caller    --sip-rtp-timeout 5s: uac_vanish.xml (7 s of RTP, then silence, no
                          BYE) is dropped 12 s after joining (±); a baresip SIGKILLed likewise
    9 dial_out            alice and carol publish to roomA; `mcu sip dial roomA sip:callee@...`
                          (SipService.DialSip) calls a baresip that answers by itself: prints
                          "roomA<tab>sip-callee"; sip-callee listed with audio and video, and by
                          `mcu sip calls roomA`; its snapshot shows alice red and carol blue, its
                          WAV has 440 and 660 Hz and not its own 1000 Hz; `mcu room remove`
                          hangs up (baresip gets a BYE, the call closes, the participant leaves);
                          `--name guest` -> sip-guest, gone after the callee's BYE; a sipp callee
                          answering 486 (uas_busy.xml) -> exit 1, ABORTED with 486; "notauri" ->
                          INVALID_ARGUMENT
    9b dial_no_answer     dialling a UDP port nobody listens on and a TCP port that refuses the
                          connection (at once, in parallel; SIP timer B: ~32 s): exit 1,
                          UNAVAILABLE (as SipService.DialSip says), nobody joins
   10 dial_plan           `mcu sip routes` lists --sip-route's; an INVITE to 3000 gets 404; `sip route
                          3000 roomC`; uac_light.xml to 3000 joins roomC (`sip calls roomC`, `sip
                          calls`); `sip unroute 3000` ("removed 3000"): the call stays, a new
                          INVITE gets 404, unrouting again is NOT_FOUND; a route with spaces is
                          INVALID_ARGUMENT; the call's BYE empties `sip calls`
   11 digest_auth         --sip-users alice:secret: an INVITE without credentials gets 401 with
                          WWW-Authenticate: Digest realm="mcu", nonce, algorithm=MD5; raw INVITEs
                          answering it: the right digest -> 200, a wrong password, an unknown user
                          or a nonce it never gave -> 401; baresip alice with auth_pass=secret
                          gets in (its second INVITE has credentials), with a wrong password its
                          call closes with 401 and nobody joins; mcu_sip_invites_total
                          {result="challenged"} grows by the challenges
   12 register            --sip-registrar (uas_registrar.xml, granting 12 s) --sip-username gw
                          --sip-password pw --sip-register-expires 30: REGISTER (Expires: 60, the
                          minimum), 401, REGISTER with a digest sipp's verifyauth and Python both
                          accept (gw, realm e2e, the nonce given, the request URI), 200;
                          mcu_sip_registrations_total 1; refreshed (the same way, one Call-ID,
                          CSeq going up) 9 s (3/4 of 12) later: the counter is 2, sipp exits 0
   13 session_timer       Session-Expires: 90;refresher=uac + Supported: timer -> 200 with
                          Session-Expires: 90;refresher=uac and Require: timer; 30 -> 422 with
                          Min-SE: 90; compact x: 1800 / k: timer -> 200 with 1800; none -> no
                          timer; "abc" -> 400; uac_timer.xml refreshes by UPDATE and by re-INVITE,
                          each 200 carrying Session-Expires
   13b session_timer_refresher  RFC 4028 §9 table 2: refresher=uas asked -> uas answered; no
                          Supported: timer -> refresher=uas and no Require: timer (otherwise nobody
                          refreshes and the server drops the call when the interval ends)

The `mcu sip ...` and `mcu room remove` subcommands run as `$MCU_BIN ... --grpc <the server's gRPC
URL>`; their exit status, stdout and "Error: <gRPC code>: ..." line are checked.

Run: scripts/e2e-setup.sh && target/e2e-venv/bin/python tests/e2e/test_sip.py [-v] [name...]
(as root: sipp plays pcaps through a raw socket; `name` selects tests whose name contains
it). Each test prints PASS or FAIL; the logs (servers, baresip with its SIP trace, sipp's
messages and errors, WAVs, PNGs) of a failed run stay in the directory printed; the run closes
with "e2e sip: N passed, M failed" and exits non-zero on any failure.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import queue
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
import unittest
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Optional, Sequence, Union

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import mcuclient as mc  # noqa: E402
import sipclient as sc  # noqa: E402
import test_mcu as tm  # noqa: E402  (people, grid cells and probes, tone levels, the Composite test case)
import test_sfu as sfu  # noqa: E402  (server processes, the log directory)
from test_mcu import ALICE, CAROL, HEIGHT, MEDIA_TIMEOUT, SERVER_ARGS, WIDTH, Probe, describe, look  # noqa: E402
from test_sfu import CONNECT_TIMEOUT, async_test, fmt_rgb, out  # noqa: E402

ROOM_A, ROOM_B = "roomA", "roomB"
SIP_ARGS = ("--sip-listen", "127.0.0.1:0", "--sip-route", f"1000={ROOM_A}", "--sip-route", f"2000={ROOM_B}")
PHONE_TONE = 1000  # Hz, baresip's ausine: not a multiple of 440/550/660/770/930 nor their sum
RTP_TIMEOUT = 5  # s, --sip-rtp-timeout of the vanishing test
PCAP_SECONDS = 7.05  # g711a.pcap
CALL_TIMEOUT = 20.0  # s, INVITE to established
JOIN_LIMIT = 15.0  # s, for a caller to be listed in its room
LEAVE_LIMIT = 10.0  # s, for a caller to leave the room after BYE/CANCEL
TONE_MIN_DBFS = tm.TONE_MIN_DBFS
TONE_OVER_FLOOR_DB = tm.TONE_OVER_FLOOR_DB
TONE_GONE_DB = tm.TONE_GONE_DB
WORK = sfu.LOG_DIR / "sip"  # baresip and sipp directories (kept with the server logs on failure)
USERS = {"alice": "secret"}  # --sip-users of the digest test
REGISTRAR_USER, REGISTRAR_PASSWORD = "gw", "pw"  # what uas_registrar.xml's verifyauth accepts
REGISTER_ASKED = 30  # s, --sip-register-expires of the REGISTER test: below the server's minimum,
REGISTER_MINIMUM = 60  # which it asks for instead
REGISTER_GRANTED = 12  # s, what the registrar grants (-key grant): the refresh comes at 3/4 of it
MIN_SE = 90  # s, the server's Min-SE (RFC 4028's minimum)

# ----------------------------------------------------------------------------------------
# The server with its SIP port
# ----------------------------------------------------------------------------------------


class SipServer(sfu.McuServer):
    """McuServer that also waits for "sip listening on udp+tcp 127.0.0.1:PORT" (`sip_host`,
    `sip_port`, `sip_target` "127.0.0.1:PORT")."""

    def __init__(self, *args: str, **kw) -> None:
        super().__init__(*args, **kw)
        self.sip_host = ""
        self.sip_port = 0

    @property
    def sip_target(self) -> str:
        return f"{self.sip_host}:{self.sip_port}"

    def sip_uri(self, number: str, transport: Optional[str] = None) -> str:
        return f"sip:{number}@{self.sip_target}" + (f";transport={transport}" if transport else "")

    def start(self, timeout: float = 30.0) -> "SipServer":
        if not os.access(sfu.MCU_BIN, os.X_OK):
            raise FileNotFoundError(f"{sfu.MCU_BIN} is missing: cargo build -p mcu-server (or set MCU_BIN)")
        log = open(self.log_path, "wb")
        self.proc = subprocess.Popen(self.argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=log, env=self.env,
                                     preexec_fn=sfu._die_with_parent)
        log.close()
        sfu._live_processes.append(self.proc)
        lines: queue.Queue = queue.Queue()
        stdout_log = open(self.log_path.with_suffix(".stdout"), "w")

        def read_stdout(stream) -> None:
            for raw in stream:
                text = raw.decode("utf-8", "replace")
                stdout_log.write(text)
                stdout_log.flush()
                lines.put(text)
            lines.put(None)
            stdout_log.close()

        threading.Thread(target=read_stdout, args=(self.proc.stdout,), daemon=True).start()
        deadline = time.monotonic() + timeout
        while not (self.url and self.grpc_url and self.sip_port):
            try:
                line = lines.get(timeout=max(0.0, deadline - time.monotonic()))
            except queue.Empty:
                self.stop()
                raise TimeoutError(f"{self.label}: not listening on HTTP, gRPC and SIP within {timeout:g} s "
                                   f"(HTTP {self.url or '-'}, gRPC {self.grpc_url or '-'}, SIP {self.sip_port or '-'})\n{self.log_tail()}")
            if line is None:
                code = self.proc.wait()
                raise RuntimeError(f"{self.label}: exited with {code} before listening\n{self.log_tail()}")
            line = line.strip()
            m = re.match(r"(grpc )?listening on (https?://\S+)", line)
            if m and m.group(1):
                self.grpc_url = m.group(2)
            elif m:
                self.url = m.group(2)
            s = re.search(r"sip listening on .*?(\d+\.\d+\.\d+\.\d+):(\d+)", line)
            if s:
                self.sip_host, self.sip_port = s.group(1), int(s.group(2))
        return self

    # -- rooms ---------------------------------------------------------------------------

    async def people(self, room: str) -> dict[str, dict]:
        """GET /rooms/{room}: the participants by name ({} when the room does not exist)."""
        status, _, body = await self.arequest("GET", f"/rooms/{room}")
        if status == 404:
            return {}
        assert status == 200, f"GET /rooms/{room}: {status} {body[:200]}"
        return {p["name"]: p for p in json.loads(body).get("participants", [])}

    async def wait_people(self, room: str, pred: Callable[[dict], bool], timeout: float, what: str) -> tuple[dict, float]:
        """Polls GET /rooms/{room} until pred(participants by name) holds; returns them and the
        seconds it took."""
        t0 = time.monotonic()
        while True:
            people = await self.people(room)
            if pred(people):
                return people, time.monotonic() - t0
            if time.monotonic() - t0 > timeout:
                raise AssertionError(f"{what}: not within {timeout:g} s; {room} lists {fmt_people(people)}")
            await asyncio.sleep(0.2)


def fmt_people(people: dict) -> str:
    return "[" + ", ".join(f"{n} {'+'.join(p.get('kinds', []))}" for n, p in sorted(people.items())) + "]" if people else "nobody"


def has_media(p: Optional[dict], *kinds: str) -> bool:
    return p is not None and all(k in p.get("kinds", []) for k in kinds)


MALFORMED, NO_RESPONSE, _invite = sc.MALFORMED, sc.NO_RESPONSE, sc.raw_invite


# ----------------------------------------------------------------------------------------
# The tests
# ----------------------------------------------------------------------------------------


def region_probe(label: str, cell: tm.Rect, colour, part: tuple[float, float] = (0.0, 1.0)) -> Probe:
    """A probe of the horizontal `part` (fractions) of `cell`."""
    x0, y0, x1, y1 = cell
    w = x1 - x0
    return Probe(label, (x0 + part[0] * w, y0, x0 + part[1] * w, y1), colour)


def bar_probes(label: str, cell: tm.Rect) -> list[Probe]:
    """fakevideo's three bars filling `cell` (the phone's 16:9 picture in a 16:9 cell)."""
    return [region_probe(f"{label}.{name}", cell, colour, (i / 3, (i + 1) / 3))
            for i, (name, colour) in enumerate(zip(("red", "green", "blue"), sc.FAKEVIDEO_BARS))]


def scaled(frame: np.ndarray) -> np.ndarray:
    """`frame` resized (nearest) to WIDTH x HEIGHT, so canvas coordinates apply to a snapshot
    of another size."""
    h, w = frame.shape[:2]
    if (w, h) == (WIDTH, HEIGHT):
        return frame
    ys = (np.arange(HEIGHT) * h // HEIGHT).clip(0, h - 1)
    xs = (np.arange(WIDTH) * w // WIDTH).clip(0, w - 1)
    return frame[ys][:, xs]


def wav_levels(wav: sc.Wav, present: Sequence[float], absent: Sequence[float], seconds: float = 1.0):
    """(ok, levels, floor) of the last `seconds` of `wav`, by test_mcu's criteria: each present
    tone ≥ TONE_MIN_DBFS and TONE_OVER_FLOOR_DB above the floor, each absent one TONE_GONE_DB
    below the quietest present one."""
    levels, floor = sc.tone_levels_db(wav.last(seconds), wav.rate, [*present, *absent], avoid=tm.ALL_TONES)
    quietest = min((levels[t] for t in present), default=0.0)
    ok = wav.seconds >= seconds
    ok = ok and all(levels[t] >= TONE_MIN_DBFS and levels[t] >= floor + TONE_OVER_FLOOR_DB for t in present)
    ok = ok and all(levels[t] <= quietest - TONE_GONE_DB for t in absent)
    return ok, levels, floor


@dataclass
class Cli:
    """What one `mcu` subcommand (a gRPC client call) did."""

    args: tuple[str, ...]
    returncode: int
    stdout: str
    stderr: str
    seconds: float

    @property
    def rows(self) -> list[list[str]]:
        """stdout's lines split at tabs ("ROOM\tPARTICIPANT", "NUMBER\tROOM")."""
        return [line.split("\t") for line in self.stdout.splitlines() if line.strip()]

    @property
    def error(self) -> str:
        """The "Error: ..." line of stderr (anyhow's report), or its last line."""
        lines = [l for l in self.stderr.splitlines() if l.strip()]
        return next((l for l in lines if l.startswith("Error:")), lines[-1] if lines else "")

    @property
    def code(self) -> Optional[str]:
        """The gRPC status code of a failed call as the CLI prints it ("Unavailable",
        "Aborted", "NotFound", "InvalidArgument", ...), or None."""
        m = re.match(r"Error: (\w+): ", self.error)
        return m.group(1) if m else None

    def __str__(self) -> str:
        said = self.stdout.strip().replace("\n", " | ").replace("\t", " ") if self.returncode == 0 else self.error
        return f"mcu {' '.join(self.args)}: exit {self.returncode} in {self.seconds:.1f} s: {said or '(nothing)'}"


def session_expires(value: Optional[str]) -> tuple[Optional[int], dict[str, str]]:
    """A Session-Expires value ("90;refresher=uac") as (90, {"refresher": "uac"})."""
    if not value:
        return None, {}
    first, *params = [p.strip() for p in value.split(";")]
    kv = dict((p.split("=", 1) + [""])[:2] for p in params if p)
    return (int(first) if first.isdigit() else None), {k.lower(): v.lower() for k, v in kv.items()}


def option_tags(value: Optional[str]) -> list[str]:
    return [t.strip().lower() for t in (value or "").split(",") if t.strip()]


class SipTest(tm.Composite):
    """test_mcu's Composite (WHIP publishers, composite viewers, grid checks) with SIP servers,
    baresip phones and sipp runs that are cleaned up after each test."""

    def setUp(self) -> None:
        super().setUp()
        self._phones: list[sc.Baresip] = []
        self._sipps: list[sc.SippProcess] = []
        self._uases: list[subprocess.Popen] = []
        self._clis: list[asyncio.subprocess.Process] = []
        self.work = WORK / self.id().rsplit(".", 1)[-1]

    def tearDown(self) -> None:
        for c in self._clis:
            if c.returncode is None:
                with contextlib.suppress(ProcessLookupError):
                    c.kill()
        for s in self._sipps:
            if s.running():
                s.wait(kill=True)
        for u in self._uases:
            sc.stop_process(u, 1.0)
        for p in self._phones:
            p.stop()
        super().tearDown()

    async def mcu(self, srv: SipServer, *args: str, timeout: float = 60.0) -> Cli:
        """Runs `mcu ARGS --grpc <srv's gRPC URL>` (killed after `timeout` s, or when the test
        ends first) and prints what it did."""
        env = {k: v for k, v in os.environ.items() if not k.startswith("MCU_")}
        env["RUST_BACKTRACE"] = "0"  # anyhow's errors without a backtrace
        t0 = time.monotonic()
        proc = await asyncio.create_subprocess_exec(sfu.MCU_BIN, *args, "--grpc", srv.grpc_url, stdin=subprocess.DEVNULL,
                                                    stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env,
                                                    preexec_fn=sc.die_with_parent)
        self._clis.append(proc)
        try:
            stdout, stderr = await asyncio.wait_for(proc.communicate(), timeout)
        except asyncio.TimeoutError:
            proc.kill()
            await proc.wait()
            raise AssertionError(f"mcu {' '.join(args)}: still running after {timeout:g} s") from None
        finally:
            if proc.returncode is None:
                with contextlib.suppress(ProcessLookupError):
                    proc.kill()
        r = Cli(tuple(args), proc.returncode, stdout.decode("utf-8", "replace"), stderr.decode("utf-8", "replace"), time.monotonic() - t0)
        out(str(r))
        return r

    async def mcu_ok(self, srv: SipServer, *args: str, timeout: float = 60.0) -> Cli:
        r = await self.mcu(srv, *args, timeout=timeout)
        if r.returncode != 0:
            self.fail(f"{r}\n{srv.log_tail(10)}")
        return r

    def sipp_uas(self, scenario: str, port: int, **kw) -> subprocess.Popen:
        """A sipp UAS of tests/e2e/sip/ on 127.0.0.1:`port` (stopped after the test); its logs go
        to the test's directory (uas_<scenario>_*.log)."""
        proc = sc.sipp_uas(scenario, port, self.work / scenario, **kw)
        self._uases.append(proc)
        return proc

    def uas_log(self, scenario: str) -> list[sc.SippMessage]:
        try:
            return sc.sipp_log((self.work / scenario / f"uas_{scenario}_messages.log").read_text(errors="replace"))
        except OSError:
            return []

    async def invite(self, srv: SipServer, number: str, headers: Sequence[tuple[str, Optional[str]]] = (),
                     transport: str = "udp", wait: float = 5.0) -> sc.Exchange:
        """A raw INVITE (from user "raw": participant sip-raw) with an audio offer to `number`;
        a 2xx is ACKed and BYEd, other finals ACKed (sip_exchange_with)."""
        uri = srv.sip_uri(number, "tcp" if transport == "tcp" else None)
        return await asyncio.to_thread(sc.sip_exchange_with, (srv.sip_host, srv.sip_port),
                                       lambda local: _invite(local, uri, transport.upper(), headers=list(headers)), transport, wait)

    def sip_server(self, label: str, *args: str) -> SipServer:
        srv = SipServer(*SERVER_ARGS, *SIP_ARGS, *args, label=label).start()
        self._servers.append(srv)
        out(f"{srv.label}: HTTP {srv.url}, SIP udp+tcp {srv.sip_target}")
        return srv

    async def phone(self, user: str, workdir_name: Optional[str] = None, **kw) -> sc.Baresip:
        """A baresip (sipclient.Baresip: kw) of account `user` in the test's directory
        `workdir_name` (default: `user`), stopped after the test."""
        p = sc.Baresip(self.work / (workdir_name or user), user=user, tone_hz=PHONE_TONE, **kw)
        self._phones.append(p)
        await asyncio.to_thread(p.start)
        return p

    async def sipp(self, srv: SipServer, scenario: str, service: str, **kw) -> sc.SippResult:
        """Runs a sipp scenario to the end (in a thread)."""
        self._runs = getattr(self, "_runs", 0) + 1
        r = await asyncio.to_thread(sc.run_sipp, scenario, srv.sip_target, service, self.work / f"{scenario}-r{self._runs}", **kw)
        out(r.summary())
        return r

    def sipp_background(self, srv: SipServer, scenario: str, service: str, **kw) -> sc.SippProcess:
        s = sc.SippProcess(scenario, srv.sip_target, service, self.work / f"{scenario}-{len(self._sipps) + 1}", **kw).start()
        self._sipps.append(s)
        return s

    async def finish(self, s: sc.SippProcess, timeout: float) -> sc.SippResult:
        r = await asyncio.to_thread(s.wait, timeout)
        out(r.summary())
        return r

    def assert_sipp(self, r: sc.SippResult, what: str, srv: SipServer) -> None:
        if not r.ok:
            tail = srv.log_tail(15) if srv.alive() else f"{tm.exit_status(srv)}\n{srv.log_tail()}"
            self.fail(f"{what}: sipp exit {r.returncode}\n{r.why()}\n{tail}")

    async def snapshot_until(self, phone: sc.Baresip, probes: Sequence[Probe], timeout: float, what: str):
        """Takes snapshots of the phone's received video until one matches `probes` (canvas
        coordinates; the snapshot is scaled to the canvas first); returns (rgb, seconds)."""
        t0 = time.monotonic()
        n = 0
        seen, rgb = [], None
        while True:
            n += 1
            try:
                rgb = await asyncio.to_thread(phone.snapshot, phone.dir / f"recv-{n}.png", 5.0)
                ok, seen = look([scaled(rgb)], probes)
                if ok:
                    return rgb, time.monotonic() - t0
            except sc.BaresipError as e:
                seen = []
                if time.monotonic() - t0 > timeout:
                    raise AssertionError(f"{what}: {e}\n{phone.log_tail(15)}") from None
            if time.monotonic() - t0 > timeout:
                size = f"{rgb.shape[1]}x{rgb.shape[0]}" if rgb is not None else "none"
                raise AssertionError(f"{what}: not within {timeout:g} s; last snapshot ({size}) shows "
                                     f"{describe(seen) if seen else 'nothing'}")
            await asyncio.sleep(0.3)

    async def hears(self, phone: sc.Baresip, present: Sequence[float], absent: Sequence[float], timeout: float, what: str):
        """Waits until the phone's received-audio WAV (last second) has `present` and not
        `absent` (wav_levels), holding for a second; returns (levels, floor, wav)."""
        t0 = time.monotonic()
        held = None
        levels, floor, wav = {}, -120.0, None
        while True:
            try:
                wav = await asyncio.to_thread(phone.received_audio)
                ok, levels, floor = wav_levels(wav, present, absent)
            except (sc.BaresipError, ValueError):
                ok = False
            if not ok:
                held = None
            elif held is None:
                held = time.monotonic()
            elif time.monotonic() - held >= 1.0:
                return levels, floor, wav
            if time.monotonic() - t0 > timeout:
                got = f"{wav.seconds:.1f} s at {wav.rate} Hz" if wav is not None else "no WAV"
                raise AssertionError(f"{what}: want {list(present)} Hz and not {list(absent)} within {timeout:g} s; "
                                     f"{got}; {tm.fmt_levels(levels, floor) if levels else ''}")
            await asyncio.sleep(0.5)

    async def call(self, phone: sc.Baresip, uri: str) -> dict:
        try:
            return await asyncio.to_thread(phone.call, uri, CALL_TIMEOUT)
        except sc.BaresipError as e:
            raise AssertionError(f"{phone.user} calling {uri}: {e}\n{phone.log_tail(20)}") from None

    # -- 1 ------------------------------------------------------------------------------

    @async_test(timeout=240)
    async def test_1_phone_in_room(self) -> None:
        srv = self.sip_server("phone")
        await self.publish_all(srv, ROOM_A, (ALICE, CAROL))
        viewer = await self.composite(srv, ROOM_A)
        phone = await self.phone("phone")
        t0 = time.monotonic()
        await self.call(phone, srv.sip_uri("1000"))
        answer = phone.received_answer_sdp() or ""
        out(f"phone established in {time.monotonic() - t0:.2f} s; offered audio {sc.sdp_codec(phone.sent_sdp() or '', 'audio')}, "
            f"video {sc.sdp_codec(phone.sent_sdp() or '', 'video')}; answered audio {sc.sdp_codec(answer, 'audio')}, "
            f"video {sc.sdp_codec(answer, 'video')}")
        people, took = await srv.wait_people(ROOM_A, lambda p: has_media(p.get("sip-phone"), "audio", "video"), JOIN_LIMIT,
                                             "sip-phone with audio and video in roomA")
        out(f"roomA after {took:.1f} s: {fmt_people(people)}")

        # What the phone sees: the composite (alice red, carol blue, in any of the layouts
        # where they are the first two cells: with or without the phone's own tile).
        cells = tm.grid_cells(3)
        probes = [Probe("alice", cells[0], ALICE.colour), Probe("carol", cells[1], CAROL.colour)]
        rgb, took = await self.snapshot_until(phone, probes, MEDIA_TIMEOUT, "the phone's snapshot")
        _, seen = look([scaled(rgb)], probes)
        out(f"phone's snapshot after {took:.1f} s: {rgb.shape[1]}x{rgb.shape[0]}, {describe(seen)}; "
            f"red {sc.colour_share(rgb, ALICE.colour):.0%}, blue {sc.colour_share(rgb, CAROL.colour):.0%} of the picture")
        self.assertEqual((rgb.shape[1], rgb.shape[0]), (WIDTH, HEIGHT), "the phone's picture size (its offer allows 640x360)")

        # What the phone hears: alice and carol, not itself.
        levels, floor, wav = await self.hears(phone, [ALICE.tone, CAROL.tone], [PHONE_TONE], 20.0, "the phone's audio")
        out(f"phone hears ({wav.rate} Hz x{wav.channels}, {wav.seconds:.1f} s): {tm.fmt_levels(levels, floor)}")

        # What the room gets from the phone: its bars in the third cell, its tone in the mix.
        order = sorted(["alice", "carol", "sip-phone"])
        grid = tm.grid_cells(3)
        cell_of = dict(zip(order, grid))
        view_probes = [Probe("alice", cell_of["alice"], ALICE.colour), Probe("carol", cell_of["carol"], CAROL.colour),
                       *bar_probes("sip-phone", cell_of["sip-phone"])]
        took = await tm.wait_grid(viewer, view_probes, tm.REFLOW_LIMIT, "the composite with the phone")
        _, seen = look(tm.recent_frames(viewer, 3), view_probes)
        out(f"composite after {took:.2f} s: {describe(seen)}")
        levels, floor = await tm.wait_tones(viewer, [ALICE.tone, CAROL.tone, PHONE_TONE], what="the room mix")
        out(f"the room mix: {tm.fmt_levels(levels, floor)}")

        # Hang-up.
        closed = await asyncio.to_thread(phone.hangup)
        _, took = await srv.wait_people(ROOM_A, lambda p: "sip-phone" not in p, LEAVE_LIMIT, "sip-phone gone after hang-up")
        out(f"hung up ({closed.get('param')!r}); sip-phone gone after {took:.1f} s")
        levels, floor = await tm.wait_tones(viewer, [ALICE.tone, CAROL.tone], absent=[PHONE_TONE], what="the mix after hang-up")
        self.check_alive(srv)

    # -- 1b -----------------------------------------------------------------------------

    @async_test(timeout=240)
    async def test_1b_phone_forwarded(self) -> None:
        srv = self.sip_server("forwarded")
        await self.publish_person(srv, ROOM_A, ALICE)
        phone = await self.phone("phone2", audio_codecs="pcmu", video_codecs="vp8")
        await self.call(phone, srv.sip_uri("1000", "tcp"))
        answer = phone.received_answer_sdp() or ""
        out(f"phone2 over TCP: answered audio {sc.sdp_codec(answer, 'audio')}, video {sc.sdp_codec(answer, 'video')}")
        self.assertIn("PCMU", sc.sdp_codec(answer, "audio") or "", "the answer's audio codec")
        self.assertIn("VP8", sc.sdp_codec(answer, "video") or "", "the answer's video codec")
        await srv.wait_people(ROOM_A, lambda p: has_media(p.get("sip-phone2"), "audio", "video"), JOIN_LIMIT, "sip-phone2 in roomA")

        player = await self.play(srv, f"/whep/{ROOM_A}/sip-phone2")
        await self.watch(player, video_frames=15, audio_seconds=1.0)
        tones = player.dominant_tones(3)
        thirds = [player.mean_colour(10, (i / 3 + 0.05, 0.25, (i + 1) / 3 - 0.05, 0.75)) for i in range(3)]
        out(f"WHEP of sip-phone2: {player.frame_size}, thirds {[fmt_rgb(c) for c in thirds]}, tones {[round(t, 1) for t in tones]}, "
            f"{PHONE_TONE} Hz at {player.tone_power(PHONE_TONE):.1f} dBFS")
        self.assertTrue(tones and abs(tones[0] - PHONE_TONE) <= tm.TONE_TOLERANCE, f"sip-phone2's tones {tones}")
        for i, (c, want) in enumerate(zip(thirds, sc.FAKEVIDEO_BARS)):
            self.assert_colour(c, want, f"sip-phone2's video, bar {i}")

        cells = tm.grid_cells(2)
        rgb, took = await self.snapshot_until(phone, [Probe("alice", cells[0], ALICE.colour)], MEDIA_TIMEOUT, "phone2's snapshot")
        out(f"phone2's snapshot after {took:.1f} s: {rgb.shape[1]}x{rgb.shape[0]}")
        levels, floor, wav = await self.hears(phone, [ALICE.tone], [PHONE_TONE], 20.0, "phone2's audio")
        out(f"phone2 hears ({wav.rate} Hz): {tm.fmt_levels(levels, floor)}")
        self.assertEqual(wav.rate, 8000, "PCMU decodes at 8 kHz")

        await asyncio.to_thread(phone.hangup)
        _, took = await srv.wait_people(ROOM_A, lambda p: "sip-phone2" not in p, LEAVE_LIMIT, "sip-phone2 gone after its BYE")
        out(f"sip-phone2 gone {took:.1f} s after its BYE")
        self.check_alive(srv)

    # -- 2 ------------------------------------------------------------------------------

    @async_test(timeout=120)
    async def test_2_sipp_g711_dtmf(self) -> None:
        srv = self.sip_server("g711")
        metrics0 = await srv.metrics()
        watch, dtmf_kinds = None, []
        try:
            import test_grpc as tg  # stubs generated on first import

            fields = tg.pb.RoomEvent.DESCRIPTOR.oneofs_by_name["event"].fields
            dtmf_kinds = [f.name for f in fields if "dtmf" in f.name.lower()]
            api = tg.Api(srv.grpc_target)
            watch = api.watch("")  # every room: roomA does not exist yet
        except Exception as e:  # noqa: BLE001 (the event check is optional)
            out(f"no event watch: {type(e).__name__}: {e}")
        try:
            s = self.sipp_background(srv, "uac_g711", "1000")
            people, took = await srv.wait_people(ROOM_A, lambda p: has_media(p.get("sip-sipp1"), "audio"), JOIN_LIMIT,
                                                 "sip-sipp1 with audio in roomA")
            out(f"roomA after {took:.1f} s: {fmt_people(people)}")
            r = await self.finish(s, 60)
            self.assert_sipp(r, "the G.711 call with DTMF", srv)
            answers = r.received_sdps(r"^SIP/2.0 200")
            answer_sdp = answers[0] if answers else ""
            out(f"answer: {' / '.join(sc.sdp_media(answer_sdp, 'audio'))}")
            self.assertRegex(sc.sdp_codec(answer_sdp, "audio") or "", r"^PCMA/8000", "the answer keeps PCMA (the pcap's codec)")
            self.assertIn("telephone-event", answer_sdp, "the answer keeps telephone-event")
            _, took = await srv.wait_people(ROOM_A, lambda p: "sip-sipp1" not in p, LEAVE_LIMIT, "sip-sipp1 gone after BYE")
            out(f"sip-sipp1 gone {took:.1f} s after sipp's end")

            metrics = await srv.metrics()
            interesting = {k: v for k, v in metrics.items() if "sip" in k.lower() or "dtmf" in k.lower()}
            out(f"/metrics sip/dtmf samples: {interesting or 'none'}")
            dtmf_metrics = {k: v for k, v in metrics.items() if "dtmf" in k.lower()}
            if dtmf_metrics:
                self.assertTrue(any(v > metrics0.get(k, 0) for k, v in dtmf_metrics.items()), f"no DTMF counted: {dtmf_metrics}")
            if watch is not None:
                if dtmf_kinds:
                    ev = await watch.wait_for(lambda e: e.WhichOneof("event") in dtmf_kinds, 10.0, "DTMF event")
                    out(f"DTMF event: {tg.fmt_event(ev)}")
                    body = getattr(ev, ev.WhichOneof("event"))
                    if hasattr(body, "digit"):
                        self.assertEqual(body.digit, "1", "the DTMF event's digit (dtmf_2833_1.pcap)")
                    if hasattr(body, "participant"):
                        self.assertEqual(body.participant, "sip-sipp1", "the DTMF event's participant")
                    self.assertEqual(ev.room, ROOM_A, "the DTMF event's room")
                    others = [e for e in watch.events if e.WhichOneof("event") in dtmf_kinds and e is not ev]
                    self.assertFalse(others, f"one key press, several DTMF events: {[tg.fmt_event(e) for e in others]}")
                else:
                    kinds = sorted({e.WhichOneof('event') for e in watch.events})
                    out(f"the proto has no DTMF event (not checked); events seen: {kinds}")
        finally:
            if watch is not None:
                watch.close()
                api.close()
        self.check_alive(srv)

    # -- 3 ------------------------------------------------------------------------------

    @async_test(timeout=90)
    async def test_3_cancel(self) -> None:
        srv = self.sip_server("cancel", "--sip-answer-delay", "3s")  # ring before answering: room to CANCEL
        r = await self.sipp(srv, "uac_cancel", "1000")
        out(f"received {r.received(r'^SIP/2.0')}")
        self.assert_sipp(r, "CANCEL before the answer", srv)
        self.assertTrue(r.received(r"^SIP/2.0 487"), "no 487")
        await asyncio.sleep(1.0)
        people = await srv.people(ROOM_A)
        out(f"roomA afterwards: {fmt_people(people)}")
        self.assertNotIn("sip-cancel1", people, "the cancelled caller is in the room")
        self.check_alive(srv)

    # -- 4 ------------------------------------------------------------------------------

    @async_test(timeout=120)
    async def test_4_reinvite(self) -> None:
        srv = self.sip_server("reinvite")
        for transport in ("u1", "t1"):
            s = self.sipp_background(srv, "uac_reinvite", "1000", transport=transport)
            await srv.wait_people(ROOM_A, lambda p: "sip-hold1" in p, JOIN_LIMIT, f"[{transport}] sip-hold1 in roomA")
            r = await self.finish(s, 60)
            dirs = [next((l for l in sc.sdp_media(a, "audio") if l in ("a=sendrecv", "a=sendonly", "a=recvonly", "a=inactive")), "none")
                    for a in r.received_sdps(r"^SIP/2.0 200")]
            out(f"[{transport}] directions answered: {dirs}")
            self.assert_sipp(r, f"hold and resume over {'UDP' if transport == 'u1' else 'TCP'}", srv)
            await srv.wait_people(ROOM_A, lambda p: "sip-hold1" not in p, LEAVE_LIMIT, f"[{transport}] sip-hold1 gone after BYE")
        self.check_alive(srv)

    # -- 5 ------------------------------------------------------------------------------

    @async_test(timeout=120)
    async def test_5_refusals(self) -> None:
        srv = self.sip_server("refusals")
        target = (srv.sip_host, srv.sip_port)
        r = await self.sipp(srv, "uac_unknown", "9999")
        self.assert_sipp(r, "INVITE to an unknown number (404)", srv)

        ex = await asyncio.to_thread(sc.sip_exchange_with, target, lambda local: _invite(local, srv.sip_uri("9999"), "TCP"), "tcp", 5.0)
        out(f"raw INVITE to 9999 over TCP: {ex.describe()}")
        self.assertEqual(ex.final.status if ex.final else None, 404, "unknown number over TCP")

        def no_common(local):
            return _invite(local, srv.sip_uri("1000"), body=sc.sdp_offer(payloads="18", video="34\r\na=rtpmap:34 H263/90000"))

        ex = await asyncio.to_thread(sc.sip_exchange_with, target, no_common, "udp", 5.0)
        out(f"INVITE offering G.729 and H.263 only: {ex.describe()}")
        self.assertEqual(ex.final.status if ex.final else None, 488, "no codec in common")

        s = self.sipp_background(srv, "uac_light", "2000", duration_ms=3000)
        people, took = await srv.wait_people(ROOM_B, lambda p: "sip-load1" in p, JOIN_LIMIT, "the caller of 2000 in roomB")
        out(f"2000 -> roomB after {took:.1f} s: {fmt_people(people)}; roomA: {fmt_people(await srv.people(ROOM_A))}")
        self.assertNotIn("sip-load1", await srv.people(ROOM_A))
        self.assert_sipp(await self.finish(s, 30), "a call to 2000", srv)
        self.check_alive(srv)

    # -- 6 ------------------------------------------------------------------------------

    @async_test(timeout=180)
    async def test_6_malformed(self) -> None:
        srv = self.sip_server("malformed")
        target = (srv.sip_host, srv.sip_port)
        uri = srv.sip_uri("1000")
        wrong = []
        for case in MALFORMED:
            try:
                ex = await asyncio.to_thread(sc.sip_exchange_with, target, lambda local: case.make(local, uri), case.transport, 3.0)
                final = ex.final
                outcome = final.status if final else (NO_RESPONSE if not ex.responses else "provisional only")
                text = ex.describe()
            except OSError as e:
                outcome, text = "socket error", f"{type(e).__name__}: {e}"
            ok = outcome in case.expect
            want = "/".join("none" if e is None else str(e) for e in case.expect)
            out(f"{'ok  ' if ok else 'FAIL'} {case.name} ({case.transport}): {text} (want {want})")
            if not ok:
                wrong.append(case.name)
            if not srv.alive():
                self.fail(f"the server died after {case.name}: {tm.exit_status(srv)}\n{srv.log_tail()}")
        self.check_alive(srv)
        people = await srv.people(ROOM_A)
        self.assertFalse([n for n in people if n.startswith("sip-raw")], f"a malformed request joined roomA: {fmt_people(people)}")
        r = await self.sipp(srv, "uac_light", "1000", duration_ms=1000)
        self.assert_sipp(r, "a good call after the malformed requests", srv)
        self.assertFalse(wrong, f"unexpected outcome for {wrong}")

    # -- 7 ------------------------------------------------------------------------------

    @async_test(timeout=240)
    async def test_7_fifty_calls(self) -> None:
        srv = self.sip_server("fifty")
        s = self.sipp_background(srv, "uac_light", "1000", calls=50, limit=50, rate=50, rate_period_ms=1000,
                                 duration_ms=5000, timeout_s=150, recv_timeout_ms=30000,
                                 media_port=sc.free_port_block(1, low=40000, high=50000))
        most, t0 = 0, time.monotonic()
        while s.running() and time.monotonic() - t0 < 160:
            most = max(most, sum(1 for n in await srv.people(ROOM_A) if n.startswith("sip-load")))
            await asyncio.sleep(0.25)
        r = await self.finish(s, 10)
        out(f"at most {most} callers listed at once")
        self.assert_sipp(r, "50 concurrent calls", srv)
        self.assertEqual(r.successful, 50, "successful calls")
        _, took = await srv.wait_people(ROOM_A, lambda p: not any(n.startswith("sip-load") for n in p), 20.0, "roomA empty again")
        out(f"roomA empty {took:.1f} s after sipp's end")
        self.assertGreaterEqual(most, 40, "the calls overlapped (most listed at once)")
        self.check_alive(srv)

    # -- 8 ------------------------------------------------------------------------------

    @async_test(timeout=240)
    async def test_8_vanishing_caller(self) -> None:
        srv = self.sip_server("vanish", "--sip-rtp-timeout", f"{RTP_TIMEOUT}s")
        key = 'mcu_sip_hangups_total{reason="rtp_timeout"}'
        before = (await srv.metrics()).get(key)
        s = self.sipp_background(srv, "uac_vanish", "1000", timeout_s=100, extra=["-default_behaviors", "-bye"])
        _, took = await srv.wait_people(ROOM_A, lambda p: "sip-vanish1" in p, JOIN_LIMIT, "sip-vanish1 in roomA")
        joined = time.monotonic()
        expected = PCAP_SECONDS + RTP_TIMEOUT
        _, gone = await srv.wait_people(ROOM_A, lambda p: "sip-vanish1" not in p, expected + 15, "sip-vanish1 dropped")
        bye = "BYE sip:" in s.messages()
        out(f"sip-vanish1 dropped {gone:.1f} s after joining (RTP for {PCAP_SECONDS} s, timeout {RTP_TIMEOUT} s: "
            f"~{expected:.0f} s expected); the server {'sent' if bye else 'did not send'} a BYE")
        self.assertGreaterEqual(gone, expected - 2.5, "dropped while its RTP still flowed (or too early)")
        if bye:
            await self.finish(s, 5)
        else:
            s.wait(kill=True)

        # A baresip SIGKILLed mid-call: audio and video stop, no BYE.
        phone = await self.phone("ghost", video_codecs="vp8")
        await self.call(phone, srv.sip_uri("1000"))
        await srv.wait_people(ROOM_A, lambda p: "sip-ghost" in p, JOIN_LIMIT, "sip-ghost in roomA")
        await asyncio.sleep(2)
        phone.kill()
        _, gone = await srv.wait_people(ROOM_A, lambda p: "sip-ghost" not in p, RTP_TIMEOUT + 15, "sip-ghost dropped")
        out(f"sip-ghost dropped {gone:.1f} s after SIGKILL (timeout {RTP_TIMEOUT} s)")
        self.assertGreaterEqual(gone, RTP_TIMEOUT - 1.5, "dropped before the RTP timeout")
        if before is not None:  # the server counts the hang-ups by reason
            after = (await srv.metrics()).get(key, 0.0)
            out(f"{key}: {before:g} -> {after:g}")
            self.assertEqual(after - before, 2, "RTP-timeout hang-ups counted")
        self.check_alive(srv)

    # -- 9 ------------------------------------------------------------------------------

    @async_test(timeout=180)
    async def test_9_dial_out(self) -> None:
        srv = self.sip_server("dial")
        await self.publish_all(srv, ROOM_A, (ALICE, CAROL))
        phone = await self.phone("callee", answer="auto")
        uri = f"sip:callee@{sc.LOCALHOST}:{phone.sip_port}"
        r = await self.mcu_ok(srv, "sip", "dial", ROOM_A, uri)
        self.assertEqual(r.rows, [[ROOM_A, "sip-callee"]], "`sip dial`'s output: ROOM<tab>PARTICIPANT")
        try:
            await asyncio.to_thread(phone.wait_event, "CALL_ESTABLISHED", timeout=5.0)
        except sc.BaresipError as e:
            self.fail(f"{e}\n{phone.log_tail(20)}")
        offer, answer = phone.received_offer_sdp() or "", phone.sent_answer_sdp() or ""
        out(f"the server offered audio {' '.join(sc.sdp_media(offer, 'audio')[:1])}, video {' '.join(sc.sdp_media(offer, 'video')[:1])}; "
            f"baresip answered audio {sc.sdp_codec(answer, 'audio')}, video {sc.sdp_codec(answer, 'video')}")
        people, took = await srv.wait_people(ROOM_A, lambda p: has_media(p.get("sip-callee"), "audio", "video"), JOIN_LIMIT,
                                             "sip-callee with audio and video in roomA")
        out(f"roomA after {took:.1f} s: {fmt_people(people)}")
        self.assertEqual((await self.mcu_ok(srv, "sip", "calls", ROOM_A)).rows, [[ROOM_A, "sip-callee"]], "`sip calls roomA`")
        self.assertEqual((await self.mcu_ok(srv, "sip", "calls", ROOM_B)).rows, [], "`sip calls roomB`")

        # What the callee sees and hears: alice and carol (as in test 1), not itself.
        cells = tm.grid_cells(3)
        probes = [Probe("alice", cells[0], ALICE.colour), Probe("carol", cells[1], CAROL.colour)]
        rgb, took = await self.snapshot_until(phone, probes, MEDIA_TIMEOUT, "the callee's snapshot")
        _, seen = look([scaled(rgb)], probes)
        out(f"callee's snapshot after {took:.1f} s: {rgb.shape[1]}x{rgb.shape[0]}, {describe(seen)}")
        levels, floor, wav = await self.hears(phone, [ALICE.tone, CAROL.tone], [PHONE_TONE], 20.0, "the callee's audio")
        out(f"callee hears ({wav.rate} Hz x{wav.channels}, {wav.seconds:.1f} s): {tm.fmt_levels(levels, floor)}")

        # The operator removes it: the server hangs up (BYE).
        mark = len(phone.events)
        await self.mcu_ok(srv, "room", "remove", ROOM_A, "sip-callee")
        try:
            closed = await asyncio.to_thread(phone.wait_event, "CALL_CLOSED", timeout=LEAVE_LIMIT, after=mark)
        except sc.BaresipError as e:
            self.fail(f"removing sip-callee did not end baresip's call: {e}\n{srv.log_tail(10)}")
        byes = phone.received_requests("BYE")
        out(f"baresip: call closed ({closed.get('param')!r}); BYEs received: {len(byes)}")
        self.assertTrue(byes, "no BYE reached baresip")
        await srv.wait_people(ROOM_A, lambda p: "sip-callee" not in p, LEAVE_LIMIT, "sip-callee gone after `room remove`")
        self.assertEqual((await self.mcu_ok(srv, "sip", "calls")).rows, [], "`sip calls` after the hang-up")

        # --name names the participant; the callee hangs up.
        r = await self.mcu_ok(srv, "sip", "dial", ROOM_A, uri, "--name", "guest")
        self.assertEqual(r.rows, [[ROOM_A, "sip-guest"]], "`sip dial --name guest`'s output")
        await srv.wait_people(ROOM_A, lambda p: "sip-guest" in p, JOIN_LIMIT, "sip-guest in roomA")
        await asyncio.to_thread(phone.hangup)
        _, took = await srv.wait_people(ROOM_A, lambda p: "sip-guest" not in p, LEAVE_LIMIT, "sip-guest gone after the callee's BYE")
        out(f"sip-guest gone {took:.1f} s after the callee's BYE")

        # A busy callee (sipp answering 486): ABORTED, with the status.
        port = sc.free_port()
        self.sipp_uas("uas_busy", port, calls=1)
        r = await self.mcu(srv, "sip", "dial", ROOM_A, f"sip:busy@{sc.LOCALHOST}:{port}", timeout=40)
        self.assertNotEqual(r.returncode, 0, f"dialling a busy callee succeeded: {r}")
        self.assertEqual(r.code, "Aborted", f"a refusal's gRPC status: {r}")
        self.assertIn("486", r.error, "the callee's status in the error")
        self.assertLess(r.seconds, 10, "the refusal took long")
        # Not a SIP URI with a user part (and no --name): INVALID_ARGUMENT.
        r = await self.mcu(srv, "sip", "dial", ROOM_A, "notauri")
        self.assertEqual((r.returncode != 0, r.code), (True, "InvalidArgument"), f"a bad URI: {r}")
        people = await srv.people(ROOM_A)
        self.assertFalse([n for n in people if n.startswith("sip-")], f"a failed call out left someone: {fmt_people(people)}")
        self.check_alive(srv)

    # -- 9b -----------------------------------------------------------------------------

    @async_test(timeout=120)
    async def test_9b_dial_no_answer(self) -> None:
        srv = self.sip_server("noanswer")
        udp, tcp = sc.free_port(), sc.free_port()
        targets = [(f"sip:nobody@{sc.LOCALHOST}:{udp}", "UDP, nothing listening"),
                   (f"sip:nobody@{sc.LOCALHOST}:{tcp};transport=tcp", "TCP, connection refused")]
        results = await asyncio.gather(*(self.mcu(srv, "sip", "dial", ROOM_A, uri, timeout=90) for uri, _ in targets))
        people = await srv.people(ROOM_A)
        self.assertFalse(people, f"an unanswered call out joined: {fmt_people(people)}")
        self.assertEqual((await self.mcu_ok(srv, "sip", "calls")).rows, [], "`sip calls` after the unanswered calls")
        for r, (_, what) in zip(results, targets):
            self.assertNotEqual(r.returncode, 0, f"{what}: {r}")
        wrong = [f"{what}: {r.code} ({r.error})" for r, (_, what) in zip(results, targets) if r.code != "Unavailable"]
        self.assertFalse(wrong, f"no answer should be UNAVAILABLE (SipService.DialSip); got {wrong}")
        self.check_alive(srv)

    # -- 10 -----------------------------------------------------------------------------

    @async_test(timeout=120)
    async def test_10_dial_plan(self) -> None:
        srv = self.sip_server("dialplan")
        self.assertEqual((await self.mcu_ok(srv, "sip", "routes")).rows, [["1000", ROOM_A], ["2000", ROOM_B]], "the dial plan of --sip-route")
        ex = await self.invite(srv, "3000")
        out(f"INVITE to 3000 before the route: {ex.describe()}")
        self.assertEqual(ex.final.status if ex.final else None, 404, "3000 before `sip route`")

        self.assertEqual((await self.mcu_ok(srv, "sip", "route", "3000", "roomC")).rows, [["3000", "roomC"]], "`sip route`'s output")
        self.assertEqual((await self.mcu_ok(srv, "sip", "routes")).rows, [["1000", ROOM_A], ["2000", ROOM_B], ["3000", "roomC"]],
                         "the dial plan with 3000")
        s = self.sipp_background(srv, "uac_light", "3000", duration_ms=8000)  # outlasts the checks below
        people, took = await srv.wait_people("roomC", lambda p: "sip-load1" in p, JOIN_LIMIT, "the caller of 3000 in roomC")
        out(f"3000 -> roomC after {took:.1f} s: {fmt_people(people)}")
        self.assertEqual((await self.mcu_ok(srv, "sip", "calls", "roomC")).rows, [["roomC", "sip-load1"]], "`sip calls roomC`")
        self.assertEqual((await self.mcu_ok(srv, "sip", "calls", ROOM_A)).rows, [], "`sip calls roomA`")
        self.assertEqual((await self.mcu_ok(srv, "sip", "calls")).rows, [["roomC", "sip-load1"]], "`sip calls`")

        r = await self.mcu_ok(srv, "sip", "unroute", "3000")
        self.assertEqual(r.stdout.strip(), "removed 3000", "`sip unroute`'s output")
        self.assertEqual((await self.mcu_ok(srv, "sip", "routes")).rows, [["1000", ROOM_A], ["2000", ROOM_B]], "the dial plan without 3000")
        self.assertIn("sip-load1", await srv.people("roomC"), "the call in progress stays after `sip unroute`")
        ex = await self.invite(srv, "3000")
        out(f"INVITE to 3000 after the unroute: {ex.describe()}")
        self.assertEqual(ex.final.status if ex.final else None, 404, "3000 after `sip unroute`")
        r = await self.mcu(srv, "sip", "unroute", "3000")
        self.assertEqual((r.returncode != 0, r.code), (True, "NotFound"), f"unrouting an unknown number: {r}")
        r = await self.mcu(srv, "sip", "route", "30 00", "room C")
        self.assertEqual((r.returncode != 0, r.code), (True, "InvalidArgument"), f"a route with spaces: {r}")

        self.assert_sipp(await self.finish(s, 30), "the call to 3000", srv)
        await srv.wait_people("roomC", lambda p: "sip-load1" not in p, LEAVE_LIMIT, "sip-load1 gone after its BYE")
        self.assertEqual((await self.mcu_ok(srv, "sip", "calls")).rows, [], "`sip calls` after the BYE")
        self.check_alive(srv)

    # -- 11 -----------------------------------------------------------------------------

    @async_test(timeout=120)
    async def test_11_digest_auth(self) -> None:
        srv = self.sip_server("auth", "--sip-users", ",".join(f"{u}:{p}" for u, p in USERS.items()))
        key = 'mcu_sip_invites_total{result="challenged"}'
        before = (await srv.metrics()).get(key)
        self.assertIsNotNone(before, f"/metrics has no {key}")
        uri = srv.sip_uri("1000")

        # Without credentials: 401 with a digest challenge.
        ex = await self.invite(srv, "1000")
        challenge = ex.final.header("WWW-Authenticate") if ex.final else None
        out(f"INVITE without credentials: {ex.describe()}; WWW-Authenticate: {challenge}")
        self.assertEqual(ex.final.status if ex.final else None, 401, "an INVITE without credentials")
        self.assertRegex(challenge or "", r'^Digest\s', "the challenge's scheme")
        params = sc.digest_params(challenge or "")
        self.assertEqual(params.get("realm"), "mcu", "the challenge's realm")
        self.assertTrue(params.get("nonce"), "the challenge's nonce")
        self.assertEqual(params.get("algorithm", "").upper(), "MD5", "the challenge's algorithm")
        challenges = 1

        # Raw INVITEs answering it: right, wrong password, unknown user, a nonce it never gave.
        def answered(user: str, password: str, nonce: str):
            auth = sc.digest_authorization(user, params["realm"], password, "INVITE", uri, nonce)
            return self.invite(srv, "1000", headers=[("Authorization", auth)])

        cases = [("alice", USERS["alice"], params["nonce"], 200), ("alice", "wrong", params["nonce"], 401),
                 ("bob", USERS["alice"], params["nonce"], 401), ("alice", USERS["alice"], "0" * 32, 401)]
        wrong = []
        for user, password, nonce, want in cases:
            ex = await answered(user, password, nonce)
            got = ex.final.status if ex.final else None
            what = f"{user}/{'right' if password == USERS.get(user) else 'wrong'} password/{'its' if nonce == params['nonce'] else 'a made-up'} nonce"
            out(f"{'ok  ' if got == want else 'FAIL'} INVITE with a digest for {what}: {ex.describe()} (want {want})")
            challenges += got == 401
            if got != want:
                wrong.append(f"{what}: {got}")
        self.assertFalse(wrong, "digest answers")
        await srv.wait_people(ROOM_A, lambda p: "sip-raw" not in p, LEAVE_LIMIT, "sip-raw gone after its BYE")

        # baresip with the password: challenged, answers, joins.
        phone = await self.phone("alice", auth_pass=USERS["alice"], video=False)
        await self.call(phone, uri)
        people, took = await srv.wait_people(ROOM_A, lambda p: has_media(p.get("sip-alice"), "audio"), JOIN_LIMIT, "sip-alice in roomA")
        invites = [m for _, _, _, m in phone.sip_messages() if m.startswith("INVITE ")]
        with_auth = [m for m in invites if sc.request_header(m, "Authorization")]
        out(f"baresip alice: {len(invites)} INVITEs, {len(with_auth)} with credentials; roomA after {took:.1f} s: {fmt_people(people)}")
        self.assertTrue(with_auth, "baresip's call got in without answering a challenge")
        challenges += 1
        await asyncio.to_thread(phone.hangup)
        await srv.wait_people(ROOM_A, lambda p: "sip-alice" not in p, LEAVE_LIMIT, "sip-alice gone after hang-up")

        # baresip with a wrong password: refused (401), nobody joins.
        intruder = await self.phone("alice", auth_pass="wrong", video=False, workdir_name="alice-wrong")
        mark = intruder.dial(uri)
        ev = await asyncio.to_thread(intruder.wait_event, "CALL_ESTABLISHED", "CALL_CLOSED", timeout=CALL_TIMEOUT, after=mark)
        out(f"baresip alice with a wrong password: {ev.get('type')} ({ev.get('param')!r})")
        self.assertEqual(ev.get("type"), "CALL_CLOSED", "a wrong password got the call through")
        self.assertIn("401", str(ev.get("param")), "why the call with a wrong password closed")
        challenges += 1
        people = await srv.people(ROOM_A)
        self.assertNotIn("sip-alice", people, "the caller with a wrong password joined")

        after = (await srv.metrics()).get(key, 0.0)
        out(f"{key}: {before:g} -> {after:g} (at least {challenges} challenges sent)")
        self.assertGreaterEqual(after - before, challenges, "challenges counted")
        self.check_alive(srv)

    # -- 12 -----------------------------------------------------------------------------

    @async_test(timeout=120)
    async def test_12_register(self) -> None:
        port = sc.free_port()
        registrar = self.sipp_uas("uas_registrar", port, calls=1, extra=["-key", "grant", str(REGISTER_GRANTED)])
        srv = self.sip_server("register", "--sip-registrar", f"sip:{sc.LOCALHOST}:{port}", "--sip-username", REGISTRAR_USER,
                              "--sip-password", REGISTRAR_PASSWORD, "--sip-register-expires", str(REGISTER_ASKED))
        key = "mcu_sip_registrations_total"
        t0 = time.monotonic()
        await srv.wait_metrics(lambda m: m.get(key, 0) >= 1, 10.0, "registered (mcu_sip_registrations_total >= 1)")
        out(f"registered after {time.monotonic() - t0:.1f} s")
        refresh = REGISTER_GRANTED * 3 / 4
        await srv.wait_metrics(lambda m: m.get(key, 0) >= 2, refresh + 10, "the registration refreshed")
        code = await asyncio.to_thread(sc.stop_process, registrar, 10.0)
        log = self.uas_log("uas_registrar")
        out(f"registrar (sipp) exit {code}; {' / '.join(m.first_line.split(' sip:')[0] for m in log)}")
        errors = self.work / "uas_registrar" / "uas_uas_registrar_errors.log"
        self.assertEqual(code, 0, "the registrar's scenario failed (a REGISTER without a valid digest?)\n"
                         + (errors.read_text(errors="replace")[-800:] if errors.exists() else ""))

        registers = [m for m in log if m.direction == "received" and m.first_line.startswith("REGISTER ")]
        self.assertEqual(len(registers), 4, "REGISTERs: challenged and answered, twice")
        problems = []
        call_ids = {m.header("Call-ID") for m in registers}
        if len(call_ids) != 1:
            problems.append(f"Call-IDs {call_ids} (one registration, one Call-ID)")
        cseqs = [int((m.header("CSeq") or "0").split()[0]) for m in registers]
        if cseqs != sorted(set(cseqs)):
            problems.append(f"CSeqs {cseqs} do not increase")
        nonce = None
        for i, m in enumerate(registers):
            ruri = m.first_line.split()[1]
            expires, to, contact = m.header("Expires"), m.header("To") or "", m.header("Contact") or ""
            auth = m.header("Authorization")
            if expires != str(REGISTER_MINIMUM):
                problems.append(f"REGISTER {i + 1}: Expires {expires} (asked {REGISTER_ASKED} s, the minimum is {REGISTER_MINIMUM})")
            if f"sip:{REGISTRAR_USER}@" not in to or f"sip:{REGISTRAR_USER}@{srv.sip_target}" not in contact:
                problems.append(f"REGISTER {i + 1}: To {to}, Contact {contact}")
            if i % 2 == 0:
                if auth:
                    problems.append(f"REGISTER {i + 1}: credentials before a challenge")
                nxt = next((r for r in log if r.direction == "sent" and r.time >= m.time and r.first_line.startswith("SIP/2.0 401")), None)
                nonce = sc.digest_params(nxt.header("WWW-Authenticate") or "").get("nonce") if nxt else None
                continue
            p = sc.digest_params(auth or "")
            ok = (p.get("username") == REGISTRAR_USER and p.get("realm") == "e2e" and p.get("nonce") == nonce and p.get("uri") == ruri
                  and sc.digest_valid(auth or "", REGISTRAR_PASSWORD, "REGISTER") and not sc.digest_valid(auth or "", "other", "REGISTER"))
            out(f"REGISTER {i + 1}: Expires {expires}, Authorization {auth}: {'valid' if ok else 'INVALID'}")
            if not ok:
                problems.append(f"REGISTER {i + 1}: Authorization {auth} (nonce given {nonce})")
        oks = [m for m in log if m.direction == "sent" and m.first_line.startswith("SIP/2.0 200")]
        if len(oks) == 2 and len(registers) == 4:
            after = registers[2].time - oks[0].time
            out(f"refreshed {after:.1f} s after the 200 granting {REGISTER_GRANTED} s (3/4: {refresh:.1f} s)")
            if not refresh - 1.5 <= after <= refresh + 2.5:
                problems.append(f"the refresh came {after:.1f} s after the grant of {REGISTER_GRANTED} s (want ~{refresh:.1f})")
        self.assertFalse(problems, "the REGISTERs")
        self.check_alive(srv)

    # -- 13 -----------------------------------------------------------------------------

    @async_test(timeout=120)
    async def test_13_session_timer(self) -> None:
        srv = self.sip_server("timer")
        timer = ("Supported", "timer")
        wrong = []

        async def case(what: str, headers, want: int) -> Optional[sc.SipResponse]:
            ex = await self.invite(srv, "1000", headers=headers)
            final = ex.final
            got = final.status if final else None
            shown = {k: v for k, v in (final.headers if final else []) if k.lower() in ("session-expires", "x", "require", "min-se")}
            out(f"{'ok  ' if got == want else 'FAIL'} {what}: {ex.describe()} {shown}")
            if got != want:
                wrong.append(f"{what}: {got}, want {want}")
                return None
            return final

        r = await case("Session-Expires: 90;refresher=uac, Supported: timer", [("Session-Expires", f"{MIN_SE};refresher=uac"), timer], 200)
        if r is not None:
            n, params = session_expires(r.header("Session-Expires"))
            if (n, params.get("refresher")) != (MIN_SE, "uac") or "timer" not in option_tags(r.header("Require")):
                wrong.append(f"the 200 says Session-Expires {r.header('Session-Expires')!r}, Require {r.header('Require')!r}")
        r = await case("Session-Expires: 30", [("Session-Expires", "30"), timer], 422)
        if r is not None and (r.header("Min-SE") or "").split(";")[0].strip() != str(MIN_SE):
            wrong.append(f"the 422 says Min-SE {r.header('Min-SE')!r}, want {MIN_SE}")
        r = await case("compact x: 1800, k: timer (no refresher)", [("x", "1800"), ("k", "timer")], 200)
        if r is not None:
            n, params = session_expires(r.header("Session-Expires"))
            if n != 1800 or params.get("refresher") not in ("uac", "uas"):
                wrong.append(f"the 200 to x: 1800 says Session-Expires {r.header('Session-Expires')!r}")
            elif params.get("refresher") == "uac" and "timer" not in option_tags(r.header("Require")):
                wrong.append("refresher=uac without Require: timer")
        r = await case("no Session-Expires", [], 200)
        if r is not None and (r.header("Session-Expires") or "timer" in option_tags(r.header("Require"))):
            wrong.append(f"a session timer nobody asked for: Session-Expires {r.header('Session-Expires')!r}, Require {r.header('Require')!r}")
        r = await case("Session-Expires: abc", [("Session-Expires", "abc")], 400)
        self.assertFalse(wrong, "session-timer answers")

        # Refreshes (UPDATE without SDP, re-INVITE with) within the call: each 200 carries it.
        s = self.sipp_background(srv, "uac_timer", "1000")
        await srv.wait_people(ROOM_A, lambda p: "sip-timer1" in p, JOIN_LIMIT, "sip-timer1 in roomA")
        r = await self.finish(s, 30)
        for text in r.message_texts("received", r"^SIP/2.0 200"):
            lines = [l for l in text.split("\n") if l.split(":")[0].strip().lower() in ("cseq", "session-expires", "require")]
            out("200: " + "; ".join(lines))
        self.assert_sipp(r, "a call refreshing its session timer by UPDATE and re-INVITE", srv)
        await srv.wait_people(ROOM_A, lambda p: "sip-timer1" not in p, LEAVE_LIMIT, "sip-timer1 gone after BYE")
        self.check_alive(srv)

    # -- 13b ----------------------------------------------------------------------------

    @async_test(timeout=60)
    async def test_13b_session_timer_refresher(self) -> None:
        """RFC 4028 §9, table 2: who refreshes. A UAC that asked refresher=uas is told uas; one
        without Supported: timer cannot refresh, so the UAS does (refresher=uas) and may not
        Require timer of it. Otherwise the call is dropped at the interval's end while both
        sides wait for the other's refresh."""
        srv = self.sip_server("refresher")
        wrong = []
        for what, headers, want_refresher in (
                ("Session-Expires: 90;refresher=uas, Supported: timer", [("Session-Expires", f"{MIN_SE};refresher=uas"), ("Supported", "timer")], "uas"),
                ("Session-Expires: 90, no Supported: timer", [("Session-Expires", str(MIN_SE))], "uas")):
            ex = await self.invite(srv, "1000", headers=headers)
            final = ex.final
            se = final.header("Session-Expires") if final else None
            require = final.header("Require") if final else None
            _, params = session_expires(se)
            problems = []
            if final is None or final.status != 200:
                problems.append(f"answered {ex.describe()}")
            else:
                if params.get("refresher") != want_refresher:
                    problems.append(f"refresher={params.get('refresher')}, want {want_refresher}")
                if want_refresher == "uas" and "timer" in option_tags(require) and "Supported" not in dict(headers):
                    problems.append("Require: timer of a UAC that does not support it")
            out(f"{'FAIL' if problems else 'ok  '} {what}: {ex.describe()}; Session-Expires {se!r}, Require {require!r}")
            if problems:
                wrong.append(f"{what}: {', '.join(problems)}")
        self.assertFalse(wrong, "RFC 4028 §9 refresher")
        self.check_alive(srv)

# ----------------------------------------------------------------------------------------

ORDER = [
    (SipTest, ["test_1_phone_in_room", "test_1b_phone_forwarded", "test_2_sipp_g711_dtmf", "test_3_cancel",
               "test_4_reinvite", "test_5_refusals", "test_6_malformed", "test_7_fifty_calls", "test_8_vanishing_caller",
               "test_9_dial_out", "test_9b_dial_no_answer", "test_10_dial_plan", "test_11_digest_auth", "test_12_register",
               "test_13_session_timer", "test_13b_session_timer_refresher"]),
]


class _Result(unittest.TextTestResult):
    """Prints "PASS name (t s)" or "FAIL name (t s): first line" as each test ends."""

    passed = 0

    def startTest(self, test) -> None:
        self._t0 = time.monotonic()
        print(f"{test._testMethodName} ...", flush=True)
        super().startTest(test)

    def _end(self, test, ok: bool, err=None) -> None:
        took = time.monotonic() - getattr(self, "_t0", time.monotonic())
        line = ""
        if err is not None:
            line = ": " + (str(err[1]).strip().splitlines() or [type(err[1]).__name__])[0][:300]
        print(f"{'PASS' if ok else 'FAIL'} {test._testMethodName} ({took:.1f} s){line}", flush=True)

    def addSuccess(self, test) -> None:
        super().addSuccess(test)
        self.passed += 1
        self._end(test, True)

    def addFailure(self, test, err) -> None:
        super().addFailure(test, err)
        self._end(test, False, err)

    def addError(self, test, err) -> None:
        super().addError(test, err)
        self._end(test, False, err)


def main(argv: list[str]) -> int:
    verbose = "-v" in argv
    selected = [a for a in argv if a != "-v"]
    logging.basicConfig(level=logging.INFO if verbose else logging.WARNING, stream=sys.stderr,
                        format="%(asctime)s %(name)s %(levelname)s %(message)s")
    sfu._quiet_decoder_warnings()
    if verbose:
        logging.getLogger("aiortc").setLevel(logging.WARNING)
        logging.getLogger("aioice").setLevel(logging.WARNING)
    suite = unittest.TestSuite()
    for cls, names in ORDER:
        for name in names:
            if not selected or any(s in name for s in selected):
                suite.addTest(cls(name))

    def on_signal(signum, _frame) -> None:
        sc.kill_all()
        sfu._kill_all()
        print(f"e2e sip: interrupted by {signal.Signals(signum).name}", flush=True)
        os._exit(128 + signum)

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    WORK.mkdir(parents=True, exist_ok=True)
    start = time.monotonic()
    try:
        result = unittest.TextTestRunner(stream=sys.stdout, verbosity=0, resultclass=_Result).run(suite)
    finally:
        sc.kill_all()
        sfu._kill_all()
    failed = len(result.failures) + len(result.errors) + len(result.unexpectedSuccesses)
    if failed:
        print(f"logs (servers, baresip, sipp, WAVs, PNGs): {sfu.LOG_DIR}")
    else:
        shutil.rmtree(sfu.LOG_DIR, ignore_errors=True)
    print(f"({time.monotonic() - start:.1f} s)")
    print(f"e2e sip: {result.passed} passed, {failed} failed", flush=True)
    return 1 if failed or not result.passed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
