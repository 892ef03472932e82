//! The one table of settings: each knob's key (`stt.beam_size`), its `SORI_*` variable and
//! command-line flag if it has them, and one line of documentation. The environment is applied
//! from it (`Config::apply_env`), unknown `SORI_*` names are checked against it, the tables of
//! docs/configuration.md are generated from it (`sori config docs`), and a test checks every
//! flag of the command line against it. Defaults live in the `Default` impls; the table reads
//! them through each entry's getter.

use super::Config;
use super::values::{self, Show, Shown};

/// One knob of the configuration.
pub struct Setting {
    /// `section.field`, as in `sori.toml`.
    pub key: &'static str,
    /// The environment variable that sets it, if any.
    pub env: Option<&'static str>,
    /// The command-line flag that sets it (on the commands that use it), if any.
    pub flag: Option<&'static str>,
    /// What it does, for docs/configuration.md.
    pub doc: &'static str,
    /// Sets it from text (a `SORI_*` value); the error is the reason the text is refused.
    pub set: fn(&mut Config, &str) -> Result<(), String>,
    /// Its value in `config`, as the documentation shows it.
    pub show: fn(&Config) -> Shown,
}

/// One section of `sori.toml` and its table in docs/configuration.md.
pub struct Section {
    pub name: &'static str,
    pub settings: &'static [Setting],
}

/// `opt!()` → `None`, `opt!("x")` → `Some("x")`.
macro_rules! opt {
    () => {
        None
    };
    ($x:literal) => {
        Some($x)
    };
}

/// `parser!()` → [`values::value`] (trimmed `FromStr`), `parser!(p)` → `values::p`.
macro_rules! parser {
    () => {
        values::value
    };
    ($p:ident) => {
        values::$p
    };
}

/// `setting!(section.field, env "SORI_X", flag "--x", parse kind, "doc")`; env, flag and parse
/// are optional, in that order.
macro_rules! setting {
    ($section:ident . $field:ident, $(env $env:literal,)? $(flag $flag:literal,)? $(parse $parse:ident,)? $doc:literal) => {
        Setting {
            key: concat!(stringify!($section), ".", stringify!($field)),
            env: opt!($($env)?),
            flag: opt!($($flag)?),
            doc: $doc,
            set: |config, text| {
                config.$section.$field = parser!($($parse)?)(text)?;
                Ok(())
            },
            show: |config| Show::show(&config.$section.$field),
        }
    };
}

/// Every setting, by section, in the order of docs/configuration.md.
pub static SECTIONS: &[Section] = &[
    Section {
        name: "server",
        settings: SERVER,
    },
    Section {
        name: "stt",
        settings: STT,
    },
    Section {
        name: "vad",
        settings: VAD,
    },
    Section {
        name: "filter",
        settings: FILTER,
    },
    Section {
        name: "llm",
        settings: LLM,
    },
    Section {
        name: "cache",
        settings: CACHE,
    },
    Section {
        name: "rag",
        settings: RAG,
    },
];

/// Every setting, in table order.
pub fn all() -> impl Iterator<Item = &'static Setting> {
    SECTIONS.iter().flat_map(|s| s.settings)
}

/// The setting a `SORI_*` variable sets.
pub fn by_env(name: &str) -> Option<&'static Setting> {
    all().find(|s| s.env == Some(name))
}

/// The setting with this `section.field` key.
pub fn by_key(key: &str) -> Option<&'static Setting> {
    all().find(|s| s.key == key)
}

static SERVER: &[Setting] = &[
    setting!(server.bind, env "SORI_BIND", flag "--bind",
        "listen address; loopback unless you choose otherwise"),
    setting!(server.outputs_dir, env "SORI_OUTPUTS_DIR", flag "--outputs-dir", parse path,
        "per-session `.jsonl`, `.srt`, `.vtt`"),
    setting!(server.max_frame_bytes, env "SORI_MAX_FRAME_BYTES",
        "larger audio frames get `frame_too_large`; 4× this closes with 1009"),
    setting!(server.max_sessions, env "SORI_MAX_SESSIONS", flag "--max-sessions",
        "further `/ws` connections are refused with 1013; 0 = what the capacity benchmark says \
         the machine's cores carry with the loaded model (4 streams per core for base)"),
    setting!(
        server.max_upload_bytes,
        "`POST /api/transcribe` upload limit"
    ),
    setting!(server.status_interval_ms, "period of `status` events"),
    setting!(
        server.monitor_interval_ms,
        "period of `GET /api/status/stream` events (the page's monitor)"
    ),
    setting!(server.tls_cert, env "SORI_TLS_CERT", flag "--tls-cert", parse opt_path,
        "PEM certificate chain: turns on the HTTPS/WSS listener (with `tls_key`)"),
    setting!(server.tls_key, env "SORI_TLS_KEY", flag "--tls-key", parse opt_path,
        "PEM private key (PKCS#8, PKCS#1 or SEC1)"),
    setting!(server.tls_bind, env "SORI_TLS_BIND", flag "--tls-bind",
        "address of the HTTPS/WSS listener; the plain listener stays on `server.bind`"),
    setting!(server.api_tokens, env "SORI_API_TOKENS", parse list,
        "comma-separated tokens accepted as `Authorization: Bearer …` (`?token=…` only on `/ws` \
         and `/api/status/stream`); none = no authentication (then only a loopback `bind` \
         unless `allow_open`); refused with 401 / close 1008. `/`, `/static/*`, `/health`, \
         `/ready` stay open (`/ready` without details). Shown as `***`"),
    setting!(server.allowed_origins, env "SORI_ALLOWED_ORIGINS", parse list,
        "comma-separated browser Origins allowed to use `/ws` and the API (`*` or none = any); \
         others get 403 `origin_not_allowed` / close 1008. CORS headers only for these (none \
         when empty)"),
    setting!(server.max_connections_per_client, env "SORI_MAX_CONNECTIONS_PER_CLIENT",
        "open `/ws` sessions, status streams and uploads per client IP together (0 = no \
         limit); more get close 1013 (`/ws`) or 429. Behind a proxy every client has the \
         proxy's address: raise it there"),
    setting!(server.max_session_s, env "SORI_MAX_SESSION_S",
        "a session ends (finals, `closed`, close 1000) after this long; 0 = no limit"),
    setting!(server.idle_timeout_s, env "SORI_IDLE_TIMEOUT_S",
        "a session that sends nothing this long ends; `keepalive` keeps it open; 0 = never"),
    setting!(
        server.max_backlog_s,
        "audio waiting to be decoded per session (s); frames beyond it get `backlog_full`"
    ),
    setting!(server.shutdown_grace_s, env "SORI_SHUTDOWN_GRACE_S",
        "on SIGTERM / ctrl-c, open sessions get this long to send their last finals; the \
         process exits within it whatever clients do"),
    setting!(server.max_file_s, env "SORI_MAX_FILE_S",
        "longest audio a file upload or `sori transcribe` accepts (s); longer gets 413"),
    setting!(server.max_file_jobs, env "SORI_MAX_FILE_JOBS",
        "file transcriptions at once; more get 503 with `Retry-After`; 0 = `stt.workers`"),
    setting!(server.send_timeout_s, env "SORI_SEND_TIMEOUT_S",
        "a client that does not take a message within this long is closed (1008)"),
    setting!(server.header_timeout_s, env "SORI_HEADER_TIMEOUT_S",
        "a connection that has not sent its whole request header in this long is closed"),
    setting!(server.body_timeout_s, env "SORI_BODY_TIMEOUT_S",
        "an upload that has not arrived in this long gets 408"),
    setting!(server.max_connections, env "SORI_MAX_CONNECTIONS",
        "open TCP connections at once; more are closed on arrival"),
    setting!(server.max_connections_per_address, env "SORI_MAX_CONNECTIONS_PER_ADDRESS",
        "open TCP connections per client IP (REST, SSE and `/ws`); 0 = no limit. Behind a \
         proxy every client has the proxy's address: raise it there"),
    setting!(server.max_tls_handshakes, env "SORI_MAX_TLS_HANDSHAKES",
        "TLS handshakes in progress at once"),
    setting!(server.outputs_max_age_days, env "SORI_OUTPUTS_MAX_AGE_DAYS",
        "transcripts older than this are deleted (at start, then hourly); 0 = keep forever"),
    setting!(server.allow_open, env "SORI_ALLOW_OPEN",
        "without `api_tokens`, listening on a non-loopback address needs this set to true"),
];

static STT: &[Setting] = &[
    setting!(stt.model, env "SORI_MODEL", flag "--model", parse path,
        "whisper.cpp ggml file (`sori model fetch` writes it). q8_0 is the CPU default: the same \
         transcripts as f16 here at 0.8× the time and 0.74× the memory (docs/benchmarks.md); on \
         a GPU use `models/ggml-base.bin` (f16), as compose.yaml does"),
    setting!(stt.language, env "SORI_LANGUAGE", flag "--language",
        "`ko` (forced Korean: the default, and the right choice for a Korean site), `en`, or \
         `auto` (detected among `stt.languages`); sessions may override"),
    setting!(stt.languages, env "SORI_LANGUAGES", parse languages,
        "the languages `auto` may detect: Whisper codes or English names (`ko,en,ja`), or `all` \
         for Whisper's ~99; sessions may override with `languages`"),
    setting!(stt.language_lock, env "SORI_LANGUAGE_LOCK",
        "with `auto`, keep a session's language once detected with confidence (below); sessions \
         may turn it off with `language_lock=false`"),
    setting!(stt.language_lock_probability, env "SORI_LANGUAGE_LOCK_PROBABILITY",
        "detection probability, within `stt.languages`, at or above which a session locks"),
    setting!(stt.language_lock_min_s, env "SORI_LANGUAGE_LOCK_MIN_S",
        "shortest utterance (seconds) whose detection may lock a session"),
    setting!(stt.workers, env "SORI_WORKERS", flag "--workers",
        "decoder threads, each with its own whisper state over one shared model; 0 = automatic \
         (one per CPU core up to 8 cores, then one per 2 cores, at most 12)"),
    setting!(stt.threads, env "SORI_THREADS", flag "--threads",
        "CPU threads per decode; 0 = automatic (1 up to 8 cores, 2 beyond)"),
    setting!(stt.beam_size, env "SORI_BEAM_SIZE",
        "live finals and partials: 0/1 greedy, >1 beam search of this width"),
    setting!(stt.window_beam_size, env "SORI_WINDOW_BEAM_SIZE",
        "file windows and live revisions: 0/1 greedy, >1 beam search of this width (5: fewer \
         word errors in noise than greedy, for several times its CPU; see stt.whisper_cpp_beam)"),
    setting!(stt.whisper_cpp_beam, env "SORI_WHISPER_CPP_BEAM",
        "window decodes with a beam: whisper.cpp's own beam search, which draws its candidates \
         at random, instead of sori's (about half the CPU, more word errors in loud noise)"),
    setting!(stt.draft_partials, env "SORI_DRAFT_PARTIALS",
        "decode partials cheaply: no timestamp tokens, one segment, no temperature fallback"),
    setting!(stt.audio_ctx_trim, env "SORI_AUDIO_CTX_TRIM",
        "encode only the utterance (plus margin), not a full 30 s window"),
    setting!(
        stt.audio_ctx_margin_s,
        "margin added to the trimmed window (s)"
    ),
    setting!(
        stt.audio_ctx_min_s,
        "smallest trimmed window (s; too small makes the decoder loop)"
    ),
    setting!(
        stt.partial_interval_ms,
        "re-decode cadence of the open utterance for `partial`"
    ),
    setting!(stt.file_merge_s, env "SORI_FILE_MERGE_S",
        "files: consecutive utterances decoded as one window of up to this many seconds (≤ 120; over 30 s whisper.cpp decodes it in passes cut where its segments end), each still its own segment; 0 = one decode each"),
    setting!(stt.live_revision_s, env "SORI_LIVE_REVISION_S",
        "live /ws sessions: finished utterances decoded again together in windows of up to this \
         many seconds (≤ 120) on an idle worker, after their finals were sent; changed segments \
         get a `revision` event; 0 = none (needs stt.dtw_timestamps)"),
    setting!(stt.condition_on_previous_text, env "SORI_CONDITION_ON_PREVIOUS_TEXT",
        "prompt each decode with the session's previous finals (filtered text never; reset after \
         30 s of silence or a language change); finals of one session then decode one at a time"),
    setting!(stt.dtw_timestamps, env "SORI_DTW_TIMESTAMPS",
        "files: time words by DTW over the model's alignment heads (whisper.cpp presets, tiny … \
         large-v3-turbo), in a second copy of the model loaded on first use; live finals and \
         partials never use it, live revision windows do; false = whisper.cpp's heuristic, which can put words in a pause"),
    setting!(stt.initial_prompt, env "SORI_INITIAL_PROMPT", parse prompt,
        "domain vocabulary; sessions may set their own with `prompt`"),
    setting!(stt.max_prompt_chars, env "SORI_MAX_PROMPT_CHARS",
        "longest prompt accepted, in characters (a session's `prompt`, `--prompt`, the HTTP \
         `prompt` field and `stt.initial_prompt`); longer ones get `prompt_too_long`"),
    setting!(
        stt.queue_capacity,
        "decode requests waiting before sessions must wait (their `status.lag_ms` grows)"
    ),
    setting!(stt.use_gpu, "used only by builds with the `cuda` feature"),
];

static VAD: &[Setting] = &[
    setting!(vad.detector, env "SORI_VAD_DETECTOR",
        "the neural model that scores each frame for voice: `earshot` (built in) or `silero` (Silero VAD v6 over ONNX Runtime: `vad.silero_model` and `rag.onnxruntime_lib`, fetched by scripts/onnx-embedder.sh fetch)"),
    setting!(vad.silero_model, env "SORI_VAD_SILERO_MODEL", parse path,
        "Silero VAD's ONNX file, for `vad.detector = \"silero\"`"),
    setting!(vad.energy_threshold, env "SORI_VAD_ENERGY_THRESHOLD",
        "frame RMS (full scale 1.0) below which a frame is never speech"),
    setting!(
        vad.speech_threshold,
        "voice probability (the detector's) at or above which a frame is speech"
    ),
    setting!(vad.silence_ms, env "SORI_VAD_SILENCE_MS", "silence that ends an utterance (ms)"),
    setting!(
        vad.min_speech_ms,
        "utterances with less voiced audio are dropped (ms)"
    ),
    setting!(
        vad.pre_roll_ms,
        "audio kept from before the speech onset (ms)"
    ),
    setting!(
        vad.tail_ms,
        "trailing silence kept at the end of an utterance (ms)"
    ),
    setting!(
        vad.max_utterance_s,
        "longer speech is split between two words (where a decode of it placed them), else at its quietest recent point (s, ≤ 30)"
    ),
];

static FILTER: &[Setting] = &[
    setting!(
        filter.no_speech_threshold,
        "with the log-prob rule: drop when no-speech prob is above this …"
    ),
    setting!(
        filter.logprob_threshold,
        "… and the average log-probability is below this"
    ),
    setting!(
        filter.compression_ratio_threshold,
        "drop text that compresses too well (loops)"
    ),
    setting!(
        filter.max_repeats,
        "a phrase repeated more often is a loop (and one of 5+ words written twice in a row is cut to once)"
    ),
    setting!(filter.min_rms, "text decoded from quieter audio is dropped"),
    setting!(filter.patterns_file, env "SORI_FILTER_PATTERNS_FILE", parse some_path,
        "your own phrases, one per line, added to `src/stt/hallucinations.txt`"),
];

static LLM: &[Setting] = &[
    setting!(llm.enabled, env "SORI_KEYWORDS",
        "keywords for finals (sessions may opt out with `keywords=false`)"),
    setting!(llm.base_url, env "SORI_LLM_BASE_URL", flag "--llm-url", parse text,
        "OpenAI-compatible endpoint (vLLM, llama.cpp's server, …)"),
    setting!(llm.model, env "SORI_LLM_MODEL", parse opt_text,
        "model name sent with each request; none = the first model of `GET /models`"),
    setting!(llm.api_key, env "SORI_LLM_API_KEY", parse opt_text,
        "bearer token; shown as `***` in `/api/config`, never logged"),
    setting!(
        llm.timeout_ms,
        "one call may take this long before it counts as a failure"
    ),
    setting!(
        llm.max_concurrent,
        "LLM calls in flight across all sessions (match the server's parallel slots)"
    ),
    setting!(llm.max_keywords, "keywords kept per segment"),
    setting!(
        llm.retry_after_ms,
        "after a failure the endpoint rests this long (doubling up to 60 s) before one trial call"
    ),
    setting!(llm.categories, parse categories,
        "`[{id, ko, en}]` the model must choose from (see below; set in `sori.toml` only)"),
];

static CACHE: &[Setting] = &[
    setting!(cache.redis_url, env "SORI_REDIS_URL", flag "--redis-url", parse opt_text,
        "`redis://[user:password@]host:port/db`; none = an in-memory cache; keys live under \
         `sori:`; the password is shown as `***`"),
    setting!(
        cache.max_entries,
        "entries of the in-memory cache (least recently used go first)"
    ),
    setting!(
        cache.keyword_ttl_s,
        "keyword results are reused this long (s)"
    ),
];

static RAG: &[Setting] = &[
    setting!(rag.enabled, env "SORI_RAG",
        "`/index`, `/search`, `/query`, `/embed`, live `rag` events; off = 503 `rag_disabled` \
         (`start_system.sh` turns it on)"),
    setting!(rag.embed_url, env "SORI_EMBED_URL", flag "--embed-url", parse text,
        "OpenAI-compatible `/v1/embeddings` (the local multilingual-E5 server of \
         `scripts/embed-server.sh`; BGE-M3 behind vLLM in production); flag on `sori index` and \
         `sori bench`"),
    setting!(rag.embed_model, env "SORI_EMBED_MODEL", parse opt_text,
        "embedding model; none = the first listed; the vector size is read from it, never \
         configured"),
    setting!(rag.embed_api_key, env "SORI_EMBED_API_KEY", parse opt_text,
        "bearer token; shown as `***`"),
    setting!(rag.embed_model_dir, env "SORI_EMBED_MODEL_DIR", parse opt_path,
        "a local ONNX sentence-embedding model directory: vectors are computed in-process \
         (fastembed on ONNX Runtime) and `embed_url` is not used; `scripts/onnx-embedder.sh \
         fetch` makes an English one (all-MiniLM-L6-v2 int8)"),
    setting!(rag.onnxruntime_lib, env "SORI_ONNXRUNTIME_LIB", parse path,
        "ONNX Runtime's shared library, loaded at run time for `embed_model_dir` and `vad.detector = \"silero\"`"),
    setting!(
        rag.embed_threads,
        "threads of the in-process embedding model"
    ),
    setting!(rag.query_prefix, parse text,
        "text put before queries; requests also carry `input_type` (`query` / `passage`), which \
         the local E5 server turns into E5's prefixes itself"),
    setting!(rag.passage_prefix, parse text, "text put before passages (see `rag.query_prefix`)"),
    setting!(rag.store_dir, env "SORI_QDRANT_DIR", parse path,
        "Qdrant's embedded engine (qdrant-edge) keeps the collection here; survives restarts"),
    setting!(rag.qdrant_url, env "SORI_QDRANT_URL", flag "--qdrant-url", parse opt_text,
        "a Qdrant server (gRPC, e.g. `http://qdrant:6334`) instead of the embedded engine; flag \
         on `sori index`"),
    setting!(rag.qdrant_api_key, env "SORI_QDRANT_API_KEY", parse opt_text, "shown as `***`"),
    setting!(
        rag.chunk_chars,
        "chunk size (characters, on sentence boundaries)"
    ),
    setting!(
        rag.chunk_overlap,
        "overlap of consecutive chunks (characters)"
    ),
    setting!(
        rag.top_k_retrieval,
        "candidates from dense and from sparse search each"
    ),
    setting!(
        rag.top_k_rerank,
        "chunks kept after reranking, given to the LLM"
    ),
    setting!(rag.rerank_url, env "SORI_RERANK_URL", parse opt_text,
        "a cross-encoder endpoint speaking the Jina/Cohere `/rerank` API (vLLM, llama.cpp's \
         server with `--rerank`, text-embeddings-inference, Infinity), e.g. \
         `http://127.0.0.1:8000/v1`; none = reciprocal-rank fusion orders the candidates"),
    setting!(rag.rerank_model, env "SORI_RERANK_MODEL", parse opt_text,
        "model name sent to the rerank endpoint"),
    setting!(rag.rerank_api_key, env "SORI_RERANK_API_KEY", parse opt_text, "shown as `***`"),
    setting!(
        rag.max_context_chars,
        "context given to the LLM for an answer (characters)"
    ),
    setting!(
        rag.embed_ttl_s,
        "embeddings are reused this long (s; Redis or memory)"
    ),
    setting!(
        rag.query_ttl_s,
        "`/query` answers are reused this long (s; Redis or memory)"
    ),
    setting!(
        rag.timeout_ms,
        "one embedding or store call may take this long"
    ),
    setting!(
        rag.max_concurrent,
        "calls in flight at once to each of the embedder, the reranker and the `/query` LLM \
         (the rest wait their turn)"
    ),
    setting!(
        rag.retry_after_ms,
        "after a failure the embedder, reranker or `/query` LLM is left alone this long (a \
         circuit breaker; doubled after a failed trial, up to a minute)"
    ),
];
