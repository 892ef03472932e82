//! Long requests (uploads) hold a place of their client address, like `/ws` sessions and SSE
//! streams, and end when the server stops.

use axum::extract::{ConnectInfo, Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use super::access::ClientAddr;
use super::{AppError, AppState};

/// The 429 a client address gets when it holds `limit` sessions, streams and uploads.
pub fn too_many_from_address(limit: usize) -> AppError {
    AppError::new(
        StatusCode::TOO_MANY_REQUESTS,
        "too_many_connections",
        format!(
            "this address already holds {limit} open sessions, status streams and uploads \
             (server.max_connections_per_client); close one or try again later"
        ),
    )
}

/// Middleware for upload routes: the request counts against its address's
/// `server.max_connections_per_client` while it runs (429 beyond it), and is ended with 503
/// `shutting_down` when the server stops (its file job is dropped with it).
pub async fn long_request(
    State(state): State<AppState>,
    ConnectInfo(ClientAddr(peer)): ConnectInfo<ClientAddr>,
    request: Request,
    next: Next,
) -> Response {
    let limit = state.transcriber.config.server.max_connections_per_client;
    let Some(_place) = state.clients.admit(peer.ip(), limit) else {
        tracing::info!(%peer, limit, "upload refused: too many from this address");
        return too_many_from_address(limit).into_response();
    };
    let mut stopping = state.stopping.subscribe();
    tokio::select! {
        response = next.run(request) => response,
        () = super::conn::stopped(&mut stopping) => {
            let mut response = AppError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "shutting_down",
                "the server is shutting down; send the request again when it is back",
            )
            .into_response();
            response
                .headers_mut()
                .insert(header::CONNECTION, HeaderValue::from_static("close"));
            response
        }
    }
}
