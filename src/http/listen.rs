//! The accept loop sori serves on (plain TCP, or TLS): the connection caps, the header-read
//! and TLS-handshake timeouts, and a shutdown with a hard deadline.
//!
//! axum's own `serve` has no header timeout and, on shutdown, waits for every connection,
//! which an open SSE stream or a silent client never ends. Here each connection is a hyper
//! HTTP/1 connection (with WebSocket upgrades) in a task of a `JoinSet`; on shutdown the
//! listener is closed at once, every connection is asked to finish its request and close,
//! `/ws` sessions send their last finals, and whatever is still open when
//! `server.shutdown_grace_s` has passed is dropped.

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use hyper::server::conn::http1;
use hyper_util::rt::TokioTimer;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio::task::JoinSet;
use tokio::time::Instant;
use tokio_rustls::TlsAcceptor;

use super::AppState;
use super::conn::{ConnectionService, Counted, Refused};
use super::tls::TlsListener;
use crate::config::ServerConfig;

/// Where connections come from: a TCP listener, with a TLS handshake for each connection
/// or without.
pub struct Listener {
    tcp: TcpListener,
    tls: Option<TlsAcceptor>,
}

impl From<TcpListener> for Listener {
    fn from(tcp: TcpListener) -> Self {
        Self { tcp, tls: None }
    }
}

impl From<TlsListener> for Listener {
    fn from(listener: TlsListener) -> Self {
        let (tcp, acceptor) = listener.into_parts();
        Self {
            tcp,
            tls: Some(acceptor),
        }
    }
}

/// The accept loop's limits, from `server.*`.
#[derive(Debug, Clone, Copy)]
struct Limits {
    header_timeout: Duration,
    body_timeout: Duration,
    max_connections: usize,
    per_address: usize,
    tls_handshakes: usize,
    grace: Duration,
}

impl From<&ServerConfig> for Limits {
    fn from(server: &ServerConfig) -> Self {
        Self {
            header_timeout: Duration::from_secs(server.header_timeout_s.max(1)),
            body_timeout: Duration::from_secs(server.body_timeout_s.max(1)),
            max_connections: server.max_connections.max(1),
            per_address: server.max_connections_per_address,
            tls_handshakes: server.max_tls_handshakes.max(1),
            grace: Duration::from_secs(server.shutdown_grace_s),
        }
    }
}

/// How long `/ws` sessions may take to drain (last finals, keywords, RAG) once the server
/// stops: the grace less what their closing handshakes and the exit need.
pub fn session_drain(grace: Duration) -> Duration {
    grace.saturating_sub((grace / 4).min(Duration::from_secs(2)))
}

/// Serves `app(state)` on `listener` until `shutdown` resolves, then stops within
/// `server.shutdown_grace_s` whatever clients do: no new connections, SSE streams and
/// uploads end, `/ws` sessions send their last finals and close with 1001, and what is
/// still open at the deadline is dropped.
pub async fn serve_on(
    listener: impl Into<Listener>,
    state: AppState,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> io::Result<()> {
    let Listener { tcp, tls } = listener.into();
    let limits = Limits::from(&state.transcriber.config.server);
    let mut http = http1::Builder::new();
    http.timer(TokioTimer::new())
        .header_read_timeout(limits.header_timeout);
    let service = Arc::new(ConnectionService {
        router: super::app(state.clone()),
        http,
        body_timeout: limits.body_timeout,
        stopping: Arc::clone(&state.stopping),
    });
    let handshakes = Arc::new(Semaphore::new(limits.tls_handshakes));
    let mut connections = JoinSet::new();
    let mut refusals = Refusals::default();
    let mut stopping = state.stopping.subscribe();
    let shutdown = async move {
        tokio::select! {
            () = shutdown => {}
            () = super::conn::stopped(&mut stopping) => {}
        }
    };
    tokio::pin!(shutdown);
    loop {
        // A TLS listener accepts only while a handshake place is free; the rest wait in the
        // kernel's backlog.
        let handshake = match &tls {
            Some(_) => tokio::select! {
                permit = Arc::clone(&handshakes).acquire_owned() => permit.ok(),
                () = &mut shutdown => break,
            },
            None => None,
        };
        let (stream, peer) = tokio::select! {
            accepted = tcp.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(e) => {
                    accept_failed(e).await;
                    continue;
                }
            },
            // Reaps ended connections as they end.
            Some(_) = connections.join_next(), if !connections.is_empty() => continue,
            () = &mut shutdown => break,
        };
        let place =
            match state
                .connections
                .admit(peer.ip(), limits.max_connections, limits.per_address)
            {
                Ok(place) => place,
                Err(why) => {
                    // Closed at once: a refused client holds no descriptor.
                    drop(stream);
                    refusals.note(peer, why);
                    continue;
                }
            };
        let _ = stream.set_nodelay(true);
        let io = Counted::new(stream, place);
        let service = Arc::clone(&service);
        match tls.clone() {
            None => connections.spawn(async move { service.serve(io, peer).await }),
            Some(acceptor) => connections.spawn(async move {
                let handshake_done = acceptor.accept(io);
                let secured = tokio::time::timeout(limits.header_timeout, handshake_done).await;
                drop(handshake);
                match secured {
                    Ok(Ok(tls)) => service.serve(tls, peer).await,
                    Ok(Err(e)) => tracing::debug!(%peer, error = %e, "TLS handshake failed"),
                    Err(_) => tracing::debug!(%peer, "TLS handshake timed out"),
                }
            }),
        };
    }
    // The port refuses connections from here on.
    drop(tcp);
    state.begin_shutdown();
    let deadline = Instant::now() + limits.grace;
    tracing::info!(
        connections = connections.len(),
        grace_s = limits.grace.as_secs(),
        "no new connections; open requests end, open sessions send their last finals"
    );
    let all_closed = tokio::time::timeout_at(deadline, async {
        while connections.join_next().await.is_some() {}
    })
    .await
    .is_ok();
    let sessions_ended = state
        .sessions_ended(deadline.saturating_duration_since(Instant::now()))
        .await;
    if !(all_closed && sessions_ended) {
        tracing::warn!(
            connections = connections.len(),
            sessions = state.sessions.load(std::sync::atomic::Ordering::SeqCst),
            grace_s = limits.grace.as_secs(),
            "the shutdown grace ran out: dropping what is still open"
        );
    }
    connections.shutdown().await;
    Ok(())
}

/// Accept fails when the process is out of descriptors (`EMFILE`) or the kernel out of
/// memory; a client that gave up before it was accepted (`ECONNABORTED`) is no failure.
async fn accept_failed(e: io::Error) {
    use io::ErrorKind::*;
    if matches!(e.kind(), ConnectionAborted | ConnectionReset | Interrupted) {
        return;
    }
    tracing::warn!(error = %e, "accept failed; retrying in 100 ms");
    // Without a pause the loop would spin while descriptors are short.
    tokio::time::sleep(Duration::from_millis(100)).await;
}

/// Refused connections, logged at most once every ten seconds with how many there were: a
/// flood must not flood the log too.
#[derive(Default)]
struct Refusals {
    since_log: u64,
    last_log: Option<Instant>,
}

impl Refusals {
    const EVERY: Duration = Duration::from_secs(10);

    fn note(&mut self, peer: SocketAddr, why: Refused) {
        self.since_log += 1;
        let due = self.last_log.is_none_or(|at| at.elapsed() >= Self::EVERY);
        if due {
            tracing::warn!(%peer, refused = self.since_log, "connection closed on arrival: {why}");
            self.since_log = 0;
            self.last_log = Some(Instant::now());
        }
    }
}

/// Raises this process's open-file limit to its hard limit (one descriptor per connection:
/// the 1024 many systems start with is less than `server.max_connections`), and returns the
/// soft limit now in force.
pub fn raise_open_file_limit() -> io::Result<u64> {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit writes into the struct we own; no other memory is touched.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) } != 0 {
        return Err(io::Error::last_os_error());
    }
    if limit.rlim_cur < limit.rlim_max {
        let raised = libc::rlimit {
            rlim_cur: limit.rlim_max,
            rlim_max: limit.rlim_max,
        };
        // SAFETY: setrlimit reads the struct we own.
        if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &raised) } != 0 {
            return Err(io::Error::last_os_error());
        }
        limit = raised;
    }
    #[allow(clippy::unnecessary_cast)] // `rlim_t` is not `u64` on every target.
    Ok(limit.rlim_cur as u64)
}

/// The connection caps and timeouts stated once at start-up, with the descriptor limit
/// they depend on.
pub fn log_limits(server: &ServerConfig) {
    let open_files = match raise_open_file_limit() {
        Ok(n) => n,
        Err(e) => {
            tracing::warn!(error = %e, "cannot read or raise the open-file limit");
            return;
        }
    };
    let wanted = server.max_connections as u64 + 256;
    if open_files < wanted {
        tracing::warn!(
            open_files,
            max_connections = server.max_connections,
            "the open-file limit is below server.max_connections (+256 for files and backends): \
             raise it (ulimit -n, LimitNOFILE=, docker --ulimit nofile=) or lower the cap"
        );
    } else {
        tracing::info!(
            open_files,
            max_connections = server.max_connections,
            per_address = server.max_connections_per_address,
            header_timeout_s = server.header_timeout_s,
            body_timeout_s = server.body_timeout_s,
            "connection limits"
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sessions_drain_inside_the_grace_with_time_to_close() {
        assert_eq!(
            session_drain(Duration::from_secs(20)),
            Duration::from_secs(18)
        );
        assert_eq!(
            session_drain(Duration::from_secs(3)),
            Duration::from_millis(2250)
        );
        assert_eq!(session_drain(Duration::ZERO), Duration::ZERO);
    }

    #[test]
    fn the_open_file_limit_is_raised_to_the_hard_limit() {
        let soft = raise_open_file_limit().unwrap();
        assert!(soft >= 64, "{soft}");
        assert_eq!(raise_open_file_limit().unwrap(), soft, "idempotent");
    }
}
