//! WHIP and WHEP (RFC 9725) over axum: `POST /whip/{room}` publishes, `POST
//! /whep/{room}/{participant}` plays one participant's forwarded tracks, and the session
//! resource at `Location` takes `PATCH` (trickle ICE) and `DELETE`.
//!
//! Answers are complete (ICE gathered) so clients that never trickle still connect. CORS is
//! open so browser pages on other origins can use the endpoints with a token.

// Helpers return the finished error response; they run once per request, so its size is moot.
#![allow(clippy::result_large_err)]

use std::{collections::HashMap, sync::Arc, time::SystemTime};

use axum::{
    body::Bytes,
    extract::{Path, Query, State},
    http::{HeaderMap, HeaderValue, StatusCode, header},
    response::{IntoResponse, Response},
};
use mcu_signaling::auth::{AuthError, Keys, Need, bearer};

use crate::media::sessions::{Accepted, SessionError, Sfu};

/// What the WHIP/WHEP handlers share.
pub struct Http {
    /// The SFU.
    pub sfu: Arc<Sfu>,
    /// What the server runs beside the rooms (recordings, the SIP gateway).
    pub app: Arc<crate::app::App>,
    /// Token keys.
    pub keys: Keys,
    /// Tokenless requests allowed.
    pub dev: bool,
    /// `Link` header values announcing ICE servers (RFC 9725 §4.6).
    pub ice_links: Vec<String>,
    /// Room composite settings.
    pub mcu: mcu_pipeline::McuConfig,
    /// The port of the gRPC control API (gRPC-web on it too).
    pub grpc_port: u16,
}

fn unix_now() -> u64 {
    SystemTime::now().duration_since(SystemTime::UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0)
}

fn problem(status: u16, msg: impl Into<String>) -> Response {
    let status = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let mut r = (status, format!("{}\n", msg.into())).into_response();
    r.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("text/plain; charset=utf-8"));
    r
}

impl Http {
    /// The identity a request acts as: the token's subject, else `?name=` (dev mode or no key),
    /// else a fresh one.
    fn authorize(&self, headers: &HeaderMap, room: &str, need: Need, query: &HashMap<String, String>) -> Result<String, Response> {
        let token = bearer(headers.get(header::AUTHORIZATION).and_then(|v| v.to_str().ok()));
        let name = query.get("name").cloned();
        if let Some(n) = &name
            && !valid_name(n)
        {
            return Err(problem(400, "?name= takes 1-64 characters of A-Z a-z 0-9 . _ -"));
        }
        if token.is_none() && self.dev {
            return Ok(name.unwrap_or_else(|| format!("guest-{:08x}", rand::random::<u32>())));
        }
        match self.keys.authorize(token, room, need, unix_now()) {
            Ok(claims) => Ok(claims.sub),
            Err(e) => {
                self.sfu.counters.refused.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                let mut r = problem(e.status(), e.to_string());
                if matches!(e, AuthError::Missing) || e.status() == 401 {
                    r.headers_mut().insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
                }
                Err(r)
            }
        }
    }

    fn created(&self, a: Accepted) -> Response {
        let mut r = (StatusCode::CREATED, a.answer).into_response();
        let h = r.headers_mut();
        h.insert(header::CONTENT_TYPE, HeaderValue::from_static("application/sdp"));
        if let Ok(v) = HeaderValue::from_str(&format!("/session/{}", a.id)) {
            h.insert(header::LOCATION, v);
        }
        if let Ok(v) = HeaderValue::from_str(&format!("\"{}\"", a.id)) {
            h.insert(header::ETAG, v);
        }
        h.insert("accept-patch", HeaderValue::from_static("application/trickle-ice-sdpfrag"));
        if let Ok(v) = HeaderValue::from_str(&a.participant) {
            h.insert("x-participant", v);
        }
        for link in &self.ice_links {
            if let Ok(v) = HeaderValue::from_str(link) {
                h.append(header::LINK, v);
            }
        }
        r
    }
}

/// Room and participant names: 1–64 of `[A-Za-z0-9._-]`.
pub fn valid_name(s: &str) -> bool {
    (1..=64).contains(&s.len()) && s.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
}

fn sdp_body(headers: &HeaderMap, body: &Bytes) -> Result<String, Response> {
    let ct = headers.get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or("");
    if !ct.split(';').next().unwrap_or("").trim().eq_ignore_ascii_case("application/sdp") {
        return Err(problem(415, "the offer must be Content-Type: application/sdp"));
    }
    let text = std::str::from_utf8(body).map_err(|_| problem(400, "the offer is not UTF-8"))?;
    if !text.trim_start().starts_with("v=0") {
        return Err(problem(400, "the offer is not SDP (no v=0 line)"));
    }
    Ok(text.to_string())
}

const NAME_RULE: &str = "room and participant names are 1-64 characters of A-Z a-z 0-9 . _ -";

/// The checks every offer endpoint makes, in order: names (400), token and grants (401/403),
/// body (415/400). Returns who asks and the offer.
fn admit(http: &Http, names: &[&str], needs: &[Need], headers: &HeaderMap, q: &HashMap<String, String>, body: &Bytes) -> Result<(String, String), Response> {
    if !names.iter().all(|n| valid_name(n)) {
        return Err(problem(400, NAME_RULE));
    }
    let mut who = None;
    for &need in needs {
        let w = http.authorize(headers, names[0], need, q)?;
        who.get_or_insert(w);
    }
    let offer = sdp_body(headers, body)?;
    Ok((who.unwrap_or_default(), offer))
}

/// `201 Created` with the answer, or the refusal (counted and logged).
fn answered(http: &Http, result: Result<Accepted, SessionError>, what: &str, room: &str, who: &str) -> Response {
    match result {
        Ok(a) => http.created(a),
        Err(e) => {
            http.sfu.counters.refused.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            tracing::info!(room, who, error = %e, "{what} offer refused");
            problem(e.status(), e.to_string())
        }
    }
}

/// `POST /whip/{room}`.
pub async fn whip(
    State(http): State<Arc<Http>>,
    Path(room): Path<String>,
    Query(q): Query<HashMap<String, String>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let (who, offer) = match admit(&http, &[&room], &[Need::Publish], &headers, &q, &body) {
        Ok(x) => x,
        Err(r) => return r,
    };
    answered(&http, http.sfu.publish(&room, &who, offer).await, "WHIP", &room, &who)
}

/// `POST /whep/{room}/{participant}`.
pub async fn whep_participant(
    State(http): State<Arc<Http>>,
    Path((room, participant)): Path<(String, String)>,
    Query(q): Query<HashMap<String, String>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let (who, offer) = match admit(&http, &[&room, &participant], &[Need::Subscribe], &headers, &q, &body) {
        Ok(x) => x,
        Err(r) => return r,
    };
    answered(&http, http.sfu.play(&room, &participant, &who, offer).await, "WHEP", &room, &who)
}

/// `POST /whep/{room}`: the room composite (grid of every published video, the room's audio
/// mix).
pub async fn whep_room(
    State(http): State<Arc<Http>>,
    Path(room): Path<String>,
    Query(q): Query<HashMap<String, String>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let (who, offer) = match admit(&http, &[&room], &[Need::Subscribe], &headers, &q, &body) {
        Ok(x) => x,
        Err(r) => return r,
    };
    answered(&http, http.sfu.play_mix(&room, &who, offer, http.mcu).await, "WHEP (composite)", &room, &who)
}

/// `POST /mcu/{room}`: an MCU participant (sendrecv): publishes, and receives the room
/// composite and its own audio mix (everyone but itself). It needs both grants.
pub async fn mcu_join(
    State(http): State<Arc<Http>>,
    Path(room): Path<String>,
    Query(q): Query<HashMap<String, String>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let (who, offer) = match admit(&http, &[&room], &[Need::Publish, Need::Subscribe], &headers, &q, &body) {
        Ok(x) => x,
        Err(r) => return r,
    };
    answered(&http, http.sfu.join_mcu(&room, &who, offer, http.mcu).await, "MCU", &room, &who)
}

/// `GET /rooms/{room}`: who publishes what, and whether the composite runs (JSON).
pub async fn room_info(State(http): State<Arc<Http>>, Path(room): Path<String>, headers: HeaderMap) -> Response {
    if !valid_name(&room) {
        return problem(400, NAME_RULE);
    }
    if let Err(r) = http.authorize(&headers, &room, Need::Subscribe, &HashMap::new()) {
        return r;
    }
    match http.sfu.room_info(&room) {
        Some(v) => ([(header::CONTENT_TYPE, "application/json")], v.to_string()).into_response(),
        None => problem(404, format!("no room \"{room}\"")),
    }
}

/// `GET /`: the demo page (join with camera and microphone, MCU mix or SFU tracks).
pub async fn demo_page() -> Response {
    ([(header::CONTENT_TYPE, "text/html; charset=utf-8")], include_str!("../../web/index.html")).into_response()
}

/// `GET /control`: where the gRPC control API listens, for browser pages (gRPC-web on the
/// same host as this page, at `grpc_port`).
pub async fn control_info(State(http): State<Arc<Http>>) -> Response {
    ([(header::CONTENT_TYPE, "application/json")], serde_json::json!({ "grpc_port": http.grpc_port }).to_string()).into_response()
}

/// `PATCH /session/{id}`: trickled candidates.
pub async fn patch_session(State(http): State<Arc<Http>>, Path(id): Path<String>, headers: HeaderMap, body: Bytes) -> Response {
    let ct = headers.get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or("");
    if !ct.starts_with("application/trickle-ice-sdpfrag") {
        return problem(415, "PATCH takes application/trickle-ice-sdpfrag");
    }
    if let Some(m) = headers.get(header::IF_MATCH).and_then(|v| v.to_str().ok())
        && m != "*"
        && m.trim_matches('"') != id
    {
        return problem(412, "If-Match does not match this session's ETag");
    }
    let Ok(text) = std::str::from_utf8(&body) else { return problem(400, "not UTF-8") };
    match http.sfu.trickle(&id, text).await {
        Ok(()) => StatusCode::NO_CONTENT.into_response(),
        Err(e) => problem(e.status(), e.to_string()),
    }
}

/// `DELETE /session/{id}`.
pub async fn delete_session(State(http): State<Arc<Http>>, Path(id): Path<String>) -> Response {
    match http.sfu.end(&id).await {
        Ok(()) => StatusCode::OK.into_response(),
        Err(e) => problem(e.status(), e.to_string()),
    }
}
