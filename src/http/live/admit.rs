//! Admission before the WebSocket upgrade, for the protocols that refuse with an HTTP status
//! (Deepgram's and OpenAI's clients read the status and body of a failed handshake): the
//! Origin allow-list, the key, a connection place for the client's address and a session
//! place. sori's own `/ws` refuses after the upgrade instead, since browsers never show an
//! HTTP error's body.

use std::net::IpAddr;

use axum::http::{HeaderMap, StatusCode};

use super::SessionSlot;
use crate::http::AppState;
use crate::http::access::{ConnectionSlot, Denied};

/// The places an admitted session holds; both are given back when it drops.
pub struct Admitted {
    _client: ConnectionSlot,
    _session: SessionSlot,
}

/// Why a connection was refused before the upgrade.
#[derive(Debug, thiserror::Error)]
pub enum Refusal {
    #[error("{0}")]
    Origin(Denied),
    #[error("{0}")]
    Key(Denied),
    #[error("too many connections from {ip}: {limit} are open; close one or try again later")]
    TooManyConnections { ip: IpAddr, limit: usize },
    #[error("server full: {0} sessions are open; try again later")]
    ServerFull(usize),
}

impl Refusal {
    /// sori's code for the reason (the metrics label).
    pub fn code(&self) -> &'static str {
        match self {
            Refusal::Origin(denied) | Refusal::Key(denied) => denied.code(),
            Refusal::TooManyConnections { .. } => "too_many_connections",
            Refusal::ServerFull(_) => "server_full",
        }
    }

    pub fn status(&self) -> StatusCode {
        match self {
            Refusal::Origin(_) => StatusCode::FORBIDDEN,
            Refusal::Key(_) => StatusCode::UNAUTHORIZED,
            Refusal::TooManyConnections { .. } | Refusal::ServerFull(_) => {
                StatusCode::TOO_MANY_REQUESTS
            }
        }
    }
}

/// Checks origin and `key` (as the client presented it), then takes a connection place and a
/// session place. Counts a refusal in the metrics under `protocol`.
pub fn admit(
    state: &AppState,
    protocol: &str,
    peer: IpAddr,
    headers: &HeaderMap,
    key: Option<&str>,
) -> Result<Admitted, Refusal> {
    let admitted = admit_unrecorded(state, peer, headers, key);
    if let Err(refusal) = &admitted {
        tracing::info!(peer = %peer, protocol, reason = refusal.code(), "session refused");
        crate::metrics::global().session_refused(protocol, refusal.code());
    }
    admitted
}

fn admit_unrecorded(
    state: &AppState,
    peer: IpAddr,
    headers: &HeaderMap,
    key: Option<&str>,
) -> Result<Admitted, Refusal> {
    let server = &state.transcriber.config.server;
    state
        .access
        .check_origin(headers)
        .map_err(Refusal::Origin)?;
    state.access.check_key(key).map_err(Refusal::Key)?;
    let client = state
        .clients
        .admit(peer, server.max_connections_per_client)
        .ok_or(Refusal::TooManyConnections {
            ip: peer,
            limit: server.max_connections_per_client,
        })?;
    let session = SessionSlot::claim(&state.sessions, server.max_sessions)
        .ok_or(Refusal::ServerFull(server.max_sessions))?;
    Ok(Admitted {
        _client: client,
        _session: session,
    })
}
