//! The live page (`GET /`) and its static files. Everything is compiled into the binary, so
//! the page works on machines with no internet and a container needs no extra files.

use askama::Template;
use askama_web::WebTemplate;
use axum::extract::{Path, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};

use super::{AppError, AppState};

/// A keyword category as the page's legend and chips show it.
pub struct CategoryView {
    pub id: String,
    pub ko: String,
    pub en: String,
}

#[derive(Template, WebTemplate)]
#[template(path = "index.html")]
pub struct IndexPage {
    pub version: &'static str,
    pub model: String,
    /// The server's default language, preselected in the page.
    pub language: String,
    pub keywords_enabled: bool,
    /// The page asks for related documents (`rag=true`) when the server has RAG on.
    pub rag_enabled: bool,
    pub categories: Vec<CategoryView>,
}

pub async fn index(State(state): State<AppState>) -> IndexPage {
    let config = &state.transcriber.config;
    IndexPage {
        version: env!("CARGO_PKG_VERSION"),
        model: state.transcriber.model_name.clone(),
        language: config.stt.language.as_str().to_owned(),
        keywords_enabled: state.keywords.is_some(),
        rag_enabled: state.rag.enabled(),
        categories: config
            .llm
            .categories
            .iter()
            .map(|c| CategoryView {
                id: c.id.clone(),
                ko: c.ko.clone(),
                en: c.en.clone(),
            })
            .collect(),
    }
}

/// The page's files: name, content type, bytes.
const STATIC_FILES: &[(&str, &str, &[u8])] = &[
    (
        "app.js",
        "text/javascript; charset=utf-8",
        include_bytes!("../../static/app.js"),
    ),
    (
        "pcm-worklet.js",
        "text/javascript; charset=utf-8",
        include_bytes!("../../static/pcm-worklet.js"),
    ),
    (
        "style.css",
        "text/css; charset=utf-8",
        include_bytes!("../../static/style.css"),
    ),
];

pub async fn static_file(Path(file): Path<String>) -> Response {
    match STATIC_FILES.iter().find(|(name, _, _)| *name == file) {
        Some((_, content_type, bytes)) => (
            [
                (header::CONTENT_TYPE, *content_type),
                // Small files, and a new binary may change them: revalidate every time.
                (header::CACHE_CONTROL, "no-cache"),
            ],
            *bytes,
        )
            .into_response(),
        None => AppError::new(
            StatusCode::NOT_FOUND,
            "not_found",
            format!(
                "no static file {file:?}; there are: {}",
                STATIC_FILES
                    .iter()
                    .map(|(name, _, _)| *name)
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        )
        .into_response(),
    }
}
