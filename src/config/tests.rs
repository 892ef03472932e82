//! The configuration's layers, parsing and validation.

use super::*;
use crate::protocol::Language;

fn env(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

#[test]
fn defaults_are_the_documented_ones_and_valid() {
    let c = Config::default();
    assert_eq!(c.server.bind.to_string(), "127.0.0.1:5000");
    assert_eq!(c.vad.energy_threshold, 0.02);
    assert_eq!(c.vad.silence_ms, 1000);
    assert_eq!(c.filter.no_speech_threshold, 0.6);
    assert_eq!(c.filter.logprob_threshold, -1.0);
    assert_eq!(c.filter.compression_ratio_threshold, 2.4);
    assert!(!c.stt.condition_on_previous_text);
    c.validate().unwrap();
}

#[test]
fn env_overrides_file_values() {
    let mut c: Config = toml::from_str(
        "[server]\nbind = \"127.0.0.1:6000\"\n[stt]\nmodel = \"a.bin\"\nlanguage = \"en\"\n",
    )
    .unwrap();
    assert_eq!(c.server.bind.port(), 6000);
    c.apply_env(env(&[
        ("SORI_BIND", "127.0.0.1:7000"),
        ("SORI_MODEL", "b.bin"),
        ("SORI_LANGUAGE", "auto"),
        ("SORI_MAX_SESSIONS", "3"),
        ("SORI_UNRELATED", "x"),
    ]))
    .unwrap();
    assert_eq!(c.server.bind.port(), 7000);
    assert_eq!(c.stt.model, PathBuf::from("b.bin"));
    assert_eq!(c.stt.language, Language::Auto);
    assert_eq!(c.server.max_sessions, 3);
}

#[test]
fn bad_env_value_names_the_variable() {
    let mut c = Config::default();
    let err = c
        .apply_env(env(&[("SORI_MAX_FRAME_BYTES", "lots")]))
        .unwrap_err()
        .to_string();
    assert!(err.contains("SORI_MAX_FRAME_BYTES"), "{err}");
    let err = c
        .apply_env(env(&[("SORI_LANGUAGE", "fr")]))
        .unwrap_err()
        .to_string();
    assert!(err.contains("SORI_LANGUAGE") && err.contains("ko"), "{err}");
}

#[test]
fn secrets_are_redacted() {
    let mut c = Config::default();
    c.apply_env(env(&[
        ("SORI_LLM_API_KEY", "sk-secret"),
        ("SORI_REDIS_URL", "redis://:hunter2@127.0.0.1:6379/0"),
        ("SORI_LLM_BASE_URL", "http://vllm:8000/v1"),
        ("SORI_LLM_MODEL", "qwen"),
    ]))
    .unwrap();
    assert_eq!(c.llm.api_key.as_deref(), Some("sk-secret"));
    let shown = c.redacted().to_string();
    assert!(
        !shown.contains("sk-secret") && !shown.contains("hunter2"),
        "{shown}"
    );
    assert!(shown.contains("redis://:***@127.0.0.1:6379/0"), "{shown}");
    assert!(shown.contains("http://vllm:8000/v1") && shown.contains("qwen"));
}

#[test]
fn every_url_password_is_redacted_even_one_holding_an_at_sign() {
    use super::redact_url_password as redact;
    assert_eq!(
        redact("redis://user:p@ss@cache:6379/0"),
        "redis://user:***@cache:6379/0"
    );
    assert_eq!(redact("redis://:s3@cr@t@h/1"), "redis://:***@h/1");
    assert_eq!(redact("https://tok3n@host/v1"), "https://***@host/v1");
    for plain in [
        "http://vllm:8000/v1",
        "http://host/path@x",
        "http://host/v1?user=a@b",
        "no-scheme:pw@host",
    ] {
        assert_eq!(redact(plain), plain);
    }
    let mut c = Config::default();
    c.llm.base_url = "https://u:llm@pw@llm.example/v1".to_owned();
    c.rag.embed_url = "http://u:emb@pw@embed/v1".to_owned();
    c.rag.qdrant_url = Some("http://u:qd@pw@qdrant:6334".to_owned());
    c.rag.rerank_url = Some("http://u:rr@pw@rerank/v1".to_owned());
    c.cache.redis_url = Some("redis://u:rd@pw@redis:6379".to_owned());
    let shown = c.redacted().to_string();
    for secret in ["llm@pw", "emb@pw", "qd@pw", "rr@pw", "rd@pw", "pw@"] {
        assert!(!shown.contains(secret), "{secret} in {shown}");
    }
    assert!(shown.contains("https://u:***@llm.example/v1"), "{shown}");
}

#[test]
fn open_listening_needs_tokens_or_allow_open() {
    let mut c = Config::default();
    assert!(c.check_exposure().is_ok(), "loopback by default");
    c.server.bind = "0.0.0.0:5000".parse().unwrap();
    let err = c.check_exposure().unwrap_err().to_string();
    assert!(
        err.contains("SORI_API_TOKENS") && err.contains("SORI_ALLOW_OPEN=true"),
        "{err}"
    );
    c.server.api_tokens = vec!["t".to_owned()];
    assert!(c.check_exposure().is_ok());
    c.server.api_tokens.clear();
    c.server.allow_open = true;
    assert!(c.check_exposure().is_ok());
    // tls_bind (0.0.0.0 by default) counts only when a certificate makes it listen.
    let mut c = Config::default();
    c.server.tls_cert = Some("cert.pem".into());
    let err = c.check_exposure().unwrap_err().to_string();
    assert!(err.contains("server.tls_bind"), "{err}");
    c.server.tls_bind = "[::1]:5443".parse().unwrap();
    assert!(c.check_exposure().is_ok());
}

#[test]
fn unknown_file_keys_are_refused() {
    let err = toml::from_str::<Config>("[vad]\nsilence = 3\n").unwrap_err();
    assert!(err.to_string().contains("silence"), "{err}");
}

#[test]
fn language_settings_parse_and_validate() {
    let c = Config::default();
    assert_eq!(c.stt.language, Language::Ko, "Korean is forced by default");
    assert_eq!(c.stt.languages, ["ko", "en"]);
    assert!(c.stt.language_lock);
    let mut c = Config::default();
    c.apply_env(env(&[
        ("SORI_LANGUAGES", "Korean, ja ,en"),
        ("SORI_LANGUAGE_LOCK", "false"),
        ("SORI_LANGUAGE_LOCK_PROBABILITY", "0.8"),
        ("SORI_MAX_PROMPT_CHARS", "50"),
        ("SORI_INITIAL_PROMPT", "세종대로 광화문"),
    ]))
    .unwrap();
    assert_eq!(c.stt.languages, ["ko", "ja", "en"]);
    assert!(!c.stt.language_lock);
    assert_eq!(c.stt.language_lock_probability, 0.8);
    c.validate().unwrap();
    let err = c
        .apply_env(env(&[("SORI_LANGUAGES", "ko,klingon")]))
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("SORI_LANGUAGES") && err.contains("klingon"),
        "{err}"
    );

    let mut c: Config = toml::from_str("[stt]\nlanguages = [\"ko\", \"xx\"]\n").unwrap();
    let err = c.validate().unwrap_err().to_string();
    assert!(
        err.contains("stt.languages") && err.contains("\"xx\""),
        "{err}"
    );
    c.stt.languages = vec!["all".to_owned()];
    c.validate().unwrap();
    assert!(c.stt.language_set().is_all());
    c.stt.initial_prompt = Some("가".repeat(300));
    let err = c.validate().unwrap_err().to_string();
    assert!(
        err.contains("stt.initial_prompt") && err.contains("300"),
        "{err}"
    );
    c.stt.initial_prompt = None;
    c.stt.language_lock_probability = 1.5;
    assert!(
        c.validate()
            .unwrap_err()
            .to_string()
            .contains("language_lock_probability")
    );
}

#[test]
fn validation_names_the_knob() {
    let mut c = Config::default();
    c.vad.max_utterance_s = 45.0;
    let err = c.validate().unwrap_err().to_string();
    assert!(err.contains("vad.max_utterance_s"), "{err}");
    let mut c = Config::default();
    c.stt.window_beam_size = 17;
    let err = c.validate().unwrap_err().to_string();
    assert!(err.contains("stt.window_beam_size"), "{err}");
}

#[test]
fn the_settings_table_lists_every_field_once() {
    let defaults = serde_json::to_value(Config::default()).unwrap();
    let mut fields: Vec<String> = defaults
        .as_object()
        .unwrap()
        .iter()
        .flat_map(|(section, value)| {
            let keys: Vec<String> = value.as_object().unwrap().keys().cloned().collect();
            keys.into_iter().map(move |k| format!("{section}.{k}"))
        })
        .collect();
    let mut keys: Vec<String> = settings::all().map(|s| s.key.to_owned()).collect();
    fields.sort();
    keys.sort();
    assert_eq!(keys, fields);
    let mut envs: Vec<&str> = settings::all().filter_map(|s| s.env).collect();
    let count = envs.len();
    envs.sort_unstable();
    envs.dedup();
    assert_eq!(envs.len(), count, "one variable per setting");
    assert!(envs.iter().all(|e| e.starts_with("SORI_")));
}

#[test]
fn every_variable_takes_its_default_shown() {
    // Each variable, set to the text of its default, leaves the configuration unchanged: the
    // table's setter and getter agree, and each variable sets its own setting.
    let defaults = Config::default();
    let expected = serde_json::to_value(&defaults).unwrap();
    for setting in settings::all() {
        let Some(name) = setting.env else { continue };
        let shown = (setting.show)(&defaults);
        if !shown.code && matches!(shown.text.as_str(), "none" | "empty") {
            continue;
        }
        let mut c = Config::default();
        c.apply_env(env(&[(name, &shown.text)])).unwrap();
        assert_eq!(serde_json::to_value(&c).unwrap(), expected, "{name}");
    }
}

#[test]
fn env_values_keep_their_parsing_rules() {
    let mut c = Config::default();
    c.apply_env(env(&[
        ("SORI_MAX_SESSIONS", " 3 "),
        ("SORI_API_TOKENS", "a, b,,c"),
        ("SORI_ALLOWED_ORIGINS", ""),
        ("SORI_TLS_CERT", ""),
        ("SORI_EMBED_MODEL_DIR", ""),
        ("SORI_FILTER_PATTERNS_FILE", "my.txt"),
        ("SORI_INITIAL_PROMPT", "   "),
        ("SORI_LLM_MODEL", ""),
        ("SORI_EMBED_URL", "http://e:1/v1"),
        ("SORI_KEYWORDS", "false"),
        ("SORI_OUTPUTS_DIR", "out dir"),
        ("SORI_VAD_ENERGY_THRESHOLD", "0.05"),
    ]))
    .unwrap();
    assert_eq!(c.server.max_sessions, 3);
    assert_eq!(c.server.api_tokens, ["a", "b", "c"]);
    assert!(c.server.allowed_origins.is_empty());
    assert_eq!(c.server.tls_cert, None);
    assert_eq!(c.rag.embed_model_dir, None);
    assert_eq!(c.filter.patterns_file, Some(PathBuf::from("my.txt")));
    assert_eq!(c.stt.initial_prompt, None);
    assert_eq!(c.llm.model, None);
    assert_eq!(c.rag.embed_url, "http://e:1/v1");
    assert!(!c.llm.enabled);
    assert_eq!(c.server.outputs_dir, PathBuf::from("out dir"));
    assert_eq!(c.vad.energy_threshold, 0.05);
    let err = c
        .apply_env(env(&[("SORI_KEYWORDS", "yes")]))
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("SORI_KEYWORDS") && err.contains("yes"),
        "{err}"
    );
}

#[test]
fn every_existing_variable_is_in_the_table() {
    // The public names, as they were before the table: none may go missing.
    let names = [
        "SORI_BIND",
        "SORI_OUTPUTS_DIR",
        "SORI_MAX_FRAME_BYTES",
        "SORI_MAX_SESSIONS",
        "SORI_TLS_CERT",
        "SORI_TLS_KEY",
        "SORI_API_TOKENS",
        "SORI_ALLOWED_ORIGINS",
        "SORI_MAX_CONNECTIONS_PER_CLIENT",
        "SORI_MAX_SESSION_S",
        "SORI_IDLE_TIMEOUT_S",
        "SORI_TLS_BIND",
        "SORI_MODEL",
        "SORI_LANGUAGE",
        "SORI_WORKERS",
        "SORI_THREADS",
        "SORI_BEAM_SIZE",
        "SORI_AUDIO_CTX_TRIM",
        "SORI_INITIAL_PROMPT",
        "SORI_LANGUAGES",
        "SORI_LANGUAGE_LOCK",
        "SORI_LANGUAGE_LOCK_PROBABILITY",
        "SORI_LANGUAGE_LOCK_MIN_S",
        "SORI_MAX_PROMPT_CHARS",
        "SORI_VAD_ENERGY_THRESHOLD",
        "SORI_VAD_SILENCE_MS",
        "SORI_LLM_BASE_URL",
        "SORI_LLM_MODEL",
        "SORI_LLM_API_KEY",
        "SORI_KEYWORDS",
        "SORI_REDIS_URL",
        "SORI_RAG",
        "SORI_EMBED_URL",
        "SORI_EMBED_MODEL",
        "SORI_EMBED_MODEL_DIR",
        "SORI_ONNXRUNTIME_LIB",
        "SORI_EMBED_API_KEY",
        "SORI_QDRANT_URL",
        "SORI_QDRANT_API_KEY",
        "SORI_RERANK_URL",
        "SORI_RERANK_MODEL",
        "SORI_RERANK_API_KEY",
        "SORI_QDRANT_DIR",
        "SORI_FILTER_PATTERNS_FILE",
        // Added with the limits of issue 15.
        "SORI_SHUTDOWN_GRACE_S",
        "SORI_MAX_FILE_S",
        "SORI_MAX_FILE_JOBS",
        "SORI_SEND_TIMEOUT_S",
        "SORI_HEADER_TIMEOUT_S",
        "SORI_BODY_TIMEOUT_S",
        "SORI_MAX_CONNECTIONS",
        "SORI_MAX_CONNECTIONS_PER_ADDRESS",
        "SORI_MAX_TLS_HANDSHAKES",
        "SORI_OUTPUTS_MAX_AGE_DAYS",
        "SORI_ALLOW_OPEN",
        // Added with the capacity work of issue 16.
        "SORI_DRAFT_PARTIALS",
        "SORI_FILE_MERGE_S",
        // Added with the accuracy-in-noise work of issue 19.
        "SORI_CONDITION_ON_PREVIOUS_TEXT",
        "SORI_DTW_TIMESTAMPS",
        "SORI_VAD_DETECTOR",
        "SORI_VAD_SILERO_MODEL",
        "SORI_LIVE_REVISION_S",
        "SORI_WINDOW_BEAM_SIZE",
        "SORI_WHISPER_CPP_BEAM",
    ];
    for name in names {
        assert!(settings::by_env(name).is_some(), "{name}");
    }
    assert_eq!(
        names.len(),
        settings::all().filter(|s| s.env.is_some()).count()
    );
}

#[test]
fn settings_are_found_by_key() {
    let beam = settings::by_key("stt.beam_size").unwrap();
    assert_eq!(beam.env, Some("SORI_BEAM_SIZE"));
    let mut c = Config::default();
    (beam.set)(&mut c, "5").unwrap();
    assert_eq!(c.stt.beam_size, 5);
    assert_eq!((beam.show)(&c).text, "5");
    assert!((settings::by_key("llm.categories").unwrap().set)(&mut c, "x").is_err());
    let window_beam = settings::by_key("stt.window_beam_size").unwrap();
    assert_eq!(window_beam.env, Some("SORI_WINDOW_BEAM_SIZE"));
    (window_beam.set)(&mut c, "3").unwrap();
    assert_eq!((c.stt.window_beam_size, c.stt.beam_size), (3, 5));
}

#[test]
fn the_voice_detector_is_chosen_by_name_and_a_wrong_name_lists_the_choices() {
    let mut c: Config = toml::from_str("[vad]\ndetector = \"silero\"\n").unwrap();
    assert_eq!(c.vad.detector, VoiceDetectorKind::Silero);
    assert_eq!(Config::default().vad.detector, VoiceDetectorKind::Earshot);
    c.apply_env(env(&[
        ("SORI_VAD_DETECTOR", " Earshot "),
        ("SORI_VAD_SILERO_MODEL", "vad/model.onnx"),
    ]))
    .unwrap();
    assert_eq!(c.vad.detector, VoiceDetectorKind::Earshot);
    assert_eq!(c.vad.silero_model, PathBuf::from("vad/model.onnx"));
    let err = c
        .apply_env(env(&[("SORI_VAD_DETECTOR", "webrtc")]))
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("SORI_VAD_DETECTOR") && err.contains("earshot or silero"),
        "{err}"
    );
    let err = toml::from_str::<Config>("[vad]\ndetector = \"webrtc\"\n")
        .unwrap_err()
        .to_string();
    assert!(err.contains("earshot") && err.contains("silero"), "{err}");
}
