//! The SIP gateway: SIP phones and trunks join rooms as MCU participants.
//!
//! ```text
//!  phone ──SIP (UDP/TCP, rsipstack)──► incoming INVITE ─► dial plan (number → room, 404)
//!                                        ─► mcu_sip::negotiate (488) ─► Sfu::join_gateway
//!                                        ─► 180, 200 OK + answer
//!  phone ──RTP/AVP──► audio socket: G.711 → 48 kHz (dasp) → Opus ─┐   RFC 4733 → room event
//!                     video socket: H.264/VP8 as sent ────────────┼─► Room::ingest (forwarded,
//!                                                                 │   mixed, recorded)
//!  phone ◄──RTP/AVP── its mix (Opus → G.711, or Opus as is) ◄─────┤   _mix/audio-for-NAME
//!                     its picture (H.264 mode 0/1 at its size) ◄──┘   _mix/video-for-NAME
//! ```
//!
//! Calls end with BYE (either side), CANCEL before the answer, an operator removing the
//! participant (we send BYE), RTP silence longer than `--sip-rtp-timeout` while the phone
//! should be sending (we send BYE), and shutdown. A re-INVITE (hold, resume, new address) is
//! answered on the same ports.

use std::{
    collections::HashMap,
    net::{IpAddr, SocketAddr},
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
    time::{Duration, Instant},
};

use parking_lot::Mutex;

use bytes::Bytes;
use mcu_codec::audio::{G711Law, OpusChannels, OpusConfig, OpusDecoder, OpusEncoder, Resampler};
use mcu_sfu::rtp::RtpPacket;
use mcu_sip::{AudioChoice, AudioCodec, DialPlan, DtmfDetector, Negotiated, VideoChoice, VideoCodecChoice, answer_sdp, negotiate, parse_offer};
use rsipstack::{
    EndpointBuilder,
    dialog::{
        dialog::{Dialog, DialogState, DialogStateReceiver, DialogStateSender},
        dialog_layer::DialogLayer,
        invite_dialog::InviteDialog,
    },
    sip::{Header, Method, StatusCode, prelude::HeadersExt},
    transaction::{TransactionReceiver, transaction::Transaction},
    transport::{TcpListenerConnection, TransportLayer, udp::UdpConnection},
};
use rtc::rtp_transceiver::rtp_sender::{RTCRtpCodec, RtpCodecKind};
use tokio::{net::UdpSocket, sync::mpsc};
use tokio_util::sync::CancellationToken;

use mcu_pipeline::{McuConfig, MixCodec, VideoProfile};

use crate::media::{
    events::EventKind,
    sessions::{GatewayLeg, GatewayTrack, Sfu},
};

/// Opus complexity for audio that comes from or goes to G.711 phones (the engine's, for the
/// mixes only phones hear).
pub use mcu_pipeline::PHONE_OPUS_COMPLEXITY;

/// The digest realm of our challenges.
const REALM: &str = "mcu";
/// The shortest session-timer interval accepted (RFC 4028's minimum).
const MIN_SE: u64 = 90;
/// Challenges outstanding at most.
const MAX_NONCES: usize = 10_000;
/// How long a challenge's nonce is accepted.
const NONCE_LIFETIME: Duration = Duration::from_secs(300);

/// Gateway settings (`mcu serve --sip-*`).
#[derive(Debug, Clone)]
pub struct SipSettings {
    /// UDP and TCP, one port.
    pub listen: SocketAddr,
    /// Dialled number → room.
    pub plan: DialPlan,
    /// A phone that should send and is silent this long is hung up.
    pub rtp_timeout: Duration,
    /// Ring this long before answering (0: answer at once).
    pub answer_delay: Duration,
    /// The picture phones get when they can decode it.
    pub video_size: (u32, u32),
    /// Its bitrate.
    pub video_bitrate: u32,
    /// Inbound digest auth: user → password. Empty: INVITEs are not challenged.
    pub users: HashMap<String, String>,
    /// Register with this registrar (a SIP URI, e.g. `sip:pbx.example.com`) as `register_user`.
    pub registrar: Option<String>,
    /// The account registered (digest username) and its password.
    pub register_user: Option<(String, String)>,
    /// Registration lifetime asked for (s); refreshed at 3/4 of what the registrar grants.
    pub register_expires: u32,
    /// SIP over TLS: the address (a fixed port) and the PEM certificate chain and key.
    pub tls: Option<(SocketAddr, Vec<u8>, Vec<u8>)>,
}

/// Why a call out failed.
#[derive(Debug, thiserror::Error)]
pub enum DialError {
    /// Not a SIP URI we can call.
    #[error("bad target: {0}")]
    Target(String),
    /// No final answer (unreachable, timeout).
    #[error("no answer: {0}")]
    NoAnswer(String),
    /// Refused (busy, declined, not found) or answered with nothing usable.
    #[error("refused: {0}")]
    Refused(String),
    /// The room refused the participant or no ports were free.
    #[error("{0}")]
    Setup(String),
}

/// A call's session timer (RFC 4028).
#[derive(Debug, Clone, Copy)]
struct SessionTimer {
    interval: Duration,
    /// We send the refreshes (the caller asked us to, or does not support timers).
    we_refresh: bool,
    /// The caller listed `timer` in Supported (or Require).
    caller_supports: bool,
}

impl SessionTimer {
    /// Session-Expires (and Require: timer when the caller refreshes, §9) for our 2xx.
    fn headers(&self) -> Vec<Header> {
        let refresher = if self.we_refresh { "uas" } else { "uac" };
        let mut h = vec![Header::SessionExpires(format!("{};refresher={refresher}", self.interval.as_secs()).into())];
        if self.caller_supports && !self.we_refresh {
            h.push(Header::Require("timer".into()));
        }
        h
    }
}

/// Counters for `/metrics`.
#[derive(Default)]
pub struct SipCounters {
    /// INVITEs answered 200.
    pub calls_answered: AtomicU64,
    /// INVITEs refused (404, 488, 400, 486).
    pub calls_refused: AtomicU64,
    /// Calls ended for RTP silence.
    pub rtp_timeouts: AtomicU64,
    /// RTP/RTCP datagrams that were not RTP/RTCP, or from nobody in the call.
    pub bad_packets: AtomicU64,
    /// DTMF key presses received.
    pub dtmf: AtomicU64,
    /// INVITEs challenged (401) or refused for bad credentials.
    pub auth_challenges: AtomicU64,
    /// Calls ended because the session timer ran out (no refresh).
    pub session_expired: AtomicU64,
    /// Successful registrations (and refreshes).
    pub registrations: AtomicU64,
    /// Requests refused by the validator (400, 505) before the SIP stack saw them.
    pub malformed: Arc<AtomicU64>,
}

/// One call's handle, kept while it lasts.
struct Call {
    room: String,
    participant: String,
    session: String,
    stop: CancellationToken,
    /// Where the phone is and what it sends; replaced by a re-INVITE.
    state: Arc<Mutex<CallMedia>>,
    sdp_version: AtomicU64,
    ports: (u16, u16),
    /// The session timer (RFC 4028), when the caller asked for one.
    session_timer: Mutex<Option<SessionTimer>>,
    /// The last refresh (re-INVITE or UPDATE), or the answer.
    refreshed: Mutex<Instant>,
    dialog: InviteDialog,
}

/// The negotiated media, shared with the call's tasks.
#[derive(Clone)]
struct CallMedia {
    negotiated: Negotiated,
}

impl CallMedia {
    fn audio(&self) -> Option<&AudioChoice> {
        self.negotiated.audio.as_ref()
    }
    fn video(&self) -> Option<&VideoChoice> {
        self.negotiated.video.as_ref()
    }
}

/// The gateway.
pub struct Gateway {
    sfu: Arc<Sfu>,
    settings: SipSettings,
    mcu: McuConfig,
    plan: Mutex<DialPlan>,
    dialogs: DialogLayer,
    state_tx: DialogStateSender,
    calls: Mutex<HashMap<String, Arc<Call>>>,
    ip: IpAddr,
    /// The port SIP listens on (UDP and TCP).
    bound_port: u16,
    /// Counters.
    pub counters: SipCounters,
    cancel: CancellationToken,
    /// Nonces handed out in challenges, with when (valid for 5 minutes).
    nonces: Mutex<HashMap<String, Instant>>,
    endpoint: rsipstack::transaction::endpoint::EndpointInnerRef,
}

/// Starts the gateway on `settings.listen` (UDP, and TCP on the same port). Returns it and
/// the address it listens on.
pub async fn start(sfu: Arc<Sfu>, settings: SipSettings, mcu: McuConfig) -> anyhow::Result<(Arc<Gateway>, SocketAddr)> {
    let cancel = CancellationToken::new();
    let transport = TransportLayer::new(cancel.clone());
    let udp = UdpConnection::create_connection(settings.listen, None, Some(cancel.child_token())).await?;
    let bound = udp.get_addr().get_socketaddr()?;
    transport.add_transport(udp.into());
    let tcp = TcpListenerConnection::new(bound, None).await?;
    transport.add_transport(tcp.into());
    if let Some((addr, cert, key)) = &settings.tls {
        // Refuse a certificate rustls cannot load now, not at the first handshake.
        let config = rsipstack::transport::TlsConfig { cert: Some(cert.clone()), key: Some(key.clone()), ..Default::default() };
        let tls = rsipstack::transport::TlsListenerConnection::new(*addr, None, config).await?;
        transport.add_transport(tls.into());
    }
    let malformed = Arc::new(AtomicU64::new(0));
    let endpoint = EndpointBuilder::new()
        .with_cancel_token(cancel.clone())
        .with_transport_layer(transport)
        .with_user_agent("mcu")
        // Our Call-IDs end in our address, not the stack's default domain.
        .with_option(rsipstack::transaction::endpoint::EndpointOption { callid_suffix: Some(bound.ip().to_string()), ..Default::default() })
        .with_transport_inspector(Box::new(Validator { malformed: malformed.clone() }))
        .build();
    let incoming = endpoint.incoming_transactions()?;
    let dialogs = DialogLayer::new(endpoint.inner.clone());
    let (state_tx, state_rx) = dialogs.new_dialog_state_channel();
    let gateway = Arc::new(Gateway {
        sfu,
        plan: Mutex::new(settings.plan.clone()),
        settings,
        mcu,
        dialogs,
        state_tx,
        calls: Mutex::default(),
        ip: bound.ip(),
        bound_port: bound.port(),
        counters: SipCounters { malformed, ..SipCounters::default() },
        cancel: cancel.clone(),
        nonces: Mutex::default(),
        endpoint: endpoint.inner.clone(),
    });
    tokio::spawn(async move {
        endpoint.serve().await;
    });
    if gateway.settings.registrar.is_some() {
        tokio::spawn(gateway.clone().keep_registered());
    }
    tokio::spawn(gateway.clone().serve(incoming));
    tokio::spawn(gateway.clone().watch_dialogs(state_rx));
    Ok((gateway, bound))
}

/// Checks what the SIP stack parsed before it handles it: a request missing a mandatory header,
/// with a CSeq that is not `NUMBER METHOD` of the request's method, a Content-Length that is not
/// a number or promises more body than arrived, or another SIP version, is answered 400 (505 for
/// the version) and dropped. (Datagrams the parser cannot read at all are dropped by the stack.)
struct Validator {
    malformed: Arc<AtomicU64>,
}

fn check_request(req: &rsipstack::sip::Request) -> Result<(), (StatusCode, String)> {
    let bad = |why: &str| Err((StatusCode::BadRequest, why.to_string()));
    if req.version != rsipstack::sip::Version::V2 {
        return Err((StatusCode::VersionNotSupported, format!("{} is not SIP/2.0", req.version)));
    }
    if req.via_header().is_err() {
        return bad("no Via");
    }
    if req.from_header().is_err() {
        return bad("no From");
    }
    if req.to_header().is_err() {
        return bad("no To");
    }
    if req.call_id_header().map(|c| c.value().trim().is_empty()).unwrap_or(true) {
        return bad("no Call-ID");
    }
    let Ok(cseq) = req.cseq_header() else { return bad("no CSeq") };
    match (cseq.seq(), cseq.method()) {
        (Ok(_), Ok(m)) if m == req.method => {}
        (Ok(_), Ok(m)) => return bad(&format!("CSeq method {m} is not the request's {}", req.method)),
        _ => return bad("CSeq is not NUMBER METHOD"),
    }
    for h in req.headers.iter() {
        if let Header::ContentLength(l) = h {
            match l.value().trim().parse::<usize>() {
                Ok(n) if n > req.body.len() => return bad(&format!("Content-Length {n} but {} bytes of body", req.body.len())),
                Ok(_) => {}
                Err(_) => return bad("Content-Length is not a number"),
            }
        }
    }
    Ok(())
}

#[async_trait::async_trait]
impl rsipstack::transaction::endpoint::TransportEventInspector for Validator {
    async fn handle(&self, event: rsipstack::transport::TransportEvent) -> Option<rsipstack::transport::TransportEvent> {
        let rsipstack::transport::TransportEvent::Incoming(rsipstack::sip::SipMessage::Request(req), conn, from) = &event else { return Some(event) };
        let Err((status, why)) = check_request(req) else { return Some(event) };
        self.malformed.fetch_add(1, Ordering::Relaxed);
        tracing::debug!(%from, %status, why, "malformed SIP request refused");
        // Without a Via there is nowhere to send a response (RFC 3261 §18.2.2): dropped.
        if req.via_header().is_ok() {
            let keep = |h: &&Header| matches!(h, Header::Via(_) | Header::From(_) | Header::To(_) | Header::CallId(_) | Header::CSeq(_));
            let mut headers: Vec<Header> = req.headers.iter().filter(keep).cloned().collect();
            headers.push(Header::Other("Warning".into(), format!("399 mcu \"{why}\"")));
            headers.push(Header::ContentLength("0".into()));
            let response = rsipstack::sip::Response {
                status_code: status,
                wire_reason: None,
                version: rsipstack::sip::Version::V2,
                headers: headers.into(),
                body: Vec::new(),
            };
            let _ = conn.send(rsipstack::sip::SipMessage::Response(response), Some(from)).await;
        }
        None
    }
}

fn reply_headers() -> Vec<Header> {
    vec![Header::ContentType("application/sdp".into())]
}

/// A participant name from the caller's user part: `sip-` and letters, digits, `-_.`.
fn participant_name(user: &str) -> String {
    let clean: String = user.chars().filter(|c| c.is_ascii_alphanumeric() || "-_.".contains(*c)).take(32).collect();
    format!("sip-{}", if clean.is_empty() { "caller" } else { &clean })
}

impl Gateway {
    /// The dial plan's entries.
    pub fn routes(&self) -> Vec<(String, String)> {
        self.plan.lock().entries().map(|(a, b)| (a.into(), b.into())).collect()
    }

    /// Calls `target` (a SIP URI) into `room`: our offer, then the media of the answer. The
    /// participant is named `sip-` and the target's user part (or `name`). Returns it once the
    /// call is answered.
    pub async fn dial(self: &Arc<Self>, room: &str, target: &str, name: Option<&str>) -> Result<String, DialError> {
        let well_formed =
            (target.starts_with("sip:") || target.starts_with("sips:")) && target.len() <= 512 && !target.chars().any(|c| c.is_whitespace() || c.is_control());
        if !well_formed {
            return Err(DialError::Target(format!("{target:?} is not a sip: or sips: URI")));
        }
        let callee = rsipstack::sip::Uri::try_from(target).map_err(|e| DialError::Target(format!("{target:?}: {e}")))?;
        if callee.user().is_none() && name.is_none() {
            return Err(DialError::Target(format!("{target:?} has no user part; give a name")));
        }
        let sockets = self.bind_media().await.map_err(|e| DialError::Setup(e.to_string()))?;
        let (audio_port, video_port) =
            (sockets.audio_rtp.local_addr().map(|a| a.port()).unwrap_or(0), sockets.video_rtp.local_addr().map(|a| a.port()).unwrap_or(0));
        let offer = mcu_sip::offer_sdp(self.ip, audio_port, Some(video_port), audio_port as u64 * 65536 + video_port as u64, 1);
        let local = SocketAddr::new(self.ip, self.bound_port);
        let me = rsipstack::sip::Uri {
            scheme: Some(rsipstack::sip::Scheme::Sip),
            auth: Some(rsipstack::sip::Auth { user: "mcu".into(), password: None }),
            host_with_port: local.into(),
            params: vec![],
            headers: vec![],
        };
        let option = rsipstack::dialog::invitation::InviteOption {
            caller: me.clone(),
            callee: callee.clone(),
            contact: me,
            content_type: Some("application/sdp".into()),
            offer: Some(offer.into_bytes()),
            ..Default::default()
        };
        let invited = tokio::time::timeout(Duration::from_secs(60), self.dialogs.do_invite(option, self.state_tx.clone()))
            .await
            .map_err(|_| DialError::NoAnswer("no final answer within 60 s".into()))?;
        let (dialog, response) = invited.map_err(|e| DialError::NoAnswer(e.to_string()))?;
        let response = response.ok_or_else(|| DialError::NoAnswer("no response".into()))?;
        match response.status_code.code() {
            200..=299 => {}
            // 408 is also what the stack reports when nothing answered before timer B.
            408 | 480 => return Err(DialError::NoAnswer(response.status_code.to_string())),
            _ => return Err(DialError::Refused(response.status_code.to_string())),
        }
        let answer = String::from_utf8_lossy(&response.body).to_string();
        let negotiated = parse_offer(&answer).map_err(|e| e.to_string()).and_then(|o| negotiate(&o, self.settings.video_size).map_err(|e| e.to_string()));
        let negotiated = match negotiated {
            Ok(n) => n,
            Err(e) => {
                let _ = dialog.bye().await;
                return Err(DialError::Refused(format!("unusable answer: {e}")));
            }
        };
        let user = name.map(str::to_string).or_else(|| callee.user().map(str::to_string)).unwrap_or_default();
        let id = dialog.id().to_string();
        match self.clone().join(room, &user, negotiated, dialog.clone(), sockets) {
            Ok(call) => {
                let participant = call.participant.clone();
                self.calls.lock().insert(id, call);
                self.counters.calls_answered.fetch_add(1, Ordering::Relaxed);
                tracing::info!(room, %participant, target, "SIP call out answered");
                Ok(participant)
            }
            Err(e) => {
                let _ = dialog.bye().await;
                Err(DialError::Setup(e.to_string()))
            }
        }
    }

    /// Adds or replaces a dial-plan route.
    pub fn set_route(&self, number: &str, room: &str) -> Result<(), mcu_sip::dialplan::RouteError> {
        self.plan.lock().set(number, room)
    }

    /// Removes a route; false if there was none.
    pub fn remove_route(&self, number: &str) -> bool {
        self.plan.lock().remove(number)
    }

    /// Calls in progress: (room, participant).
    pub fn calls(&self) -> Vec<(String, String)> {
        self.calls.lock().values().map(|c| (c.room.clone(), c.participant.clone())).collect()
    }

    /// Hangs up every call (shutdown).
    pub async fn shutdown(&self) {
        let calls: Vec<Arc<Call>> = self.calls.lock().drain().map(|(_, c)| c).collect();
        for c in calls {
            let _ = c.dialog.bye().await;
            self.finish(&c).await;
        }
        self.cancel.cancel();
    }

    async fn serve(self: Arc<Self>, mut incoming: TransactionReceiver) {
        while let Some(mut tx) = incoming.recv().await {
            let me = self.clone();
            let in_dialog = tx.original.to_header().ok().and_then(|t| t.tag().ok().flatten()).is_some();
            match tx.original.method {
                Method::Invite if !in_dialog => {
                    tokio::spawn(async move { me.new_call(tx).await });
                }
                Method::Options if !in_dialog => {
                    tokio::spawn(async move {
                        let _ = tx.reply(StatusCode::OK).await;
                    });
                }
                _ => {
                    tokio::spawn(async move {
                        match me.dialogs.match_dialog(&tx) {
                            Some(Dialog::Invite(mut d)) => {
                                let _ = d.handle(&mut tx).await;
                            }
                            _ if tx.original.method == Method::Ack => {}
                            _ => {
                                let status = if in_dialog { StatusCode::CallTransactionDoesNotExist } else { StatusCode::MethodNotAllowed };
                                let _ = tx.reply(status).await;
                            }
                        }
                    });
                }
            }
        }
    }

    async fn refuse(&self, tx: &mut Transaction, status: StatusCode, why: &str) {
        self.counters.calls_refused.fetch_add(1, Ordering::Relaxed);
        tracing::info!(%status, why, uri = %tx.original.uri, "SIP call refused");
        let _ = tx.reply_with(status, vec![Header::Other("Warning".into(), format!("399 mcu \"{why}\""))], None).await;
    }

    async fn new_call(self: Arc<Self>, mut tx: Transaction) {
        let user = tx.original.uri.user().unwrap_or_default().to_string();
        let host = tx.original.uri.host().to_string();
        if !self.settings.users.is_empty() && !self.authenticated(&tx.original) {
            self.counters.auth_challenges.fetch_add(1, Ordering::Relaxed);
            let nonce = format!("{:032x}", rand::random::<u128>());
            {
                let mut nonces = self.nonces.lock();
                nonces.retain(|_, at| at.elapsed() < NONCE_LIFETIME);
                // A flood of unauthenticated INVITEs cannot grow the table without bound: the
                // oldest challenge gives way (its caller is challenged again).
                if nonces.len() >= MAX_NONCES
                    && let Some(oldest) = nonces.iter().min_by_key(|(_, at)| **at).map(|(k, _)| k.clone())
                {
                    nonces.remove(&oldest);
                }
                nonces.insert(nonce.clone(), Instant::now());
            }
            let challenge = format!("Digest realm=\"{REALM}\", nonce=\"{nonce}\", algorithm=MD5");
            tracing::info!(uri = %tx.original.uri, "SIP INVITE challenged (401)");
            let _ = tx.reply_with(StatusCode::Unauthorized, vec![Header::WwwAuthenticate(challenge.into())], None).await;
            return;
        }
        // Numbers are looked up only for authenticated callers (no probing the dial plan).
        let Some(room) = self.plan.lock().route(&user, &host).map(str::to_string) else {
            return self.refuse(&mut tx, StatusCode::NotFound, &format!("no room for {user}")).await;
        };
        // RFC 4028 session timer. The caller refreshes when it supports timers and does not ask
        // us to (§9); otherwise we do (re-INVITE at half the interval). A call left
        // unrefreshed by the caller is ended.
        let session_timer = match tx.original.session_expires_header().map(|h| h.value().to_string()) {
            None => None,
            Some(v) => match v.split(';').next().and_then(|n| n.trim().parse::<u64>().ok()) {
                Some(n) if n < MIN_SE => {
                    self.counters.calls_refused.fetch_add(1, Ordering::Relaxed);
                    let _ = tx.reply_with(StatusCode::SessionIntervalTooSmall, vec![Header::Other("Min-SE".into(), MIN_SE.to_string())], None).await;
                    return;
                }
                Some(n) => {
                    let supports = tx.original.header_contains_token("Supported", "timer") || tx.original.header_contains_token("Require", "timer");
                    let asks_us = v.split(';').skip(1).any(|p| p.trim().eq_ignore_ascii_case("refresher=uas"));
                    Some(SessionTimer { interval: Duration::from_secs(n), we_refresh: !supports || asks_us, caller_supports: supports })
                }
                None => return self.refuse(&mut tx, StatusCode::BadRequest, "malformed Session-Expires").await,
            },
        };
        let body = String::from_utf8_lossy(&tx.original.body).to_string();
        if body.trim().is_empty() {
            // Offerless INVITEs (offer in the ACK) are not supported.
            return self.refuse(&mut tx, StatusCode::NotAcceptableHere, "an INVITE without an SDP offer").await;
        }
        let offer = match parse_offer(&body) {
            Ok(o) => o,
            Err(e) => return self.refuse(&mut tx, StatusCode::BadRequest, &e.to_string()).await,
        };
        let negotiated = match negotiate(&offer, self.settings.video_size) {
            Ok(n) => n,
            Err(e) => return self.refuse(&mut tx, StatusCode::NotAcceptableHere, &e.to_string()).await,
        };
        let caller = tx.original.from_header().ok().and_then(|f| f.uri().ok()).and_then(|u| u.user().map(str::to_string)).unwrap_or_default();
        let contact = rsipstack::sip::Uri {
            scheme: Some(rsipstack::sip::Scheme::Sip),
            auth: Some(rsipstack::sip::Auth { user: user.clone(), password: None }),
            host_with_port: SocketAddr::new(self.ip, self.listen_port()).into(),
            params: vec![],
            headers: vec![],
        };
        let dialog = match self.dialogs.get_or_create_server_invite(&tx, self.state_tx.clone(), None, Some(contact)) {
            Ok(d) => d,
            Err(e) => return self.refuse(&mut tx, StatusCode::BadRequest, &e.to_string()).await,
        };
        let id = dialog.id().to_string();
        // The INVITE transaction: 100 Trying, then ACK or CANCEL.
        let mut handled = dialog.clone();
        tokio::spawn(async move {
            let _ = handled.handle(&mut tx).await;
        });
        if !self.settings.answer_delay.is_zero() {
            // After the transaction task has taken the INVITE (its 100 Trying), or the 180 is lost.
            tokio::time::sleep(Duration::from_millis(20)).await;
            let _ = dialog.ringing(None, None);
            tokio::time::sleep(self.settings.answer_delay).await;
            if matches!(dialog.state(), DialogState::Terminated(..)) {
                tracing::info!(%room, caller, "SIP call cancelled before the answer");
                return;
            }
        }
        match self.clone().start_media(&room, &caller, negotiated, dialog.clone()).await {
            Ok(call) => {
                let answer = self.answer_of(&call);
                let mut headers = reply_headers();
                if let Some(t) = session_timer {
                    *call.session_timer.lock() = Some(t);
                    headers.extend(t.headers());
                    if t.we_refresh {
                        self.clone().refresh_sessions(call.clone(), t.interval);
                    }
                }
                self.calls.lock().insert(id, call.clone());
                if dialog.accept(Some(headers), Some(answer.into_bytes())).is_err() {
                    self.calls.lock().retain(|_, c| !Arc::ptr_eq(c, &call));
                    self.finish(&call).await;
                    return;
                }
                self.counters.calls_answered.fetch_add(1, Ordering::Relaxed);
                tracing::info!(%room, participant = %call.participant, "SIP call answered");
            }
            Err(e) => {
                self.counters.calls_refused.fetch_add(1, Ordering::Relaxed);
                tracing::warn!(%room, error = %e, "SIP call not set up");
                let _ = dialog.reject(Some(StatusCode::BusyHere), Some(e.to_string()));
            }
        }
    }

    /// A digest `Authorization` for one of our users, with a nonce we handed out.
    fn authenticated(&self, req: &rsipstack::sip::Request) -> bool {
        let Some(header) = req.authorization_header() else { return false };
        let raw = header.value().to_string();
        let Ok(auth) = rsipstack::sip::typed::Authorization::parse(&raw) else { return false };
        let fresh = self.nonces.lock().get(&auth.nonce).is_some_and(|at| at.elapsed() < NONCE_LIFETIME);
        let Some(password) = self.settings.users.get(&auth.username) else { return false };
        let ok = fresh && auth.realm == REALM && rsipstack::dialog::authenticate::verify_digest(&auth, password, &req.method, &raw);
        if ok {
            // A nonce opens one call: the same Authorization replayed is challenged again.
            self.nonces.lock().remove(&auth.nonce);
        }
        ok
    }

    /// REGISTER with the configured registrar (digest auth answered by the stack), refreshed at
    /// 3/4 of the granted lifetime; retried every 30 s while it fails.
    async fn keep_registered(self: Arc<Self>) {
        let Some(registrar) = self.settings.registrar.clone() else { return };
        let Ok(server) = rsipstack::sip::Uri::try_from(registrar.as_str()) else {
            tracing::error!(%registrar, "--sip-registrar is not a SIP URI; not registering");
            return;
        };
        let credential = self.settings.register_user.clone().map(|(username, password)| rsipstack::dialog::authenticate::Credential {
            username,
            password,
            realm: None,
            auth_username: None,
        });
        let mut registration = rsipstack::dialog::registration::Registration::new(self.endpoint.clone(), credential);
        loop {
            let wait = match registration.register(server.clone(), Some(self.settings.register_expires)).await {
                Ok(resp) if resp.status_code.kind() == rsipstack::sip::StatusCodeKind::Successful => {
                    self.counters.registrations.fetch_add(1, Ordering::Relaxed);
                    let granted = registration.expires().max(10);
                    tracing::info!(%registrar, granted, "SIP registered");
                    Duration::from_secs(granted as u64 * 3 / 4)
                }
                Ok(resp) => {
                    tracing::warn!(%registrar, status = %resp.status_code, "SIP registration refused; retrying in 30 s");
                    Duration::from_secs(30)
                }
                Err(e) => {
                    tracing::warn!(%registrar, error = %e, "SIP registration failed; retrying in 30 s");
                    Duration::from_secs(30)
                }
            };
            tokio::select! {
                _ = self.cancel.cancelled() => return,
                _ = tokio::time::sleep(wait) => {}
            }
        }
    }

    fn listen_port(&self) -> u16 {
        self.bound_port
    }

    fn answer_of(&self, call: &Call) -> String {
        let media = call.state.lock().clone();
        let version = call.sdp_version.fetch_add(1, Ordering::Relaxed);
        answer_sdp(&media.negotiated, self.ip, call.ports.0, call.ports.1, call.ports.0 as u64 * 65536 + call.ports.1 as u64, version)
    }

    async fn watch_dialogs(self: Arc<Self>, mut rx: DialogStateReceiver) {
        while let Some(state) = rx.recv().await {
            match state {
                DialogState::Terminated(id, reason) => {
                    let call = self.calls.lock().remove(&id.to_string());
                    if let Some(call) = call {
                        tracing::info!(room = %call.room, participant = %call.participant, ?reason, "SIP call ended");
                        self.finish(&call).await;
                    }
                    self.dialogs.remove_dialog(&id);
                }
                DialogState::Updated(id, request, handle) => {
                    let call = self.calls.lock().get(&id.to_string()).cloned();
                    let Some(call) = call else {
                        let _ = handle.reply(StatusCode::CallTransactionDoesNotExist).await;
                        continue;
                    };
                    *call.refreshed.lock() = Instant::now();
                    let mut refresh_headers = Vec::new();
                    if let Some(t) = *call.session_timer.lock() {
                        refresh_headers.extend(t.headers());
                    }
                    let body = String::from_utf8_lossy(&request.body).to_string();
                    if body.trim().is_empty() {
                        if request.method == Method::Update {
                            // A session refresh without an offer.
                            let _ = handle.respond(StatusCode::OK, Some(refresh_headers), None).await;
                        } else {
                            // An offerless re-INVITE: our offer (the same answer again).
                            let answer = self.answer_of(&call);
                            refresh_headers.extend(reply_headers());
                            let _ = handle.respond(StatusCode::OK, Some(refresh_headers), Some(answer.into_bytes())).await;
                        }
                        continue;
                    }
                    match parse_offer(&body).map_err(|e| e.to_string()).and_then(|o| negotiate(&o, self.settings.video_size).map_err(|e| e.to_string())) {
                        Ok(n) => {
                            let hold = n.audio.as_ref().map(|a| a.direction);
                            tracing::info!(room = %call.room, participant = %call.participant, direction = ?hold, "SIP re-INVITE");
                            call.state.lock().negotiated = n;
                            let answer = self.answer_of(&call);
                            refresh_headers.extend(reply_headers());
                            let _ = handle.respond(StatusCode::OK, Some(refresh_headers), Some(answer.into_bytes())).await;
                        }
                        Err(e) => {
                            tracing::info!(error = %e, "re-INVITE refused");
                            let _ = handle.reply(StatusCode::NotAcceptableHere).await;
                        }
                    }
                }
                DialogState::Info(_, _, handle) | DialogState::Options(_, _, handle) => {
                    let _ = handle.reply(StatusCode::OK).await;
                }
                DialogState::Message(_, _, handle)
                | DialogState::Refer(_, _, handle)
                | DialogState::Notify(_, _, handle)
                | DialogState::Publish(_, _, handle) => {
                    let _ = handle.reply(StatusCode::NotImplemented).await;
                }
                _ => {}
            }
        }
    }

    /// Leaves the room and stops the call's tasks.
    async fn finish(&self, call: &Call) {
        call.stop.cancel();
        let _ = self.sfu.end(&call.session).await;
    }

    async fn bind_media(&self) -> anyhow::Result<Sockets> {
        let (audio_rtp, audio_rtcp) = bind_pair(self.ip).await?;
        let (video_rtp, video_rtcp) = bind_pair(self.ip).await?;
        Ok(Sockets { audio_rtp: Arc::new(audio_rtp), audio_rtcp: Arc::new(audio_rtcp), video_rtp: Arc::new(video_rtp), video_rtcp: Arc::new(video_rtcp) })
    }

    async fn start_media(self: Arc<Self>, room: &str, caller: &str, negotiated: Negotiated, dialog: InviteDialog) -> anyhow::Result<Arc<Call>> {
        let sockets = self.bind_media().await?;
        self.join(room, caller, negotiated, dialog, sockets)
    }

    fn join(self: Arc<Self>, room: &str, caller: &str, negotiated: Negotiated, dialog: InviteDialog, sockets: Sockets) -> anyhow::Result<Arc<Call>> {
        let ports = (sockets.audio_rtp.local_addr()?.port(), sockets.video_rtp.local_addr()?.port());
        let mut tracks = Vec::new();
        let (audio_ssrc, video_ssrc) = (rand::random::<u32>() | 1, rand::random::<u32>() | 1);
        if let Some(a) = &negotiated.audio {
            let _ = a;
            tracks.push(GatewayTrack { kind: RtpCodecKind::Audio, codec: crate::transport::rtc::opus_track_codec(), ssrc: audio_ssrc });
        }
        let mut profile = None;
        if let Some(v) = &negotiated.video {
            let (mime, fmtp, codec, single_nal) = match v.codec {
                VideoCodecChoice::H264 { mode, .. } => {
                    ("video/H264", "level-asymmetry-allowed=1;packetization-mode=1;profile-level-id=42e01f", MixCodec::H264, mode == 0)
                }
                VideoCodecChoice::Vp8 => ("video/VP8", "", MixCodec::Vp8, false),
            };
            tracks.push(GatewayTrack {
                kind: RtpCodecKind::Video,
                codec: RTCRtpCodec { mime_type: mime.into(), clock_rate: 90000, channels: 0, sdp_fmtp_line: fmtp.into(), ..Default::default() },
                ssrc: video_ssrc,
            });
            profile = Some(VideoProfile { codec, width: v.width, height: v.height, single_nal, bitrate: self.settings.video_bitrate });
        }
        let leg = self.sfu.join_gateway(room, &participant_name(caller), tracks, profile, self.mcu).map_err(|e| anyhow::anyhow!("{e}"))?;
        let stop = CancellationToken::new();
        let state = Arc::new(Mutex::new(CallMedia { negotiated }));
        let call = Arc::new(Call {
            room: room.to_string(),
            participant: leg.participant.clone(),
            session: leg.session.clone(),
            stop: stop.clone(),
            state: state.clone(),
            sdp_version: AtomicU64::new(1),
            ports,
            session_timer: Mutex::new(None),
            refreshed: Mutex::new(Instant::now()),
            dialog,
        });
        let last_rtp = Arc::new(Mutex::new(Instant::now()));
        self.spawn_call_tasks(leg, call.clone(), sockets, audio_ssrc, video_ssrc, last_rtp);
        Ok(call)
    }

    fn spawn_call_tasks(self: &Arc<Self>, leg: GatewayLeg, call: Arc<Call>, s: Sockets, audio_ssrc: u32, video_ssrc: u32, last_rtp: Arc<Mutex<Instant>>) {
        let GatewayLeg { room, participant, published, video, audio, sub, hangup, .. } = leg;
        let stop = call.stop.clone();
        let phone_video_ssrc = Arc::new(AtomicU64::new(0));
        for (track, mut keyframes) in published {
            if track.kind == RtpCodecKind::Audio {
                let (room, state, stop, last, participant, me) =
                    (room.clone(), call.state.clone(), stop.clone(), last_rtp.clone(), participant.clone(), self.clone());
                let sock = s.audio_rtp.clone();
                tokio::spawn(async move {
                    tokio::select! {
                        _ = stop.cancelled() => {}
                        _ = audio_in(me, sock, room, track, participant, state, audio_ssrc, last) => {}
                    }
                });
            } else {
                let (room, stop_in, last, participant, me, phone) =
                    (room.clone(), stop.clone(), last_rtp.clone(), participant.clone(), self.clone(), phone_video_ssrc.clone());
                let sock = s.video_rtp.clone();
                tokio::spawn(async move {
                    tokio::select! {
                        _ = stop_in.cancelled() => {}
                        _ = video_in(me, sock, room, track, participant, video_ssrc, phone, last) => {}
                    }
                });
                // The room asks the phone for keyframes: RTCP PLI to its RTCP address.
                let (stop, state, rtcp, phone) = (stop.clone(), call.state.clone(), s.video_rtcp.clone(), phone_video_ssrc.clone());
                let rtp_sock = s.video_rtp.clone();
                tokio::spawn(async move {
                    loop {
                        tokio::select! {
                            _ = stop.cancelled() => return,
                            asked = keyframes.recv() => {
                                if asked.is_none() { return; }
                                let media = phone.load(Ordering::Relaxed) as u32;
                                let v = state.lock().video().cloned();
                                if let Some(v) = v && media != 0 {
                                    let pli = mcu_sfu::rtcp::pli(video_ssrc, media);
                                    let sock = if v.rtcp_mux { &rtp_sock } else { &rtcp };
                                    let _ = sock.send_to(&pli, v.remote_rtcp).await;
                                }
                            }
                        }
                    }
                });
            }
        }
        // The phone's RTCP: keyframe requests (and REMB) for its picture.
        for sock in [s.video_rtcp.clone(), s.audio_rtcp.clone()] {
            let (room, stop) = (room.clone(), stop.clone());
            tokio::spawn(async move {
                let mut buf = vec![0u8; 1500];
                loop {
                    tokio::select! {
                        _ = stop.cancelled() => return,
                        r = sock.recv_from(&mut buf) => {
                            let Ok((n, _)) = r else { return };
                            room.subscriber_rtcp(sub, &buf[..n]);
                        }
                    }
                }
            });
        }
        if let Some((_, rx)) = video {
            let (state, stop, sock) = (call.state.clone(), stop.clone(), s.video_rtp.clone());
            tokio::spawn(async move {
                tokio::select! {
                    _ = stop.cancelled() => {}
                    _ = video_out(sock, state, rx) => {}
                }
            });
        }
        if let Some((_, rx)) = audio {
            let (state, stop, sock) = (call.state.clone(), stop.clone(), s.audio_rtp.clone());
            tokio::spawn(async move {
                tokio::select! {
                    _ = stop.cancelled() => {}
                    r = audio_out(sock, state, rx, audio_ssrc) => if let Err(e) = r { tracing::warn!(error = %e, "SIP audio out stopped") },
                }
            });
        }
        // RTP timeout and hang-up by the server.
        let (me, stop) = (self.clone(), stop.clone());
        tokio::spawn(async move {
            let timeout = me.settings.rtp_timeout;
            loop {
                tokio::select! {
                    biased;
                    _ = stop.cancelled() => return,
                    _ = hangup.notified() => {
                        if stop.is_cancelled() {
                            return;
                        }
                        tracing::info!(room = %call.room, participant = %call.participant, "SIP participant removed; hanging up");
                        me.hang_up(&call).await;
                        return;
                    }
                    _ = tokio::time::sleep(Duration::from_millis(500)) => {
                        let sends = {
                            let m = call.state.lock();
                            // Our direction receives: the phone should be sending.
                            m.audio().map(|a| a.direction.receives()).unwrap_or(false) || m.video().map(|v| v.direction.receives()).unwrap_or(false)
                        };
                        let timer = *call.session_timer.lock();
                        if let Some(t) = timer
                            && !t.we_refresh
                            && call.refreshed.lock().elapsed() > t.interval
                        {
                            me.counters.session_expired.fetch_add(1, Ordering::Relaxed);
                            tracing::info!(room = %call.room, participant = %call.participant, "SIP session timer expired without a refresh; hanging up");
                            me.hang_up(&call).await;
                            return;
                        }
                        let silent = last_rtp.lock().elapsed();
                        if sends && silent > timeout {
                            me.counters.rtp_timeouts.fetch_add(1, Ordering::Relaxed);
                            tracing::info!(room = %call.room, participant = %call.participant, silent_ms = silent.as_millis() as u64, "no RTP from the phone; hanging up");
                            me.hang_up(&call).await;
                            return;
                        }
                        if !sends {
                            // On hold: the clock restarts when media resumes.
                            *last_rtp.lock() = Instant::now();
                        }
                    }
                }
            }
        });
    }

    /// The refresher's side of a session timer: a re-INVITE with our SDP every half interval
    /// while the call lasts; a refresh that fails (no answer, 481) ends the call.
    fn refresh_sessions(self: Arc<Self>, call: Arc<Call>, interval: Duration) {
        tokio::spawn(async move {
            loop {
                tokio::select! {
                    _ = call.stop.cancelled() => return,
                    _ = tokio::time::sleep(interval / 2) => {}
                }
                let answer = self.answer_of(&call);
                let mut headers = reply_headers();
                headers.push(Header::SessionExpires(format!("{};refresher=uas", interval.as_secs()).into()));
                let refreshed = call.dialog.reinvite(Some(headers), Some(answer.into_bytes())).await;
                match refreshed {
                    Ok(Some(r)) if r.status_code.kind() == rsipstack::sip::StatusCodeKind::Successful => {
                        *call.refreshed.lock() = Instant::now();
                    }
                    other => {
                        if call.stop.is_cancelled() {
                            return;
                        }
                        let status = other.as_ref().ok().and_then(|r| r.as_ref().map(|r| r.status_code.to_string()));
                        self.counters.session_expired.fetch_add(1, Ordering::Relaxed);
                        tracing::info!(room = %call.room, participant = %call.participant, ?status, "session refresh failed; hanging up");
                        self.hang_up(&call).await;
                        return;
                    }
                }
            }
        });
    }

    /// Our side ends the call: leave the room at once, then BYE (whose transaction may take
    /// seconds with a phone that vanished).
    async fn hang_up(&self, call: &Arc<Call>) {
        self.calls.lock().retain(|_, c| !Arc::ptr_eq(c, call));
        self.finish(call).await;
        let dialog = call.dialog.clone();
        tokio::spawn(async move {
            let _ = tokio::time::timeout(Duration::from_secs(32), dialog.bye()).await;
        });
    }

    fn dtmf(&self, room: &str, participant: &str, digit: char) {
        self.counters.dtmf.fetch_add(1, Ordering::Relaxed);
        tracing::info!(room, participant, %digit, "DTMF");
        self.sfu.events.emit(room, EventKind::Dtmf { participant: participant.into(), digit });
    }
}

struct Sockets {
    audio_rtp: Arc<UdpSocket>,
    audio_rtcp: Arc<UdpSocket>,
    video_rtp: Arc<UdpSocket>,
    video_rtcp: Arc<UdpSocket>,
}

/// An RTP socket on an even port and its RTCP socket on the next one.
async fn bind_pair(ip: IpAddr) -> anyhow::Result<(UdpSocket, UdpSocket)> {
    for _ in 0..64 {
        let port = 20000 + 2 * (rand::random::<u16>() % 10000);
        let Ok(rtp) = UdpSocket::bind(SocketAddr::new(ip, port)).await else { continue };
        let Ok(rtcp) = UdpSocket::bind(SocketAddr::new(ip, port + 1)).await else { continue };
        return Ok((rtp, rtcp));
    }
    anyhow::bail!("no free RTP port pair on {ip}")
}

fn is_rtcp(buf: &[u8]) -> bool {
    buf.len() >= 2 && (192..=223).contains(&buf[1])
}

/// The phone's audio into the room: G.711 decoded, resampled to 48 kHz and Opus-encoded (20 ms
/// frames); Opus forwarded as is. Telephone events become room events.
#[allow(clippy::too_many_arguments)]
async fn audio_in(
    gw: Arc<Gateway>,
    sock: Arc<UdpSocket>,
    room: Arc<crate::media::room::Room>,
    track: crate::media::room::PublishedTrack,
    participant: String,
    state: Arc<Mutex<CallMedia>>,
    ssrc: u32,
    last: Arc<Mutex<Instant>>,
) -> anyhow::Result<()> {
    let mut buf = vec![0u8; 2048];
    let mut dtmf = DtmfDetector::new();
    let mut upsample = Resampler::new(8000, 48000, 1)?;
    // Narrowband speech from a phone.
    let mut encoder = OpusEncoder::new(OpusConfig { complexity: PHONE_OPUS_COMPLEXITY, ..OpusConfig::voice(OpusChannels::Mono, 32_000) })?;
    let mut pcm: Vec<i16> = Vec::new();
    let (mut seq, mut ts): (u16, u32) = (rand::random(), rand::random());
    loop {
        let (n, from) = sock.recv_from(&mut buf).await?;
        let Some(a) = state.lock().audio().cloned() else { continue };
        if from.ip() != a.remote.ip() || is_rtcp(&buf[..n]) {
            gw.counters.bad_packets.fetch_add(1, Ordering::Relaxed);
            continue;
        }
        let Ok(packet) = RtpPacket::parse(&buf[..n]) else {
            gw.counters.bad_packets.fetch_add(1, Ordering::Relaxed);
            continue;
        };
        *last.lock() = Instant::now();
        let pt = packet.payload_type;
        if Some(pt) == a.dtmf_pt {
            if let Some(ev) = dtmf.push(packet.timestamp, packet.payload()) {
                gw.dtmf(&room.name, &participant, ev.digit);
            }
            continue;
        }
        if pt != a.pt {
            continue;
        }
        let mut out = |payload: &[u8], samples: u32| {
            seq = seq.wrapping_add(1);
            ts = ts.wrapping_add(samples);
            room.ingest(&track, &participant, Bytes::from(mcu_sfu::rtp::build(111, false, seq, ts, ssrc, payload)));
        };
        match a.codec {
            AudioCodec::Opus => out(packet.payload(), 960),
            AudioCodec::Pcmu | AudioCodec::Pcma => {
                let law = if a.codec == AudioCodec::Pcmu { G711Law::MuLaw } else { G711Law::ALaw };
                pcm.extend(upsample.process(&law.decode(packet.payload())));
                while pcm.len() >= 960 {
                    let frame: Vec<i16> = pcm.drain(..960).collect();
                    if let Ok(opus) = encoder.encode(&frame) {
                        out(&opus, 960);
                    }
                }
            }
        }
    }
}

/// The phone's video into the room, as sent (SSRC rewritten to the track's).
#[allow(clippy::too_many_arguments)]
async fn video_in(
    gw: Arc<Gateway>,
    sock: Arc<UdpSocket>,
    room: Arc<crate::media::room::Room>,
    track: crate::media::room::PublishedTrack,
    participant: String,
    ssrc: u32,
    phone_ssrc: Arc<AtomicU64>,
    last: Arc<Mutex<Instant>>,
) -> anyhow::Result<()> {
    let mut buf = vec![0u8; 2048];
    loop {
        let (n, _) = sock.recv_from(&mut buf).await?;
        if is_rtcp(&buf[..n]) {
            // rtcp-mux: the phone's keyframe requests.
            continue;
        }
        let Ok(packet) = RtpPacket::parse(&buf[..n]) else {
            gw.counters.bad_packets.fetch_add(1, Ordering::Relaxed);
            continue;
        };
        *last.lock() = Instant::now();
        phone_ssrc.store(packet.ssrc as u64, Ordering::Relaxed);
        buf[8..12].copy_from_slice(&ssrc.to_be_bytes());
        room.ingest(&track, &participant, Bytes::copy_from_slice(&buf[..n]));
    }
}

/// The phone's picture out: the forwarded packets with the phone's payload type.
async fn video_out(sock: Arc<UdpSocket>, state: Arc<Mutex<CallMedia>>, mut rx: mpsc::Receiver<Bytes>) {
    while let Some(p) = rx.recv().await {
        let Some(v) = state.lock().video().cloned() else { continue };
        if !v.direction.sends() || p.len() < 12 {
            continue;
        }
        let mut out = p.to_vec();
        out[1] = (out[1] & 0x80) | (v.pt & 0x7f);
        let _ = sock.send_to(&out, v.remote).await;
    }
}

/// The phone's mix out: Opus as is (payload type rewritten), or decoded, resampled to 8 kHz
/// and G.711-encoded in 20 ms packets.
async fn audio_out(sock: Arc<UdpSocket>, state: Arc<Mutex<CallMedia>>, mut rx: mpsc::Receiver<Bytes>, ssrc: u32) -> anyhow::Result<()> {
    let mut decoder = OpusDecoder::new(OpusChannels::Mono)?;
    let mut downsample = Resampler::new(48000, 8000, 1)?;
    let mut pcm: Vec<i16> = Vec::new();
    let (mut seq, mut ts): (u16, u32) = (rand::random(), rand::random());
    while let Some(p) = rx.recv().await {
        let Some(a) = state.lock().audio().cloned() else { continue };
        if p.len() < 12 {
            continue;
        }
        let Ok(packet) = RtpPacket::parse(&p) else { continue };
        match a.codec {
            AudioCodec::Opus => {
                if a.direction.sends() {
                    let mut out = p.to_vec();
                    out[1] = (out[1] & 0x80) | (a.pt & 0x7f);
                    let _ = sock.send_to(&out, a.remote).await;
                }
            }
            AudioCodec::Pcmu | AudioCodec::Pcma => {
                let Ok(decoded) = decoder.decode(packet.payload()) else { continue };
                pcm.extend(downsample.process(&decoded));
                let law = if a.codec == AudioCodec::Pcmu { G711Law::MuLaw } else { G711Law::ALaw };
                while pcm.len() >= 160 {
                    let frame: Vec<i16> = pcm.drain(..160).collect();
                    seq = seq.wrapping_add(1);
                    ts = ts.wrapping_add(160);
                    if a.direction.sends() {
                        let rtp = mcu_sfu::rtp::build(a.pt, false, seq, ts, ssrc, &law.encode(&frame));
                        let _ = sock.send_to(&rtp, a.remote).await;
                    }
                }
            }
        }
    }
    Ok(())
}
