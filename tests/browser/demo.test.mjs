#!/usr/bin/env node
// The demo page `mcu serve` serves at `/`, driven in headless Chromium (Debian's
// /usr/bin/chromium, playwright-core) by two people, "anna" and "ben", in room "demo".
//
//   scripts/browser-setup.sh && node tests/browser/demo.test.mjs
//
// Starts `target/debug/mcu serve --dev --http-listen 127.0.0.1:0 --mix-width 640
// --mix-height 360` (or $MCU_BIN) and opens `/?room=demo&name=anna` and `/?room=demo&name=ben`
// from the server itself, each in its own browser context (fake camera and microphone, the flags
// of sfu.test.mjs). Both click "Join: MCU mix" (POST /mcu/demo: publish + receive the room
// composite and their own audio mix). Checks: both reach mode "mcu" without an error; each
// decodes >= 30 frames of the composite at 640x360; the composite (the <video> labelled "room
// mix", drawn on a canvas) shows the fake camera's picture in its left (anna) and right (ben)
// halves, each a tile of its own (the camera's disc at each half's centre), not the canvas
// background (16, 16, 24); audio energy arrives on both (each hears the other's beeps). Then
// anna uses the page's layout switcher (gRPC-web to the control API; the server runs with
// --grpc-listen 127.0.0.1:0 and the page finds the port through GET /control): "presentation"
// with ben as presenter, then "active speaker" with the spotlight on anna, then "grid" again;
// each time the page's status says "ok: <layout>", GetLayout (gRPC-web from here, encoded by
// hand as the page does) returns that kind and spotlight, and anna's composite changes
// arrangement (regions of the picture: presentation = ben large on the left, anna's thumbnail
// in a right-hand strip, the canvas background above and below it, the letterbox black; active
// speaker = anna large on top, ben's thumbnail centred in a bottom strip between canvas
// background; grid = the two tiles again). A grid with gap 999 shows "error: INVALID_ARGUMENT:
// layout.grid.gap: ..." and changes nothing (GetLayout: still grid); a control API URL that
// nobody listens on shows "error: UNAVAILABLE: ..." while the page stays in the MCU mix and its
// video keeps decoding, and the next call with the right URL succeeds. Then
// anna leaves and joins "SFU tracks" (WHIP publish + WHEP play of everyone listed by GET
// /rooms/demo): she plays ben's forwarded tracks (ben, an MCU participant, publishes too).
// Finally both leave: the pages stay idle across the SFU list's 3 s refresh, /metrics shows
// mcu_participants, mcu_subscribers and mcu_tracks 0 within 5 s, and the room goes when the
// composite idles out (mcu_rooms 0). Closes with "browser demo: N passed, M failed" and exits
// non-zero on any failure; the server log, page state, console, sampled colours, a PNG of each
// page's composite and its RTP numbers (a failed picture check) stay in the directory printed
// for a failed run. MCU_BROWSER_SERVER_LOG sets
// the server's log filter; MCU_BROWSER_KEEP_LOGS=1 keeps the log directory of a passing run;
// MCU_BROWSER_DEMO_PAGE=<file> makes the browser load that file as `/` instead of the page compiled
// into the server (to try an edited server/web/index.html without a rebuild; all else still
// comes from the server).

import fs from "node:fs";
import net from "node:net";
import path from "node:path";

import { CHROMIUM, MCU_BIN, ROOT, createHarness, fetchMetrics, newLoggedPage, parseMetrics, say, sleep, waitFor } from "./lib.mjs";

const PAGE_SOURCE = path.join(ROOT, "server", "web", "index.html"); // compiled into the server
const DEMO_PAGE = process.env.MCU_BROWSER_DEMO_PAGE || ""; // a file to load as `/`

const ROOM = "demo";
const MIX_WIDTH = 640, MIX_HEIGHT = 360; // --mix-width/--mix-height: small, to spare the CPU
const JOIN_TIMEOUT = 30_000; // ms, getUserMedia + gathering + POST + ICE + DTLS
const COMPOSITE_TIMEOUT = 20_000; // ms after joining: frames, picture, audio of the composite
const SFU_TIMEOUT = 15_000; // ms after "Join: SFU tracks" for ben's forwarded video
const METRICS_TIMEOUT = 5_000; // ms for the gauges to reach 0 after both leave
const COMPOSITE_STOP_TIMEOUT = 12_000; // ms for the room to go: the composite idles out after 5 s
const MIN_FRAMES = 30;

// Colours (see sfu.test.mjs): Chromium's fake camera is I420 with U = V = 0 and Y = 0 but for the
// sweeping disc, timer text and corner squares, so its background shows as about (0, 135, 0);
// the composite's canvas background is (16, 16, 24) and a tile with no video yet (48, 48, 56).
// Two tiles in a 640x360 grid are 320x360 each, the camera picture scaled to cover (cropped at
// the sides): the band at 79-96 % of the height is the camera's plain background band, clear of
// the disc (which sits at the centre with radius min(w, h) / 4).
const CAMERA_RGB = [0, 135, 0];
const CANVAS_RGB = [16, 16, 24];
const TOLERANCE = 25; // per channel, for the two codec passes and the colour conversions
const DISC_MIN = 0.1; // bright share at a tile's centre (the sweeping disc; 0 when it is not there)
const HALF_G_MIN = 100; // mean G of a whole half showing the camera (all but the disc is green)

const h = createHarness({ logPrefix: "mcu-browser-demo-", serverArgs: ["--mix-width", String(MIX_WIDTH), "--mix-height", String(MIX_HEIGHT)] });
const { LOG_DIR, elapsed } = h;

const near = (rgb, ref, tol = TOLERANCE) => rgb.every((v, k) => Math.abs(v - ref[k]) <= tol);
const rgbStr = (rgb) => rgb.map((v) => Math.round(v)).join(",");

// In the page: the <video> under the label starting with `labelPrefix`, drawn on a canvas at its
// own size. Per half (left, right): mean RGB of the whole half, of the band at 79-96 % of the
// height (x 10-90 % of the half), the share of pixels within 12 of the canvas background, and
// the share of bright pixels (G > 200) in a square of side min(half, h) / 4 at the half's centre
// (inside the disc of a camera picture centred there; with one full-width picture instead of two
// tiles the disc sits at the frame's centre and that square is plain background).
// null while the element is missing or has no picture yet.
function pictureInPage([labelPrefix, canvasRgb]) {
  const box = [...document.querySelectorAll(".remote")].find((b) => (b.querySelector(".label")?.textContent || "").startsWith(labelPrefix));
  const video = box?.querySelector("video");
  if (!video || !video.videoWidth || !video.videoHeight) return null;
  const w = video.videoWidth, h = video.videoHeight;
  const canvas = document.createElement("canvas");
  canvas.width = w;
  canvas.height = h;
  const ctx = canvas.getContext("2d", { willReadFrequently: true });
  ctx.drawImage(video, 0, 0, w, h);
  const px = ctx.getImageData(0, 0, w, h).data;
  const region = (x0, y0, x1, y1) => {
    let r = 0, g = 0, b = 0, n = 0, bg = 0;
    for (let y = y0; y < y1; y++) {
      for (let x = x0; x < x1; x++) {
        const i = (y * w + x) * 4;
        r += px[i]; g += px[i + 1]; b += px[i + 2]; n++;
        if (Math.abs(px[i] - canvasRgb[0]) <= 12 && Math.abs(px[i + 1] - canvasRgb[1]) <= 12 && Math.abs(px[i + 2] - canvasRgb[2]) <= 12) bg++;
      }
    }
    return { mean: [r / n, g / n, b / n].map((v) => Math.round(v * 10) / 10), canvasShare: Math.round((bg / n) * 1000) / 1000 };
  };
  const half = Math.floor(w / 2);
  const halves = [0, half].map((x0) => {
    const all = region(x0, 0, x0 + half, h);
    const band = region(x0 + Math.floor(half * 0.1), Math.floor(h * 0.79), x0 + Math.floor(half * 0.9), Math.floor(h * 0.96));
    const r = Math.floor(Math.min(half, h) / 8), cx = x0 + Math.floor(half / 2), cy = Math.floor(h / 2);
    let bright = 0, n = 0;
    for (let y = cy - r; y < cy + r; y++) {
      for (let x = cx - r; x < cx + r; x++) {
        if (px[(y * w + x) * 4 + 1] > 200) bright++;
        n++;
      }
    }
    return { mean: all.mean, canvasShare: all.canvasShare, band: band.mean, disc: Math.round((bright / n) * 1000) / 1000 };
  });
  return { width: w, height: h, left: halves[0], right: halves[1], paused: video.paused, currentTime: video.currentTime };
}

// In the page, for a failed run: the <video> under `labelPrefix` as a PNG data URL, and the
// senders' and receivers' numbers of every connection (the page's `pcs`).
async function diagnosticsInPage(labelPrefix) {
  const box = [...document.querySelectorAll(".remote")].find((b) => (b.querySelector(".label")?.textContent || "").startsWith(labelPrefix));
  const video = box?.querySelector("video");
  let png = null;
  if (video && video.videoWidth) {
    const c = document.createElement("canvas");
    c.width = video.videoWidth;
    c.height = video.videoHeight;
    c.getContext("2d").drawImage(video, 0, 0);
    png = c.toDataURL("image/png");
  }
  const rtp = [];
  for (const pc of pcs) {
    const r = await pc.getStats();
    r.forEach((x) => {
      if ((x.type === "outbound-rtp" || x.type === "inbound-rtp") && x.kind === "video") {
        const keep = ["type", "frameWidth", "frameHeight", "framesEncoded", "framesDecoded", "keyFramesEncoded", "keyFramesDecoded", "pliCount", "firCount", "nackCount", "packetsLost", "qualityLimitationReason", "qualityLimitationResolutionChanges", "encoderImplementation", "decoderImplementation"];
        rtp.push(Object.fromEntries(keep.filter((k) => x[k] !== undefined).map((k) => [k, x[k]])));
      }
    });
  }
  return { png, rtp };
}

async function saveDiagnostics(page, name, labelPrefix) {
  try {
    const d = await page.evaluate(diagnosticsInPage, labelPrefix);
    if (d.png) fs.writeFileSync(path.join(LOG_DIR, `${name}-${labelPrefix.replace(/\W+/g, "-")}.png`), Buffer.from(d.png.split(",")[1], "base64"));
    fs.writeFileSync(path.join(LOG_DIR, `${name}-rtp.json`), JSON.stringify(d.rtp, null, 2));
  } catch (e) {
    fs.writeFileSync(path.join(LOG_DIR, `${name}-rtp.json`), `unreadable: ${e}`);
  }
}

// The problems with a sample of the composite (empty: both halves show the camera).
function compositeProblems(pic) {
  if (!pic) return ["no picture in the room mix <video>"];
  const out = [];
  for (const side of ["left", "right"]) {
    const s = pic[side];
    if (!near(s.band, CAMERA_RGB)) out.push(`${side} band ${rgbStr(s.band)} is not the fake camera's ${rgbStr(CAMERA_RGB)} (± ${TOLERANCE})`);
    if (s.mean[1] < HALF_G_MIN) out.push(`${side} half mean ${rgbStr(s.mean)}: G < ${HALF_G_MIN}`);
    if (near(s.mean, CANVAS_RGB, 12) || s.canvasShare > 0.5) out.push(`${side} half is the canvas background (${rgbStr(s.mean)}, ${s.canvasShare} of its pixels)`);
    if (s.disc < DISC_MIN) out.push(`${side} half: no disc at its centre (bright share ${s.disc} < ${DISC_MIN}): not a tile of its own`);
  }
  return out;
}

// ───── gRPC-web from here (as the page does it, written independently): GetLayout ─────

const pbVarint = (n) => {
  const out = [];
  while (n > 127) { out.push((n % 128) | 128); n = Math.floor(n / 128); }
  out.push(n);
  return out;
};
const pbStr = (field, s) => {
  const b = [...Buffer.from(s, "utf8")];
  return b.length ? [...pbVarint(field * 8 + 2), ...pbVarint(b.length), ...b] : [];
};
// field → [value]: numbers for varints, Buffers for length-delimited (and fixed32/64, raw).
function pbDecode(buf) {
  const out = new Map();
  let i = 0;
  const varint = () => {
    let n = 0, mul = 1, b;
    do { b = buf[i++]; n += (b & 127) * mul; mul *= 128; } while (b & 128);
    return n;
  };
  while (i < buf.length) {
    const key = varint(), field = Math.floor(key / 8), wire = key % 8;
    let v;
    if (wire === 0) v = varint();
    else if (wire === 2) { const len = varint(); v = buf.subarray(i, i + len); i += len; }
    else if (wire === 1) { v = buf.subarray(i, i + 8); i += 8; }
    else if (wire === 5) { v = buf.subarray(i, i + 4); i += 4; }
    else throw new Error(`protobuf wire type ${wire}`);
    if (!out.has(field)) out.set(field, []);
    out.get(field).push(v);
  }
  return out;
}

// A unary gRPC-web call: the answer's message bytes, or throws with the gRPC status.
async function grpcWeb(grpcUrl, method, request) {
  const body = Buffer.alloc(5 + request.length);
  body.writeUInt32BE(request.length, 1);
  Buffer.from(request).copy(body, 5);
  const res = await fetch(`${grpcUrl}/${method}`, { method: "POST", headers: { "content-type": "application/grpc-web+proto", "x-grpc-web": "1" }, body, signal: AbortSignal.timeout(5000) });
  const buf = Buffer.from(await res.arrayBuffer());
  let data = null;
  const trailers = {};
  for (let i = 0; i + 5 <= buf.length;) {
    const flag = buf[i], len = buf.readUInt32BE(i + 1), frame = buf.subarray(i + 5, i + 5 + len);
    i += 5 + len;
    if (flag & 0x80) {
      for (const line of frame.toString("utf8").split("\r\n")) {
        const c = line.indexOf(":");
        if (c > 0) trailers[line.slice(0, c).trim().toLowerCase()] = line.slice(c + 1).trim();
      }
    } else if (!data) data = frame;
  }
  const status = trailers["grpc-status"] ?? res.headers.get("grpc-status");
  if (status !== "0") throw new Error(`${method}: HTTP ${res.status}, grpc-status ${status}: ${decodeURIComponent(trailers["grpc-message"] ?? res.headers.get("grpc-message") ?? "")}`);
  return data || Buffer.alloc(0);
}

// GetLayout of `room`: { kind, spotlight, presenter (presentation), gap (grid) }.
async function getLayout(grpcUrl, room) {
  const m = pbDecode(await grpcWeb(grpcUrl, "mcu.v1.LayoutService/GetLayout", pbStr(1, room)));
  const str = (mm, f) => (mm.has(f) ? mm.get(f).at(-1).toString("utf8") : "");
  const kinds = { 1: "grid", 2: "active_speaker", 3: "presentation", 4: "custom" };
  const out = { kind: null, spotlight: str(m, 6) };
  for (const [f, k] of Object.entries(kinds)) if (m.has(Number(f))) out.kind = k;
  if (out.kind === "presentation") out.presenter = str(pbDecode(m.get(3).at(-1)), 1);
  if (out.kind === "grid") { const g = pbDecode(m.get(1).at(-1)); out.gap = g.has(3) ? g.get(3).at(-1) : 0; }
  return out;
}

// A TCP port nobody listens on (bound, then closed): the control API "unreachable".
async function closedPort() {
  const srv = net.createServer();
  await new Promise((r) => srv.listen(0, "127.0.0.1", r));
  const port = srv.address().port;
  await new Promise((r) => srv.close(r));
  return port;
}

// In the page: per named region of the <video> under `labelPrefix` ({ name: [x0, y0, x1, y1] }
// as fractions of the frame), the mean RGB and the share of pixels within 12 of the canvas
// background. null while there is no picture.
function regionsInPage([labelPrefix, regions, canvasRgb]) {
  const box = [...document.querySelectorAll(".remote")].find((b) => (b.querySelector(".label")?.textContent || "").startsWith(labelPrefix));
  const video = box?.querySelector("video");
  if (!video || !video.videoWidth || !video.videoHeight) return null;
  const w = video.videoWidth, h = video.videoHeight;
  const canvas = document.createElement("canvas");
  canvas.width = w;
  canvas.height = h;
  const ctx = canvas.getContext("2d", { willReadFrequently: true });
  ctx.drawImage(video, 0, 0, w, h);
  const px = ctx.getImageData(0, 0, w, h).data;
  const out = { width: w, height: h };
  for (const [name, [fx0, fy0, fx1, fy1]] of Object.entries(regions)) {
    let r = 0, g = 0, b = 0, n = 0, bg = 0;
    for (let y = Math.floor(fy0 * h); y < Math.floor(fy1 * h); y++) {
      for (let x = Math.floor(fx0 * w); x < Math.floor(fx1 * w); x++) {
        const i = (y * w + x) * 4;
        r += px[i]; g += px[i + 1]; b += px[i + 2]; n++;
        if (Math.abs(px[i] - canvasRgb[0]) <= 12 && Math.abs(px[i + 1] - canvasRgb[1]) <= 12 && Math.abs(px[i + 2] - canvasRgb[2]) <= 12) bg++;
      }
    }
    out[name] = { mean: [r / n, g / n, b / n].map((v) => Math.round(v * 10) / 10), canvasShare: Math.round((bg / n) * 1000) / 1000 };
  }
  return out;
}

// What each region of a layout must show on the 16:9 canvas with two 16:9 cameras (see
// compositor/src/layout.rs: the strip 0.2 of the canvas, its cells 16:9 and centred, gap 0):
// "camera" (mean G >= HALF_G_MIN, hardly any canvas background), "canvas" (>= 80 % the canvas
// background) or "black" (the letterbox: the tile background (0, 0, 0)). In the grid (anna
// left, ben right, each covering its half) every one of these regions shows a camera instead.
const LAYOUT_REGIONS = {
  // Presentation, ben presenting: shown whole (contained, 512x288 of 640x360: letterboxed) in
  // x 0-80 %; the strip on the right with anna's thumbnail centred (y 40-60 %).
  presentation: {
    main: [[0.05, 0.2, 0.75, 0.8], "camera"],
    letterbox: [[0.05, 0.01, 0.75, 0.08], "black"],
    stripAbove: [[0.83, 0.03, 0.97, 0.33], "canvas"],
    thumbnail: [[0.83, 0.43, 0.97, 0.57], "camera"],
    stripBelow: [[0.83, 0.67, 0.97, 0.97], "canvas"],
  },
  // Active speaker, the spotlight on anna: covering y 0-80 %; ben's thumbnail centred in the
  // bottom strip (x 40-60 %).
  active_speaker: {
    main: [[0.05, 0.1, 0.95, 0.7], "camera"],
    stripLeft: [[0.03, 0.83, 0.37, 0.98], "canvas"],
    thumbnail: [[0.42, 0.83, 0.58, 0.98], "camera"],
    stripRight: [[0.63, 0.83, 0.97, 0.98], "canvas"],
  },
};

function regionProblems(sample, expected) {
  if (!sample) return ["no picture in the room mix <video>"];
  const out = [];
  for (const [name, [, want]] of Object.entries(expected)) {
    const s = sample[name];
    const ok = want === "camera" ? s.mean[1] >= HALF_G_MIN && s.canvasShare < 0.2
      : want === "canvas" ? s.canvasShare >= 0.8
      : near(s.mean, [0, 0, 0]);
    if (!ok) out.push(`${name} is not ${want} (${rgbStr(s.mean)}, canvas share ${s.canvasShare})`);
  }
  return out;
}

const regionSummary = (sample, expected) => Object.keys(expected).map((k) => `${k} ${rgbStr(sample[k].mean)}`).join(", ");

async function main() {
  const PLANNED = ["page", "join mcu", "composite frames", "composite picture", "composite audio",
    "layout presentation", "layout active speaker", "layout grid", "layout invalid", "layout unreachable", "switch to sfu", "sfu plays ben", "leave", "metrics", "composite stops"];
  const consoleLog = fs.createWriteStream(path.join(LOG_DIR, "console.log"));
  const pages = {}; // name → Page

  // Runs the planned checks in order; a check that throws fails, and so do the ones after it
  // that depend on it (reported as not reached). The picture and audio checks, and the metrics
  // after a failed leave, do not stop the run.
  const LAYOUT_CHECKS = ["layout presentation", "layout active speaker", "layout grid", "layout invalid", "layout unreachable"];
  const check = h.checker(["composite picture", "composite audio", ...LAYOUT_CHECKS, "sfu plays ben", "leave", "metrics", "composite stops"], { timed: true });

  let base, browser;
  try {
    base = await h.startServer();
    browser = await h.launchBrowser();
  } catch (e) {
    h.setupFailed(e, PLANNED);
    return;
  }
  say(`mcu at ${base} (composite ${MIX_WIDTH}x${MIX_HEIGHT}), ${CHROMIUM} ${browser.version()}, logs in ${LOG_DIR}`);

  const demo = (name) => pages[name].evaluate(() => window.demo);
  const stats = (name) => pages[name].evaluate(() => window.demoStats());
  const picture = (name, labelPrefix) => pages[name].evaluate(pictureInPage, [labelPrefix, CANVAS_RGB]);
  const waitMode = (name, mode, timeoutMs) => waitFor(`${name}: mode "${mode}"`, timeoutMs, 200, async () => {
    const d = await demo(name);
    if (d.error) throw new Error(`${name}: ${d.error}`);
    return { ok: d.mode === mode && (mode === "idle" || d.connectionStates.includes("connected")), value: { mode: d.mode, connectionStates: d.connectionStates, remote: d.remote } };
  });

  await check("page", async () => {
    const res = await fetch(`${base}/`);
    const html = await res.text();
    const type = res.headers.get("content-type") || "";
    if (res.status !== 200 || !type.startsWith("text/html")) throw new Error(`GET /: ${res.status} ${type}`);
    // The page is compiled into the binary (include_str!): say so when the binary is older.
    const source = fs.existsSync(PAGE_SOURCE) ? fs.readFileSync(PAGE_SOURCE, "utf8") : null;
    const stale = source !== null && source !== html;
    if (stale && !DEMO_PAGE) say(`warning: the page ${MCU_BIN} serves differs from ${path.relative(ROOT, PAGE_SOURCE)}: the binary is older than the page (rebuild)`);
    const override = DEMO_PAGE ? fs.readFileSync(DEMO_PAGE) : null;
    for (const name of ["anna", "ben"]) {
      // A page the route fulfils has no address space of its own (public, to Chromium's Local
      // Network Access checks): its gRPC-web calls to the control API on loopback need the
      // permission a person would grant at the prompt. The server's own page is loopback.
      const contextSetup = override && (async (ctx) => {
        await ctx.grantPermissions(["local-network-access"]);
        await ctx.route((u) => u.origin === base && u.pathname === "/", (route) => route.fulfill({ status: 200, contentType: "text/html; charset=utf-8", body: override }));
      });
      const page = await newLoggedPage(browser, consoleLog, name, { contextSetup });
      page.on("response", (r) => { if (r.status() >= 400) consoleLog.write(`[${name}] ${r.request().method()} ${r.url()}: ${r.status()}\n`); });
      pages[name] = page;
      await page.goto(`${base}/?room=${ROOM}&name=${name}`);
      const fields = await page.evaluate(() => ({ room: document.getElementById("room").value, name: document.getElementById("name").value, hasDemo: !!window.demo && typeof window.demoStats === "function" }));
      if (fields.room !== ROOM || fields.name !== name || !fields.hasDemo) throw new Error(`${name}: fields/automation hooks ${JSON.stringify(fields)}`);
    }
    const which = override ? `the browser loads ${DEMO_PAGE} as / instead` : stale ? "differs from server/web/index.html: stale binary" : "= server/web/index.html";
    return `GET / ${res.status} ${type}, ${html.length} bytes (${which}); anna and ben loaded with room/name from the query`;
  });

  let joinedAt = 0;
  await check("join mcu", async () => {
    // Real clicks: they also give the pages user activation, so the unmuted remote <video>s
    // autoplay.
    for (const name of ["anna", "ben"]) await pages[name].click("#mcu");
    const out = [];
    for (const name of ["anna", "ben"]) {
      const r = await waitMode(name, "mcu", JOIN_TIMEOUT);
      const d = await demo(name);
      out.push(`${name} ${r.value.mode} (${r.value.connectionStates.join(",")}, session ${new URL(d.sessions[0]).pathname})`);
    }
    joinedAt = Date.now();
    return `${out.join("; ")}, at ${elapsed()}`;
  });

  await check("composite frames", async () => {
    const out = [];
    for (const name of ["anna", "ben"]) {
      const r = await waitFor(`${name}: ${MIN_FRAMES} composite frames at ${MIX_WIDTH}x${MIX_HEIGHT}`, Math.max(1000, COMPOSITE_TIMEOUT - (Date.now() - joinedAt)), 250, async () => {
        const s = (await stats(name))[0];
        return { ok: s.framesDecoded >= MIN_FRAMES && s.frameWidth === MIX_WIDTH && s.frameHeight === MIX_HEIGHT, value: s };
      });
      out.push(`${name} ${r.value.framesDecoded} frames ${r.value.frameWidth}x${r.value.frameHeight}`);
    }
    return `${out.join(", ")} within ${((Date.now() - joinedAt) / 1000).toFixed(1)} s of joining`;
  });

  await check("composite picture", async () => {
    // Until both halves show a camera: ben's tile appears when his first frame reaches the
    // compositor, and the composite's first key frame after that may take a moment.
    const out = [];
    const samples = {};
    for (const name of ["anna", "ben"]) {
      samples[name] = [];
      let r;
      try {
        r = await waitFor(`${name}: both halves of the composite show the camera`, Math.max(2000, COMPOSITE_TIMEOUT - (Date.now() - joinedAt)), 300, async () => {
          const pic = await picture(name, "room mix");
          samples[name].push(pic);
          const problems = compositeProblems(pic);
          return { ok: problems.length === 0, value: problems.length ? { problems, pic } : pic };
        });
      } catch (e) {
        for (const n of ["anna", "ben"]) await saveDiagnostics(pages[n], n, "room mix");
        throw e;
      } finally {
        fs.writeFileSync(path.join(LOG_DIR, "composite-colours.json"), JSON.stringify(samples, null, 2));
      }
      const p = r.value;
      out.push(`${name} sees ${p.width}x${p.height}: left band ${rgbStr(p.left.band)} (half ${rgbStr(p.left.mean)}, disc ${p.left.disc}), right band ${rgbStr(p.right.band)} (half ${rgbStr(p.right.mean)}, disc ${p.right.disc})`);
    }
    return out.join("; ");
  });

  await check("composite audio", async () => {
    const out = [];
    for (const name of ["anna", "ben"]) {
      const r = await waitFor(`${name}: audio energy`, Math.max(2000, COMPOSITE_TIMEOUT - (Date.now() - joinedAt)), 250, async () => {
        const s = (await stats(name))[0];
        return { ok: s.audioEnergy > 0, value: s };
      });
      out.push(`${name} totalAudioEnergy ${r.value.audioEnergy.toExponential(3)}`);
    }
    return out.join(", ");
  });

  // The control API: where GET /control says it is (the page asks the same), checked against the
  // server's "grpc listening on" line.
  let grpcUrl = null;
  const grpcProblem = async () => {
    if (grpcUrl) return null;
    const res = await fetch(`${base}/control`);
    if (res.status !== 200) return `GET /control: ${res.status} (a binary without it: rebuild)`;
    const port = (await res.json()).grpc_port;
    const printed = h.grpcUrl();
    if (printed && new URL(printed).port !== String(port)) return `GET /control says port ${port}, the server printed ${printed}`;
    grpcUrl = `${new URL(base).protocol}//${new URL(base).hostname}:${port}`;
    return null;
  };

  // anna's switcher: layout, spotlight (once the name is among the choices), gap, click; then
  // the call's result (window.demo.layout) and the status line once it is done.
  const switchLayout = async ({ kind, spotlight = "", gap = 0 }) => {
    const page = pages.anna;
    const before = await page.evaluate(() => window.demo.layout?.seq ?? 0);
    await page.selectOption("#layout", kind);
    if (spotlight) await page.waitForSelector(`#spotlight option[value="${spotlight}"]`, { state: "attached", timeout: 5000 });
    await page.selectOption("#spotlight", spotlight);
    if (kind === "grid") await page.fill("#gap", String(gap));
    await page.click("#setlayout");
    const r = await waitFor("anna: the layout call done", 8000, 100, async () => {
      const l = await page.evaluate(() => window.demo.layout);
      return { ok: !!l && l.seq > before && !l.pending, value: l };
    });
    return { result: r.value, status: await page.textContent("#layoutstatus") };
  };

  const regionsOf = (expected) => Object.fromEntries(Object.entries(expected).map(([k, [rect]]) => [k, rect]));
  const sampleRegions = (expected) => pages.anna.evaluate(regionsInPage, ["room mix", regionsOf(expected), CANVAS_RGB]);

  // After a switch: anna's composite shows `expected` within 10 s (the 300 ms transition, the
  // next frames).
  const waitArrangement = async (what, expected) => {
    const samples = [];
    const file = what.replace(/\W+/g, "-");
    try {
      const r = await waitFor(`anna's composite shows the ${what} arrangement`, 10_000, 300, async () => {
        const pic = await sampleRegions(expected);
        samples.push(pic);
        const problems = regionProblems(pic, expected);
        return { ok: problems.length === 0, value: problems.length ? { problems, pic } : pic };
      });
      return r.value;
    } catch (e) {
      await saveDiagnostics(pages.anna, `anna-${file}`, "room mix");
      throw e;
    } finally {
      fs.writeFileSync(path.join(LOG_DIR, `layout-${file}-regions.json`), JSON.stringify(samples, null, 2));
    }
  };

  // One switch that must work: status "ok: ..." naming `statusWant`, GetLayout with `getWant`,
  // the arrangement in the picture (sampled before too: it must not have shown it already).
  const layoutCheck = async ({ kind, spotlight, what, statusWant, getWant }) => {
    const problem = await grpcProblem();
    if (problem) throw new Error(problem);
    const pageGrpc = await pages.anna.inputValue("#grpc");
    if (pageGrpc !== grpcUrl) throw new Error(`the page's control API field is ${pageGrpc}, not ${grpcUrl} (GET /control)`);
    const expected = LAYOUT_REGIONS[kind];
    const before = expected ? await sampleRegions(expected) : null;
    const { result, status } = await switchLayout({ kind, spotlight });
    if (!result.ok || !status.startsWith("ok: ") || !statusWant.every((s) => status.includes(s))) throw new Error(`status "${status}" (want "ok: ..." with ${statusWant.map((s) => `"${s}"`).join(", ")}); ${JSON.stringify(result)}`);
    const got = await getLayout(grpcUrl, ROOM);
    for (const [k, v] of Object.entries(getWant)) if (got[k] !== v) throw new Error(`GetLayout ${JSON.stringify(got)}: ${k} is not ${JSON.stringify(v)}`);
    let seen;
    if (expected) {
      let after;
      try {
        after = await waitArrangement(what, expected);
      } catch (e) {
        throw new Error(`GetLayout returns ${JSON.stringify(got)} but the composite does not show it: ${e.message}`);
      }
      const differed = before ? regionProblems(before, expected).length : 0;
      seen = `composite ${regionSummary(after, expected)}; before: ${before ? regionSummary(before, expected) : "no picture"} (${differed} of ${Object.keys(expected).length} regions otherwise)`;
      if (before && differed === 0) throw new Error(`the composite showed the ${what} arrangement before the switch already: ${seen}`);
    } else {
      const r = await waitFor("anna's composite shows the two grid tiles again", 10_000, 300, async () => {
        const pic = await picture("anna", "room mix");
        const problems = compositeProblems(pic);
        return { ok: problems.length === 0, value: problems.length ? { problems, pic } : pic };
      });
      seen = `composite left band ${rgbStr(r.value.left.band)} (disc ${r.value.left.disc}), right band ${rgbStr(r.value.right.band)} (disc ${r.value.right.disc})`;
    }
    return `status "${status}"; GetLayout ${JSON.stringify(got)}; ${seen}`;
  };

  await check("layout presentation", () => layoutCheck({
    kind: "presentation", spotlight: "ben", what: "presentation",
    statusWant: ["presentation", "presenter ben"], getWant: { kind: "presentation", presenter: "ben", spotlight: "ben" },
  }));

  await check("layout active speaker", () => layoutCheck({
    kind: "active_speaker", spotlight: "anna", what: "active speaker",
    statusWant: ["active speaker", "spotlight anna"], getWant: { kind: "active_speaker", spotlight: "anna" },
  }));

  await check("layout grid", () => layoutCheck({
    kind: "grid", spotlight: "", what: "grid",
    statusWant: ["grid"], getWant: { kind: "grid", spotlight: "", gap: 0 },
  }));

  await check("layout invalid", async () => {
    const problem = await grpcProblem();
    if (problem) throw new Error(problem);
    let r;
    try {
      r = await switchLayout({ kind: "grid", gap: 999 });
    } finally {
      await pages.anna.fill("#gap", "0");
    }
    const { result, status } = r;
    if (result.ok || result.code !== 3 || !/^error: INVALID_ARGUMENT: .*layout\.grid\.gap/.test(status)) throw new Error(`status "${status}" (want "error: INVALID_ARGUMENT: ... layout.grid.gap ..."); ${JSON.stringify(result)}`);
    const got = await getLayout(grpcUrl, ROOM);
    if (got.kind !== "grid" || got.gap !== 0) throw new Error(`GetLayout after the refused call: ${JSON.stringify(got)} (want the grid, gap 0: unchanged)`);
    return `status "${status}"; GetLayout still ${JSON.stringify(got)}`;
  });

  await check("layout unreachable", async () => {
    const page = pages.anna;
    const good = await page.inputValue("#grpc");
    const nowhere = `http://127.0.0.1:${await closedPort()}`;
    const framesBefore = (await stats("anna"))[0].framesDecoded;
    await page.fill("#grpc", nowhere);
    let r;
    try {
      r = await switchLayout({ kind: "presentation", spotlight: "ben" });
    } finally {
      await page.fill("#grpc", good);
    }
    const { result, status } = r;
    if (result.ok || result.code !== 14 || !status.startsWith("error: UNAVAILABLE: ") || !status.includes(nowhere)) throw new Error(`status "${status}" (want "error: UNAVAILABLE: ... ${nowhere} ..."); ${JSON.stringify(result)}`);
    // The rest of the page is unaffected: still in the MCU mix, no page error, video decoding.
    const d = await demo("anna");
    if (d.mode !== "mcu" || d.error || !d.connectionStates.includes("connected")) throw new Error(`after the failed call: ${JSON.stringify({ mode: d.mode, error: d.error, connectionStates: d.connectionStates })}`);
    const f = await waitFor("anna's composite keeps decoding", 5000, 250, async () => {
      const s = (await stats("anna"))[0];
      return { ok: s.framesDecoded >= framesBefore + 10, value: s.framesDecoded };
    });
    // And the next call, to the right address, works.
    const again = await switchLayout({ kind: "grid", gap: 0 });
    if (!again.result.ok || !again.status.startsWith("ok: grid")) throw new Error(`with the control API back at ${good}: status "${again.status}"`);
    const state = await page.textContent("#state");
    return `status "${status}"; the page still "${state}", ${f.value - framesBefore} more frames decoded; back at ${good}: "${again.status}"`;
  });

  let sfuAt = 0;
  await check("switch to sfu", async () => {
    await pages.anna.click("#leave");
    await waitMode("anna", "idle", 5000);
    await pages.anna.click("#sfu");
    sfuAt = Date.now();
    const r = await waitMode("anna", "sfu", JOIN_TIMEOUT);
    const d = await demo("anna");
    return `anna left the MCU and publishes over WHIP (${d.sessions.map((s) => new URL(s).pathname).join(", ")}; ${r.value.connectionStates.join(",")})`;
  });

  await check("sfu plays ben", async () => {
    const rooms = await (await fetch(`${base}/rooms/${ROOM}`)).json();
    const r = await waitFor(`anna plays ben's forwarded video`, Math.max(1000, SFU_TIMEOUT - (Date.now() - sfuAt)), 300, async () => {
      const d = await demo("anna");
      const pic = await picture("anna", "ben");
      const st = await stats("anna");
      // The playing connection: the one with decoded video (the publishing one decodes none).
      const s = st.find((x) => x.framesDecoded > 0) || null;
      const sizeOk = s && pic && ((s.frameWidth === MIX_WIDTH && s.frameHeight === MIX_HEIGHT) || (s.frameWidth === pic.width && s.frameHeight === pic.height));
      return { ok: d.remote.includes("ben") && !!pic && !!s && s.framesDecoded >= MIN_FRAMES && sizeOk, value: { remote: d.remote, stats: st, picture: pic && { width: pic.width, height: pic.height } } };
    });
    const { stats: st, picture: pic } = r.value;
    const s = st.find((x) => x.framesDecoded > 0);
    // The forwarded picture is ben's camera (the plain green of the fake camera in both halves
    // of the band, as the whole frame is one camera picture).
    const full = await picture("anna", "ben");
    const colour = full ? `band ${rgbStr(full.left.band)} / ${rgbStr(full.right.band)}` : "no picture";
    const camera = full && near(full.left.band, CAMERA_RGB) && near(full.right.band, CAMERA_RGB);
    const detail = `"ben" video ${pic.width}x${pic.height}, ${s.framesDecoded} frames decoded ${s.frameWidth}x${s.frameHeight}, audio energy ${s.audioEnergy.toExponential(3)}, ${colour}, ` +
      `${((Date.now() - sfuAt) / 1000).toFixed(1)} s after joining; GET /rooms/${ROOM}: ${rooms.participants.map((p) => `${p.name}(${p.kinds.join("+")})`).join(" ")}, composite ${rooms.composite}`;
    if (!camera) throw new Error(`not the fake camera's picture: ${detail}`);
    return detail;
  });

  let leftAt = 0;
  await check("leave", async () => {
    // Both click Leave first (a failure on one must not keep the other in the room), then the
    // pages settle: idle, no session, no remote video, and it stays so across the SFU mode's
    // 3 s refresh (a refresh under way when anna left must not play ben again).
    for (const name of ["anna", "ben"]) await pages[name].click("#leave");
    leftAt = Date.now();
    for (const name of ["anna", "ben"]) await waitMode(name, "idle", 5000);
    await sleep(3500);
    const problems = [];
    for (const name of ["anna", "ben"]) {
      const d = await demo(name);
      const videos = await pages[name].evaluate(() => document.querySelectorAll(".remote").length);
      if (d.mode !== "idle" || d.sessions.length || d.remote.length || videos) problems.push(`${name} ${JSON.stringify({ ...d, videos })}`);
    }
    if (problems.length) throw new Error(`after leaving: ${problems.join("; ")}`);
    return "anna and ben idle, no sessions or remote videos 3.5 s later";
  });

  await check("metrics", async () => {
    const r = await waitFor("mcu_participants, mcu_subscribers, mcu_tracks 0", Math.max(1000, METRICS_TIMEOUT - (Date.now() - leftAt)), 200, async () => {
      const m = await fetchMetrics(base);
      const g = { mcu_participants: m.mcu_participants, mcu_subscribers: m.mcu_subscribers, mcu_tracks: m.mcu_tracks, mcu_rooms: m.mcu_rooms };
      return { ok: g.mcu_participants === 0 && g.mcu_subscribers === 0 && g.mcu_tracks === 0, value: g };
    });
    const v = r.value;
    return `mcu_participants ${v.mcu_participants}, subscribers ${v.mcu_subscribers}, tracks ${v.mcu_tracks} ${((Date.now() - leftAt) / 1000).toFixed(1)} s after Leave (rooms ${v.mcu_rooms})`;
  });

  await check("composite stops", async () => {
    // Nobody publishing or watching: the composite idles out (5 s) and the room goes.
    const r = await waitFor("mcu_rooms 0", Math.max(1000, COMPOSITE_STOP_TIMEOUT - (Date.now() - leftAt)), 250, async () => {
      const m = parseMetrics(await (await fetch(`${base}/metrics`)).text());
      return { ok: m.mcu_rooms === 0, value: { mcu_rooms: m.mcu_rooms } };
    });
    return `mcu_rooms ${r.value.mcu_rooms} ${((Date.now() - leftAt) / 1000).toFixed(1)} s after Leave`;
  });

  if (h.keepLogs()) {
    for (const [name, page] of Object.entries(pages)) {
      try {
        const st = await page.evaluate(async () => ({ demo: window.demo, stats: await window.demoStats(), state: document.getElementById("state").textContent, log: document.getElementById("log").textContent }));
        fs.writeFileSync(path.join(LOG_DIR, `${name}-state.json`), JSON.stringify(st, null, 2));
      } catch (e) {
        fs.writeFileSync(path.join(LOG_DIR, `${name}-state.json`), `unreadable: ${e}`);
      }
    }
  }
  consoleLog.end();
}

await h.run("browser demo", "server log, page state and console", main);
