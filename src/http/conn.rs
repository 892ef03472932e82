//! One HTTP connection: how it is counted (all open connections, and per client address), the
//! service its requests go through (the client's address for handlers, the request-body
//! deadline), and how it ends when the server stops.

use std::convert::Infallible;
use std::future::Future;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::ConnectInfo;
use axum::http::{HeaderValue, Request, StatusCode, header};
use axum::response::{IntoResponse, Response};
use http_body::{Frame, SizeHint};
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::sync::watch;
use tokio::time::{Instant, Sleep};

use super::AppError;
use super::access::{ClientAddr, ClientConnections, ConnectionSlot};

/// Why a new connection was closed as soon as it was accepted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Refused {
    #[error("the server holds {0} connections already (server.max_connections)")]
    Full(usize),
    #[error("this address holds {0} connections already (server.max_connections_per_address)")]
    AddressFull(usize),
}

/// Open TCP connections, all together and per client address. Shared by the plain and the
/// TLS listener, so the caps hold across both.
#[derive(Debug, Clone, Default)]
pub struct OpenConnections {
    open: Arc<AtomicUsize>,
    per_address: ClientConnections,
}

/// Holds one open connection's places; gives them back when dropped (with the socket).
#[derive(Debug)]
pub struct ConnectionPlace {
    open: Arc<AtomicUsize>,
    _address: ConnectionSlot,
}

impl OpenConnections {
    /// Places for a new connection from `ip`, unless the server holds `max` already or `ip`
    /// holds `per_address` (0 = no limit per address).
    pub fn admit(
        &self,
        ip: IpAddr,
        max: usize,
        per_address: usize,
    ) -> Result<ConnectionPlace, Refused> {
        if self.open.fetch_add(1, Ordering::SeqCst) >= max {
            self.open.fetch_sub(1, Ordering::SeqCst);
            return Err(Refused::Full(max));
        }
        match self.per_address.admit(ip, per_address) {
            Some(slot) => Ok(ConnectionPlace {
                open: Arc::clone(&self.open),
                _address: slot,
            }),
            None => {
                self.open.fetch_sub(1, Ordering::SeqCst);
                Err(Refused::AddressFull(per_address))
            }
        }
    }

    /// Connections open now (upgraded WebSockets included).
    pub fn open(&self) -> usize {
        self.open.load(Ordering::SeqCst)
    }
}

impl Drop for ConnectionPlace {
    fn drop(&mut self) {
        self.open.fetch_sub(1, Ordering::SeqCst);
    }
}

/// How long a closing connection still reads (and discards) what its client sends.
const LINGER: Duration = Duration::from_secs(2);

/// A socket that holds its connection's places for as long as it lives: through a WebSocket
/// upgrade too, where hyper hands the socket to the session and forgets the connection.
///
/// It also closes gently ("lingering close", as nginx does): an answer sent before the request
/// body was read (a refused upload: 400, 413, 503) would otherwise be destroyed by the reset
/// the kernel sends when a socket closes with unread data, and the client would see a broken
/// connection instead of the error. So after hyper's shutdown the socket reads and discards
/// for up to [`LINGER`], until the client closes too.
pub struct Counted<I> {
    io: I,
    _place: ConnectionPlace,
    /// Set once the write side is shut: the end of the lingering read.
    lingering: Option<Pin<Box<Sleep>>>,
}

impl<I> Counted<I> {
    pub fn new(io: I, place: ConnectionPlace) -> Self {
        Self {
            io,
            _place: place,
            lingering: None,
        }
    }
}

impl<I: AsyncRead + Unpin> AsyncRead for Counted<I> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_read(cx, buf)
    }
}

impl<I: AsyncRead + AsyncWrite + Unpin> AsyncWrite for Counted<I> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().io).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().io).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if this.lingering.is_none() {
            std::task::ready!(Pin::new(&mut this.io).poll_shutdown(cx))?;
            this.lingering = Some(Box::pin(tokio::time::sleep(LINGER)));
        }
        let mut discard = [0u8; 8192];
        loop {
            if let Some(deadline) = this.lingering.as_mut()
                && deadline.as_mut().poll(cx).is_ready()
            {
                return Poll::Ready(Ok(()));
            }
            let mut buf = ReadBuf::new(&mut discard);
            match Pin::new(&mut this.io).poll_read(cx, &mut buf) {
                Poll::Ready(Ok(())) if !buf.filled().is_empty() => continue,
                // The client's end (or a broken socket): nothing left to protect.
                Poll::Ready(_) => return Poll::Ready(Ok(())),
                Poll::Pending => return Poll::Pending,
            }
        }
    }
}

/// What every connection of one listener shares: the router, hyper's HTTP/1 settings (the
/// header-read timeout among them), the body deadline, and the server's stop signal.
pub struct ConnectionService {
    pub router: Router,
    pub http: http1::Builder,
    pub body_timeout: Duration,
    pub stopping: Arc<watch::Sender<bool>>,
}

impl ConnectionService {
    /// Serves one connection until the client closes it, hyper gives up on it (a header not
    /// sent within the timeout, a broken socket), or the server stops: then the request in
    /// progress finishes (an SSE stream ends at once, an upload is cut) and the connection
    /// closes. A WebSocket upgrade leaves here; its session watches the stop signal itself.
    pub async fn serve<I>(&self, io: I, peer: SocketAddr)
    where
        I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    {
        let (router, body_timeout) = (self.router.clone(), self.body_timeout);
        let service = hyper::service::service_fn(move |request| {
            handle(router.clone(), request, peer, body_timeout)
        });
        let connection = self
            .http
            .serve_connection(TokioIo::new(io), service)
            .with_upgrades();
        tokio::pin!(connection);
        let mut stopping = self.stopping.subscribe();
        let ended = tokio::select! {
            ended = connection.as_mut() => ended,
            () = stopped(&mut stopping) => {
                connection.as_mut().graceful_shutdown();
                connection.await
            }
        };
        if let Err(e) = ended {
            // Header timeouts, resets and half-sent requests: the client's doing, not an error.
            tracing::debug!(%peer, error = %e, "connection ended");
        }
    }
}

/// Resolves once the server is stopping (`AppState::stopping` turned true); never if the
/// signal is gone. Holds no lock while it waits (a watch `Ref` is not `Send`).
pub async fn stopped(stopping: &mut watch::Receiver<bool>) {
    if stopping.wait_for(|stop| *stop).await.is_err() {
        std::future::pending::<()>().await;
    }
}

/// One request: the client's address for the handlers that limit per address, and a body
/// the server waits at most `body_timeout` for.
async fn handle(
    mut router: Router,
    request: Request<Incoming>,
    peer: SocketAddr,
    body_timeout: Duration,
) -> Result<Response, Infallible> {
    let expired = Arc::new(AtomicBool::new(false));
    let mut request = request.map(|body| {
        Body::new(DeadlineBody {
            inner: body,
            budget: body_timeout,
            waited: Duration::ZERO,
            waiting_since: None,
            sleep: None,
            expired: Arc::clone(&expired),
        })
    });
    request
        .extensions_mut()
        .insert(ConnectInfo(ClientAddr(peer)));
    let response = tower_service::Service::call(&mut router, request).await?;
    if expired.load(Ordering::SeqCst) {
        // Whatever the handler made of the cut body, the client is told why.
        tracing::info!(%peer, timeout_s = body_timeout.as_secs(), "request body too slow: 408");
        return Ok(body_timeout_response(body_timeout));
    }
    Ok(response)
}

fn body_timeout_response(timeout: Duration) -> Response {
    let mut response = AppError::new(
        StatusCode::REQUEST_TIMEOUT,
        "body_timeout",
        format!(
            "the request body did not arrive within {} s (server.body_timeout_s); send it \
             faster, or a smaller file",
            timeout.as_secs()
        ),
    )
    .into_response();
    response
        .headers_mut()
        .insert(header::CONNECTION, HeaderValue::from_static("close"));
    response
}

/// The request body, cut (and answered with 408) once the server has waited `budget` in all
/// for the client's bytes: a trickling or stalled upload cannot hold its connection and
/// handler forever. Only waiting counts, not the time a handler takes between reads (a long
/// file is decoded while it arrives), so a client that sends as fast as it is read never
/// hits it.
struct DeadlineBody {
    inner: Incoming,
    budget: Duration,
    /// Time spent waiting for the client in earlier stretches.
    waited: Duration,
    /// When the current wait began (the body last answered `Pending`).
    waiting_since: Option<Instant>,
    /// Made on the first wait: bodies that are read at once cost no timer.
    sleep: Option<Pin<Box<Sleep>>>,
    expired: Arc<AtomicBool>,
}

/// The error a too-slow body ends with (handlers see it as a body error).
#[derive(Debug, thiserror::Error)]
#[error("the request body did not arrive within {0:?} (server.body_timeout_s)")]
struct BodyTimedOut(Duration);

impl http_body::Body for DeadlineBody {
    type Data = Bytes;
    type Error = axum::BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        let this = self.get_mut();
        if let Poll::Ready(frame) = Pin::new(&mut this.inner).poll_frame(cx) {
            if let Some(since) = this.waiting_since.take() {
                this.waited += since.elapsed();
            }
            return Poll::Ready(frame.map(|f| f.map_err(axum::BoxError::from)));
        }
        let since = *this.waiting_since.get_or_insert_with(Instant::now);
        let at = since + this.budget.saturating_sub(this.waited);
        let sleep = this
            .sleep
            .get_or_insert_with(|| Box::pin(tokio::time::sleep_until(at)));
        if sleep.deadline() != at {
            sleep.as_mut().reset(at);
        }
        if sleep.as_mut().poll(cx).is_ready() {
            this.expired.store(true, Ordering::SeqCst);
            return Poll::Ready(Some(Err(BodyTimedOut(this.budget).into())));
        }
        Poll::Pending
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn connections_are_capped_in_all_and_per_address_and_places_come_back() {
        let open = OpenConnections::default();
        let (a, b): (IpAddr, IpAddr) = ("10.0.0.1".parse().unwrap(), "10.0.0.2".parse().unwrap());
        let first = open.admit(a, 3, 2).unwrap();
        let _second = open.admit(a, 3, 2).unwrap();
        assert_eq!(open.admit(a, 3, 2).unwrap_err(), Refused::AddressFull(2));
        let _third = open.admit(b, 3, 2).unwrap();
        assert_eq!(open.admit(b, 3, 2).unwrap_err(), Refused::Full(3));
        assert_eq!(open.open(), 3, "refusals hold nothing");
        drop(first);
        assert_eq!(open.open(), 2);
        assert!(open.admit(a, 3, 2).is_ok());
        assert!(open.admit(b, 10, 0).is_ok(), "0 = no limit per address");
    }
}
