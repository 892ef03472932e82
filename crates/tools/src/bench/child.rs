//! The server under test of `sori bench --hostile` and `--capacity`: the real `sori serve`
//! binary (the one beside this one) as a child process on a free loopback port, so its memory
//! and CPU are its own, its settings are exactly a deployment's, and `SIGTERM` reaches it.

use std::ffi::{OsStr, OsString};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};

/// How long the model may take to load before the bench gives up.
const START_LIMIT: Duration = Duration::from_secs(180);

/// A `sori serve` child process; killed when dropped.
pub struct ChildServer {
    child: Child,
    pub addr: SocketAddr,
    /// Where its transcripts go (a scratch folder, removed on drop).
    pub outputs: PathBuf,
    log: PathBuf,
}

impl ChildServer {
    /// Starts `sori serve` with keywords and RAG off (nothing here needs them), `args` after
    /// its own flags and `env` on top, and waits until `/health` answers.
    pub async fn start<K, V>(
        scratch: &Path,
        args: &[OsString],
        env: &[(K, V)],
    ) -> anyhow::Result<Self>
    where
        K: AsRef<OsStr>,
        V: AsRef<OsStr>,
    {
        let exe = std::env::current_exe()?;
        let sori = exe.with_file_name("sori");
        if !sori.exists() {
            bail!(
                "{} is missing: build it with `cargo build --release`",
                sori.display()
            );
        }
        let port = free_port()?;
        let addr = SocketAddr::from(([127, 0, 0, 1], port));
        let outputs = scratch.join(format!("outputs-{port}"));
        let log = scratch.join(format!("server-{port}.log"));
        let mut command = Command::new(&sori);
        command
            .args(["serve", "--bind", &addr.to_string()])
            .arg("--outputs-dir")
            .arg(&outputs)
            .args(args)
            .env("SORI_KEYWORDS", "false")
            .env("SORI_RAG", "false")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log)?);
        for (name, value) in env {
            command.env(name, value);
        }
        let child = command
            .spawn()
            .with_context(|| format!("cannot start {}", sori.display()))?;
        let mut server = Self {
            child,
            addr,
            outputs,
            log,
        };
        server.wait_healthy().await?;
        Ok(server)
    }

    async fn wait_healthy(&mut self) -> anyhow::Result<()> {
        let started = Instant::now();
        let client = reqwest::Client::new();
        while started.elapsed() < START_LIMIT {
            if let Some(status) = self.child.try_wait()? {
                bail!("sori serve exited with {status}: {}", self.log_tail());
            }
            let health = client.get(self.url("/health")).send().await;
            if health.is_ok_and(|r| r.status().is_success()) {
                return Ok(());
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        bail!(
            "sori serve did not answer /health within {START_LIMIT:?}: {}",
            self.log_tail()
        )
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Resident memory now (VmRSS), in MB.
    pub fn rss_mb(&self) -> f64 {
        rss_mb(self.pid())
    }

    /// `/api/status`'s open-session count.
    pub async fn sessions(&self, client: &reqwest::Client) -> anyhow::Result<u64> {
        let status: serde_json::Value = client
            .get(self.url("/api/status"))
            .send()
            .await?
            .json()
            .await?;
        status["sessions"]
            .as_u64()
            .or_else(|| status["sessions"]["active"].as_u64())
            .context("/api/status has no session count")
    }

    /// Sends `SIGTERM` and returns how long the process took to exit (`None`: still alive
    /// after `limit`, then killed).
    pub async fn terminate(&mut self, limit: Duration) -> anyhow::Result<Option<Duration>> {
        // SAFETY: kill(2) on our own child's pid, which has not been reaped yet.
        unsafe { libc::kill(self.child.id() as libc::pid_t, libc::SIGTERM) };
        let sent = Instant::now();
        while sent.elapsed() < limit {
            if self.child.try_wait()?.is_some() {
                return Ok(Some(sent.elapsed()));
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let _ = self.child.kill();
        Ok(None)
    }

    /// The last lines the server logged (its stderr), for error messages.
    pub fn log_tail(&self) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(15)..].join("\n")
    }
}

impl Drop for ChildServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.outputs);
    }
}

/// A port nothing listens on now.
fn free_port() -> std::io::Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

/// A process's resident memory (VmRSS from `/proc/PID/status`), in MB; 0 when unreadable.
pub fn rss_mb(pid: u32) -> f64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|status| {
            status
                .lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|kb| kb.parse::<f64>().ok())
        })
        .map_or(0.0, |kb| kb / 1024.0)
}
