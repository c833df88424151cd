// The harness shared by the browser tests (sfu.test.mjs, demo.test.mjs): the `mcu serve --dev`
// server (start, graceful stop, killed with this process), headless Chromium with the fake
// camera and microphone, the log directory, polling, the PASS/FAIL record and the closing
// summary. Each test makes one harness with createHarness() and runs its checks through it.

import { spawn } from "node:child_process";
import { once } from "node:events";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import readline from "node:readline";
import { fileURLToPath } from "node:url";

import { chromium } from "playwright-core";

export const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "..", "..");
export const MCU_BIN = process.env.MCU_BIN || path.join(ROOT, "target", "debug", "mcu");
export const CHROMIUM = process.env.CHROMIUM_BIN || "/usr/bin/chromium";
const SETPRIV = "/usr/bin/setpriv";
export const CHROMIUM_ARGS = [
  "--headless",
  "--no-sandbox",
  "--disable-gpu",
  "--no-first-run",
  "--disable-background-networking",
  "--use-fake-device-for-media-stream",
  "--use-fake-ui-for-media-stream",
  "--allow-loopback-in-peer-connection",
];
// Generous for a loaded 2-core VM: a debug server and two renderers share it.
export const SERVER_START_TIMEOUT = 30_000; // ms, for the "listening on" line

export const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
export const say = (msg) => console.log(msg);

// Polls `probe` (async, returns { ok, value }) every intervalMs until ok, or throws after
// timeoutMs with the last value (also on the error as .last).
export async function waitFor(what, timeoutMs, intervalMs, probe) {
  const deadline = Date.now() + timeoutMs;
  let last;
  for (;;) {
    last = await probe();
    if (last.ok) return last;
    if (Date.now() > deadline) {
      const err = new Error(`${what}: not within ${timeoutMs / 1000} s; last ${JSON.stringify(last.value ?? last)}`);
      err.last = last;
      throw err;
    }
    await sleep(intervalMs);
  }
}

export function parseMetrics(text) {
  const out = {};
  for (const line of text.split("\n")) {
    const m = /^([a-zA-Z_:][a-zA-Z0-9_:]*(?:\{[^}]*\})?)\s+(\S+)$/.exec(line.trim());
    if (m) out[m[1]] = Number(m[2]);
  }
  return out;
}

// GET /metrics of the server at `base`, parsed.
export async function fetchMetrics(base) {
  const res = await fetch(`${base}/metrics`);
  if (res.status !== 200) throw new Error(`GET /metrics: ${res.status}`);
  return parseMetrics(await res.text());
}

export function tail(file, n = 40) {
  try {
    return fs.readFileSync(file, "utf8").trimEnd().split("\n").slice(-n).map((l) => "  [mcu] " + l).join("\n");
  } catch {
    return "";
  }
}

// One test run. `logPrefix` names its temporary log directory; `serverArgs` are added to
// `mcu serve --dev --http-listen 127.0.0.1:0 --grpc-listen 127.0.0.1:0`; startServer() resolves
// with the HTTP base URL, grpcUrl() is the gRPC API's (once printed). Processes (the server, the
// browser, whatever onCleanup adds) are stopped by cleanup(): at the end, on SIGINT/SIGTERM, and
// (the server) with SIGKILL if this process exits anyway.
export function createHarness({ logPrefix, serverArgs = [] }) {
  const LOG_DIR = fs.mkdtempSync(path.join(os.tmpdir(), logPrefix));
  const serverLog = path.join(LOG_DIR, "mcu.log");
  const t0 = Date.now();
  const elapsed = () => ((Date.now() - t0) / 1000).toFixed(1) + " s";
  const results = []; // [name, ok, detail]
  const cleanups = []; // extra stops, run after the browser's and before the server's
  let server = null; // ChildProcess
  let browser = null;
  let grpcUrl = null; // from the server's "grpc listening on" line (with --grpc-listen)

  async function startServer() {
    if (!fs.existsSync(MCU_BIN)) throw new Error(`${MCU_BIN} is missing: cargo build -p mcu-server (or set MCU_BIN)`);
    // The server reads MCU_* variables as flags: only ours reach it.
    const env = Object.fromEntries(Object.entries(process.env).filter(([k]) => !k.startsWith("MCU_")));
    env.MCU_LOG = process.env.MCU_BROWSER_SERVER_LOG || "info,webrtc=warn,rtc=warn";
    env.NO_COLOR = "1";
    const log = fs.openSync(serverLog, "w");
    const argv = [MCU_BIN, "serve", "--dev", "--http-listen", "127.0.0.1:0", "--grpc-listen", "127.0.0.1:0", ...serverArgs];
    // setpriv (util-linux) sets PR_SET_PDEATHSIG before exec: the server dies with this process
    // even when it is SIGKILLed and its exit handler never runs.
    if (fs.existsSync(SETPRIV)) argv.unshift(SETPRIV, "--pdeathsig", "KILL", "--");
    server = spawn(argv[0], argv.slice(1), { env, stdio: ["ignore", "pipe", log] });
    fs.closeSync(log);
    const lines = readline.createInterface({ input: server.stdout });
    return await new Promise((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`no 'listening on' line within ${SERVER_START_TIMEOUT / 1000} s`)), SERVER_START_TIMEOUT);
      server.once("exit", (code, sig) => { clearTimeout(timer); reject(new Error(`mcu exited (${code ?? sig}) before listening`)); });
      server.once("error", (e) => { clearTimeout(timer); reject(e); });
      lines.on("line", (line) => {
        const g = /^grpc listening on (http:\/\/\S+)/.exec(line.trim());
        if (g) grpcUrl = g[1];
        const m = /^listening on (http:\/\/\S+)/.exec(line.trim());
        if (m) { clearTimeout(timer); resolve(m[1]); }
      });
    });
  }

  async function stopServer() {
    if (!server) return null;
    const p = server;
    server = null;
    if (p.exitCode !== null || p.signalCode !== null) return p.exitCode ?? p.signalCode;
    const exited = once(p, "exit");
    p.kill("SIGINT"); // graceful shutdown
    const t = setTimeout(() => p.kill("SIGKILL"), 5000);
    const [code, sig] = await exited;
    clearTimeout(t);
    return code ?? sig;
  }

  async function launchBrowser() {
    browser = await chromium.launch({ executablePath: CHROMIUM, headless: true, args: CHROMIUM_ARGS, timeout: 60_000 });
    return browser;
  }

  async function cleanup() {
    if (browser) {
      const b = browser;
      browser = null;
      await Promise.race([b.close().catch(() => {}), sleep(10_000)]);
    }
    while (cleanups.length) await cleanups.pop()();
    return await stopServer();
  }

  process.on("exit", () => { if (server && server.exitCode === null) server.kill("SIGKILL"); });
  for (const sig of ["SIGINT", "SIGTERM"]) {
    process.on(sig, () => {
      say(`interrupted (${sig}): stopping`);
      cleanup().finally(() => process.exit(130));
    });
  }

  function record(name, ok, detail) {
    results.push([name, ok, detail]);
    say(`${ok ? "PASS" : "FAIL"} ${name}${detail ? ": " + detail : ""}`);
  }

  // The planned checks are run in order through the returned check(name, fn); one that throws
  // fails, and so do the ones after it (reported as not reached) unless it is in `nonFatal`.
  // `timed` adds each check's duration to its detail.
  function checker(nonFatal, { timed = false } = {}) {
    let broken = null;
    return async function check(name, fn) {
      if (broken) {
        record(name, false, `not reached (${broken} failed)`);
        return;
      }
      const started = Date.now();
      const took = () => (timed ? ` [${((Date.now() - started) / 1000).toFixed(1)} s]` : "");
      try {
        const detail = await fn();
        record(name, true, detail + took());
      } catch (e) {
        record(name, false, e.message + took());
        if (!nonFatal.includes(name)) broken = name;
      }
    };
  }

  // Setup that failed: says why (with the server log's tail) and fails every planned check.
  function setupFailed(e, planned) {
    say(`setup failed: ${e.message}`);
    const t = tail(serverLog);
    if (t) say(t);
    for (const name of planned) record(name, false, "setup failed");
  }

  const failedSoFar = () => results.some(([, ok]) => !ok);
  const keepLogs = () => failedSoFar() || !!process.env.MCU_BROWSER_KEEP_LOGS;

  // Runs main, stops everything, prints the summary ("<label>: N passed, M failed") and exits
  // non-zero on any failure; the log directory stays for a failed run (`kept` says what is in it).
  async function run(label, kept, main) {
    let crashed = null;
    try {
      await main();
    } catch (e) {
      crashed = e;
      say(`error: ${e.stack || e}`);
    }
    const code = await cleanup();
    const failed = results.filter(([, ok]) => !ok).length + (crashed ? 1 : 0);
    const passed = results.filter(([, ok]) => ok).length;
    if (failed) {
      say(`server exit: ${code}; log tail:\n${tail(serverLog)}`);
      say(`${kept} kept in ${LOG_DIR}`);
    } else {
      if (!process.env.MCU_BROWSER_KEEP_LOGS) fs.rmSync(LOG_DIR, { recursive: true, force: true });
    }
    say(`took ${elapsed()}`);
    say(`${label}: ${passed} passed, ${failed} failed`);
    process.exit(failed ? 1 : 0);
  }

  return {
    LOG_DIR, serverLog, elapsed, results, record, checker, setupFailed, keepLogs,
    startServer, launchBrowser, grpcUrl: () => grpcUrl, onCleanup: (fn) => cleanups.push(fn), run,
  };
}

// A page in a context of its own whose console and errors go to `consoleLog` (a write stream)
// prefixed with `[label]`.
export async function newLoggedPage(browser, consoleLog, label, { contextSetup } = {}) {
  const ctx = await browser.newContext();
  if (contextSetup) await contextSetup(ctx);
  const page = await ctx.newPage();
  page.on("console", (m) => consoleLog.write(`[${label}] ${m.type()}: ${m.text()}\n`));
  page.on("pageerror", (e) => consoleLog.write(`[${label}] pageerror: ${e}\n`));
  return page;
}
