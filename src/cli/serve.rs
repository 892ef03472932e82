//! `sori serve`: the HTTP / WebSocket server, with an optional HTTPS / WSS listener beside it.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

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
    // No tokens and a non-loopback address: refused unless server.allow_open says so.
    config.check_exposure()?;
    let runtime = runtime()?;
    let served = runtime.block_on(serve_forever(config));
    // Blocking work a shutdown cut short (a file being decoded) is not waited for.
    runtime.shutdown_timeout(Duration::from_millis(200));
    served
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
    // One descriptor per connection: raise the open-file limit, and say what it allows.
    sori::http::listen::log_limits(&config.server);
    let listener = tokio::net::TcpListener::bind(bind)
        .await
        .with_context(|| format!("cannot listen on {bind}"))?;
    let address = listener.local_addr()?;
    tracing::info!(%address, "sori is listening (http, ws): open http://{address}/ for the live page");
    let state = AppState::new(transcriber).await;

    // Both listeners stop on `state.stopping`; `serve_on` returns within the grace.
    let secure = match tls {
        Some(acceptor) => {
            let tls_bind = config.server.tls_bind;
            let tcp = tokio::net::TcpListener::bind(tls_bind)
                .await
                .with_context(|| format!("cannot listen on {tls_bind} (TLS)"))?;
            let listener = sori::http::tls::TlsListener::new(tcp, acceptor)?;
            tracing::info!(address = %tls_bind, "sori is listening (https, wss): https://{tls_bind}/");
            Some(tokio::spawn(serve_on(
                listener,
                state.clone(),
                std::future::pending(),
            )))
        }
        None => None,
    };
    // On SIGTERM / ctrl-c: stop accepting, end SSE streams and uploads, and tell open sessions
    // to finish (they send their last finals and `closed`, then close with 1001).
    let grace = Duration::from_secs(config.server.shutdown_grace_s);
    let stopping = state.clone();
    tokio::spawn(async move {
        shutdown_signal().await;
        tracing::info!(
            grace_s = grace.as_secs(),
            "shutting down: no new connections; open sessions finish their finals"
        );
        exit_after(grace + EXIT_MARGIN);
        stopping.begin_shutdown();
    });
    serve(listener, state.clone(), std::future::pending()).await?;
    if let Some(secure) = secure {
        secure.await??;
    }
    tracing::info!("sori stopped");
    Ok(())
}

/// How far past the grace the watchdog lets the process live (see [`exit_after`]).
const EXIT_MARGIN: Duration = Duration::from_millis(1500);

/// The last resort behind `server.shutdown_grace_s`: `serve` returns within the grace, but
/// if anything still held the process (a blocking call that ignores cancellation), a thread
/// off the runtime ends it.
fn exit_after(limit: Duration) {
    std::thread::spawn(move || {
        std::thread::sleep(limit);
        tracing::error!(
            after_s = limit.as_secs_f64(),
            "still not stopped past the shutdown grace: exiting now"
        );
        std::process::exit(1);
    });
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
