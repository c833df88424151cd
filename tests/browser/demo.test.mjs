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

async function main() {
  const PLANNED = ["page", "join mcu", "composite frames", "composite picture", "composite audio", "switch to sfu", "sfu plays ben", "leave", "metrics", "composite stops"];
  const consoleLog = fs.createWriteStream(path.join(LOG_DIR, "console.log"));
  const pages = {}; // name → Page

  // Runs the planned checks in order; a check that throws fails, and so do the ones after it
  // that depend on it (reported as not reached). The picture and audio checks, and the metrics
  // after a failed leave, do not stop the run.
  const check = h.checker(["composite picture", "composite audio", "sfu plays ben", "leave", "metrics", "composite stops"], { timed: true });

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
      const contextSetup = override && ((ctx) => ctx.route((u) => u.origin === base && u.pathname === "/", (route) => route.fulfill({ status: 200, contentType: "text/html; charset=utf-8", body: override })));
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
