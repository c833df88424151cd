#!/usr/bin/env python3
"""Self-test of mcuclient.py, without the mcu server.

* Analysis on synthetic frames (no WebRTC): colour regions, tones, audio formats.
* The offers mcuclient makes (codecs, directions, loopback-only candidates).
* Media over a real aiortc-to-aiortc loopback (no HTTP): a publisher peer connection and a
  second aiortc peer connection that answers, confirming that what is generated survives
  a VP8 / H.264 + Opus round trip and that the analysis finds it.
* The WHIP/WHEP HTTP layer against `FakeServer`: an in-process http.server whose answers
  come from aiortc peer connections and which relays each WHIP publisher to WHEP players
  (aiortc's MediaRelay), with bearer tokens, relative/absolute Locations, DELETE, errors.

Every peer connection gathers only 127.0.0.1 candidates, so all media stays on loopback.

Run: scripts/e2e-setup.sh && target/e2e-venv/bin/python tests/e2e/selftest.py [-v] [name...]
Closes with "selftest: N passed, N failed"; exits non-zero on any failure.
"""

from __future__ import annotations

import asyncio
import fractions
import http.server
import itertools
import json
import logging
import signal
import sys
import threading
import time
import traceback
import urllib.parse
from pathlib import Path
from typing import Optional

import av
import numpy as np
from aiortc import RTCPeerConnection
from aiortc.contrib.media import MediaRelay

sys.path.insert(0, str(Path(__file__).resolve().parent))
import mcuclient as mc  # noqa: E402

COLOUR_TOLERANCE = 25  # per channel, after a lossy video round trip
TONE_TOLERANCE = 5.0  # Hz

TESTS = []


def test(fn):
    TESTS.append(fn)
    return fn


def assert_colour(actual, expected, what=""):
    assert actual is not None, f"{what}: no video frames"
    diff = max(abs(a - e) for a, e in zip(actual, expected))
    assert diff <= COLOUR_TOLERANCE, f"{what}: mean colour {tuple(round(a) for a in actual)}, expected {expected}"


def assert_tone(tones, expected_hz, what=""):
    assert tones, f"{what}: no tone found"
    assert abs(tones[0] - expected_hz) <= TONE_TOLERANCE, f"{what}: dominant tones {tones}, expected {expected_hz} first"


def assert_media(media, colour, tone_hz, video_what, audio_what):
    """`media` (a MediaSink or Player) received 640x360 video of `colour` and `tone_hz` first."""
    assert media.frame_size == (640, 360), media.frame_size
    assert_colour(media.mean_colour(), colour, video_what)
    assert_tone(media.dominant_tones(), tone_hz, audio_what)


sdp_section, first_codec = mc.sdp_section, mc.first_codec


def candidate_addresses(sdp: str) -> set[str]:
    return {line.split()[4] for line in sdp.splitlines() if line.startswith("a=candidate:")}


# ----------------------------------------------------------------------------------------
# A fake WHIP/WHEP server
# ----------------------------------------------------------------------------------------


class FakeServer:
    """WHIP at POST /whip/{room}[?name=N] (Location relative: /whip/{room}/{id}, DELETE → 200)
    and WHEP at POST /whep/{room}/{name} (Location absolute, DELETE → 204), answered by aiortc
    peer connections on the test's event loop. A WHEP player receives the named publisher's
    tracks through MediaRelay (decoded and re-encoded, as aiortc does). With `token` set,
    no Authorization → 401, a wrong one → 403. `omit_etag` breaks the protocol on purpose."""

    def __init__(self, loop: asyncio.AbstractEventLoop, token: Optional[str] = None, omit_etag: bool = False) -> None:
        self.loop = loop
        self.token = token
        self.omit_etag = omit_etag
        self.relay = MediaRelay()
        self.sessions: dict[str, RTCPeerConnection] = {}
        self.publishers: dict[tuple[str, str], list] = {}  # (room, name) -> remote tracks
        self.deleted: list[str] = []
        self._ids = itertools.count(1)
        server = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def log_message(self, *args) -> None:
                logging.getLogger("fakeserver").debug(*args)

            def do_POST(self) -> None:
                server._handle(self, "POST")

            def do_DELETE(self) -> None:
                server._handle(self, "DELETE")

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.base_url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self._thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    async def __aenter__(self) -> "FakeServer":
        self._thread.start()
        return self

    async def __aexit__(self, *exc) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
        await asyncio.gather(*(pc.close() for pc in self.sessions.values()))

    def _run(self, coro):
        """Run a coroutine on the test's event loop from the HTTP thread."""
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout=30)

    def _handle(self, req: http.server.BaseHTTPRequestHandler, method: str) -> None:
        url = urllib.parse.urlsplit(req.path)
        parts = [urllib.parse.unquote(p) for p in url.path.strip("/").split("/")]
        body = req.rfile.read(int(req.headers.get("Content-Length") or 0)).decode()
        status, headers, text = self._route(method, url.path, parts, urllib.parse.parse_qs(url.query), req.headers, body)
        req.send_response(status)
        for k, v in headers.items():
            req.send_header(k, v)
        data = text.encode()
        req.send_header("Content-Length", str(len(data)))
        req.end_headers()
        req.wfile.write(data)

    def _route(self, method, path, parts, query, headers, body) -> tuple[int, dict, str]:
        if self.token is not None:
            auth = headers.get("Authorization")
            if auth is None:
                return 401, {"WWW-Authenticate": "Bearer"}, "missing token"
            if auth != f"Bearer {self.token}":
                return 403, {}, "bad token"
        if method == "DELETE":
            pc = self.sessions.pop("/".join(parts), None)
            if pc is None:
                return 404, {}, "no such session"
            self._run(pc.close())
            self.deleted.append(path)
            return (200 if parts[0] == "whip" else 204), {}, ""
        if headers.get("Content-Type") != "application/sdp":
            return 415, {}, "not application/sdp"
        if len(parts) == 2 and parts[0] == "whip":
            room, name = parts[1], query.get("name", ["anonymous"])[0]
            answer, sid = self._run(self._answer_whip(room, name, body))
            location = f"/whip/{urllib.parse.quote(room)}/{sid}"
        elif len(parts) == 3 and parts[0] == "whep":
            room, name = parts[1], parts[2]
            if (room, name) not in self.publishers:
                return 404, {}, f"no publisher {name} in room {room}"
            answer, sid = self._run(self._answer_whep(room, name, body))
            location = f"{self.base_url}/whep/{urllib.parse.quote(room)}/{urllib.parse.quote(name)}/{sid}"
        else:
            return 404, {}, "unknown endpoint"
        reply = {"Content-Type": "application/sdp", "Location": location}
        if not self.omit_etag:
            reply["ETag"] = f'"{sid}"'
        return 201, reply, answer

    async def _answer_whip(self, room: str, name: str, offer: str) -> tuple[str, str]:
        pc = mc.new_peer_connection()
        tracks: list = []
        pc.on("track", tracks.append)  # fires during setRemoteDescription
        answer = await mc.answer_offer(pc, offer)
        self.publishers[(room, name)] = tracks
        sid = f"s{next(self._ids)}"
        self.sessions[f"whip/{room}/{sid}"] = pc
        return answer, sid

    async def _answer_whep(self, room: str, name: str, offer: str) -> tuple[str, str]:
        pc = mc.new_peer_connection()

        def add_tracks() -> None:
            for track in self.publishers[(room, name)]:
                pc.addTrack(self.relay.subscribe(track))

        answer = await mc.answer_offer(pc, offer, add_tracks)
        sid = f"s{next(self._ids)}"
        self.sessions[f"whep/{room}/{name}/{sid}"] = pc
        return answer, sid


# ----------------------------------------------------------------------------------------
# Tests
# ----------------------------------------------------------------------------------------


def synthetic_audio_frame(samples: np.ndarray, fmt: str, layout: str, rate: int, pts: int) -> av.AudioFrame:
    """`samples` (float mono, [-1, 1]) as an AudioFrame of the given format and layout."""
    channels = av.AudioLayout(layout).nb_channels
    if fmt.startswith("s16"):
        data = np.round(samples * 32767).astype(np.int16)
    else:
        data = samples.astype(np.float32)
    if fmt.endswith("p"):
        data = np.tile(data, (channels, 1))
    else:
        data = np.repeat(data, channels).reshape(1, -1)
    frame = av.AudioFrame.from_ndarray(data, format=fmt, layout=layout)
    frame.sample_rate = rate
    frame.pts = pts
    frame.time_base = fractions.Fraction(1, rate)
    return frame


@test
async def analysis_on_synthetic_media():
    # Video: left half red, right half blue; the mean of regions and of the centre.
    sink = mc.MediaSink()
    rgb = np.zeros((360, 640, 3), dtype=np.uint8)
    rgb[:, :320] = (255, 0, 0)
    rgb[:, 320:] = (0, 0, 255)
    for _ in range(3):
        sink.add_video_frame(av.VideoFrame.from_ndarray(rgb, format="rgb24"))
    assert sink.video_frame_count == 3 and sink.frame_size == (640, 360)
    assert sink.mean_colour(region=(0, 0, 0.5, 1)) == (255.0, 0.0, 0.0)
    assert sink.mean_colour(region=(0.5, 0, 1, 1)) == (0.0, 0.0, 255.0)
    assert sink.mean_colour() == (127.5, 0.0, 127.5)

    # Audio: two tones in every sample format aiortc or a server might hand us.
    rate = 48_000
    for fmt, layout in [("s16", "stereo"), ("s16p", "stereo"), ("s16", "mono"), ("flt", "stereo"), ("fltp", "mono")]:
        sink = mc.MediaSink()
        assert sink.dominant_tones() == [] and sink.tone_power(440) == -120.0
        for i in range(75):  # 1.5 s of 20 ms frames
            n = np.arange(i * 960, (i + 1) * 960)
            wave = 0.3 * np.sin(2 * np.pi * 440 * n / rate) + 0.1 * np.sin(2 * np.pi * 662.5 * n / rate)
            sink.add_audio_frame(synthetic_audio_frame(wave, fmt, layout, rate, i * 960))
        tones = sink.dominant_tones(3)
        assert len(tones) == 2, f"{fmt}/{layout}: tones {tones}"
        assert abs(tones[0] - 440) < 0.5 and abs(tones[1] - 662.5) < 0.5, f"{fmt}/{layout}: tones {tones}"
        assert abs(sink.tone_amplitude(440) - 0.3) < 0.01, f"{fmt}/{layout}: {sink.tone_amplitude(440)}"
        assert abs(sink.tone_power(440) - 20 * np.log10(0.3)) < 0.2
        assert sink.has_tone(662) and not sink.has_tone(550)
        assert abs(sink.audio_seconds - 1.5) < 1e-9

    # Silence and noise give no tones.
    sink = mc.MediaSink()
    noise = np.random.default_rng(1).normal(0, 0.001, 48_000)
    sink.add_audio_frame(synthetic_audio_frame(noise, "s16", "mono", rate, 0))
    assert sink.dominant_tones() == [], sink.dominant_tones()

    # What the generators make, before any codec.
    video = mc.ColourVideoTrack((10, 200, 30))
    frame = await video.recv()
    assert (frame.width, frame.height) == (640, 360) and frame.format.name == "yuv420p"
    back = frame.to_ndarray(format="rgb24").reshape(-1, 3).mean(axis=0)
    assert np.all(np.abs(back - (10, 200, 30)) <= 3), back
    audio = mc.ToneAudioTrack(440)
    sink = mc.MediaSink()
    for _ in range(50):
        f = await audio.recv()
        assert (f.format.name, f.layout.name, f.samples, f.sample_rate) == ("s16", "mono", 960, 48_000)
        sink.add_audio_frame(f)
    assert_tone(sink.dominant_tones(), 440, "generator")
    assert abs(sink.tone_amplitude(440) - 0.3) < 0.01

    # `duration` ends the tracks after that much media.
    for track, frames in [(mc.ToneAudioTrack(440, duration=0.1), 5), (mc.ColourVideoTrack((0, 0, 0), duration=0.1), 3)]:
        for _ in range(frames):
            await track.recv()
        try:
            await track.recv()
            raise AssertionError(f"{track.kind} track did not end")
        except mc.MediaStreamError:
            assert track.readyState == "ended"


@test
async def offers():
    pc, _ = mc.publisher_pc((255, 0, 0), 440, "VP8")
    sdp = await mc.create_offer(pc)
    await pc.close()
    video, audio = sdp_section(sdp, "video"), sdp_section(sdp, "audio")
    assert "a=sendonly" in video and "a=sendonly" in audio
    rtpmaps = [line.split(" ", 1)[1] for line in video if line.startswith("a=rtpmap:")]
    assert rtpmaps == ["VP8/90000", "rtx/90000"], rtpmaps
    assert any("opus/48000/2" in line for line in audio)
    assert candidate_addresses(sdp) == {"127.0.0.1"}, candidate_addresses(sdp)

    pc, _ = mc.publisher_pc((255, 0, 0), None, "H264")
    sdp = await mc.create_offer(pc)
    await pc.close()
    assert "m=audio" not in sdp
    video = sdp_section(sdp, "video")
    fmtps = [line for line in video if line.startswith("a=fmtp:") and "apt=" not in line]
    assert len(fmtps) == 2 and all("packetization-mode=1" in f for f in fmtps), fmtps
    assert {f.rsplit("profile-level-id=", 1)[1] for f in fmtps} == {"42001f", "42e01f"}

    try:
        mc.publisher_pc((255, 0, 0), None, "AV1")
        raise AssertionError("AV1 accepted")
    except ValueError:
        pass

    pc, _ = mc.player_pc()
    sdp = await mc.create_offer(pc)
    await pc.close()
    assert "a=recvonly" in sdp_section(sdp, "video") and "a=recvonly" in sdp_section(sdp, "audio")


async def loopback(colour, tone_hz, codec):
    """Publisher pc -> an answering aiortc pc with a MediaSink, no HTTP; returns the sink."""
    pub, tracks = mc.publisher_pc(colour, tone_hz, codec)
    sub = mc.new_peer_connection()
    sink = mc.MediaSink()
    sink.attach(sub)
    try:
        offer = await mc.create_offer(pub)
        answer = await mc.answer_offer(sub, offer)
        assert candidate_addresses(answer) == {"127.0.0.1"}
        await mc.apply_answer(pub, answer)
        await sink.wait_media(timeout=20, video_frames=45, audio_seconds=1.0)
        assert first_codec(answer, "video") == codec, first_codec(answer, "video")
        return sink
    finally:
        await sink.stop()
        for t in tracks:
            t.stop()
        await pub.close()
        await sub.close()


@test
async def loopback_vp8_opus():
    sink = await loopback((255, 0, 0), 440, "VP8")
    assert_media(sink, (255, 0, 0), 440, "VP8", "Opus")
    # Generated at −10.5 dBFS mono; aiortc's upmix to stereo for Opus takes 3 dB off.
    assert abs(sink.tone_power(440) - (-13.5)) < 1.5, sink.tone_power(440)


@test
async def loopback_h264_opus():
    sink = await loopback((0, 200, 60), 660, "H264")
    assert_media(sink, (0, 200, 60), 660, "H.264", "Opus")


@test
async def whip_whep_through_fake_server():
    async with FakeServer(asyncio.get_running_loop()) as server:
        publisher = await mc.publish(server.base_url, "room 1", colour=(0, 0, 255), tone_hz=880, name="alice")
        assert publisher.location.startswith(server.base_url + "/whip/room%201/"), publisher.location  # made absolute
        assert publisher.etag.startswith('"s')
        player = await mc.play(server.base_url, "/whep/room%201/alice")
        assert player.location.startswith(server.base_url + "/whep/"), player.location
        try:
            await player.wait_media(timeout=20, video_frames=45, audio_seconds=1.0)
            await player.wait_connected(timeout=1)
            assert_media(player, (0, 0, 255), 880, "WHEP", "WHEP")
            assert player.has_tone(880)
        finally:
            await player.close()
            await publisher.close()
        assert (player.delete_status, publisher.delete_status) == (204, 200)
        assert server.deleted == [urllib.parse.urlsplit(u).path for u in (player.location, publisher.location)]
        assert player.pc.connectionState == "closed" and publisher.pc.connectionState == "closed"
        await player.close()  # idempotent: no second DELETE
        assert len(server.deleted) == 2

        # DELETE of a resource that is gone: the status is reported.
        again = mc.Session(player.pc, "", mc.SdpExchange(201, player.location, "x", "", {}), None)
        try:
            await again.close()
            raise AssertionError("DELETE of a deleted session succeeded")
        except mc.HttpStatusError as e:
            assert (e.method, e.status) == ("DELETE", 404)


@test
async def cli_against_fake_server():
    """The CLI as a harness runs it: publish in the background, play with --json, then
    SIGTERM the publisher, which must still DELETE its session and exit 0."""
    async with FakeServer(asyncio.get_running_loop()) as server:
        script = str(Path(__file__).resolve().parent / "mcuclient.py")
        publisher = await asyncio.create_subprocess_exec(
            sys.executable, script, "publish", "--url", server.base_url, "--room", "r", "--name", "bob",
            "--colour", "255,255,0", "--tone", "523", "--seconds", "60",
            stdout=asyncio.subprocess.PIPE,
        )
        try:
            line = await asyncio.wait_for(publisher.stdout.readline(), 20)
            published = json.loads(line)
            assert published["location"].startswith(server.base_url + "/whip/r/"), published
            player = await asyncio.create_subprocess_exec(
                sys.executable, script, "play", "--url", server.base_url, "--path", "/whep/r/bob",
                "--seconds", "3", "--json",
                stdout=asyncio.subprocess.PIPE,
            )
            out, _ = await asyncio.wait_for(player.communicate(), 30)
            assert player.returncode == 0, player.returncode
            summary = json.loads(out)
            assert summary["frames"] >= 45 and (summary["width"], summary["height"]) == (640, 360), summary
            assert_colour(summary["mean_rgb"], (255, 255, 0), "CLI")
            assert_tone(summary["tones"], 523, "CLI")
            assert summary["audio_seconds"] > 1.5, summary
        finally:
            if publisher.returncode is None:
                publisher.send_signal(signal.SIGTERM)
            await asyncio.wait_for(publisher.wait(), 20)
        assert publisher.returncode == 0, publisher.returncode
        assert urllib.parse.urlsplit(published["location"]).path in server.deleted, server.deleted
        assert len(server.deleted) == 2  # the player's and the publisher's

        bad = await asyncio.create_subprocess_exec(
            sys.executable, script, "play", "--url", server.base_url, "--path", "/whep/r/nobody", "--seconds", "1",
            stderr=asyncio.subprocess.PIPE,
        )
        _, err = await asyncio.wait_for(bad.communicate(), 20)
        assert bad.returncode == 2 and b"HTTP 404" in err, (bad.returncode, err)


async def expect_status(coro, status: int, body_part: str) -> None:
    try:
        session = await coro
    except mc.HttpStatusError as e:
        assert e.status == status, f"HTTP {e.status}, expected {status}"
        assert body_part in e.body, e.body
        assert f"HTTP {status}" in str(e)
    else:
        await session.close()
        raise AssertionError(f"expected HTTP {status}, got a session")


@test
async def http_errors():
    async with FakeServer(asyncio.get_running_loop(), token="s3cret") as server:
        url = server.base_url
        await expect_status(mc.publish(url, "r", tone_hz=None), 401, "missing token")
        await expect_status(mc.publish(url, "r", tone_hz=None, token="wrong"), 403, "bad token")
        await expect_status(mc.play(url, "/whep/r/nobody", token="s3cret"), 404, "no publisher nobody")
        await expect_status(mc.play(url, "/nowhere", token="s3cret"), 404, "unknown endpoint")
        publisher = await mc.publish(url, "r", tone_hz=None, token="s3cret")
        await publisher.close()
        assert publisher.delete_status == 200
    async with FakeServer(asyncio.get_running_loop(), omit_etag=True) as server:
        try:
            session = await mc.publish(server.base_url, "r", colour=None)
            await session.close()
            raise AssertionError("a 201 without ETag was accepted")
        except mc.ProtocolError as e:
            assert "no ETag" in str(e), e


@test
async def location_and_ice_helpers():
    assert mc.whip_url("http://h:1/", "a b", "x&y") == "http://h:1/whip/a%20b?name=x%26y"
    assert mc.loopback_ice_addresses("http://127.0.0.1:8080") == ["127.0.0.1"]
    assert mc.loopback_ice_addresses("http://localhost:8080") == ["127.0.0.1"]
    assert mc.loopback_ice_addresses("http://[::1]:8080") == ["::1"]
    assert mc.loopback_ice_addresses("https://example.com") is None
    assert mc._parse_colour("1,2,3") == (1, 2, 3)
    answer = (
        "v=0\r\nm=audio 9 UDP/TLS/RTP/SAVPF 96\r\n"
        "a=candidate:1 1 udp 2130706431 192.0.2.2 5000 typ host\r\n"
        "a=candidate:2 1 udp 2130706431 127.0.0.1 5001 typ host\r\n"
        "a=end-of-candidates\r\n"
    )
    assert mc.filter_candidates(answer, ["127.0.0.1"]) == answer.replace(
        "a=candidate:1 1 udp 2130706431 192.0.2.2 5000 typ host\r\n", ""
    )


# ----------------------------------------------------------------------------------------


async def run(selected: list[str]) -> int:
    # Every peer connection in this process: loopback candidates only.
    mc.use_ice_host_addresses(["127.0.0.1"])
    passed = failed = 0
    for fn in TESTS:
        if selected and fn.__name__ not in selected:
            continue
        start = time.monotonic()
        try:
            await asyncio.wait_for(fn(), timeout=90)
        except Exception:
            failed += 1
            print(f"FAIL {fn.__name__} ({time.monotonic() - start:.1f} s)")
            traceback.print_exc()
        else:
            passed += 1
            print(f"ok   {fn.__name__} ({time.monotonic() - start:.1f} s)")
        sys.stdout.flush()
    print(f"selftest: {passed} passed, {failed} failed")
    return 1 if failed or not passed else 0


if __name__ == "__main__":
    args = sys.argv[1:]
    verbose = "-v" in args
    logging.basicConfig(level=logging.INFO if verbose else logging.WARNING, stream=sys.stderr)
    sys.exit(asyncio.run(run([a for a in args if a != "-v"])))
