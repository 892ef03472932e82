//! What every live WebSocket protocol shares: admission (a session place, a per-address
//! connection place), the session loop between the socket and the session driver, and the
//! closing handshake. A protocol (`/ws`, Deepgram's `/v1/listen`, OpenAI's `/v1/realtime`)
//! only says how its client frames become driver calls and how the driver's events become its
//! frames ([`Protocol`]).
//!
//! The socket is read for the session's whole life, its closing drain included (pings are
//! answered, audio after the end is discarded). What goes out waits in a bounded [`Outbox`]
//! for a writer task whose every send has a deadline (`server.send_timeout_s`): a client that
//! does not read is cut off, never holds its session. The server closes with its close frame
//! and then waits briefly for the client's, so the last results are never reset away.

mod admit;
mod outbox;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use axum::extract::ws::{Message, WebSocket};
use futures_util::StreamExt;
use futures_util::stream::{SplitSink, SplitStream};
use tracing::Instrument;

pub use admit::{Admitted, Refusal, admit};
pub use outbox::{Outbox, close_frame};

use super::AppState;
use crate::driver::{Closed, Driver, DriverConfig, Ending, Opening, Step};
use crate::protocol::ServerMessage;

/// Frames this much larger than `max_frame_bytes` are cut off by the transport (close 1009);
/// frames in between get the protocol's error and the session goes on.
pub const TRANSPORT_LIMIT_FACTOR: usize = 4;

/// Messages waiting for a client beyond which its frames are not read until it catches up
/// (each could add a reply to the pile).
const OUTBOX_READ_LIMIT: usize = 64;

/// Messages waiting for a client beyond which it is cut off as not reading, however slowly
/// each send still finishes (status ticks and finals keep coming while it lags).
const OUTBOX_MAX: usize = 1024;

/// After its close frame, the server reads (and discards) what the client still sends for up
/// to this long, until the client's close frame: closing a socket with unread data makes the
/// kernel reset the connection, which discards what the client had not read yet.
const CLOSE_WAIT: Duration = Duration::from_secs(2);

type Sender = SplitSink<WebSocket, Message>;
type Receiver = SplitStream<WebSocket>;

/// A live protocol over the session driver.
pub trait Protocol: Send {
    /// The label of this protocol in metrics and logs (`sori`, `deepgram`, `openai_realtime`).
    const NAME: &'static str;

    /// Whether the protocol has a message for a revised final (sori's `revision`).
    const REVISIONS: bool = false;

    /// What the driver yields (events to send, or a limit's notice) in this protocol's frames.
    fn on_events(&mut self, driver: &mut Driver, events: Vec<ServerMessage>, out: &mut Outbox);

    /// One text or binary frame from the client (pings, pongs and close frames never reach
    /// it); its replies go to `out`. Called only while the driver is live.
    fn on_client(&mut self, driver: &mut Driver, message: Message, out: &mut Outbox);

    /// The driver finished: the protocol's last words and its close frame (`closed.farewell`
    /// is sori's `closed` event, code and reason; `None` when the client is gone).
    fn on_closed(&mut self, driver: &Driver, closed: Closed, out: &mut Outbox);

    /// The session could not start (`code` is sori's error code): say so and close.
    fn on_start_failed(&mut self, code: &str, message: &str, out: &mut Outbox);
}

/// One of the server's `max_sessions` places, given back when dropped: on every way out of
/// a session, a panic included.
pub struct SessionSlot(Arc<AtomicUsize>);

impl SessionSlot {
    pub fn claim(sessions: &Arc<AtomicUsize>, max_sessions: usize) -> Option<Self> {
        sessions
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| {
                (n < max_sessions).then_some(n + 1)
            })
            .ok()
            .map(|_| Self(Arc::clone(sessions)))
    }
}

impl Drop for SessionSlot {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

/// The live limits of sessions, from the server's configuration.
pub fn driver_config(state: &AppState) -> DriverConfig {
    let config = &state.transcriber.config;
    let server = &config.server;
    let limit = |seconds: u64| (seconds > 0).then(|| Duration::from_secs(seconds));
    DriverConfig {
        max_frame_bytes: server.max_frame_bytes,
        max_backlog_s: server.max_backlog_s,
        max_prompt_chars: config.stt.max_prompt_chars,
        idle_timeout: limit(server.idle_timeout_s),
        max_session: limit(server.max_session_s),
        status_interval: Some(Duration::from_millis(server.status_interval_ms.max(100))),
        outputs_dir: Some(server.outputs_dir.clone()),
    }
}

pub fn send_timeout(state: &AppState) -> Duration {
    Duration::from_secs(state.transcriber.config.server.send_timeout_s.max(1))
}

/// The largest WebSocket message the transport takes before it closes with 1009.
pub fn transport_limit(state: &AppState) -> usize {
    let server = &state.transcriber.config.server;
    server
        .max_frame_bytes
        .saturating_mul(TRANSPORT_LIMIT_FACTOR)
}

/// Runs one admitted session of `protocol` on `socket`, in a span named after the session.
pub async fn run<P: Protocol>(socket: WebSocket, state: &AppState, opening: Opening, protocol: P) {
    crate::metrics::global().session_opened(P::NAME);
    let span = tracing::info_span!("session", id = %&opening.id[..8.min(opening.id.len())], protocol = P::NAME);
    converse_session(socket, state, opening, protocol)
        .instrument(span)
        .await;
}

async fn converse_session<P: Protocol>(
    socket: WebSocket,
    state: &AppState,
    opening: Opening,
    mut protocol: P,
) {
    let (sink, mut rx) = socket.split();
    let send_timeout = send_timeout(state);
    let mut out = Outbox::new(sink, send_timeout);
    let started = Driver::start(
        state.transcriber.engine(),
        driver_config(state),
        opening,
        &state.enrichers,
    );
    let (driver, greeting) = match started {
        Ok(started) => started,
        Err(e) => {
            tracing::error!(error = %e, "cannot start session");
            protocol.on_start_failed(e.code(), &e.to_string(), &mut out);
            say_goodbye(&mut out, &mut rx, send_timeout).await;
            return;
        }
    };
    let mut driver = driver
        .stop_on(state.stopping.subscribe())
        .drain_within(super::listen::session_drain(Duration::from_secs(
            state.transcriber.config.server.shutdown_grace_s,
        )))
        .report_lag_to(state.lags.clone())
        .measure_latency();
    if P::REVISIONS {
        driver = driver.revise_live(
            state.transcriber.config.stt.live_revision_s,
            state.transcriber.window_join(),
        );
    }
    protocol.on_events(&mut driver, greeting, &mut out);
    match converse(&mut driver, &mut protocol, &mut out, &mut rx).await {
        Exit::Farewell => {
            say_goodbye(&mut out, &mut rx, send_timeout).await;
            return;
        }
        Exit::ClientClosed => {
            // tungstenite has queued its reply to the client's close frame; reading flushes it.
            drop(out);
            linger(&mut rx).await;
        }
        Exit::Lost(lost) => match &lost {
            Lost::Stalled(_) | Lost::Behind(_) => {
                tracing::warn!(reason = %lost, "client cut off; its transcript is still written");
            }
            _ => tracing::info!(reason = %lost, "client gone; its transcript is still written"),
        },
    }
    drop(rx);
    // The socket is gone; the driver still writes the last finals to the transcript.
    driver.close(Ending::Gone);
    while !matches!(driver.next().await, Step::Closed(_)) {}
}

/// How a session's conversation with its client ended.
enum Exit {
    /// The driver closed the session: the farewell and the close frame are in the outbox.
    Farewell,
    /// The client sent its close frame first: nothing more can be sent.
    ClientClosed,
    /// The client cannot be reached any more.
    Lost(Lost),
}

/// Why a client could no longer be written to.
#[derive(Debug, thiserror::Error)]
pub enum Lost {
    #[error("client is not reading: a send did not finish within {} s", .0.as_secs())]
    Stalled(Duration),
    #[error("client is not reading: {0} messages are waiting for it")]
    Behind(usize),
    #[error("the connection failed: {0}")]
    Broken(axum::Error),
    #[error("the connection ended without a close frame")]
    Vanished,
    #[error("the session's writer failed: {0}")]
    Writer(#[from] tokio::task::JoinError),
}

/// The live session: client frames to the protocol, the driver's events to the outbox, until
/// the driver closes or the client is gone. Nothing here waits on a send, so the driver's
/// idle, length and shutdown limits fire whatever the client does.
async fn converse<P: Protocol>(
    driver: &mut Driver,
    protocol: &mut P,
    out: &mut Outbox,
    rx: &mut Receiver,
) -> Exit {
    loop {
        // A client far behind on reading is not read either: its replies would pile up.
        let reading = out.waiting() < OUTBOX_READ_LIMIT;
        // Not `biased`: a client flooding frames must not starve the driver (its limits).
        tokio::select! {
            lost = out.deliver() => return Exit::Lost(lost),
            message = rx.next(), if reading => match message {
                None => return Exit::Lost(Lost::Vanished),
                Some(Err(e)) => return Exit::Lost(Lost::Broken(e)),
                Some(Ok(Message::Close(_))) => return Exit::ClientClosed,
                Some(Ok(Message::Ping(_) | Message::Pong(_))) => driver.heard(),
                Some(Ok(message)) => {
                    driver.heard();
                    // Once the session is closing, what the client still sends (audio after
                    // the end, commands) is read and discarded.
                    if driver.is_live() {
                        protocol.on_client(driver, message, out);
                    }
                }
            },
            step = driver.next() => match step {
                Step::Send(events) => protocol.on_events(driver, events, out),
                Step::Ending(notice) => protocol.on_events(driver, notice.into_iter().collect(), out),
                Step::Closed(closed) => {
                    protocol.on_closed(driver, closed, out);
                    return Exit::Farewell;
                }
            },
        }
        if out.waiting() > OUTBOX_MAX {
            return Exit::Lost(Lost::Behind(out.waiting()));
        }
    }
}

/// Sends what is left (the last events and the close frame) within one `deadline`, reading
/// and discarding the client's frames meanwhile (audio after the end, pings), then waits
/// briefly for the client's close frame: a socket closed with unread data is reset by the
/// kernel, and the reset discards what the client had not read yet.
async fn say_goodbye(out: &mut Outbox, rx: &mut Receiver, deadline: Duration) {
    let finishing = tokio::time::timeout(deadline, out.finish());
    tokio::pin!(finishing);
    let mut open = true;
    let sent = loop {
        tokio::select! {
            result = &mut finishing => break result,
            message = rx.next(), if open => {
                open = matches!(message, Some(Ok(ref m)) if !matches!(m, Message::Close(_)));
            }
        }
    };
    match sent {
        Ok(Ok(())) if open => linger(rx).await,
        Ok(Ok(())) => {}
        Ok(Err(lost)) => tracing::info!(reason = %lost, "the last events did not reach the client"),
        Err(_) => tracing::warn!(
            "client is not reading: the last events were not sent within {} s",
            deadline.as_secs()
        ),
    }
}

/// Sends a refusal (`frames`, the last of them a close frame) within `deadline`, then waits
/// briefly for the client's close frame, so the refusal is not reset away.
pub async fn refuse_after_upgrade(mut socket: WebSocket, frames: Vec<Message>, deadline: Duration) {
    let farewell = async {
        for frame in frames {
            socket.send(frame).await?;
        }
        Ok::<(), axum::Error>(())
    };
    if let Ok(Ok(())) = tokio::time::timeout(deadline, farewell).await {
        linger(&mut socket).await;
    }
}

/// Reads and discards what the client still sends until its close frame ends the stream,
/// for at most [`CLOSE_WAIT`].
async fn linger<S>(rx: &mut S)
where
    S: futures_util::Stream<Item = Result<Message, axum::Error>> + Unpin,
{
    let drained = async { while let Some(Ok(_)) = rx.next().await {} };
    let _ = tokio::time::timeout(CLOSE_WAIT, drained).await;
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The server runs each session as a task; one that panics still gives its place back.
    #[tokio::test]
    async fn a_session_that_panics_gives_its_place_back() {
        let sessions = Arc::new(AtomicUsize::new(0));
        let slot = SessionSlot::claim(&sessions, 1).expect("a free place");
        assert!(SessionSlot::claim(&sessions, 1).is_none(), "one place only");
        let session = tokio::spawn(async move {
            let _slot = slot;
            panic!("a session fails");
        });
        assert!(session.await.unwrap_err().is_panic());
        assert_eq!(sessions.load(Ordering::SeqCst), 0);
        assert!(SessionSlot::claim(&sessions, 1).is_some());
    }
}
