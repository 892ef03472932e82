//! A `/ws` client over tokio-tungstenite, the one the tests, `sori eval` and `sori bench` use:
//! connect with a query, send PCM frames (paced in real time or not) and JSON, receive the
//! server's messages parsed, and learn the close code.
//!
//! The functions take any WebSocket sink or stream of tungstenite messages, so they work on a
//! whole [`Ws`], on its halves after `StreamExt::split` (a reader task apart from the sender),
//! and over TLS (tests/it/tls.rs). Pings are answered by tungstenite itself.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use futures_util::{Sink, SinkExt, Stream, StreamExt};
use serde::Serialize;
use serde::de::DeserializeOwned;
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::{self, Message};
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

use crate::protocol::ServerMessage;

/// A client connection to `/ws` over plain TCP.
pub type Ws = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// What can go wrong talking to `/ws`.
#[derive(Debug, thiserror::Error)]
pub enum WsClientError {
    #[error("cannot connect to {url}: {source}")]
    Connect {
        url: String,
        source: tungstenite::Error,
    },
    #[error("the WebSocket connection failed: {0}")]
    Transport(#[from] tungstenite::Error),
    #[error("the server sent something that is not a sori message ({source}): {text}")]
    BadMessage {
        text: String,
        source: serde_json::Error,
    },
    #[error("cannot write the message as JSON: {0}")]
    Encode(serde_json::Error),
    #[error("nothing from the server for {} s", .0.as_secs())]
    Timeout(Duration),
    #[error("the connection ended without a close frame")]
    Ended,
}

/// One thing the server sent: a JSON message, or the close frame (with its code, if any).
#[derive(Debug, Clone, PartialEq)]
pub enum Incoming<T = ServerMessage> {
    Message(T),
    Closed(Option<u16>),
}

/// `ws://{addr}/ws{query}`; `query` is empty or starts with `?`.
pub fn ws_url(addr: SocketAddr, query: &str) -> String {
    format!("ws://{addr}/ws{query}")
}

/// Connects to `/ws` on `addr` with `query` (empty, or starting with `?`). Nagle's algorithm
/// is off, so small frames are not held back (latency figures depend on it).
pub async fn connect(addr: SocketAddr, query: &str) -> Result<Ws, WsClientError> {
    connect_url(&ws_url(addr, query)).await
}

/// Connects to a full `ws://` URL.
pub async fn connect_url(url: &str) -> Result<Ws, WsClientError> {
    tokio_tungstenite::connect_async_with_config(url, None, true)
        .await
        .map(|(ws, _response)| ws)
        .map_err(|source| WsClientError::Connect {
            url: url.to_owned(),
            source,
        })
}

/// Sends `value` as one JSON text frame.
pub async fn send_json<W>(sink: &mut W, value: &impl Serialize) -> Result<(), WsClientError>
where
    W: Sink<Message, Error = tungstenite::Error> + Unpin,
{
    let text = serde_json::to_string(value).map_err(WsClientError::Encode)?;
    sink.send(Message::Text(text.into())).await?;
    Ok(())
}

/// Sends `{"type":"stop"}`: the server finishes the session, sends `closed` and closes.
pub async fn send_stop<W>(sink: &mut W) -> Result<(), WsClientError>
where
    W: Sink<Message, Error = tungstenite::Error> + Unpin,
{
    send_json(sink, &serde_json::json!({"type": "stop"})).await
}

/// Sends `pcm` (bytes in the session's encoding) in binary frames of `frame_bytes`.
///
/// With `pace` (the audio duration of one frame) the frames go out as from a live microphone:
/// the first at once, frame `i` at `start + i·pace`. Without it they go as fast as the socket
/// takes them. Returns `start`, the instant the first frame went out.
pub async fn send_pcm<W>(
    sink: &mut W,
    pcm: &[u8],
    frame_bytes: usize,
    pace: Option<Duration>,
) -> Result<Instant, WsClientError>
where
    W: Sink<Message, Error = tungstenite::Error> + Unpin,
{
    let start = Instant::now();
    for (i, frame) in pcm.chunks(frame_bytes.max(1)).enumerate() {
        if let Some(pace) = pace {
            let due = start + pace * i as u32;
            tokio::time::sleep_until(due.into()).await;
        }
        sink.send(Message::Binary(frame.to_vec().into())).await?;
    }
    Ok(start)
}

/// The next JSON message (as `T`: a [`ServerMessage`], or `serde_json::Value` to see it as
/// sent) or the close frame, within `timeout`. Binary frames, pings and pongs are skipped.
pub async fn recv_as<T, R>(source: &mut R, timeout: Duration) -> Result<Incoming<T>, WsClientError>
where
    T: DeserializeOwned,
    R: Stream<Item = Result<Message, tungstenite::Error>> + Unpin,
{
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        let message = match tokio::time::timeout_at(deadline, source.next()).await {
            Err(_) => return Err(WsClientError::Timeout(timeout)),
            Ok(None) => return Err(WsClientError::Ended),
            Ok(Some(message)) => message?,
        };
        match message {
            Message::Text(text) => {
                return serde_json::from_str(text.as_str())
                    .map(Incoming::Message)
                    .map_err(|source| WsClientError::BadMessage {
                        text: text.as_str().to_owned(),
                        source,
                    });
            }
            Message::Close(frame) => return Ok(Incoming::Closed(frame.map(|f| f.code.into()))),
            _ => {}
        }
    }
}

/// The next [`ServerMessage`] or the close frame, within `timeout`.
pub async fn recv<R>(source: &mut R, timeout: Duration) -> Result<Incoming, WsClientError>
where
    R: Stream<Item = Result<Message, tungstenite::Error>> + Unpin,
{
    recv_as(source, timeout).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_name_the_ws_path() {
        let addr: SocketAddr = "127.0.0.1:5000".parse().unwrap();
        assert_eq!(ws_url(addr, ""), "ws://127.0.0.1:5000/ws");
        assert_eq!(
            ws_url(addr, "?language=ko"),
            "ws://127.0.0.1:5000/ws?language=ko"
        );
    }

    /// A real round trip against a tiny echo-like server: JSON out, JSON and close code in.
    #[tokio::test]
    async fn sends_and_receives_over_a_real_socket() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let server = tokio::spawn(async move {
            let (tcp, _) = listener.accept().await.unwrap();
            let mut ws = tokio_tungstenite::accept_async(tcp).await.unwrap();
            let mut binary = 0;
            while let Some(Ok(message)) = ws.next().await {
                match message {
                    Message::Binary(b) => binary += b.len(),
                    Message::Text(t) if t.as_str().contains("stop") => break,
                    _ => {}
                }
            }
            let status = serde_json::json!({"type": "keepalive_seen", "bytes": binary});
            ws.send(Message::Text(status.to_string().into()))
                .await
                .unwrap();
            ws.close(Some(tungstenite::protocol::CloseFrame {
                code: tungstenite::protocol::frame::coding::CloseCode::Again,
                reason: "full".into(),
            }))
            .await
            .unwrap();
        });
        let mut ws = connect(addr, "?x=1").await.unwrap();
        let start = send_pcm(&mut ws, &[0u8; 1000], 300, Some(Duration::from_millis(5)))
            .await
            .unwrap();
        assert!(start.elapsed() >= Duration::from_millis(15)); // 4 frames, 3 waits
        send_stop(&mut ws).await.unwrap();
        let timeout = Duration::from_secs(10);
        let first = recv_as::<serde_json::Value, _>(&mut ws, timeout)
            .await
            .unwrap();
        assert_eq!(
            first,
            Incoming::Message(serde_json::json!({"type": "keepalive_seen", "bytes": 1000}))
        );
        assert_eq!(
            recv_as::<serde_json::Value, _>(&mut ws, timeout)
                .await
                .unwrap(),
            Incoming::Closed(Some(1013))
        );
        server.await.unwrap();
    }
}
