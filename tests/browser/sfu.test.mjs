#!/usr/bin/env node
// End to end in a real browser: Debian's headless Chromium (/usr/bin/chromium), driven by
// playwright-core, publishes its fake camera and microphone to `mcu serve --dev` over WHIP and
// plays them back over WHEP in a second browser context.
//
//   scripts/browser-setup.sh && node tests/browser/sfu.test.mjs
//
// Starts `target/debug/mcu serve --dev --http-listen 127.0.0.1:0` (or $MCU_BIN) and reads the
// address it prints; serves tests/browser/pages/ from a static HTTP server on 127.0.0.1 port 0
// (getUserMedia needs an http origin, and 127.0.0.1 counts as secure); publish.html publishes
// as participant "cam" in room "browser", play.html plays /whep/browser/cam. Checks: both
// connect; the player decodes >= 30 frames within 15 s of connecting, at the publisher's capture
// size; the frame shows the fake camera's picture (green background, moving bright disc); audio
// energy arrives; the same video codec on both sides (printed); a recording of the tracks
// (`mcu record start --tracks`, 4 s, into a temporary --recording-dir) whose camera file holds
// the codec the browser sends at its capture width, with >= 60 frames ffprobe decodes (AV1
// included: its av1C); DELETE of both sessions; then
// /metrics gauges back to 0. Closes with "browser sfu: N passed, M failed" and exits non-zero on
// any failure; the server log, SDPs and page logs of a failed run stay in the directory printed.
// MCU_BROWSER_SERVER_LOG sets the server's log filter (e.g. "debug"); MCU_BROWSER_VIDEO_CODEC
// (VP8, H264, AV1) makes the publisher offer that codec first; MCU_BROWSER_KEEP_LOGS=1 keeps the
// log directory of a passing run too.

import { execFileSync } from "node:child_process";
import dgram from "node:dgram";
import { once } from "node:events";
import fs from "node:fs";
import http from "node:http";
import path from "node:path";
import { fileURLToPath } from "node:url";

import { CHROMIUM, MCU_BIN, createHarness, fetchMetrics, newLoggedPage, say, sleep, waitFor } from "./lib.mjs";

const HERE = path.dirname(fileURLToPath(import.meta.url));
const PAGES = path.join(HERE, "pages");

// The publisher's preferred video codec (VP8, H264, AV1); unset: Chromium's own order (VP8 first).
const VIDEO_CODEC = process.env.MCU_BROWSER_VIDEO_CODEC || "";
// MCU_BROWSER_SIMULCAST=1: the publisher sends three simulcast layers (q, h, f). The SFU
// forwards the highest layer that flows (Chromium's bandwidth estimate may never enable f), and
// the player's WebSocket (same identity as its WHEP session) caps it at layer 0 and lifts the
// cap again: the picture shrinks to a quarter of the capture and grows back ("layers" check).
const SIMULCAST = process.env.MCU_BROWSER_SIMULCAST === "1";
const ROOM = "browser";
const NAME = "cam";
const VIEWER = "viewer";
// Generous for a loaded 2-core VM: a debug server and two renderers share it.
const CONNECT_TIMEOUT = 30_000; // ms, getUserMedia + gathering + WHIP/WHEP + ICE + DTLS
const FRAMES_TIMEOUT = 15_000; // ms after the player connects
const MIN_FRAMES = 30;
const METRICS_TIMEOUT = 10_000; // ms for the gauges to drop after DELETE

// Chromium's fake camera paints an I420 frame whose U and V planes stay 0 and whose Y plane is 0
// except for the sweeping disc ("pacman", radius min(w, h) / 4 at the centre), the timer text
// and four gradient squares in the corners, which are painted bright. U = V = 0 is a deep green:
// Y = 0 shows as about (0, 135, 0) in BT.601 limited range, Y = 255 as about (74, 255, 20).
// (With MCU_BROWSER_VIDEO_CODEC=AV1 the background shows as (0, 77, 0), BT.709: the colour space
// travels in the color-space RTP header extension, which the SFU neither negotiates nor forwards;
// see README.md.)
const BACKGROUND_RGB = [0, 135, 0]; // the plain background band below the disc
const BACKGROUND_TOLERANCE = 25; // per channel, for the codec and colour conversions
const FRAME_G_MIN = 110; // mean G of the whole frame (measured: about 146)
const DISC_SPREAD_MIN = 0.05; // the disc's bright share must change across the samples

const RECORD_MS = 4000; // the track recording of the "record" check
const RECORD_MIN_FRAMES = 60;

const REC_DIR = fs.mkdtempSync(path.join(fs.realpathSync("/tmp"), "mcu-browser-rec-"));
// Every connection of this test goes through one UDP port (the server's mux); the demo test
// keeps a port per connection, so both paths meet a real browser.
const UDP_PORT = await freeUdpPort();
const h = createHarness({ logPrefix: "mcu-browser-", serverArgs: ["--recording-dir", REC_DIR, "--rtc-udp", `127.0.0.1:${UDP_PORT}`] });
const { LOG_DIR, elapsed } = h;
h.onCleanup(() => fs.rmSync(REC_DIR, { recursive: true, force: true }));

// A UDP port free on 127.0.0.1 now.
async function freeUdpPort() {
  const sock = dgram.createSocket("udp4");
  await new Promise((ok) => sock.bind(0, "127.0.0.1", ok));
  const { port } = sock.address();
  await new Promise((ok) => sock.close(ok));
  return port;
}

// The static server for tests/browser/pages/ (the pages and the script they share), stopped
// with the rest.
async function startPageServer() {
  const pageServer = http.createServer((req, res) => {
    const name = new URL(req.url, "http://x").pathname.replace(/^\/+/, "");
    if (name === "favicon.ico") {
      res.writeHead(204).end();
      return;
    }
    const type = { html: "text/html; charset=utf-8", js: "text/javascript; charset=utf-8" }[/^[a-z]+\.(html|js)$/.exec(name)?.[1]];
    if (!type || !fs.existsSync(path.join(PAGES, name))) {
      res.writeHead(404, { "Content-Type": "text/plain" }).end("not found\n");
      return;
    }
    res.writeHead(200, { "Content-Type": type, "Cache-Control": "no-store" });
    res.end(fs.readFileSync(path.join(PAGES, name)));
  });
  h.onCleanup(() => {
    pageServer.closeAllConnections?.();
    pageServer.close();
  });
  pageServer.listen(0, "127.0.0.1");
  await once(pageServer, "listening");
  return `http://127.0.0.1:${pageServer.address().port}`;
}

// Page state (status, SDPs, errors) into LOG_DIR for a failed run.
async function dumpPage(page, label, stateVar) {
  if (!page) return;
  try {
    const st = await page.evaluate((v) => window[v], stateVar);
    if (!st) return;
    if (st.offer) fs.writeFileSync(path.join(LOG_DIR, `${label}-offer.sdp`), st.offer);
    if (st.answer) fs.writeFileSync(path.join(LOG_DIR, `${label}-answer.sdp`), st.answer);
    const { offer, answer, ...rest } = st;
    fs.writeFileSync(path.join(LOG_DIR, `${label}-state.json`), JSON.stringify(rest, null, 2));
  } catch (e) {
    fs.writeFileSync(path.join(LOG_DIR, `${label}-state.json`), `unreadable: ${e}`);
  }
}

async function main() {
  const PLANNED = ["publish", "play", "frames", "size", ...(SIMULCAST ? ["layers", "composite"] : []), "colour", "audio", "codec", "record", "delete", "metrics"];
  let pubPage = null, playPage = null;
  const consoleLog = fs.createWriteStream(path.join(LOG_DIR, "console.log"));

  // Runs the planned checks in order; a check that throws fails, and so do the ones after it
  // that depend on it (the rest of the media checks), which are reported as not reached.
  const check = h.checker(["colour", "audio", "codec", "size"]);

  let base, pages, browser;
  try {
    base = await h.startServer();
    pages = await startPageServer();
    browser = await h.launchBrowser();
  } catch (e) {
    h.setupFailed(e, PLANNED);
    return;
  }
  say(`mcu at ${base}, pages at ${pages}, ${CHROMIUM} ${browser.version()}, logs in ${LOG_DIR}`);

  const newPage = (label) => newLoggedPage(browser, consoleLog, label);
  // Until the page's window[stateVar].status is "connected" (its error on "failed").
  const waitConnected = (page, stateVar, who) => waitFor(`${who} connected`, CONNECT_TIMEOUT, 200, async () => {
    const st = await page.evaluate((v) => window[v], stateVar);
    if (st.status === "failed") throw new Error(`${who}: ${st.error}`);
    return { ok: st.status === "connected", value: { status: st.status, connectionState: st.connectionState, ice: st.iceConnectionState } };
  });

  let pubInfo = null, playConnectedAt = 0, stats = null;

  await check("publish", async () => {
    pubPage = await newPage("publish");
    const whip = `${base}/whip/${ROOM}?name=${NAME}`;
    const codec = (VIDEO_CODEC ? `&codec=${encodeURIComponent(VIDEO_CODEC)}` : "") + (SIMULCAST ? "&simulcast=1" : "");
    await pubPage.goto(`${pages}/publish.html?whip=${encodeURIComponent(whip)}${codec}`);
    await waitConnected(pubPage, "pub", "publisher");
    pubInfo = await pubPage.evaluate(() => window.pub);
    return `WHIP ${pubInfo.httpStatus} ${new URL(pubInfo.location).pathname} as ${pubInfo.participant}, ` +
      `capture ${pubInfo.width}x${pubInfo.height} @ ${pubInfo.frameRate} fps (${pubInfo.tracks.map((t) => `${t.kind} "${t.label}"`).join(", ")}), connected at ${elapsed()}`;
  });

  await check("play", async () => {
    playPage = await newPage("play");
    const whep = `${base}/whep/${ROOM}/${NAME}?name=${VIEWER}`;
    await playPage.goto(`${pages}/play.html?whep=${encodeURIComponent(whep)}`);
    // A click gives the page user activation, so the unmuted <video> may autoplay whatever
    // Chromium's autoplay policy says about remote streams.
    await playPage.mouse.click(2, 2);
    await waitConnected(playPage, "play", "player");
    playConnectedAt = Date.now();
    const st = await playPage.evaluate(() => window.play);
    // Both answers name only the shared UDP port.
    const ports = new Set([pubInfo.answer, st.answer].flatMap((sdp) => [...(sdp || "").matchAll(/a=candidate:\S+ \d+ udp \d+ \S+ (\d+) typ host/gi)].map((m) => Number(m[1]))));
    if (ports.size !== 1 || !ports.has(UDP_PORT)) throw new Error(`host candidate ports ${[...ports].join(",")}, want only ${UDP_PORT}`);
    return `WHEP ${st.httpStatus} ${new URL(st.location).pathname}, tracks ${st.tracks.map((t) => t.kind).join("+")}, connected at ${elapsed()}, both on UDP port ${UDP_PORT}` +
      (st.playError ? ` (video.play(): ${st.playError})` : "");
  });

  await check("frames", async () => {
    const r = await waitFor(`${MIN_FRAMES} frames decoded`, FRAMES_TIMEOUT, 250, async () => {
      const s = await playPage.evaluate(() => window.playStats());
      return { ok: s.framesDecoded >= MIN_FRAMES && s.videoWidth > 0, value: s };
    });
    stats = r.value;
    return `${stats.framesDecoded} decoded (${stats.keyFramesDecoded} key) ${((Date.now() - playConnectedAt) / 1000).toFixed(1)} s after connecting`;
  });

  await check("size", async () => {
    const s = await playPage.evaluate(() => window.playStats());
    const detail = `<video> ${s.videoWidth}x${s.videoHeight}, inbound-rtp ${s.frameWidth}x${s.frameHeight}, publisher capture ${pubInfo.width}x${pubInfo.height}`;
    // Simulcast: the highest layer that flows, whole (half or full size; Chromium sends the
    // full one only once its bandwidth estimate allows).
    const sizes = SIMULCAST ? [1, 2] : [1];
    if (!(s.videoWidth > 0 && sizes.some((k) => s.videoWidth === pubInfo.width / k && s.videoHeight === pubInfo.height / k))) throw new Error(detail);
    return detail;
  });

  if (SIMULCAST) {
    await check("layers", async () => {
      // The player's page joins the room's WebSocket as the WHEP session's identity, subscribes
      // to the camera's tracks and caps its video at layer 0, then lifts the cap.
      const wsUrl = base.replace(/^http/, "ws") + "/ws";
      const joined = await playPage.evaluate(async ([url, room, me]) => {
        const ws = new WebSocket(url);
        window.ws = ws;
        window.wsInbox = [];
        ws.onmessage = (e) => window.wsInbox.push(JSON.parse(e.data));
        await new Promise((ok, fail) => { ws.onopen = ok; ws.onerror = () => fail(new Error("WebSocket failed")); });
        ws.send(JSON.stringify({ type: "join", room, identity: me }));
        for (let i = 0; i < 100 && !window.wsInbox.some((m) => m.type === "joined" || m.type === "error"); i++) await new Promise((r) => setTimeout(r, 50));
        return window.wsInbox.find((m) => m.type === "joined" || m.type === "error");
      }, [wsUrl, ROOM, VIEWER]);
      if (joined?.type !== "joined") throw new Error(`join: ${JSON.stringify(joined)}`);
      const cam = joined.participants.find((p) => p.id === NAME);
      const video = cam?.tracks.find((t) => t.kind === "video");
      if (!video || video.layers !== 3) throw new Error(`the socket sees ${JSON.stringify(joined.participants)}; want ${NAME} with a 3-layer video`);
      const send = (msg) => playPage.evaluate((m) => window.ws.send(JSON.stringify(m)), msg);
      const size = () => playPage.evaluate(() => window.playStats());
      const switches0 = (await fetchMetrics(base)).mcu_layer_switches_total ?? 0;
      await send({ type: "subscribe", participant: NAME, track_ids: cam.tracks.map((t) => t.track_id) });
      await send({ type: "set_layer", participant: NAME, track_id: video.track_id, max_layer: 0 });
      const low = await waitFor("the quarter-size layer", 15_000, 250, async () => {
        const s = await size();
        return { ok: s.videoWidth === pubInfo.width / 4 && s.videoHeight === pubInfo.height / 4, value: s };
      });
      await send({ type: "set_layer", participant: NAME, track_id: video.track_id, max_layer: 2 });
      const high = await waitFor("a larger layer again", 15_000, 250, async () => {
        const s = await size();
        return { ok: s.videoWidth > pubInfo.width / 4, value: s };
      });
      const errors = await playPage.evaluate(() => window.wsInbox.filter((m) => m.type === "error"));
      if (errors.length) throw new Error(`WebSocket errors: ${JSON.stringify(errors)}`);
      const m = await fetchMetrics(base);
      const switches = (m.mcu_layer_switches_total ?? 0) - switches0;
      if (!(switches >= 2)) throw new Error(`${switches} layer switches counted`);
      return `capped at layer 0: ${low.value.videoWidth}x${low.value.videoHeight}; uncapped: ${high.value.videoWidth}x${high.value.videoHeight}; ` +
        `${switches} layer switches; ${m['mcu_rtp_dropped_packets_total{reason="simulcast_layer"}'] ?? 0} packets dropped before their rid was known`;
    });

    await check("composite", async () => {
      // The room composite decodes one layer of the simulcast camera (through its own
      // forwarder subscription): the camera's moving disc shows in the middle of the canvas.
      const mixPage = await newPage("composite");
      await mixPage.goto(`${pages}/play.html?whep=${encodeURIComponent(`${base}/whep/${ROOM}`)}`);
      await mixPage.mouse.click(2, 2);
      await waitConnected(mixPage, "play", "composite player");
      await waitFor(`${MIN_FRAMES} composite frames`, FRAMES_TIMEOUT, 250, async () => {
        const s = await mixPage.evaluate(() => window.playStats());
        return { ok: s.framesDecoded >= MIN_FRAMES && s.videoWidth > 0, value: s };
      });
      const disc = [];
      let size = "";
      for (let i = 0; i < 6; i++) {
        const c = await mixPage.evaluate(() => window.frameColour());
        if (c) {
          disc.push(c.discBright);
          size = `${c.width}x${c.height}`;
        }
        await sleep(150);
      }
      const spread = Math.max(...disc) - Math.min(...disc);
      let detail = `composite ${size}, bright share of the centre box ${disc.join(" ")}`;
      if (!(spread >= DISC_SPREAD_MIN && Math.max(...disc) > 0.1)) throw new Error(`the camera's moving disc is not in the composite: ${detail}`);
      // The composite decodes the smallest layer that fills the camera's tile: the top one that
      // flows for the whole canvas, the quarter layer once an operator shrinks the tile.
      const layerNow = async () => {
        const info = await (await fetch(`${base}/rooms/${ROOM}`)).json();
        return Object.values(info.participants.find((p) => p.name === NAME)?.composite_layers ?? {})[0];
      };
      const waitLayer = (want, what) => waitFor(what, 15_000, 250, async () => {
        const l = await layerNow();
        return { ok: l === want, value: l };
      });
      const big = await waitLayer(1, "the composite on the half layer for a full-canvas tile");
      const layout = (...args) => execFileSync(MCU_BIN, ["layout", "set", ROOM, ...args, "--grpc", h.grpcUrl()], { encoding: "utf8" });
      layout("custom", "--tile", `${NAME}:40,40,120x90`);
      const small = await waitLayer(0, "the composite on the quarter layer for a 120x90 tile");
      layout("grid");
      const back = await waitLayer(1, "the composite back on the half layer");
      await mixPage.evaluate(() => window.stop());
      await mixPage.close();
      detail += `; composite decodes layer ${big.value} for the full tile, ${small.value} for a 120x90 tile, ${back.value} for the grid again`;
      return detail;
    });
  }

  await check("colour", async () => {
    // Several frames ~150 ms apart: the disc sweeps 600°/s, so its bright share changes.
    const samples = [];
    for (let i = 0; i < 6; i++) {
      const c = await playPage.evaluate(() => window.frameColour());
      if (c) samples.push(c);
      await sleep(150);
    }
    if (samples.length === 0) throw new Error("no frame to draw");
    const avg = (f) => [0, 1, 2].map((k) => Math.round(samples.reduce((a, s) => a + f(s)[k], 0) / samples.length));
    const mean = avg((s) => s.mean), bg = avg((s) => s.background);
    const disc = samples.map((s) => s.discBright);
    const spread = Math.max(...disc) - Math.min(...disc);
    const detail = `frame mean RGB ${mean.join(",")}, background band ${bg.join(",")}, bright share of the disc box ${disc.join(" ")}`;
    fs.writeFileSync(path.join(LOG_DIR, "colour.json"), JSON.stringify(samples, null, 2));
    const problems = [];
    if (mean[1] < FRAME_G_MIN) problems.push(`frame mean G ${mean[1]} < ${FRAME_G_MIN} (black or wrong picture)`);
    if (bg.some((v, k) => Math.abs(v - BACKGROUND_RGB[k]) > BACKGROUND_TOLERANCE)) {
      problems.push(`background ${bg.join(",")} is not the fake camera's ${BACKGROUND_RGB.join(",")} (± ${BACKGROUND_TOLERANCE})`);
    }
    if (spread < DISC_SPREAD_MIN) problems.push(`the disc does not move (bright share spread ${spread.toFixed(3)} < ${DISC_SPREAD_MIN})`);
    if (problems.length) throw new Error(`${problems.join("; ")} [${detail}]`);
    return detail;
  });

  await check("audio", async () => {
    const r = await waitFor("audio energy", FRAMES_TIMEOUT, 250, async () => {
      const s = await playPage.evaluate(() => window.playStats());
      return { ok: s.audioEnergy > 0, value: { audioPackets: s.audioPackets, audioSamples: s.audioSamples, audioEnergy: s.audioEnergy, audioLevel: s.audioLevel } };
    });
    const s = r.value;
    return `totalAudioEnergy ${s.audioEnergy.toExponential(3)} over ${s.audioSamples} samples (${s.audioPackets} packets), audioLevel ${s.audioLevel.toFixed(4)}`;
  });

  await check("codec", async () => {
    const p = await pubPage.evaluate(() => window.pubStats());
    const s = await playPage.evaluate(() => window.playStats());
    const detail = `publisher sends ${p.codec} (${p.encoderImplementation}, ${p.framesEncoded} frames encoded), player receives ${s.videoCodec}, audio ${s.audioCodec}`;
    const mime = (c) => (c || "").split(";")[0].toLowerCase();
    if (!s.videoCodec || mime(p.codec) !== mime(s.videoCodec)) throw new Error(`video codecs differ or missing: ${detail}`);
    if (!["video/vp8", "video/h264", "video/av1"].includes(mime(s.videoCodec))) throw new Error(`not a codec the SFU forwards: ${detail}`);
    return detail;
  });

  await check("record", async () => {
    // A server-side recording of every track as it arrived (no transcode), with the operator
    // command: the camera's file holds the codec the browser sends, and ffprobe decodes it.
    const mcu = (...args) => execFileSync(MCU_BIN, ["record", ...args, "--grpc", h.grpcUrl()], { encoding: "utf8" });
    const id = mcu("start", ROOM, "--tracks").split("\t")[0].trim();
    await sleep(RECORD_MS);
    const stopped = mcu("stop", id);
    fs.writeFileSync(path.join(LOG_DIR, "record.txt"), stopped);
    const line = stopped.split("\n").find((l) => l.trim().startsWith(`${NAME}/video`));
    if (!line) throw new Error(`no video track file in: ${stopped}`);
    const file = line.trim().split("\t")[1];
    const probe = JSON.parse(execFileSync("ffprobe", ["-v", "error", "-count_frames", "-select_streams", "v:0",
      "-show_entries", "stream=codec_name,width,height,nb_read_frames", "-of", "json", file], { encoding: "utf8" })).streams[0];
    const p = await pubPage.evaluate(() => window.pubStats());
    const sent = (p.codec || "").split(";")[0].split("/")[1]?.toLowerCase();
    const detail = `${path.basename(file)}: ${probe.codec_name} ${probe.width}x${probe.height}, ${probe.nb_read_frames} frames decoded by ffprobe (the browser sends ${sent})`;
    const widths = SIMULCAST ? [1, 2, 4].map((k) => pubInfo.width / k) : [pubInfo.width];
    if (probe.codec_name !== sent || !widths.includes(probe.width) || Number(probe.nb_read_frames) < RECORD_MIN_FRAMES) throw new Error(detail);
    return detail;
  });

  await check("delete", async () => {
    const playStatus = await playPage.evaluate(() => window.stop());
    const pubStatus = await pubPage.evaluate(() => window.stop());
    const detail = `DELETE player session ${playStatus}, publisher session ${pubStatus}`;
    if (playStatus !== 200 || pubStatus !== 200) throw new Error(detail);
    return detail;
  });

  await check("metrics", async () => {
    const r = await waitFor("gauges back to 0", METRICS_TIMEOUT, 200, async () => {
      const m = await fetchMetrics(base);
      const g = { mcu_participants: m.mcu_participants, mcu_subscribers: m.mcu_subscribers, mcu_tracks: m.mcu_tracks, mcu_rooms: m.mcu_rooms };
      return { ok: Object.values(g).every((v) => v === 0), value: { ...g, received: m.mcu_rtp_received_packets_total, forwarded: m.mcu_rtp_forwarded_packets_total } };
    });
    const v = r.value;
    return `mcu_participants ${v.mcu_participants}, subscribers ${v.mcu_subscribers}, tracks ${v.mcu_tracks}, rooms ${v.mcu_rooms}; ${v.received} RTP packets received, ${v.forwarded} forwarded`;
  });

  if (h.keepLogs()) {
    await dumpPage(pubPage, "publish", "pub");
    await dumpPage(playPage, "play", "play");
  }
  consoleLog.end();
}

await h.run("browser sfu", "server log, SDPs and page logs", main);
