//! Half-open request headers from thousands of sockets (slowloris): whether `/health` and a
//! live `/ws` session still work, and when the server closes the flood.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};

use crate::bench::child::ChildServer;
use sori::harness::ws_client::{self, Incoming};

/// The flood comes from another loopback address than the checks, as from another machine.
const FLOOD_SOURCE: IpAddr = IpAddr::V4(Ipv4Addr::new(127, 0, 0, 2));

#[derive(Debug, Clone, serde::Serialize)]
pub struct FloodFigures {
    pub sockets: usize,
    /// Connections that could not be opened at all (refused, or the descriptor limit).
    pub not_opened: usize,
    /// `/health` while the flood is open: median and worst of 10 requests (`None`: failed).
    pub health_p50_ms: Option<f64>,
    pub health_max_ms: Option<f64>,
    /// A new `/ws` session's `ready` while the flood is open.
    pub ws_ready_ms: Option<f64>,
    /// Flood sockets the server closed, and when the last of them was closed.
    pub closed_by_server: usize,
    pub all_closed_after_s: Option<f64>,
}

pub async fn header_flood(
    server: &ChildServer,
    sockets: usize,
    wait: Duration,
) -> anyhow::Result<FloodFigures> {
    raise_open_files_limit();
    let mut open = Vec::with_capacity(sockets);
    let mut not_opened = 0;
    for _ in 0..sockets {
        match half_request(server.addr).await {
            Ok(stream) => open.push(stream),
            Err(_) => not_opened += 1,
        }
    }
    let flooded = Instant::now();
    let (health_p50_ms, health_max_ms) = health_times(server).await;
    let ws_ready_ms = ws_ready(server).await;
    let watchers: Vec<_> = open
        .into_iter()
        .map(|stream| tokio::spawn(closed_within(stream, flooded, wait)))
        .collect();
    let mut closed = 0;
    let mut last: Option<Duration> = None;
    for watcher in watchers {
        if let Ok(Some(at)) = watcher.await {
            closed += 1;
            last = Some(last.map_or(at, |l| l.max(at)));
        }
    }
    let everyone = closed + not_opened == sockets;
    Ok(FloodFigures {
        sockets,
        not_opened,
        health_p50_ms,
        health_max_ms,
        ws_ready_ms,
        closed_by_server: closed,
        all_closed_after_s: everyone.then(|| last.map(|l| l.as_secs_f64())).flatten(),
    })
}

/// A connection that sends the first half of a request header and stops.
async fn half_request(addr: SocketAddr) -> std::io::Result<TcpStream> {
    let socket = TcpSocket::new_v4()?;
    socket.bind(SocketAddr::new(FLOOD_SOURCE, 0))?;
    let mut stream = tokio::time::timeout(Duration::from_secs(2), socket.connect(addr)).await??;
    stream
        .write_all(b"GET /health HTTP/1.1\r\nHost: sori\r\nUser-Agent: slow")
        .await?;
    Ok(stream)
}

/// When the server closes `stream` (EOF or reset), counted from `start` (when the flood was
/// open); `None` if not within `wait` of it.
async fn closed_within(mut stream: TcpStream, start: Instant, wait: Duration) -> Option<Duration> {
    let mut buf = [0u8; 512];
    loop {
        match tokio::time::timeout_at((start + wait).into(), stream.read(&mut buf)).await {
            Err(_) => return None,
            Ok(Ok(0)) | Ok(Err(_)) => return Some(start.elapsed()),
            // A 408 or other answer before the close: keep reading to the end.
            Ok(Ok(_)) => {}
        }
    }
}

async fn health_times(server: &ChildServer) -> (Option<f64>, Option<f64>) {
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(5))
        .build()
        .unwrap_or_default();
    let mut times = Vec::new();
    for _ in 0..10 {
        let started = Instant::now();
        match client.get(server.url("/health")).send().await {
            Ok(r) if r.status().is_success() => {
                times.push(started.elapsed().as_secs_f64() * 1000.0)
            }
            _ => return (None, None),
        }
    }
    times.sort_by(f64::total_cmp);
    (Some(times[times.len() / 2]), times.last().copied())
}

async fn ws_ready(server: &ChildServer) -> Option<f64> {
    let started = Instant::now();
    let mut ws = ws_client::connect(server.addr, "").await.ok()?;
    match ws_client::recv(&mut ws, Duration::from_secs(5)).await {
        Ok(Incoming::Message(sori_core::protocol::ServerMessage::Ready { .. })) => {
            Some(started.elapsed().as_secs_f64() * 1000.0)
        }
        _ => None,
    }
}

/// Thousands of sockets need more than the usual soft limit of 1024 descriptors.
fn raise_open_files_limit() {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit/setrlimit with a valid, initialised struct.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) == 0 && limit.rlim_cur < limit.rlim_max
        {
            limit.rlim_cur = limit.rlim_max;
            libc::setrlimit(libc::RLIMIT_NOFILE, &limit);
        }
    }
}
