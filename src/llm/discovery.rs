//! Model discovery: which model an endpoint serves when none is configured.

use std::time::Duration;

use serde::Deserialize;

/// Why `GET {base_url}/models` gave no model list; each message names the request.
#[derive(Debug, thiserror::Error)]
pub enum DiscoveryError {
    #[error("GET {url}: {source}")]
    Request { url: String, source: reqwest::Error },
    #[error("GET {url}: HTTP {status}")]
    Status {
        url: String,
        status: reqwest::StatusCode,
    },
    #[error("GET {url}: not a model list ({source})")]
    NotAList { url: String, source: reqwest::Error },
}

/// The first model an OpenAI-compatible endpoint lists at `GET {base_url}/models` (`None`
/// when it lists none).
pub async fn first_model(
    http: &reqwest::Client,
    base_url: &str,
    api_key: Option<&str>,
) -> Result<Option<String>, DiscoveryError> {
    #[derive(Deserialize)]
    struct Models {
        data: Vec<ModelEntry>,
    }
    #[derive(Deserialize)]
    struct ModelEntry {
        id: String,
    }
    let url = format!("{}/models", base_url.trim_end_matches('/'));
    let mut request = http.get(&url).timeout(Duration::from_secs(3));
    if let Some(key) = api_key {
        request = request.bearer_auth(key);
    }
    let response = match request.send().await {
        Ok(response) => response,
        Err(source) => return Err(DiscoveryError::Request { url, source }),
    };
    if !response.status().is_success() {
        let status = response.status();
        return Err(DiscoveryError::Status { url, status });
    }
    match response.json::<Models>().await {
        Ok(models) => Ok(models.data.into_iter().next().map(|m| m.id)),
        Err(source) => Err(DiscoveryError::NotAList { url, source }),
    }
}
