#!/usr/bin/env python3
"""Checks the SIP test clients without the server (sipclient.py, the sipp scenarios in sip/):

    1 baresip_call        baresip alice (1000 Hz) calls baresip bob (700 Hz, auto-answer) on
                          127.0.0.1: established on both sides; each one's received-audio WAV
                          holds the other's tone and not its own; a snapshot of the received
                          video on each side decodes: fakevideo's red | green | blue bars at
                          640x360 (H.264, packetization-mode 0, the first offered); alice's
                          offer printed; hang-up closes both
    2 baresip_g711_vp8    the same over TCP (;transport=tcp) restricted to PCMU and VP8: 8 kHz WAV
                          with the tone, VP8 bars
    3 sipp_g711           uac_g711.xml against a sipp stand-in (uas_answer.xml): exit 0, and at
                          the answered RTP port 236 PCMA packets + 10 RFC 4733 packets arrive
    4 sipp_negative       each UAC scenario fails against the wrong stand-in (g711 vs a 404,
                          unknown vs an answer, cancel vs an immediate answer, reinvite vs a
                          hold answered sendrecv, g711 vs sipp's built-in UAS answering PCMU,
                          timer vs an answer without Session-Expires)
    5 sipp_cancel         uac_cancel.xml vs uas_cancel.xml: 180, CANCEL, 200, 487, ACK
    6 sipp_reinvite       uac_reinvite.xml vs uas_reinvite.xml over UDP and over TCP
    7 sipp_unknown        uac_unknown.xml vs uas_404.xml
    8 sipp_vanish         uac_vanish.xml vs uas_bye.xml (the BYE after 12 s answered) and vs
                          uas_answer.xml with a 3 s wait (no BYE: still exit 0, nothing sent)
    9 sipp_50_calls       uac_light.xml -m 50 -l 50 -r 50 -d 5000 and uac_g711.xml x50 against
                          one stand-in: 50 successful each
   10 raw_sip             sip_exchange() over UDP and TCP against baresip (OPTIONS -> 200); the
                          malformed catalogue (sipclient.MALFORMED) sent to baresip, its answers printed
   11 sipp_callees        the UAS scenarios the server calls: uas_registrar.xml with a raw REGISTER
                          client (401, then the digest for gw/pw -> 200 granting 7 s, twice: exit 0;
                          a wrong password -> 403, exit 1); uas_busy.xml (INVITE -> 486, exit 0)

Run: target/e2e-venv/bin/python tests/e2e/sip_selftest.py [name...]   (as root: sipp's pcap
play uses a raw socket). Closes with "sip selftest: N passed, M failed".
"""

from __future__ import annotations

import collections
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import traceback
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import sipclient as sc  # noqa: E402

WORK = Path(tempfile.mkdtemp(prefix="sip-selftest-"))
RESULTS: list[tuple[str, bool]] = []


def out(msg: str) -> None:
    print(f"    {msg}", flush=True)


def check(cond: bool, msg: str) -> None:
    if not cond:
        raise AssertionError(msg)


class RtpCounter:
    """Counts RTP packets arriving at 127.0.0.1:port, by payload type and SSRC."""

    def __init__(self, port: int) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind((sc.LOCALHOST, port))
        self.sock.settimeout(0.2)
        self.pts: collections.Counter = collections.Counter()
        self.ssrcs: collections.Counter = collections.Counter()
        self._stop = False
        self._t = threading.Thread(target=self._run, daemon=True)
        self._t.start()

    def _run(self) -> None:
        while not self._stop:
            try:
                d, _ = self.sock.recvfrom(2048)
            except socket.timeout:
                continue
            except OSError:
                return
            if len(d) >= 12 and d[0] >> 6 == 2:
                self.pts[d[1] & 0x7F] += 1
                self.ssrcs[d[8:12].hex()] += 1

    def close(self) -> None:
        self._stop = True
        self._t.join(1)
        self.sock.close()


# ----------------------------------------------------------------------------------------


def bars_ok(rgb, what: str) -> str:
    h, w = rgb.shape[:2]
    seen = []
    for i, colour in enumerate(sc.FAKEVIDEO_BARS):
        x0, x1 = int((i + 0.2) * w / 3), int((i + 0.8) * w / 3)
        region = rgb[h // 4: 3 * h // 4, x0:x1].reshape(-1, 3).mean(axis=0)
        seen.append(tuple(round(float(v)) for v in region))
        check(max(abs(a - b) for a, b in zip(region, colour)) <= 40, f"{what}: bar {i} is {seen[-1]}, want {colour}")
    return f"{w}x{h}, bars {seen}"


def two_baresips(name: str, caller_kw: dict, callee_kw: dict, want_audio_rate: int, transport: str = "") -> None:
    d = WORK / name
    alice = sc.Baresip(d / "alice", user="alice", tone_hz=1000, **caller_kw)
    bob = sc.Baresip(d / "bob", user="bob", tone_hz=700, answer="auto", **callee_kw)
    try:
        alice.start()
        bob.start()
        t0 = time.monotonic()
        alice.call(bob.aor + (f";transport={transport}" if transport else ""))
        bob.wait_event("CALL_ESTABLISHED", timeout=10)
        check(alice.sent_sdp() and alice.received_answer_sdp(), "offer/answer not found in the SIP trace")
        if transport:
            check(any(t == transport.upper() for t, *_ in alice.sip_messages()), f"no {transport} in the SIP trace")
        out(f"{transport or 'udp'}: established in {time.monotonic() - t0:.2f} s; alice offered audio {sc.sdp_codec(alice.sent_sdp(), 'audio')}, "
            f"video {sc.sdp_codec(alice.sent_sdp(), 'video')}; bob answered audio {sc.sdp_codec(alice.received_answer_sdp(), 'audio')}, "
            f"video {sc.sdp_codec(alice.received_answer_sdp(), 'video')}")
        time.sleep(4)
        for me, other in ((alice, bob), (bob, alice)):
            rgb = me.snapshot(d / f"{me.user}-recv.png")
            out(f"{me.user}'s snapshot: {bars_ok(rgb, me.user + ' snapshot')}")
            wav = me.received_audio()
            check(wav.rate == want_audio_rate, f"{me.user}: WAV at {wav.rate} Hz, want {want_audio_rate}")
            levels, floor = sc.tone_levels_db(wav.last(2.0), wav.rate, [other.tone_hz, me.tone_hz])
            peak = sc.peak_frequency(wav.last(2.0), wav.rate)
            out(f"{me.user} received {wav.seconds:.1f} s at {wav.rate} Hz x{wav.channels}: peak {peak:.1f} Hz; "
                f"{other.tone_hz} Hz {levels[other.tone_hz]:.1f} dBFS, own {me.tone_hz} Hz {levels[me.tone_hz]:.1f} dBFS, floor {floor:.1f}")
            check(abs(peak - other.tone_hz) < 3, f"{me.user}: peak at {peak:.1f} Hz, want {other.tone_hz}")
            check(levels[other.tone_hz] > -12, f"{me.user}: {other.tone_hz} Hz only {levels[other.tone_hz]:.1f} dBFS")
            check(levels[me.tone_hz] < levels[other.tone_hz] - 40, f"{me.user} hears itself")
        closed = alice.hangup()
        bob.wait_event("CALL_CLOSED", timeout=10)
        out(f"hung up: alice {closed.get('param')!r}; bob {bob.events[-1].get('param')!r}")
    except Exception:
        for b in (alice, bob):
            print(b.log_tail(15))
        raise
    finally:
        alice.stop()
        bob.stop()


def test_baresip_call() -> None:
    two_baresips("call", {}, {}, 48000)


def test_baresip_g711_vp8() -> None:
    kw = {"audio_codecs": "pcmu", "video_codecs": "vp8"}
    two_baresips("g711vp8", kw, kw, 8000, transport="tcp")


def uas(scenario: str, name: str, transport: str = "u1", calls=None):
    port = sc.free_port()
    mp = sc.free_port_block(12, low=40000, high=50000)
    proc = sc.sipp_uas(scenario, port, WORK / name, media_port=mp, transport=transport, calls=calls)
    return proc, f"{sc.LOCALHOST}:{port}", mp


def test_sipp_g711() -> None:
    proc, target, mp = uas("uas_answer", "g711")
    rtp = RtpCounter(mp + 10)
    try:
        r = sc.run_sipp("uac_g711", target, "1000", WORK / "g711", media_port=sc.free_port_block(1, low=50000, high=60000))
        time.sleep(0.3)
        out(r.summary() + f"; RTP at the answered port: {dict(rtp.pts)} (SSRCs {dict(rtp.ssrcs)})")
        check(r.ok, r.why())
        check(rtp.pts[8] == 236 and rtp.pts[101] == 10, f"RTP {dict(rtp.pts)}")
        check(r.received(r"^SIP/2.0 200") and r.sent(r"^BYE "), "no 200 / BYE in the message log")
    finally:
        rtp.close()
        sc.stop_process(proc)


def test_sipp_negative() -> None:
    cases = [
        ("uas_404", "uac_g711", "1000", "u1"),
        ("uas_answer", "uac_unknown", "9999", "u1"),
        ("uas_answer", "uac_cancel", "1000", "u1"),
        ("uas", "uac_g711", "1000", "u1"),
    ]
    cases.append(("uas_answer", "uac_timer", "1000", "u1"))  # no Session-Expires in the 200
    bad = WORK / "bad_hold.xml"
    bad.write_text((sc.SCENARIOS / "uas_reinvite.xml").read_text().replace("a=recvonly", "a=sendrecv"))
    cases.append((str(bad), "uac_reinvite", "1000", "u1"))
    for server, client, service, transport in cases:
        port = sc.free_port()
        name = f"neg-{Path(server).stem}-{client}"
        if server.startswith("/"):
            argv_server = server
            proc = sc._spawn([sc.SIPP, "-sf", argv_server, "-i", sc.LOCALHOST, "-p", str(port), "-mi", sc.LOCALHOST,
                              "-mp", str(sc.free_port_block(1, low=40000, high=50000)), "-nostdin"],
                             WORK / f"{name}.log")
            time.sleep(0.3)
        else:
            proc = sc.sipp_uas(server, port, WORK / name)
        try:
            r = sc.run_sipp(client, f"{sc.LOCALHOST}:{port}", service, WORK / name, recv_timeout_ms=6000, timeout_s=30)
            first = (r.errors.strip().splitlines() or ["?"])
            why = next((l for l in first if "Aborting" in l or "Failed regexp" in l or "timeout" in l), first[-1])[:160]
            out(f"{client} vs {Path(server).stem}: exit {r.returncode} ({why.strip()})")
            check(r.returncode == 1, f"{client} vs {server}: exit {r.returncode}, want 1")
        finally:
            sc.stop_process(proc)


def test_sipp_cancel() -> None:
    proc, target, mp = uas("uas_cancel", "cancel")
    try:
        r = sc.run_sipp("uac_cancel", target, "1000", WORK / "cancel")
        out(r.summary() + f"; received {r.received(r'^SIP/2.0')}; sent {r.sent(r'^[A-Z]+ ')}")
        check(r.ok, r.why())
        check(r.received(r"^SIP/2.0 487") and r.sent(r"^ACK "), "no 487 / ACK")
    finally:
        sc.stop_process(proc)


def test_sipp_reinvite() -> None:
    for transport in ("u1", "t1"):
        proc, target, mp = uas("uas_reinvite", f"reinvite-{transport}", transport=transport)
        try:
            r = sc.run_sipp("uac_reinvite", target, "1000", WORK / f"reinvite-{transport}", transport=transport)
            out(f"[{transport}] " + r.summary() + f"; sent {r.sent(r'^[A-Z]+ ')}")
            check(r.ok, r.why())
            check(len(r.sent(r"^INVITE ")) == 3 and len(r.received(r"^SIP/2.0 200")) == 4, "want 3 INVITEs and 4 200s")
        finally:
            sc.stop_process(proc)


def test_sipp_unknown() -> None:
    proc, target, mp = uas("uas_404", "unknown")
    try:
        r = sc.run_sipp("uac_unknown", target, "9999", WORK / "unknown")
        out(r.summary() + f"; received {r.received(r'^SIP/2.0')}")
        check(r.ok, r.why())
    finally:
        sc.stop_process(proc)


def test_sipp_vanish() -> None:
    proc, target, mp = uas("uas_bye", "vanish-bye")
    try:
        r = sc.run_sipp("uac_vanish", target, "1000", WORK / "vanish-bye", extra=["-default_behaviors", "-bye"])
        out(r.summary() + f"; BYE received {len(r.received(r'^BYE '))}, sent {r.sent(r'^[A-Z]+ ')}")
        check(r.ok and len(r.received(r"^BYE ")) == 1 and not r.sent(r"^BYE "), r.why())
    finally:
        sc.stop_process(proc)
    short = WORK / "uac_vanish_short.xml"
    short.write_text((sc.SCENARIOS / "uac_vanish.xml").read_text().replace('timeout="60000"', 'timeout="3000"'))
    proc, target, mp = uas("uas_answer", "vanish-quiet")
    try:
        r = sc.run_sipp(str(short), target, "1000", WORK / "vanish-quiet", extra=["-default_behaviors", "-bye"])
        out("no BYE: " + r.summary() + f"; sent {r.sent(r'^[A-Z]+ ')}")
        check(r.ok and not r.sent(r"^BYE "), r.why())
    finally:
        sc.stop_process(proc)


def test_sipp_50_calls() -> None:
    proc, target, mp = uas("uas_answer", "load")
    try:
        for scenario, kw in (("uac_light", {"duration_ms": 5000}), ("uac_g711", {})):
            r = sc.run_sipp(scenario, target, "1000", WORK / f"load-{scenario}", calls=50, limit=50, rate=50,
                            rate_period_ms=1000, media_port=sc.free_port_block(1, low=50000, high=55000), timeout_s=90, **kw)
            out(r.summary())
            check(r.ok and r.successful == 50, r.why())
    finally:
        sc.stop_process(proc)


def test_raw_sip() -> None:
    b = sc.Baresip(WORK / "raw" / "bob", user="bob", answer="manual", video=False).start()
    try:
        target = (sc.LOCALHOST, b.sip_port)
        uri = f"sip:bob@{sc.LOCALHOST}:{b.sip_port}"

        def options_ok(when: str) -> None:
            for transport in ("udp", "tcp"):
                ex = sc.sip_exchange_with(target, lambda local: sc.build_request("OPTIONS", uri, local, transport.upper()), transport)
                out(f"OPTIONS over {transport} {when}: {ex.describe()}")
                check(ex.final is not None and ex.final.status == 200, f"no 200 to OPTIONS over {transport} {when}")

        options_ok("before")
        for case in sc.MALFORMED:
            ex = sc.sip_exchange_with(target, lambda local: case.make(local, uri), case.transport, wait=1.0)
            out(f"baresip vs {case.name} ({case.transport}): {ex.describe()}")
        options_ok("after the malformed ones")
        check(b.proc.poll() is None, "baresip died")
    finally:
        b.stop()


def register_with(target: str, password: str, rounds: int = 2) -> list:
    """A REGISTER client (user gw, one UDP socket and Call-ID, CSeq counting up; sipp answers a
    call's messages at the address of its first one): per round, a REGISTER without
    credentials (must get 401), then one answering the challenge; returns the final responses
    to the answers (stops at the first that is not 200)."""
    host, port = target.rsplit(":", 1)
    ruri, cid, tag = f"sip:{target}", sc.new_call_id(), os.urandom(4).hex()
    finals = []
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind((sc.LOCALHOST, 0))
        local = sock.getsockname()
        cseq = 0

        def register(auth=None):
            nonlocal cseq
            cseq += 1
            extra = [("Expires", "60")] + ([("Authorization", auth)] if auth else [])
            replace = {"Call-ID": cid, "CSeq": f"{cseq} REGISTER", "From": f"<sip:gw@{target}>;tag={tag}", "To": f"<sip:gw@{target}>"}
            sock.sendto(sc.build_request("REGISTER", ruri, local, headers=extra, replace=replace, user="gw").encode(), (host, int(port)))
            deadline = time.monotonic() + 3.0
            while time.monotonic() < deadline:
                sock.settimeout(max(0.01, deadline - time.monotonic()))
                try:
                    data = sock.recv(65536)
                except socket.timeout:
                    break
                for r in sc.parse_responses(data):
                    if r.status >= 200 and (r.header("CSeq") or "").split()[:1] == [str(cseq)]:
                        return r
            return None

        for _ in range(rounds):
            challenge = register()
            check(challenge is not None and challenge.status == 401, f"REGISTER without credentials: {challenge}")
            params = sc.digest_params(challenge.header("WWW-Authenticate") or "")
            check(params.get("realm") and params.get("nonce"), f"the challenge: {challenge.header('WWW-Authenticate')}")
            final = register(sc.digest_authorization("gw", params["realm"], password, "REGISTER", ruri, params["nonce"]))
            finals.append(final)
            if final is None or final.status != 200:
                break
    return finals


def test_sipp_callees() -> None:
    # uas_registrar.xml: the right digest twice -> 200 granting -key grant; a wrong one -> 403, exit 1
    for password, want, want_exit in (("pw", [200, 200], 0), ("wrong", [403], 1)):
        port = sc.free_port()
        proc = sc.sipp_uas("uas_registrar", port, WORK / f"registrar-{password}", calls=1, extra=["-key", "grant", "7"])
        try:
            finals = register_with(f"{sc.LOCALHOST}:{port}", password)
            try:
                code = proc.wait(10)
            except subprocess.TimeoutExpired:
                code = None
            statuses = [f.status if f else None for f in finals]
            granted = finals[0] if finals and finals[0] is not None and finals[0].status == 200 else None
            out(f"uas_registrar.xml, password {password!r}: {statuses}, sipp exit {code}"
                + (f"; Contact {granted.header('Contact')}, Expires {granted.header('Expires')}" if granted else ""))
            check(statuses == want and code == want_exit, f"password {password!r}: {statuses}, exit {code}; want {want}, exit {want_exit}")
            if want_exit == 0:
                check("expires=7" in (finals[0].header("Contact") or "") and finals[0].header("Expires") == "7", "the grant of -key grant 7")
        finally:
            sc.stop_process(proc)
    # uas_busy.xml: INVITE -> 486 (ACKed), exit 0
    port = sc.free_port()
    proc = sc.sipp_uas("uas_busy", port, WORK / "busy", calls=1)
    try:
        ex = sc.sip_exchange_with((sc.LOCALHOST, port), lambda local: sc.raw_invite(local, f"sip:busy@{sc.LOCALHOST}:{port}"), "udp", 3.0)
        try:
            code = proc.wait(10)
        except subprocess.TimeoutExpired:
            code = None
        out(f"uas_busy.xml: {ex.describe()}, sipp exit {code}")
        check(ex.final is not None and ex.final.status == 486 and code == 0, f"busy: {ex.describe()}, exit {code}")
    finally:
        sc.stop_process(proc)


TESTS = [
    ("baresip_call", test_baresip_call),
    ("baresip_g711_vp8", test_baresip_g711_vp8),
    ("sipp_g711", test_sipp_g711),
    ("sipp_negative", test_sipp_negative),
    ("sipp_cancel", test_sipp_cancel),
    ("sipp_reinvite", test_sipp_reinvite),
    ("sipp_unknown", test_sipp_unknown),
    ("sipp_vanish", test_sipp_vanish),
    ("sipp_50_calls", test_sipp_50_calls),
    ("raw_sip", test_raw_sip),
    ("sipp_callees", test_sipp_callees),
]


def main(argv: list[str]) -> int:
    def on_signal(signum, _frame) -> None:
        sc.kill_all()
        print(f"sip selftest: interrupted by {signal.Signals(signum).name}", flush=True)
        sys.exit(128 + signum)

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    selected = [t for t in TESTS if not argv or any(a in t[0] for a in argv)]
    for name, fn in selected:
        print(f"{name} ...", flush=True)
        start = time.monotonic()
        try:
            fn()
            RESULTS.append((name, True))
            print(f"  PASS {name} ({time.monotonic() - start:.1f} s)", flush=True)
        except Exception as e:
            RESULTS.append((name, False))
            print(f"  FAIL {name} ({time.monotonic() - start:.1f} s): {type(e).__name__}: {e}", flush=True)
            if not isinstance(e, AssertionError):
                traceback.print_exc()
    sc.kill_all()
    passed = sum(ok for _, ok in RESULTS)
    failed = len(RESULTS) - passed
    if failed:
        print(f"work directory (logs, WAVs, snapshots): {WORK}")
    else:
        shutil.rmtree(WORK, ignore_errors=True)
    print(f"sip selftest: {passed} passed, {failed} failed", flush=True)
    return 1 if failed or not passed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
