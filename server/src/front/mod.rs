//! The front doors: HTTP (WHIP/WHEP and their session resources, `/rooms`, the demo page), the
//! WebSocket room protocol, `/metrics` and `/healthz`, and the gRPC control API. They turn
//! requests into calls on the [`crate::app::App`] and the rooms ([`crate::media`]), and own no
//! media state.

pub mod grpc;
pub mod http;
pub mod metrics;
pub mod ws;

use std::sync::Arc;

use axum::{
    Router,
    extract::DefaultBodyLimit,
    http::{HeaderName, Method, header},
    routing::{get, patch, post},
};
use tower_http::cors::CorsLayer;

use self::{http::Http, ws::WsHub};

/// The HTTP port's routes: WHIP/WHEP and the session resources (CORS open, bodies up to
/// `max_body_bytes`), `/rooms`, the demo page, `/ws`, `/metrics` and `/healthz`.
pub fn router(http: Arc<Http>, ws: Arc<WsHub>, max_body_bytes: usize) -> Router {
    let cors = CorsLayer::new()
        .allow_origin(tower_http::cors::Any)
        .allow_methods([Method::GET, Method::POST, Method::PATCH, Method::DELETE, Method::OPTIONS])
        .allow_headers([header::AUTHORIZATION, header::CONTENT_TYPE, header::IF_MATCH])
        .expose_headers([header::LOCATION, header::ETAG, header::LINK, HeaderName::from_static("accept-patch"), HeaderName::from_static("x-participant")]);
    let media = Router::new()
        .route("/whip/{room}", post(http::whip))
        .route("/whep/{room}", post(http::whep_room))
        .route("/mcu/{room}", post(http::mcu_join))
        .route("/rooms/{room}", get(http::room_info))
        .route("/", get(http::demo_page))
        .route("/control", get(http::control_info))
        .route("/whep/{room}/{participant}", post(http::whep_participant))
        .route("/session/{id}", patch(http::patch_session).delete(http::delete_session))
        .with_state(http)
        .layer(DefaultBodyLimit::max(max_body_bytes))
        .layer(cors);
    Router::new()
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/metrics", get(metrics::endpoint))
        .route("/ws", get(ws::ws_upgrade))
        .with_state(ws)
        .merge(media)
}
