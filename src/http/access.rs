//! Who may come in: API tokens (`Authorization: Bearer`; `?token=` only where a browser cannot
//! set a header), the Origin allow-list and CORS, and how many connections one client address
//! may hold.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};

use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use super::{AppError, AppState};
use crate::config::ServerConfig;

/// Paths open without a token: the page and its files (the page asks for the token), and
/// the probes load balancers and orchestrators call.
const OPEN_PATHS: &[&str] = &["/", "/health", "/ready"];
const OPEN_PREFIXES: &[&str] = &["/static/"];

/// Paths that take the token from `?token=`: browsers cannot set headers on a WebSocket or an
/// `EventSource` (the page's live monitor). Everywhere else a token in the URL is refused, as
/// URLs end up in logs, proxies and browser history.
const QUERY_TOKEN_PATHS: &[&str] = &["/ws", "/api/status/stream"];

/// The live WebSocket endpoints: each checks origin and key itself and refuses in its own
/// protocol's shape.
const LIVE_PATHS: &[&str] = &["/ws", "/v1/listen", "/v1/realtime"];

/// Why a request was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Denied {
    #[error(
        "a token is required: send \"Authorization: Bearer <token>\" (a WebSocket client that cannot set headers adds ?token=<token> to the /ws URL)"
    )]
    MissingToken,
    #[error("the token is not valid for this server")]
    WrongToken,
    #[error(
        "tokens in the URL are accepted only on /ws (and the /api/status/stream event stream): send \"Authorization: Bearer <token>\" instead of ?token="
    )]
    TokenInUrl,
    #[error(
        "origin {0:?} may not use this server from a browser (see server.allowed_origins, SORI_ALLOWED_ORIGINS)"
    )]
    Origin(String),
}

impl Denied {
    pub fn code(&self) -> &'static str {
        match self {
            Denied::MissingToken => "token_required",
            Denied::WrongToken => "token_invalid",
            Denied::TokenInUrl => "token_in_url",
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
            Some(token) if self.valid(&token) => Ok(()),
            Some(_) => Err(Denied::WrongToken),
        }
    }

    /// Checks a key a client presented its own protocol's way (Deepgram's `Token` scheme, a
    /// WebSocket subprotocol), against the same tokens.
    pub fn check_key(&self, key: Option<&str>) -> Result<(), Denied> {
        if self.tokens.is_empty() {
            return Ok(());
        }
        match key {
            None => Err(Denied::MissingToken),
            Some(key) if self.valid(key) => Ok(()),
            Some(_) => Err(Denied::WrongToken),
        }
    }

    /// [`check_token`](Self::check_token) for a request to `path`: `?token=` counts only on
    /// [`QUERY_TOKEN_PATHS`]; elsewhere a token there, and none in the header, is refused with
    /// a message saying to use the header.
    pub fn check_request(
        &self,
        path: &str,
        headers: &HeaderMap,
        query: Option<&str>,
    ) -> Result<(), Denied> {
        if QUERY_TOKEN_PATHS.contains(&path) {
            return self.check_token(headers, query);
        }
        if self.requires_token()
            && bearer(headers).is_none()
            && query.and_then(query_token).is_some()
        {
            return Err(Denied::TokenInUrl);
        }
        self.check_token(headers, None)
    }

    /// Whether tokens are configured and the request's `Authorization` header holds a valid one
    /// (what `/ready` asks before it shows details).
    pub fn presents_valid_token(&self, headers: &HeaderMap) -> bool {
        self.requires_token() && bearer(headers).is_some_and(|t| self.valid(&t))
    }

    fn valid(&self, token: &str) -> bool {
        self.tokens.iter().any(|t| same_secret(t, token))
    }

    /// Browsers send `Origin` on WebSockets, cross-origin requests and every non-GET request;
    /// other clients usually do not and pass. An empty allow-list lets every origin through
    /// here (then only same-origin pages can read answers: no CORS headers are sent).
    pub fn check_origin(&self, headers: &HeaderMap) -> Result<(), Denied> {
        let Some(origin) = headers.get(header::ORIGIN) else {
            return Ok(());
        };
        if self.origins.is_empty() {
            return Ok(());
        }
        let origin = origin.to_str().unwrap_or("").trim_end_matches('/');
        if self.listed(origin) {
            Ok(())
        } else {
            Err(Denied::Origin(origin.to_owned()))
        }
    }

    /// The request's `Origin` when the allow-list names it (or holds `*`): the only origins
    /// CORS answers for.
    pub fn cors_origin(&self, headers: &HeaderMap) -> Option<HeaderValue> {
        let origin = headers.get(header::ORIGIN)?;
        let text = origin.to_str().ok()?.trim_end_matches('/');
        self.listed(text).then(|| origin.clone())
    }

    fn listed(&self, origin: &str) -> bool {
        let origin = origin.to_ascii_lowercase();
        self.origins.iter().any(|o| o == "*" || *o == origin)
    }
}

fn bearer(headers: &HeaderMap) -> Option<String> {
    authorization(headers, &["bearer"])
}

/// The credential of an `Authorization: <scheme> <credential>` header whose scheme is one of
/// `schemes` (compared without case).
pub fn authorization(headers: &HeaderMap, schemes: &[&str]) -> Option<String> {
    let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = value.split_once(' ')?;
    schemes
        .iter()
        .any(|s| scheme.eq_ignore_ascii_case(s))
        .then(|| token.trim().to_owned())
}

/// The WebSocket subprotocols a client offered (`Sec-WebSocket-Protocol`), in order: browsers
/// cannot set headers on a WebSocket, so Deepgram's and OpenAI's browser clients put their key
/// there.
pub fn subprotocols(headers: &HeaderMap) -> Vec<String> {
    headers
        .get_all(header::SEC_WEBSOCKET_PROTOCOL)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(|p| p.trim().to_owned())
        .filter(|p| !p.is_empty())
        .collect()
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

/// Middleware for every HTTP route but `/ws` (which refuses with a close code, so browsers can
/// see why): a browser's disallowed `Origin` gets 403 on every API path; CORS preflights are
/// answered (with CORS headers only for listed origins); then, unless the path is open, the
/// token: 401 with a JSON body saying what to send.
pub async fn require_token(
    State(state): State<AppState>,
    request: Request,
    next: Next,
) -> Response {
    let path = request.uri().path();
    // The live protocols answer refusals their own way (a close code, Deepgram's or OpenAI's
    // error body) and take keys their own way.
    if LIVE_PATHS.contains(&path) {
        return next.run(request).await;
    }
    let open = OPEN_PATHS.contains(&path) || OPEN_PREFIXES.iter().any(|p| path.starts_with(p));
    let access = &state.access;
    if !open && let Err(denied) = access.check_origin(request.headers()) {
        return refusal(StatusCode::FORBIDDEN, &denied);
    }
    let cors = access.cors_origin(request.headers());
    let preflight = request.method() == Method::OPTIONS
        && request
            .headers()
            .contains_key(header::ACCESS_CONTROL_REQUEST_METHOD);
    if preflight {
        return with_cors(StatusCode::NO_CONTENT.into_response(), cors, true);
    }
    let checked = if open {
        Ok(())
    } else {
        access.check_request(path, request.headers(), request.uri().query())
    };
    let response = match checked {
        Ok(()) => next.run(request).await,
        Err(denied) => {
            let mut response = refusal(StatusCode::UNAUTHORIZED, &denied);
            response
                .headers_mut()
                .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
            response
        }
    };
    with_cors(response, cors, false)
}

fn refusal(status: StatusCode, denied: &Denied) -> Response {
    AppError::new(status, denied.code(), denied.to_string()).into_response()
}

/// Adds CORS headers for a listed `origin` (none otherwise: a browser then keeps the answer
/// from a cross-origin page). A preflight also learns what it may send.
fn with_cors(mut response: Response, origin: Option<HeaderValue>, preflight: bool) -> Response {
    let Some(origin) = origin else {
        return response;
    };
    let headers = response.headers_mut();
    headers.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, origin);
    headers.append(header::VARY, HeaderValue::from_static("origin"));
    if preflight {
        headers.insert(
            header::ACCESS_CONTROL_ALLOW_METHODS,
            HeaderValue::from_static("GET, POST, DELETE"),
        );
        headers.insert(
            header::ACCESS_CONTROL_ALLOW_HEADERS,
            HeaderValue::from_static("authorization, content-type"),
        );
        headers.insert(
            header::ACCESS_CONTROL_MAX_AGE,
            HeaderValue::from_static("600"),
        );
    } else {
        headers.insert(
            header::ACCESS_CONTROL_EXPOSE_HEADERS,
            HeaderValue::from_static("retry-after"),
        );
    }
    response
}

/// The client's address, from the plain or the TLS listener: the accept loop puts it in
/// every request's extensions, as `ConnectInfo<ClientAddr>` (`http::conn`).
#[derive(Debug, Clone, Copy)]
pub struct ClientAddr(pub std::net::SocketAddr);

/// Places per client address: `/ws` sessions, SSE streams and uploads
/// (`server.max_connections_per_client`) in `AppState::clients`, TCP connections
/// (`server.max_connections_per_address`) in `AppState::connections`.
#[derive(Debug, Clone, Default)]
pub struct ClientConnections(Arc<Mutex<HashMap<IpAddr, usize>>>);

/// Holds one connection's place; gives it back when dropped.
#[derive(Debug)]
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
    fn url_tokens_count_only_where_headers_cannot_be_set() {
        let a = access(&["s3cret"], &[]);
        let none = HeaderMap::new();
        assert_eq!(a.check_request("/ws", &none, Some("token=s3cret")), Ok(()));
        assert_eq!(
            a.check_request("/api/status/stream", &none, Some("token=s3cret")),
            Ok(())
        );
        assert_eq!(
            a.check_request("/api/status", &none, Some("token=s3cret")),
            Err(Denied::TokenInUrl)
        );
        let h = headers(&[(header::AUTHORIZATION, "Bearer s3cret")]);
        assert_eq!(a.check_request("/index", &h, Some("token=x")), Ok(()));
        assert!(a.presents_valid_token(&h));
        assert!(!a.presents_valid_token(&none));
        assert!(!access(&[], &[]).presents_valid_token(&h));
        assert_eq!(
            access(&[], &[]).check_request("/index", &none, Some("token=x")),
            Ok(())
        );
    }

    #[test]
    fn cors_answers_only_for_listed_origins() {
        let a = access(&[], &["https://ops.example.kr"]);
        let ok = headers(&[(header::ORIGIN, "https://ops.example.kr")]);
        assert_eq!(a.cors_origin(&ok).unwrap(), "https://ops.example.kr");
        let bad = headers(&[(header::ORIGIN, "https://evil.example")]);
        assert!(a.cors_origin(&bad).is_none());
        assert!(
            access(&[], &[]).cors_origin(&ok).is_none(),
            "empty list: no CORS"
        );
        assert!(access(&[], &["*"]).cors_origin(&bad).is_some());
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
