//! Hostile and very long files (issue 15, point 1): a 3-hour recording transcribes in bounded
//! memory (measured on a `sori serve` child process, so other tests do not pollute its RSS),
//! audio past `server.max_file_s` gets 413, file jobs past `server.max_file_jobs` get 503 with
//! `Retry-After`, and a header's declared length sizes nothing.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::support::servers::free_port;
use crate::support::*;

/// The issue's bound on the server's RSS growth over idle while it transcribes a long file.
const MAX_GROWTH_MIB: f64 = 200.0;

fn http() -> reqwest::Client {
    sori::keywords::install_tls_provider();
    reqwest::Client::builder()
        .timeout(Duration::from_secs(1800))
        .build()
        .unwrap()
}

/// A file made by `sox -n … OUT <effects>` under target/test-audio, once (written aside and
/// renamed, so an interrupted run leaves no half file).
fn generated(name: &str, before: &[&str], effects: &[&str]) -> PathBuf {
    require_tool("sox", "apt-get install -y sox libsox-fmt-mp3");
    let out = scratch_dir().join(name);
    if !out.is_file() {
        let partial = scratch_dir().join(format!("partial-{name}"));
        let started = Instant::now();
        let status = Command::new("sox")
            .arg("-n")
            .args(before)
            .arg(&partial)
            .args(effects)
            .status()
            .expect("sox runs");
        assert!(status.success(), "sox failed to make {name}");
        std::fs::rename(&partial, &out).unwrap();
        eprintln!(
            "generated {name} in {:.1} s",
            started.elapsed().as_secs_f64()
        );
    }
    out
}

/// A 16-bit mono PCM WAV of `samples` whose header declares `data_bytes` (the true size when
/// `None`).
fn wav_claiming(samples: &[f32], rate: u32, data_bytes: Option<u32>) -> Vec<u8> {
    let pcm: Vec<i16> = to_s16le(samples)
        .chunks_exact(2)
        .map(|b| i16::from_le_bytes([b[0], b[1]]))
        .collect();
    sori::audio::wav::wav_s16le(rate, 1, &pcm, data_bytes)
}

/// `sori serve` in a child process, with its own temporary folder (where uploads are spooled).
struct ChildServer {
    child: Child,
    addr: SocketAddr,
    tmp: PathBuf,
}

impl ChildServer {
    async fn start(name: &str, env: &[(&str, &str)]) -> Self {
        let port = free_port();
        let dir = scratch_dir().join(format!("hostile-files-{name}"));
        let _ = std::fs::remove_dir_all(&dir);
        let tmp = dir.join("tmp");
        std::fs::create_dir_all(&tmp).unwrap();
        let log = std::fs::File::create(dir.join("server.log")).unwrap();
        let child = Command::new(env!("CARGO_BIN_EXE_sori"))
            .arg("serve")
            .env("SORI_BIND", format!("127.0.0.1:{port}"))
            .env("SORI_MODEL", model_path())
            .env("SORI_OUTPUTS_DIR", dir.join("outputs"))
            .env("SORI_KEYWORDS", "false")
            .env("SORI_RAG", "false")
            .env("SORI_WORKERS", "1")
            .env("SORI_THREADS", "2")
            .env("TMPDIR", &tmp)
            .env("RUST_LOG", "warn")
            .envs(env.iter().copied())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("start sori serve");
        let addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
        let server = ChildServer { child, addr, tmp };
        let deadline = Instant::now() + Duration::from_secs(120);
        while http()
            .get(format!("http://{addr}/health"))
            .send()
            .await
            .is_err()
        {
            assert!(
                Instant::now() < deadline,
                "sori serve did not start; see {}",
                dir.join("server.log").display()
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        server
    }

    /// `VmRSS` or `VmHWM` of the server, in MiB.
    fn memory_mib(&self, field: &str) -> f64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id()))
            .expect("the server's /proc status");
        let kib: f64 = status
            .lines()
            .find_map(|l| l.strip_prefix(field)?.strip_prefix(':'))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .unwrap_or_else(|| panic!("no {field} in /proc status"));
        kib / 1024.0
    }

    fn spooled_files(&self) -> Vec<String> {
        std::fs::read_dir(&self.tmp)
            .unwrap()
            .filter_map(|e| e.ok())
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .collect()
    }

    /// POSTs `body` to `path` while sampling the server's RSS every 50 ms; returns the status,
    /// the JSON body and the highest RSS seen (MiB).
    async fn post_measured(
        &self,
        path: &str,
        form_file: Option<&str>,
        body: Vec<u8>,
    ) -> (u16, Value, f64) {
        let url = format!("http://{}{path}", self.addr);
        let request = match form_file {
            Some(name) => {
                let part = reqwest::multipart::Part::bytes(body).file_name(name.to_owned());
                let form = reqwest::multipart::Form::new()
                    .text("model", "whisper-1")
                    .text("response_format", "verbose_json")
                    .part("file", part);
                http().post(url).multipart(form)
            }
            None => http().post(url).body(body),
        };
        let sending = tokio::spawn(async move {
            let resp = request.send().await.expect("the server answers");
            let status = resp.status().as_u16();
            (status, resp.json::<Value>().await.expect("a JSON body"))
        });
        let mut peak = self.memory_mib("VmRSS");
        while !sending.is_finished() {
            peak = peak.max(self.memory_mib("VmRSS"));
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let (status, body) = sending.await.unwrap();
        (status, body, peak)
    }
}

impl Drop for ChildServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_three_hour_recording_transcribes_in_bounded_memory_in_any_format() {
    // The issue's file: 3 h of 48 kHz silence as FLAC (~90 MB), and 1 h of MP3 and 30 min of Ogg Vorbis
    // (44.1 kHz stereo, a quiet hum), through both upload endpoints.
    let flac = generated(
        "silence_3h.flac",
        &["-r", "48000", "-b", "16", "-c", "1"],
        &["trim", "0", "3:00:00"],
    );
    let mp3 = generated(
        "hum_1h.mp3",
        &["-r", "44100", "-c", "2"],
        &["synth", "1:00:00", "sine", "50", "vol", "0.001"],
    );
    let ogg = generated(
        "hum_30min.ogg",
        &["-r", "44100", "-c", "2"],
        &["synth", "30:00", "sine", "50", "vol", "0.001"],
    );
    let server = ChildServer::start("long", &[]).await;

    // Warm up with the JFK clip (the model's first decode allocates its buffers): "idle" is
    // a server that has transcribed something.
    let jfk = std::fs::read(data_file("jfk.wav")).unwrap();
    let (status, body, _) = server
        .post_measured("/api/transcribe?language=en", None, jfk)
        .await;
    assert_eq!(status, 200, "{body}");
    assert!(
        sori::eval::wer(JFK_REFERENCE, body["text"].as_str().unwrap()) <= 0.1,
        "{body}"
    );
    tokio::time::sleep(Duration::from_millis(500)).await;
    let idle = server.memory_mib("VmRSS");
    eprintln!(
        "server idle after a warm-up: RSS {idle:.0} MiB, peak so far {:.0} MiB",
        server.memory_mib("VmHWM")
    );

    let cases = [
        (&flac, "/api/transcribe?language=en", None, 3.0 * 3600.0),
        (&mp3, "/v1/audio/transcriptions", Some("hum_1h.mp3"), 3600.0),
        (&ogg, "/api/transcribe?language=en", None, 1800.0),
    ];
    for (file, path, form, seconds) in cases {
        let bytes = std::fs::read(file).unwrap();
        let size_mb = bytes.len() as f64 / 1e6;
        let started = Instant::now();
        let (status, body, peak) = server.post_measured(path, form, bytes).await;
        let took = started.elapsed().as_secs_f64();
        let name = file.file_name().unwrap().to_string_lossy();
        assert_eq!(status, 200, "{name}: {body}");
        let duration = body["duration_s"]
            .as_f64()
            .or_else(|| body["duration"].as_f64())
            .unwrap_or_else(|| panic!("{name}: no duration in {body}"));
        assert!((duration - seconds).abs() < 2.0, "{name}: {duration} s");
        let growth = peak - idle;
        eprintln!(
            "{name} ({size_mb:.1} MB, {:.1} h) via {path}: 200 in {took:.1} s; server RSS peak {peak:.0} MiB = idle + {growth:.0} MiB",
            seconds / 3600.0
        );
        assert!(
            growth <= MAX_GROWTH_MIB,
            "{name}: the server's RSS grew by {growth:.0} MiB (limit {MAX_GROWTH_MIB} MiB)"
        );
    }
    assert!(
        server.spooled_files().is_empty(),
        "spooled uploads are removed: {:?}",
        server.spooled_files()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lying_wav_headers_size_nothing_and_recorder_wavs_transcribe() {
    let server = ChildServer::start("headers", &[]).await;
    let jfk = jfk_16k();
    let idle = server.memory_mib("VmRSS");

    // The JFK clip whose header claims 0x7FFFFFF0 bytes (18.6 h): not trusted for the length
    // limit (the file cannot hold it) nor for any allocation; the decode reads what is there
    // and says the file ends early.
    let (status, body, peak) = server
        .post_measured(
            "/api/transcribe?language=en",
            None,
            wav_claiming(&jfk, 16_000, Some(0x7FFF_FFF0)),
        )
        .await;
    eprintln!(
        "WAV claiming 18.6 h, holding 11 s: {status} {body}; server RSS idle {idle:.0} MiB, peak {peak:.0} MiB"
    );
    match status {
        422 => {
            assert_eq!(body["error"]["code"], "undecodable_audio", "{body}");
            assert!(
                body["error"]["message"]
                    .as_str()
                    .unwrap()
                    .contains("truncated"),
                "{body}"
            );
        }
        200 => assert!(
            (body["duration_s"].as_f64().unwrap() - 11.0).abs() < 0.5,
            "{body}"
        ),
        _ => panic!("a lying header gets an error or a transcript: {status} {body}"),
    }
    assert!(
        peak - idle <= MAX_GROWTH_MIB,
        "RSS grew by {:.0} MiB",
        peak - idle
    );

    // A header that states no length (0xFFFFFFFF, what a recorder writing to a pipe leaves):
    // the file's end is the audio's end, and it transcribes.
    let (status, body, _) = server
        .post_measured(
            "/api/transcribe?language=en",
            None,
            wav_claiming(&jfk, 16_000, Some(u32::MAX)),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let text = body["text"].as_str().unwrap();
    eprintln!("WAV with no declared length: {text}");
    assert!(sori::eval::wer(JFK_REFERENCE, text) <= 0.1, "{text}");
    // Timestamps come from the audio fed, so they match the clip.
    let segments = body["segments"].as_array().unwrap();
    let end = segments.last().unwrap()["end"].as_f64().unwrap();
    assert!(
        end > 9.0 && end <= 11.1,
        "last segment ends at {end} s: {body}"
    );
    assert!(
        server.spooled_files().is_empty(),
        "{:?}",
        server.spooled_files()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn speech_across_many_chunks_keeps_its_words_and_timestamps() {
    // JFK six times, 2 s of silence after each, as a 44.1 kHz FLAC: decoded, resampled and
    // fed in half-second chunks, every repetition must come out whole and at its own time.
    const TIMES: usize = 6;
    let jfk = jfk_16k();
    let period = jfk.len() + 32_000;
    let wav = scratch_dir().join("jfk_x6.wav");
    if !wav.is_file() {
        let mut all = Vec::with_capacity(period * TIMES);
        for _ in 0..TIMES {
            all.extend_from_slice(&jfk);
            all.extend(std::iter::repeat_n(0.0, 32_000));
        }
        sori::audio::wav::write_wav_16k(&wav, &all).unwrap();
    }
    let flac = sox(&wav, "jfk_x6_44k1.flac", &["-r", "44100"]);
    let server = ChildServer::start("speech", &[]).await;
    let idle = server.memory_mib("VmRSS");
    let (status, body, peak) = server
        .post_measured(
            "/api/transcribe?language=en",
            None,
            std::fs::read(&flac).unwrap(),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let period_s = period as f64 / 16_000.0;
    let segments = body["segments"].as_array().unwrap();
    eprintln!(
        "JFK x{TIMES} ({:.0} s, 44.1 kHz FLAC): {} segments in {:.1} s, RSS idle {idle:.0} MiB, peak {peak:.0} MiB",
        body["duration_s"],
        segments.len(),
        body["processing_s"]
    );
    for k in 0..TIMES {
        // Each repetition's segments start within its own period.
        let (from, to) = (k as f64 * period_s, (k + 1) as f64 * period_s - 1.0);
        let mine: Vec<&Value> = segments
            .iter()
            .filter(|s| (from - 0.1..to).contains(&s["start"].as_f64().unwrap()))
            .collect();
        // The same audio at the same offset within its period: the same start, give or take.
        let first = mine.first().expect("a segment")["start"].as_f64().unwrap();
        let first_of_all = segments[0]["start"].as_f64().unwrap();
        assert!(
            (first - from - first_of_all).abs() < 0.1,
            "repetition {k} starts at {first} s, expected {:.3}",
            from + first_of_all
        );
        let text: Vec<&str> = mine.iter().map(|s| s["text"].as_str().unwrap()).collect();
        let text = text.join(" ");
        let wer = sori::eval::wer(JFK_REFERENCE, &text);
        eprintln!("  repetition {k} (from {from:.1} s): WER {wer:.2}: {text}");
        assert!(
            wer <= 0.1,
            "repetition {k} between {from:.1} and {to:.1} s: {text}\n{body}"
        );
    }
    // Words are timed within their segment and in order across the whole file.
    let mut last = 0.0;
    for segment in segments {
        for word in segment["words"].as_array().unwrap() {
            let start = word["start"].as_f64().unwrap();
            assert!(start + 0.05 >= last, "words out of order at {start} s");
            assert!(start >= segment["start"].as_f64().unwrap() - 0.05);
            last = start;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn audio_longer_than_max_file_s_gets_413_saying_the_limit() {
    let mut config = test_config();
    config.server.max_file_s = 60;
    let addr = start_server_without_whisper(config);
    let url = format!("http://{addr}/api/transcribe");

    // A FLAC declaring 2 min: refused from its header, before any decoding.
    let flac = generated(
        "tone_2min.flac",
        &["-r", "16000", "-c", "1"],
        &["synth", "2:00", "sine", "300", "vol", "0.3"],
    );
    let started = Instant::now();
    let resp = http()
        .post(&url)
        .body(std::fs::read(&flac).unwrap())
        .send()
        .await
        .unwrap();
    let (status, body) = (resp.status().as_u16(), resp.json::<Value>().await.unwrap());
    eprintln!(
        "2 min FLAC, limit 60 s: {status} in {:.2} s: {body}",
        started.elapsed().as_secs_f64()
    );
    assert_eq!(status, 413, "{body}");
    assert_eq!(body["error"]["code"], "file_too_long", "{body}");
    let message = body["error"]["message"].as_str().unwrap();
    assert!(
        message.contains("60 s") && message.contains("server.max_file_s"),
        "{message}"
    );
    assert!(message.contains("header declares 2 min"), "{message}");

    // A WAV that states no length: refused once 60 s were decoded, the rest not decoded.
    let noise = white_noise(16_000 * 90, 0.05);
    let resp = http()
        .post(&url)
        .body(wav_claiming(&noise, 16_000, Some(u32::MAX)))
        .send()
        .await
        .unwrap();
    let (status, body) = (resp.status().as_u16(), resp.json::<Value>().await.unwrap());
    eprintln!("90 s WAV without a length, limit 60 s: {status} {body}");
    assert_eq!(status, 413, "{body}");
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("more than 1 min of audio was decoded"),
        "{body}"
    );

    // The OpenAI endpoint says the same in OpenAI's shape.
    let form = reqwest::multipart::Form::new()
        .text("model", "whisper-1")
        .part(
            "file",
            reqwest::multipart::Part::bytes(std::fs::read(&flac).unwrap()).file_name("tone.flac"),
        );
    let resp = http()
        .post(format!("http://{addr}/v1/audio/transcriptions"))
        .multipart(form)
        .send()
        .await
        .unwrap();
    let (status, body) = (resp.status().as_u16(), resp.json::<Value>().await.unwrap());
    assert_eq!(status, 413, "{body}");
    assert_eq!(body["error"]["code"], "file_too_long", "{body}");
    assert!(
        body["error"]["message"].as_str().unwrap().contains("60 s"),
        "{body}"
    );

    // Within the limit it transcribes.
    let resp = http()
        .post(format!("{url}?language=en"))
        .body(wav_claiming(&noise[..16_000 * 30], 16_000, None))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 200, "{:?}", resp.text().await);

    // `sori transcribe` takes the same limit.
    let out = Command::new(env!("CARGO_BIN_EXE_sori"))
        .current_dir(repo_root())
        .args(["transcribe", "--language", "en"])
        .arg(&flac)
        .env("SORI_MODEL", model_path())
        .env("SORI_MAX_FILE_S", "60")
        .env("RUST_LOG", "warn")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    eprintln!("sori transcribe of 2 min with SORI_MAX_FILE_S=60: {stderr}");
    assert!(!out.status.success());
    assert!(
        stderr.contains("limit of 60 s") && stderr.contains("SORI_MAX_FILE_S"),
        "{stderr}"
    );
}

/// Sends a request's header and the first `sent` bytes of a `total`-byte body, then stalls:
/// an upload in flight.
fn start_upload(addr: SocketAddr, path: &str, total: usize, sent: &[u8]) -> TcpStream {
    let mut socket = TcpStream::connect(addr).unwrap();
    write!(
        socket,
        "POST {path} HTTP/1.1\r\nHost: {addr}\r\nContent-Type: audio/wav\r\nContent-Length: {total}\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    socket.write_all(sent).unwrap();
    socket.flush().unwrap();
    socket
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn file_jobs_past_max_file_jobs_get_503_with_retry_after() {
    let mut config = test_config();
    config.server.max_file_jobs = 1;
    let addr = start_server_without_whisper(config);
    let jfk = std::fs::read(data_file("jfk.wav")).unwrap();

    // One long upload in flight holds the only place…
    let mut first = start_upload(
        addr,
        "/api/transcribe?language=en",
        jfk.len(),
        &jfk[..jfk.len() / 2],
    );
    tokio::time::sleep(Duration::from_millis(300)).await;

    // …so a second gets 503 with Retry-After, on both endpoints, at once.
    let started = Instant::now();
    let resp = http()
        .post(format!("http://{addr}/api/transcribe"))
        .body(jfk.clone())
        .send()
        .await
        .unwrap();
    let status = resp.status().as_u16();
    let retry = resp
        .headers()
        .get("retry-after")
        .map(|v| v.to_str().unwrap().to_owned());
    let body: Value = resp.json().await.unwrap();
    eprintln!(
        "second upload while one is in flight: {status}, Retry-After {retry:?}, in {:.3} s: {body}",
        started.elapsed().as_secs_f64()
    );
    assert_eq!(status, 503, "{body}");
    assert_eq!(body["error"]["code"], "server_busy", "{body}");
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("server.max_file_jobs"),
        "{body}"
    );
    let retry: u64 = retry
        .expect("a Retry-After header")
        .parse()
        .expect("seconds");
    assert!(retry >= 1);
    let form = reqwest::multipart::Form::new()
        .text("model", "whisper-1")
        .part(
            "file",
            reqwest::multipart::Part::bytes(jfk.clone()).file_name("jfk.wav"),
        );
    let resp = http()
        .post(format!("http://{addr}/v1/audio/transcriptions"))
        .multipart(form)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 503);
    assert!(resp.headers().get("retry-after").is_some());
    let body: Value = resp.json().await.unwrap();
    assert_eq!(body["error"]["code"], "server_busy", "{body}");
    assert_eq!(body["error"]["type"], "server_error", "{body}");

    // The upload completes and is answered; its place is then free again.
    first.write_all(&jfk[jfk.len() / 2..]).unwrap();
    let mut answer = String::new();
    first
        .set_read_timeout(Some(Duration::from_secs(60)))
        .unwrap();
    let _ = first.read_to_string(&mut answer);
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    drop(first);
    let post = || async {
        http()
            .post(format!("http://{addr}/api/transcribe?language=en"))
            .body(jfk.clone())
            .send()
            .await
            .unwrap()
            .status()
            .as_u16()
    };
    assert_eq!(post().await, 200);

    // A refused file (422) and a client that vanishes mid-upload release their place too.
    let resp = http()
        .post(format!("http://{addr}/api/transcribe"))
        .body(b"not audio".to_vec())
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 422);
    let vanishing = start_upload(addr, "/api/transcribe", jfk.len(), &jfk[..1000]);
    tokio::time::sleep(Duration::from_millis(300)).await;
    drop(vanishing);
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let status = post().await;
        if status == 200 {
            break;
        }
        assert_eq!(status, 503);
        assert!(
            Instant::now() < deadline,
            "the vanished upload's place was never released"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
