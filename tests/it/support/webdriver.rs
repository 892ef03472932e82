//! A real headless Chromium driven through ChromeDriver over the W3C WebDriver protocol (plain
//! JSON over HTTP, spoken here with reqwest). Debian's packages: `chromium`, `chromium-driver`
//! (`scripts/install-deps.sh` installs them).

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use super::servers::free_port;

const CHROMIUM: &str = "/usr/bin/chromium";
const CHROMEDRIVER: &str = "/usr/bin/chromedriver";
/// The W3C key under which an element reference is returned.
const ELEMENT_KEY: &str = "element-6066-11e4-a52e-4f735466cecf";

/// A ChromeDriver process and one browser session; both end when dropped.
pub struct Browser {
    driver: Child,
    base: String,
    session: String,
    http: reqwest::Client,
}

impl Browser {
    /// Starts ChromeDriver and a headless Chromium whose microphone plays `fake_audio` (a wav
    /// file) once, with the permission prompt answered yes.
    pub async fn start(fake_audio: &Path) -> Browser {
        for (path, package) in [(CHROMIUM, "chromium"), (CHROMEDRIVER, "chromium-driver")] {
            assert!(
                Path::new(path).exists(),
                "{path} is missing: install it with `apt-get install -y {package}` \
                 (./scripts/install-deps.sh does)"
            );
        }
        let port = free_port();
        let driver = Command::new(CHROMEDRIVER)
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start chromedriver");
        let base = format!("http://127.0.0.1:{port}");
        let http = reqwest::Client::new();
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let ready = match http.get(format!("{base}/status")).send().await {
                Ok(r) => r
                    .json::<Value>()
                    .await
                    .ok()
                    .map(|v| v["value"]["ready"] == true),
                Err(_) => None,
            };
            if ready == Some(true) {
                break;
            }
            assert!(Instant::now() < deadline, "chromedriver did not get ready");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let args = [
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-dev-shm-usage",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--no-first-run",
            "--window-size=1280,900",
            "--autoplay-policy=no-user-gesture-required",
            "--use-fake-ui-for-media-stream",
            "--use-fake-device-for-media-stream",
        ]
        .iter()
        .map(|a| a.to_string())
        .chain([format!(
            // %noloop: play the file once, then silence (Chromium loops it otherwise).
            "--use-file-for-fake-audio-capture={}%noloop",
            fake_audio.display()
        )])
        .collect::<Vec<_>>();
        let mut browser = Browser {
            driver,
            base,
            session: String::new(),
            http,
        };
        let created = browser
            .post(
                "/session",
                json!({"capabilities": {"alwaysMatch": {
                    "browserName": "chrome",
                    "goog:chromeOptions": {"binary": CHROMIUM, "args": args}
                }}}),
            )
            .await;
        browser.session = created["sessionId"]
            .as_str()
            .unwrap_or_else(|| panic!("no browser session: {created}"))
            .to_owned();
        browser
    }

    async fn post(&self, path: &str, body: Value) -> Value {
        let response = self
            .http
            .post(format!("{}{path}", self.base))
            .json(&body)
            .send()
            .await
            .unwrap_or_else(|e| panic!("webdriver POST {path}: {e}"));
        let value: Value = response.json().await.expect("webdriver answers JSON");
        assert!(
            value["value"]["error"].is_null(),
            "webdriver POST {path} failed: {value}"
        );
        value["value"].clone()
    }

    fn at(&self, path: &str) -> String {
        format!("/session/{}{path}", self.session)
    }

    pub async fn goto(&self, url: &str) {
        self.post(&self.at("/url"), json!({ "url": url })).await;
    }

    /// Runs `script` (a function body; `arguments` holds `args`) and returns its result.
    pub async fn eval(&self, script: &str, args: Value) -> Value {
        self.post(
            &self.at("/execute/sync"),
            json!({ "script": script, "args": args }),
        )
        .await
    }

    pub async fn click(&self, css: &str) {
        let found = self
            .post(
                &self.at("/element"),
                json!({ "using": "css selector", "value": css }),
            )
            .await;
        let id = found[ELEMENT_KEY]
            .as_str()
            .unwrap_or_else(|| panic!("no element {css}: {found}"))
            .to_owned();
        self.post(&self.at(&format!("/element/{id}/click")), json!({}))
            .await;
    }

    /// The text content of the first element matching `css` ("" when there is none).
    pub async fn text(&self, css: &str) -> String {
        let value = self
            .eval(
                "const e = document.querySelector(arguments[0]); return e ? e.textContent : '';",
                json!([css]),
            )
            .await;
        value.as_str().unwrap_or_default().to_owned()
    }

    /// How many elements match `css`.
    pub async fn count(&self, css: &str) -> usize {
        let value = self
            .eval(
                "return document.querySelectorAll(arguments[0]).length;",
                json!([css]),
            )
            .await;
        value.as_u64().unwrap_or(0) as usize
    }

    /// Saves a PNG screenshot of the window to `path`.
    pub async fn screenshot(&self, path: &Path) {
        use base64::Engine;
        let response = self
            .http
            .get(format!("{}{}", self.base, self.at("/screenshot")))
            .send()
            .await
            .expect("screenshot request");
        let value: Value = response.json().await.expect("screenshot JSON");
        let png = base64::engine::general_purpose::STANDARD
            .decode(value["value"].as_str().expect("base64 PNG"))
            .expect("valid base64");
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).expect("screenshot dir");
        }
        std::fs::write(path, png).expect("write screenshot");
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        // Ends Chromium through its driver, then the driver itself.
        let url = format!("{}/session/{}", self.base, self.session);
        let _ = std::thread::spawn(move || blocking_delete(&url)).join();
        let _ = self.driver.kill();
        let _ = self.driver.wait();
    }
}

/// A blocking DELETE for `Drop` (which cannot await), on a runtime of its own.
fn blocking_delete(url: &str) {
    let Ok(runtime) = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    else {
        return;
    };
    runtime.block_on(async {
        let _ = reqwest::Client::new()
            .delete(url)
            .timeout(Duration::from_secs(10))
            .send()
            .await;
    });
}
