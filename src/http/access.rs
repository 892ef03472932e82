//! Who may come in: API tokens (`Authorization: Bearer` or `?token=`), the `/ws` Origin
//! allow-list, and how many `/ws` connections one client address may hold.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};

use axum::extract::connect_info::Connected;
use axum::extract::{Request, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::serve::IncomingStream;

use super::{AppError, AppState};
use crate::config::ServerConfig;

/// Paths open without a token: the page and its files (the page asks for the token), and
/// the probes load balancers and orchestrators call.
const OPEN_PATHS: &[&str] = &["/", "/health", "/ready"];
const OPEN_PREFIXES: &[&str] = &["/static/"];

/// Why a request was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Denied {
    #[error(
        "a token is required: send \"Authorization: Bearer <token>\" or add ?token=<token> to the URL"
    )]
    MissingToken,
    #[error("the token is not valid for this server")]
    WrongToken,
    #[error("origin {0:?} may not open sessions on this server (see server.allowed_origins)")]
    Origin(String),
}

impl Denied {
    pub fn code(&self) -> &'static str {
        match self {
            Denied::MissingToken => "token_required",
            Denied::WrongToken => "token_invalid",
            Denied::Origin(_) => "origin_not_allowed",
        }
    }
}

#[derive(Debug, Clone, Default)]
pub struct Access {
    tokens: Vec<String>,
    origins: Vec<String>,
}

impl Access {
    pub fn new(cfg: &ServerConfig) -> Self {
        Self {
            tokens: cfg.api_tokens.clone(),
            origins: cfg
                .allowed_origins
                .iter()
                .map(|o| o.trim_end_matches('/').to_ascii_lowercase())
                .collect(),
        }
    }

    pub fn requires_token(&self) -> bool {
        !self.tokens.is_empty()
    }

    /// Checks the bearer header first, then `token` in the query string.
    pub fn check_token(&self, headers: &HeaderMap, query: Option<&str>) -> Result<(), Denied> {
        if self.tokens.is_empty() {
            return Ok(());
        }
        let presented = bearer(headers).or_else(|| query.and_then(query_token));
        match presented {
            None => Err(Denied::MissingToken),
            Some(token) if self.tokens.iter().any(|t| same_secret(t, &token)) => Ok(()),
            Some(_) => Err(Denied::WrongToken),
        }
    }

    /// Browsers always send `Origin` on WebSockets; other clients usually do not and pass.
    pub fn check_origin(&self, headers: &HeaderMap) -> Result<(), Denied> {
        let Some(origin) = headers.get(header::ORIGIN) else {
            return Ok(());
        };
        if self.origins.is_empty() {
            return Ok(());
        }
        let origin = origin.to_str().unwrap_or("").trim_end_matches('/');
        if self
            .origins
            .iter()
            .any(|o| o == "*" || *o == origin.to_ascii_lowercase())
        {
            Ok(())
        } else {
            Err(Denied::Origin(origin.to_owned()))
        }
    }
}

fn bearer(headers: &HeaderMap) -> Option<String> {
    let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = value.split_once(' ')?;
    scheme
        .eq_ignore_ascii_case("bearer")
        .then(|| token.trim().to_owned())
}

fn query_token(query: &str) -> Option<String> {
    serde_urlencoded::from_str::<Vec<(String, String)>>(query)
        .ok()?
        .into_iter()
        .find(|(k, _)| k == "token")
        .map(|(_, v)| v)
}

/// Compares without stopping at the first differing byte, so response time does not reveal
/// how much of a guess was right.
fn same_secret(expected: &str, given: &str) -> bool {
    let (a, b) = (expected.as_bytes(), given.as_bytes());
    let mut diff = a.len() ^ b.len();
    for (i, &x) in a.iter().enumerate() {
        diff |= usize::from(x ^ b.get(i).copied().unwrap_or(0));
    }
    diff == 0
}

/// Middleware for every HTTP route except the open ones and `/ws` (which refuses with a
/// close code, so browsers can see why): 401 with a JSON body saying what to send.
pub async fn require_token(
    State(state): State<AppState>,
    request: Request,
    next: Next,
) -> Response {
    let path = request.uri().path();
    let open = OPEN_PATHS.contains(&path)
        || OPEN_PREFIXES.iter().any(|p| path.starts_with(p))
        || path == "/ws";
    if open || !state.access.requires_token() {
        return next.run(request).await;
    }
    match state
        .access
        .check_token(request.headers(), request.uri().query())
    {
        Ok(()) => next.run(request).await,
        Err(denied) => {
            let mut response =
                AppError::new(StatusCode::UNAUTHORIZED, denied.code(), denied.to_string())
                    .into_response();
            response.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                header::HeaderValue::from_static("Bearer"),
            );
            response
        }
    }
}

/// The client's address, from the plain or the TLS listener.
#[derive(Debug, Clone, Copy)]
pub struct ClientAddr(pub std::net::SocketAddr);

impl Connected<IncomingStream<'_, tokio::net::TcpListener>> for ClientAddr {
    fn connect_info(stream: IncomingStream<'_, tokio::net::TcpListener>) -> Self {
        ClientAddr(*stream.remote_addr())
    }
}

impl Connected<IncomingStream<'_, super::tls::TlsListener>> for ClientAddr {
    fn connect_info(stream: IncomingStream<'_, super::tls::TlsListener>) -> Self {
        ClientAddr(*stream.remote_addr())
    }
}

/// Open `/ws` connections per client address.
#[derive(Debug, Clone, Default)]
pub struct ClientConnections(Arc<Mutex<HashMap<IpAddr, usize>>>);

/// Holds one connection's place; gives it back when dropped.
pub struct ConnectionSlot {
    owner: ClientConnections,
    ip: IpAddr,
}

impl ClientConnections {
    /// A slot for `ip` unless it already holds `limit` (0 = no limit).
    pub fn admit(&self, ip: IpAddr, limit: usize) -> Option<ConnectionSlot> {
        let mut counts = self.0.lock().unwrap_or_else(|p| p.into_inner());
        let count = counts.entry(ip).or_insert(0);
        if limit > 0 && *count >= limit {
            return None;
        }
        *count += 1;
        Some(ConnectionSlot {
            owner: self.clone(),
            ip,
        })
    }
}

impl Drop for ConnectionSlot {
    fn drop(&mut self) {
        let mut counts = self.owner.0.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(count) = counts.get_mut(&self.ip) {
            *count -= 1;
            if *count == 0 {
                counts.remove(&self.ip);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn access(tokens: &[&str], origins: &[&str]) -> Access {
        Access::new(&ServerConfig {
            api_tokens: tokens.iter().map(|t| t.to_string()).collect(),
            allowed_origins: origins.iter().map(|t| t.to_string()).collect(),
            ..Default::default()
        })
    }

    fn headers(pairs: &[(header::HeaderName, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.insert(k.clone(), v.parse().unwrap());
        }
        h
    }

    #[test]
    fn tokens_come_from_the_header_or_the_query() {
        let a = access(&["s3cret", "other"], &[]);
        let none = HeaderMap::new();
        assert_eq!(a.check_token(&none, None), Err(Denied::MissingToken));
        assert_eq!(
            a.check_token(&none, Some("language=ko&token=s3cret")),
            Ok(())
        );
        assert_eq!(
            a.check_token(&none, Some("token=s3cre")),
            Err(Denied::WrongToken)
        );
        let h = headers(&[(header::AUTHORIZATION, "Bearer other")]);
        assert_eq!(a.check_token(&h, None), Ok(()));
        let h = headers(&[(header::AUTHORIZATION, "Basic b3RoZXI=")]);
        assert_eq!(a.check_token(&h, None), Err(Denied::MissingToken));
        assert_eq!(access(&[], &[]).check_token(&none, None), Ok(()));
    }

    #[test]
    fn secrets_compare_whole() {
        assert!(same_secret("abc", "abc"));
        assert!(!same_secret("abc", "abcd"));
        assert!(!same_secret("abcd", "abc"));
        assert!(!same_secret("abc", "abd"));
        assert!(!same_secret("abc", ""));
    }

    #[test]
    fn origins_are_matched_exactly_and_absent_ones_pass() {
        let a = access(&[], &["https://ops.example.kr/"]);
        assert_eq!(a.check_origin(&HeaderMap::new()), Ok(()));
        let ok = headers(&[(header::ORIGIN, "https://OPS.example.kr")]);
        assert_eq!(a.check_origin(&ok), Ok(()));
        let bad = headers(&[(header::ORIGIN, "https://evil.example")]);
        assert!(matches!(a.check_origin(&bad), Err(Denied::Origin(_))));
        assert_eq!(access(&[], &[]).check_origin(&bad), Ok(()));
    }

    #[test]
    fn a_client_holds_at_most_its_limit_and_slots_come_back() {
        let c = ClientConnections::default();
        let ip: IpAddr = "10.0.0.1".parse().unwrap();
        let first = c.admit(ip, 2).unwrap();
        let _second = c.admit(ip, 2).unwrap();
        assert!(c.admit(ip, 2).is_none());
        assert!(c.admit("10.0.0.2".parse().unwrap(), 2).is_some());
        drop(first);
        assert!(c.admit(ip, 2).is_some());
        assert!(c.admit(ip, 0).is_some(), "0 = no limit");
    }
}
