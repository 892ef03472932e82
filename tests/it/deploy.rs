//! The production files: `compose.yaml` validated and resolved by the real `docker-compose`
//! (Debian's package), and the Dockerfiles it points at present with the targets it names.

use std::process::Command;

use crate::support::{repo_root, require_tool};
use serde_json::Value;

/// `docker-compose config` of the repository's compose.yaml, as JSON. docker-compose 1.29
/// resolves every service whatever the profile, so one call covers them all.
fn resolved_compose() -> Value {
    require_tool("docker-compose", "apt-get install -y docker-compose");
    // docker-compose 1.x prints the resolved file as YAML only.
    let output = Command::new("docker-compose")
        .current_dir(repo_root())
        .args(["-f", "compose.yaml", "config"])
        .output()
        .expect("docker-compose runs");
    assert!(
        output.status.success(),
        "docker-compose config rejected compose.yaml: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let yaml = String::from_utf8(output.stdout).expect("UTF-8 output");
    yaml_to_json(&yaml)
}

/// Converts YAML to JSON with Debian's Python and its yaml module, which docker-compose
/// itself depends on (so no YAML crate is needed for one test).
fn yaml_to_json(yaml: &str) -> Value {
    use std::io::Write;
    let mut child = Command::new("/usr/bin/python3")
        .args([
            "-c",
            "import json,sys,yaml; json.dump(yaml.safe_load(sys.stdin), sys.stdout)",
        ])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("python3 runs");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(yaml.as_bytes())
        .unwrap();
    let output = child.wait_with_output().unwrap();
    assert!(
        output.status.success(),
        "/usr/bin/python3 with python3-yaml (installed with docker-compose) reads the config"
    );
    serde_json::from_slice(&output.stdout).expect("JSON from PyYAML")
}

fn gpu_reserved(service: &Value) -> bool {
    service["deploy"]["resources"]["reservations"]["devices"]
        .as_array()
        .is_some_and(|devices| {
            devices.iter().any(|d| {
                d["driver"] == "nvidia"
                    && d["capabilities"]
                        .as_array()
                        .is_some_and(|c| c.iter().any(|c| c == "gpu"))
            })
        })
}

#[test]
fn compose_default_is_sori_on_cuda_with_vllm_on_a_gpu() {
    let config = resolved_compose();
    let services = config["services"].as_object().expect("services");
    // The default set is the services without a profile.
    let mut default: Vec<_> = services
        .iter()
        .filter(|(_, s)| s["profiles"].is_null())
        .map(|(name, _)| name.clone())
        .collect();
    default.sort();
    assert_eq!(default, ["sori", "vllm"], "services without a profile");

    let sori = &services["sori"];
    assert_eq!(sori["build"]["target"], "cuda");
    assert!(gpu_reserved(sori), "sori reserves a GPU: {sori}");
    let env = &sori["environment"];
    assert_eq!(env["SORI_LLM_BASE_URL"], "http://vllm:8000/v1");

    let vllm = &services["vllm"];
    assert!(gpu_reserved(vllm), "vllm reserves a GPU: {vllm}");
    assert_eq!(vllm["build"]["dockerfile"], "Dockerfile.vllm");
    for knob in ["VLLM_GPU_MEMORY_UTILIZATION", "VLLM_MAX_MODEL_LEN"] {
        assert!(
            vllm["environment"][knob].is_string(),
            "vllm's {knob} is configurable"
        );
    }
}

#[test]
fn compose_cpu_profile_adds_a_cpu_build() {
    let config = resolved_compose();
    let cpu = &config["services"]["sori-cpu"];
    assert_eq!(cpu["profiles"], serde_json::json!(["cpu"]));
    assert_eq!(cpu["build"]["target"], "cpu");
    assert!(!gpu_reserved(cpu), "the CPU build needs no GPU");
}

#[test]
fn compose_rag_profile_adds_qdrant_redis_and_embeddings() {
    let compose = resolved_compose();
    let services = &compose["services"];
    for name in ["qdrant", "redis", "embeddings"] {
        assert_eq!(
            services[name]["profiles"],
            serde_json::json!(["rag"]),
            "{name}"
        );
    }
    let exposed = services["qdrant"]["expose"].to_string();
    assert!(
        exposed.contains("6334"),
        "sori speaks gRPC to Qdrant: {exposed}"
    );
    // Qdrant has no authentication here: never published beyond this host.
    if let Some(ports) = services["qdrant"]["ports"].as_array() {
        for port in ports {
            let shown = port.to_string();
            assert!(
                shown.contains("127.0.0.1"),
                "Qdrant published on every interface: {shown}"
            );
        }
    }
    assert!(gpu_reserved(&services["embeddings"]));
    let command = services["embeddings"]["command"].to_string();
    assert!(command.contains("bge-m3"), "{command}");
    let env = &services["sori"]["environment"];
    for key in [
        "SORI_RAG",
        "SORI_QDRANT_URL",
        "SORI_EMBED_URL",
        "SORI_REDIS_URL",
    ] {
        assert!(!env[key].is_null(), "sori passes {key} through: {env}");
    }
}

#[test]
fn published_sori_needs_tokens_or_an_explicit_allow_open() {
    let compose = resolved_compose();
    for name in ["sori", "sori-cpu"] {
        let service = &compose["services"][name];
        let env = &service["environment"];
        assert!(!service["ports"].is_null(), "{name} publishes its port");
        assert!(!env["SORI_API_TOKENS"].is_null(), "{name}: {env}");
        // Unset, the compose default: refuse an open start (docs/deployment.md).
        assert_eq!(env["SORI_ALLOW_OPEN"], "false", "{name}: {env}");
    }
    let dockerfile = std::fs::read_to_string(repo_root().join("Dockerfile")).unwrap();
    assert_eq!(
        dockerfile.matches("SORI_ALLOW_OPEN=false").count(),
        2,
        "both runtime images say it explicitly"
    );
}

#[test]
fn dockerfiles_define_the_targets_compose_builds() {
    let dockerfile = std::fs::read_to_string(repo_root().join("Dockerfile")).unwrap();
    for target in ["cpu", "cuda"] {
        assert!(
            dockerfile
                .lines()
                .any(|l| l.starts_with("FROM ") && l.trim_end().ends_with(&format!(" AS {target}"))),
            "Dockerfile has a `{target}` stage"
        );
    }
    assert!(
        dockerfile.contains("--features cuda"),
        "the cuda stage builds with whisper-rs's CUDA backend"
    );
    let vllm = std::fs::read_to_string(repo_root().join("Dockerfile.vllm")).unwrap();
    assert!(vllm.contains("FROM vllm/vllm-openai"));
    assert!(vllm.contains("Qwen/Qwen2.5-7B-Instruct"));
}
