// Shared by publish.html and play.html: the page's log, its state object (window.pub or
// window.play: status, error, connection states, offer/answer, HTTP status, session Location),
// the non-trickle offer → POST → answer exchange of WHIP and WHEP, the codec of a getStats
// entry and the DELETE of the session.
"use strict";

function log(msg) {
  document.getElementById("log").textContent += msg + "\n";
}

// An error handler that marks `state` failed.
function failWith(state) {
  return (err) => {
    state.status = "failed";
    state.error = String((err && err.stack) || err);
    log("error: " + state.error);
  };
}

// Resolves once ICE gathering is complete (the server never trickles, nor do we), or after
// timeoutMs with whatever was gathered so far.
function iceGathered(pc, timeoutMs) {
  if (pc.iceGatheringState === "complete") return Promise.resolve();
  return new Promise((resolve) => {
    const timer = setTimeout(resolve, timeoutMs);
    pc.addEventListener("icegatheringstatechange", () => {
      if (pc.iceGatheringState === "complete") { clearTimeout(timer); resolve(); }
    });
  });
}

// `state` mirrors pc's connection and ICE states; status "connected" once it connects.
function trackConnection(pc, state) {
  pc.addEventListener("connectionstatechange", () => {
    state.connectionState = pc.connectionState;
    if (pc.connectionState === "connected") state.status = "connected";
    log("connection: " + pc.connectionState);
  });
  pc.addEventListener("iceconnectionstatechange", () => { state.iceConnectionState = pc.iceConnectionState; });
}

// The offer (after ICE gathering) POSTed to `url` (`what`: "WHIP" or "WHEP" in errors), the
// answer applied. Returns the POST's response (its headers are still to be read).
async function exchangeSdp(pc, state, url, what) {
  await pc.setLocalDescription(await pc.createOffer());
  await iceGathered(pc, 5000);
  const offer = pc.localDescription.sdp;
  state.offer = offer;
  state.status = "offered";

  const res = await fetch(url, { method: "POST", headers: { "Content-Type": "application/sdp" }, body: offer });
  state.httpStatus = res.status;
  const body = await res.text();
  if (res.status !== 201) throw new Error(`${what} POST: ${res.status} ${body}`);
  state.answer = body;
  state.location = new URL(res.headers.get("Location"), url).href;
  await pc.setRemoteDescription({ type: "answer", sdp: body });
  if (state.status !== "connected") state.status = "answered";
  log("answered; session " + state.location);
  return res;
}

// "mime/type;fmtp" of a getStats RTP entry's codec, or null.
function codecOf(report, s) {
  const c = s.codecId && report.get(s.codecId);
  return c ? c.mimeType + (c.sdpFmtpLine ? ";" + c.sdpFmtpLine : "") : null;
}

// DELETE the session resource, then close. Returns the DELETE's status.
async function stopSession(state, pc) {
  let status = null;
  if (state.location) {
    const res = await fetch(state.location, { method: "DELETE" });
    status = res.status;
  }
  state.deleteStatus = status;
  if (pc) pc.close();
  return status;
}
