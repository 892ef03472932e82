//! `sori serve`: the HTTP / WebSocket server, with an optional HTTPS / WSS listener beside it.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::Context;

use sori::config::Config;
use sori::http::{AppState, serve, serve_on};
use sori::transcribe::Transcriber;

use super::{EngineFlags, runtime};

// No `///` here: the variant's doc in `Command` is the command's help.
#[derive(clap::Args)]
pub struct ServeArgs {
    /// Address to listen on (env SORI_BIND; default 127.0.0.1:5000).
    #[arg(long)]
    bind: Option<SocketAddr>,
    #[command(flatten)]
    engine: EngineFlags,
    /// Directory for session transcripts (env SORI_OUTPUTS_DIR).
    #[arg(long)]
    outputs_dir: Option<PathBuf>,
    /// Maximum concurrent /ws sessions (env SORI_MAX_SESSIONS).
    #[arg(long)]
    max_sessions: Option<usize>,
    /// OpenAI-compatible endpoint for keywords (env SORI_LLM_BASE_URL; default http://127.0.0.1:8000/v1).
    #[arg(long)]
    llm_url: Option<String>,
    /// Redis for caching (env SORI_REDIS_URL; default: in-memory cache).
    #[arg(long)]
    redis_url: Option<String>,
    /// PEM certificate for the HTTPS/WSS listener (env SORI_TLS_CERT; needs --tls-key).
    #[arg(long)]
    tls_cert: Option<PathBuf>,
    /// PEM private key for the HTTPS/WSS listener (env SORI_TLS_KEY).
    #[arg(long)]
    tls_key: Option<PathBuf>,
    /// Address of the HTTPS/WSS listener (env SORI_TLS_BIND; default 0.0.0.0:5443).
    #[arg(long)]
    tls_bind: Option<SocketAddr>,
}

impl ServeArgs {
    /// Flags override the file and the environment.
    fn apply(self, config: &mut Config) {
        self.engine.apply(config);
        if let Some(bind) = self.bind {
            config.server.bind = bind;
        }
        if let Some(dir) = self.outputs_dir {
            config.server.outputs_dir = dir;
        }
        if let Some(n) = self.max_sessions {
            config.server.max_sessions = n;
        }
        if let Some(url) = self.llm_url {
            config.llm.base_url = url;
        }
        if let Some(url) = self.redis_url {
            config.cache.redis_url = Some(url);
        }
        if self.tls_cert.is_some() {
            config.server.tls_cert = self.tls_cert;
        }
        if self.tls_key.is_some() {
            config.server.tls_key = self.tls_key;
        }
        if let Some(bind) = self.tls_bind {
            config.server.tls_bind = bind;
        }
    }
}

pub fn run(args: ServeArgs, config_path: Option<&Path>) -> anyhow::Result<()> {
    // A misspelt variable is otherwise ignored in silence.
    sori::config::warn_unknown_env();
    let mut config = Config::load(config_path)?;
    args.apply(&mut config);
    config.validate()?;
    runtime()?.block_on(serve_forever(config))
}

async fn serve_forever(config: Config) -> anyhow::Result<()> {
    let bind = config.server.bind;
    // Read the certificate before loading the model: a bad path should fail at once.
    let tls = match (&config.server.tls_cert, &config.server.tls_key) {
        (Some(cert), Some(key)) => Some(sori::http::tls::acceptor(cert, key)?),
        _ => None,
    };
    let config = Arc::new(config);
    let transcriber = tokio::task::spawn_blocking({
        let config = Arc::clone(&config);
        move || Transcriber::start(config)
    })
    .await??;
    let listener = tokio::net::TcpListener::bind(bind)
        .await
        .with_context(|| format!("cannot listen on {bind}"))?;
    let address = listener.local_addr()?;
    tracing::info!(%address, "sori is listening (http, ws): open http://{address}/ for the live page");
    let state = AppState::new(transcriber).await;

    // One shutdown signal for both listeners.
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let stopped = move || {
        let mut rx = stop_rx.clone();
        async move {
            let _ = rx.wait_for(|stop| *stop).await;
        }
    };
    let secure = match tls {
        Some(acceptor) => {
            let tls_bind = config.server.tls_bind;
            let tcp = tokio::net::TcpListener::bind(tls_bind)
                .await
                .with_context(|| format!("cannot listen on {tls_bind} (TLS)"))?;
            let listener = sori::http::tls::TlsListener::new(tcp, acceptor)?;
            tracing::info!(address = %tls_bind, "sori is listening (https, wss): https://{tls_bind}/");
            Some(tokio::spawn(serve_on(listener, state.clone(), stopped())))
        }
        None => None,
    };
    // On SIGTERM / ctrl-c: stop accepting, and tell open sessions to finish (they send their
    // last finals and `closed`, then close with 1001).
    let sessions = state.clone();
    tokio::spawn(async move {
        shutdown_signal().await;
        tracing::info!("shutting down: no new connections; open sessions finish their finals");
        sessions.begin_shutdown();
        let _ = stop_tx.send(true);
    });
    serve(listener, state.clone(), stopped()).await?;
    if let Some(secure) = secure {
        secure.await??;
    }
    // Upgraded WebSockets outlive the listeners: wait for them, within the grace period.
    let grace = std::time::Duration::from_secs(config.server.shutdown_grace_s);
    if !state.sessions_ended(grace).await {
        tracing::warn!(
            grace_s = grace.as_secs(),
            "some sessions did not finish in time; exiting anyway"
        );
    }
    tracing::info!("sori stopped");
    Ok(())
}

async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
            .expect("SIGTERM handler");
        tokio::select! {
            _ = ctrl_c => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    let _ = ctrl_c.await;
}
