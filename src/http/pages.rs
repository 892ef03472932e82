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

/// One file of `static/`, compiled in: name, content type, bytes.
macro_rules! compiled_in {
    ($name:literal, $content_type:literal) => {
        (
            $name,
            $content_type,
            include_bytes!(concat!("../../static/", $name)) as &[u8],
        )
    };
}

/// The page's files: name, content type, bytes. The page's script is ES modules with no build
/// step: `app.js` is the entry (`<script type="module">` in templates/index.html) and imports
/// the others by relative URL (`./connection.js`), so every module must be listed here (a test
/// checks that every file in `static/` is).
const STATIC_FILES: &[(&str, &str, &[u8])] = &[
    compiled_in!("app.js", "text/javascript; charset=utf-8"),
    compiled_in!("capture.js", "text/javascript; charset=utf-8"),
    compiled_in!("connection.js", "text/javascript; charset=utf-8"),
    compiled_in!("controls.js", "text/javascript; charset=utf-8"),
    compiled_in!("downloads.js", "text/javascript; charset=utf-8"),
    compiled_in!("errors.js", "text/javascript; charset=utf-8"),
    compiled_in!("keywords.js", "text/javascript; charset=utf-8"),
    compiled_in!("monitor.js", "text/javascript; charset=utf-8"),
    compiled_in!("segments.js", "text/javascript; charset=utf-8"),
    compiled_in!("transcript.js", "text/javascript; charset=utf-8"),
    compiled_in!("util.js", "text/javascript; charset=utf-8"),
    compiled_in!("pcm-worklet.js", "text/javascript; charset=utf-8"),
    compiled_in!("style.css", "text/css; charset=utf-8"),
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

#[cfg(test)]
mod tests {
    use super::STATIC_FILES;

    /// A module left out of the list would be a 404 in the browser and a dead page.
    #[test]
    fn every_file_in_static_is_served() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("static");
        let mut missing = Vec::new();
        for entry in std::fs::read_dir(&dir).unwrap() {
            let name = entry.unwrap().file_name().into_string().unwrap();
            if !STATIC_FILES.iter().any(|(served, _, _)| *served == name) {
                missing.push(name);
            }
        }
        assert!(
            missing.is_empty(),
            "static/ files not in STATIC_FILES: {missing:?}"
        );
    }

    /// Every `from './x.js'` in a module names a served file.
    #[test]
    fn every_module_import_is_served() {
        for (name, _, bytes) in STATIC_FILES {
            let text = std::str::from_utf8(bytes).unwrap();
            for import in text.split("from './").skip(1) {
                let target = &import[..import.find('\'').unwrap()];
                assert!(
                    STATIC_FILES.iter().any(|(served, _, _)| *served == target),
                    "{name} imports ./{target}, which is not served"
                );
            }
        }
    }
}
