//! A sori server started inside this process on 127.0.0.1:0: what the tests talk to, what
//! `sori eval` streams to, and what `sori bench --load` and `--peers` measure.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use crate::config::Config;
use crate::http::AppState;
use crate::transcribe::{EngineError, Transcriber};

/// Why the in-process server could not start or did not stop cleanly.
#[derive(Debug, thiserror::Error)]
pub enum LocalServerError {
    #[error("cannot start the speech engine: {0}")]
    Engine(#[from] EngineError),
    #[error("the speech engine's start-up thread failed: {0}")]
    Join(#[from] tokio::task::JoinError),
    #[error("cannot listen on 127.0.0.1: {0}")]
    Bind(std::io::Error),
    #[error("the in-process server failed: {0}")]
    Serve(std::io::Error),
    #[error("cannot start a runtime for the in-process server: {0}")]
    Runtime(std::io::Error),
    #[error("the in-process server's thread ended before it was listening")]
    Vanished,
}

/// A running server: its address, its shared state (engine, session count), and the handle
/// that stops it.
pub struct LocalServer {
    /// Where it listens (127.0.0.1, a port the system chose).
    pub addr: SocketAddr,
    /// The server's state: the engine both offline and streamed paths share, the open-session
    /// count the load bench watches.
    pub state: AppState,
    stop: tokio::sync::oneshot::Sender<()>,
    task: tokio::task::JoinHandle<std::io::Result<()>>,
    /// A temporary transcripts folder to remove on shutdown ([`LocalServer::start_scratch`]).
    scratch: Option<PathBuf>,
}

/// What a local server decodes with.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Decoders {
    /// The configured Whisper model (`stt.model`): the product.
    Whisper,
    /// The scripted test double ([`Transcriber::scripted`]): no model is loaded, for tests of
    /// what does not need Whisper.
    Scripted,
}

impl LocalServer {
    /// Loads the model (on a blocking thread, off the runtime) and serves on 127.0.0.1:0.
    pub async fn start(config: Config) -> Result<Self, LocalServerError> {
        Self::start_with(config, Decoders::Whisper).await
    }

    /// Serves on 127.0.0.1:0 with the given decoders.
    pub async fn start_with(config: Config, decoders: Decoders) -> Result<Self, LocalServerError> {
        crate::keywords::install_tls_provider();
        let config = Arc::new(config);
        let transcriber = match decoders {
            Decoders::Whisper => {
                tokio::task::spawn_blocking(move || Transcriber::start(config)).await??
            }
            Decoders::Scripted => Transcriber::scripted(config)?,
        };
        Self::serve(transcriber).await
    }

    /// [`LocalServer::start`] with session transcripts in a fresh temporary folder, removed on
    /// shutdown: for tools, whose sessions are measurements, not records.
    pub async fn start_scratch(mut config: Config) -> Result<Self, LocalServerError> {
        let dir =
            std::env::temp_dir().join(format!("sori-local-{}", uuid::Uuid::new_v4().simple()));
        config.server.outputs_dir = dir.clone();
        let mut server = Self::start(config).await?;
        server.scratch = Some(dir);
        Ok(server)
    }

    /// Serves an engine already started.
    pub async fn serve(transcriber: Transcriber) -> Result<Self, LocalServerError> {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .map_err(LocalServerError::Bind)?;
        let addr = listener.local_addr().map_err(LocalServerError::Bind)?;
        let state = AppState::new(transcriber).await;
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let task = tokio::spawn(crate::http::serve(listener, state.clone(), async move {
            let _ = stopped.await;
        }));
        Ok(Self {
            addr,
            state,
            stop,
            task,
            scratch: None,
        })
    }

    /// Starts a server on a runtime thread of its own that serves until the process exits,
    /// and returns its address once it listens (tests share one per test binary).
    pub fn spawn_detached(config: Config) -> Result<SocketAddr, LocalServerError> {
        Self::spawn_detached_with(config, Decoders::Whisper)
    }

    /// [`LocalServer::spawn_detached`] with the given decoders.
    pub fn spawn_detached_with(
        config: Config,
        decoders: Decoders,
    ) -> Result<SocketAddr, LocalServerError> {
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let runtime = match tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()
            {
                Ok(runtime) => runtime,
                Err(e) => {
                    let _ = tx.send(Err(LocalServerError::Runtime(e)));
                    return;
                }
            };
            runtime.block_on(async move {
                match Self::start_with(config, decoders).await {
                    Ok(server) => {
                        let _ = tx.send(Ok(server.addr));
                        // Serve until the process ends.
                        if let Ok(Err(e)) = server.task.await {
                            tracing::error!(error = %e, "the in-process server failed");
                        }
                    }
                    Err(e) => {
                        let _ = tx.send(Err(e));
                    }
                }
            });
        });
        rx.recv().unwrap_or(Err(LocalServerError::Vanished))
    }

    /// `http://127.0.0.1:PORT`, the base of every HTTP route.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// `ws://127.0.0.1:PORT/ws{query}`; `query` is empty or starts with `?`.
    pub fn ws_url(&self, query: &str) -> String {
        super::ws_client::ws_url(self.addr, query)
    }

    /// The engine the server runs (to transcribe offline with the same model).
    pub fn transcriber(&self) -> &Arc<Transcriber> {
        &self.state.transcriber
    }

    /// Stops the server gracefully (open sessions get their finals and `closed`), waits for it,
    /// and removes the scratch transcripts folder if there is one.
    pub async fn shutdown(self) -> Result<(), LocalServerError> {
        let _ = self.stop.send(());
        let served = self.task.await;
        if let Some(dir) = &self.scratch {
            let _ = std::fs::remove_dir_all(dir);
        }
        served?.map_err(LocalServerError::Serve)
    }
}
