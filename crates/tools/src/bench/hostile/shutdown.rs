//! `SIGTERM` while the page's monitors, an upload and a live session are open: how long the
//! process takes to exit, and whether the session got its `closed` and 1001.

use std::path::Path;
use std::time::Duration;

use sori::harness::ws_client::{self, Incoming};
use sori_core::protocol::ServerMessage;

use crate::bench::child::ChildServer;

#[derive(Debug, Clone, serde::Serialize)]
pub struct ShutdownFigures {
    pub monitors: usize,
    pub grace_s: u64,
    /// From `SIGTERM` to the process's exit (`None`: alive after twice the grace).
    pub exit_after_s: Option<f64>,
    pub session_closed: bool,
    pub session_close_code: Option<u16>,
}

pub async fn terminate_busy(
    mut server: ChildServer,
    monitors: usize,
    upload: &Path,
    speech_pcm: Vec<u8>,
    grace_s: u64,
) -> anyhow::Result<ShutdownFigures> {
    let http = reqwest::Client::new();
    let mut streams = Vec::new();
    for _ in 0..monitors {
        let mut response = http.get(server.url("/api/status/stream")).send().await?;
        // Each monitor reads its stream to the end, as the page does.
        streams.push(tokio::spawn(async move {
            while let Ok(Some(_)) = response.chunk().await {}
        }));
    }
    let bytes = tokio::fs::read(upload).await?;
    let uploading = {
        let url = server.url("/api/transcribe");
        let name = upload.display().to_string();
        tokio::spawn(async move {
            let form = reqwest::multipart::Form::new().part(
                "file",
                reqwest::multipart::Part::bytes(bytes).file_name(name),
            );
            let _ = reqwest::Client::new()
                .post(url)
                .multipart(form)
                .send()
                .await;
        })
    };
    let mut ws = ws_client::connect(server.addr, "?language=en").await?;
    ws_client::send_pcm(&mut ws, &speech_pcm, 3200, None).await?;
    tokio::time::sleep(Duration::from_secs(1)).await;

    let exit = server
        .terminate(Duration::from_secs(grace_s * 2 + 5))
        .await?;
    let (mut closed, mut code) = (false, None);
    while let Ok(incoming) = ws_client::recv(&mut ws, Duration::from_secs(1)).await {
        match incoming {
            Incoming::Message(ServerMessage::Closed { .. }) => closed = true,
            Incoming::Message(_) => {}
            Incoming::Closed(c) => {
                code = c;
                break;
            }
        }
    }
    uploading.abort();
    for stream in streams {
        stream.abort();
    }
    Ok(ShutdownFigures {
        monitors,
        grace_s,
        exit_after_s: exit.map(|d| d.as_secs_f64()),
        session_closed: closed,
        session_close_code: code,
    })
}
