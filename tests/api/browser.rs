//! A small Chrome DevTools Protocol client for the web client's tests:
//! headless Chromium from the system (Debian's `chromium`; never
//! downloaded), driven over the DevTools WebSocket with `tokio-tungstenite`.
//!
//! Without Chromium the tests say that they skip and pass, unless
//! `BWENGE_TEST_REQUIRE_SERVICES=1`, where they fail. `BWENGE_TEST_CHROMIUM`
//! names another binary.

use std::collections::VecDeque;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

use crate::helpers::services_required;

type Ws = WebSocketStream<MaybeTlsStream<TcpStream>>;

fn chromium_binary() -> Option<PathBuf> {
    if let Ok(p) = std::env::var("BWENGE_TEST_CHROMIUM")
        && !p.trim().is_empty()
    {
        return Some(PathBuf::from(p));
    }
    let path = std::env::var_os("PATH")?;
    for dir in std::env::split_paths(&path) {
        for name in ["chromium", "chromium-browser", "google-chrome", "chrome"] {
            let candidate = dir.join(name);
            if candidate.is_file() {
                return Some(candidate);
            }
        }
    }
    None
}

pub struct Browser {
    _child: tokio::process::Child,
    http: String,
    _profile: tempfile::TempDir,
}

impl Browser {
    /// Starts headless Chromium; `None` (skip) when it is not installed.
    pub async fn launch() -> Option<Browser> {
        let Some(bin) = chromium_binary() else {
            if services_required() {
                panic!(
                    "Chromium is not installed but BWENGE_TEST_REQUIRE_SERVICES=1 (apt-get install chromium)"
                );
            }
            eprintln!("skipping: Chromium is not installed (apt-get install chromium)");
            return None;
        };
        let profile = tempfile::tempdir().unwrap();
        let mut child = tokio::process::Command::new(&bin)
            .args([
                "--headless=new",
                "--remote-debugging-port=0",
                "--no-sandbox",
                "--no-first-run",
                "--no-default-browser-check",
                "--disable-gpu-sandbox",
                "--disable-dev-shm-usage",
                "--disable-extensions",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
                "--use-angle=swiftshader",
                "--enable-unsafe-swiftshader",
                "--window-size=1366,768",
                "--lang=en-US",
            ])
            .arg(format!("--user-data-dir={}", profile.path().display()))
            .arg("about:blank")
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .unwrap_or_else(|e| panic!("starting {}: {e}", bin.display()));
        let stderr = child.stderr.take().unwrap();
        let mut lines = BufReader::new(stderr).lines();
        let deadline = Instant::now() + Duration::from_secs(30);
        let ws_url = loop {
            let line = tokio::time::timeout_at(deadline.into(), lines.next_line())
                .await
                .expect("Chromium printed no DevTools address within 30 s")
                .unwrap()
                .expect("Chromium exited before printing its DevTools address");
            if let Some(i) = line.find("ws://") {
                break line[i..].trim().to_owned();
            }
        };
        // Keep draining stderr so Chromium never blocks on a full pipe.
        tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
        let rest = &ws_url["ws://".len()..];
        let host = &rest[..rest.find('/').unwrap()];
        Some(Browser {
            _child: child,
            http: format!("http://{host}"),
            _profile: profile,
        })
    }

    /// Closes every tab but `keep` (windows the page opened, such as a
    /// cited document), so that `keep` is the visible one again.
    pub async fn close_other_tabs(&self, keep: &Page) {
        let client = reqwest::Client::new();
        for t in self.tabs().await {
            let id = t["id"].as_str().unwrap_or_default();
            if t["type"] == "page" && id != keep.target_id {
                let _ = client
                    .get(format!("{}/json/close/{id}", self.http))
                    .send()
                    .await;
            }
        }
        let _ = client
            .get(format!("{}/json/activate/{}", self.http, keep.target_id))
            .send()
            .await;
    }

    /// The open tabs (`/json/list`: `id`, `url`, `type`, …).
    pub async fn tabs(&self) -> Vec<Value> {
        reqwest::Client::new()
            .get(format!("{}/json/list", self.http))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap()
    }

    /// A new tab, with the page, network, runtime and log domains enabled.
    pub async fn new_page(&self) -> Page {
        let target: Value = reqwest::Client::new()
            .put(format!("{}/json/new?about:blank", self.http))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        Self::attach(&target).await
    }

    /// Drives an open tab (one of [`Browser::tabs`]).
    pub async fn attach(target: &Value) -> Page {
        let url = target["webSocketDebuggerUrl"].as_str().unwrap().to_owned();
        let (ws, _) = tokio_tungstenite::connect_async(url.as_str())
            .await
            .unwrap();
        let mut page = Page {
            target_id: target["id"].as_str().unwrap().to_owned(),
            ws,
            next_id: 0,
            events: VecDeque::new(),
        };
        for domain in ["Page", "Runtime", "Network", "Log"] {
            page.call(&format!("{domain}.enable"), json!({})).await;
        }
        page
    }
}

pub struct Page {
    target_id: String,
    ws: Ws,
    next_id: u64,
    /// Events received while waiting for answers, oldest first.
    pub events: VecDeque<Value>,
}

impl Page {
    /// Sends one command and waits for its answer (events are kept).
    pub async fn call(&mut self, method: &str, params: Value) -> Value {
        self.try_call(method, params, 60)
            .await
            .unwrap_or_else(|| panic!("no answer to {method} within 60 s"))
    }

    /// [`Page::call`], giving up (`None`) after `secs`; a late answer is
    /// dropped when it arrives.
    pub async fn try_call(&mut self, method: &str, params: Value, secs: u64) -> Option<Value> {
        self.next_id += 1;
        let id = self.next_id;
        let msg = json!({"id": id, "method": method, "params": params}).to_string();
        self.ws.send(Message::text(msg)).await.unwrap();
        let deadline = Instant::now() + Duration::from_secs(secs);
        loop {
            let Ok(next) = tokio::time::timeout_at(deadline.into(), self.ws.next()).await else {
                return None;
            };
            let next = next.expect("DevTools socket closed").unwrap();
            let Message::Text(text) = next else { continue };
            let v: Value = serde_json::from_str(&text).unwrap();
            if v["id"].as_u64() == Some(id) {
                if let Some(err) = v.get("error") {
                    panic!("{method} failed: {err}");
                }
                return Some(v["result"].clone());
            }
            if v.get("method").is_some() {
                self.events.push_back(v);
                if self.events.len() > 20_000 {
                    self.events.pop_front();
                }
            }
        }
    }

    /// Evaluates `expr` in the page (promises awaited) and returns its value.
    pub async fn eval(&mut self, expr: &str) -> Value {
        let r = self
            .call(
                "Runtime.evaluate",
                json!({"expression": expr, "awaitPromise": true, "returnByValue": true, "userGesture": true}),
            )
            .await;
        if let Some(ex) = r.get("exceptionDetails") {
            panic!("evaluating `{expr}` threw: {ex}");
        }
        r["result"]["value"].clone()
    }

    /// Polls `expr` until it is truthy; panics with `what` after `secs`.
    pub async fn wait_for(&mut self, expr: &str, secs: u64, what: &str) -> Value {
        let deadline = Instant::now() + Duration::from_secs(secs);
        loop {
            let v = self
                .eval(&format!(
                    "(() => {{ try {{ return {expr}; }} catch (e) {{ return null; }} }})()"
                ))
                .await;
            let truthy = match &v {
                Value::Null => false,
                Value::Bool(b) => *b,
                Value::Number(n) => n.as_f64() != Some(0.0),
                Value::String(s) => !s.is_empty(),
                _ => true,
            };
            if truthy {
                return v;
            }
            if Instant::now() > deadline {
                let body = self
                    .eval("document.body ? document.body.innerText.slice(0, 2000) : ''")
                    .await;
                panic!("timed out waiting for {what} ({expr}); page text: {body}");
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Navigates and waits until the document has loaded.
    pub async fn goto(&mut self, url: &str) {
        self.call("Page.navigate", json!({"url": url})).await;
        tokio::time::sleep(Duration::from_millis(50)).await;
        self.wait_for(
            "document.readyState === 'complete' && location.href !== 'about:blank'",
            30,
            "the page to load",
        )
        .await;
    }

    pub async fn reload(&mut self) {
        self.call("Page.reload", json!({})).await;
        tokio::time::sleep(Duration::from_millis(200)).await;
        self.wait_for(
            "document.readyState === 'complete'",
            30,
            "the page to reload",
        )
        .await;
    }

    /// Types text into the focused element.
    pub async fn insert_text(&mut self, text: &str) {
        self.call("Input.insertText", json!({"text": text})).await;
    }

    /// Presses one key (`Tab`, `Enter`, …) with optional modifiers (8 = shift).
    pub async fn press(&mut self, key: &str, modifiers: u32) {
        let (code, vk, text) = match key {
            "Tab" => ("Tab", 9, ""),
            "Enter" => ("Enter", 13, "\r"),
            "Space" => ("Space", 32, " "),
            "Escape" => ("Escape", 27, ""),
            other => panic!("no key code for {other}"),
        };
        let key_name = if key == "Space" { " " } else { key };
        let mut down = json!({"type": "keyDown", "key": key_name, "code": code,
            "windowsVirtualKeyCode": vk, "nativeVirtualKeyCode": vk, "modifiers": modifiers});
        if !text.is_empty() {
            down["text"] = json!(text);
        }
        self.call("Input.dispatchKeyEvent", down).await;
        self.call(
            "Input.dispatchKeyEvent",
            json!({"type": "keyUp", "key": key_name, "code": code,
                "windowsVirtualKeyCode": vk, "nativeVirtualKeyCode": vk, "modifiers": modifiers}),
        )
        .await;
    }

    /// Presses Tab until `selector` has the focus (at most `max` times).
    pub async fn tab_to(&mut self, selector: &str, max: usize) {
        let check =
            format!("document.activeElement && document.activeElement.matches({selector:?})");
        for _ in 0..max {
            if self.eval(&check).await == Value::Bool(true) {
                return;
            }
            self.press("Tab", 0).await;
        }
        let at = self
            .eval("document.activeElement ? document.activeElement.outerHTML.slice(0, 200) : null")
            .await;
        panic!("{selector} not reached with {max} Tabs; focus is on {at}");
    }

    /// Drags `files` from the desktop and drops them on `selector`, as a
    /// user does (the drag enters, moves over, and drops at its centre).
    pub async fn drop_files(&mut self, selector: &str, files: &[&Path]) {
        let at = self
            .eval(&format!(
                "(() => {{ const el = document.querySelector({selector:?}); el.scrollIntoView(); \
                 const r = el.getBoundingClientRect(); \
                 return [r.left + r.width / 2, r.top + r.height / 2]; }})()"
            ))
            .await;
        let (x, y) = (at[0].as_f64().unwrap(), at[1].as_f64().unwrap());
        let files: Vec<String> = files.iter().map(|p| p.display().to_string()).collect();
        let data = json!({"items": [], "files": files, "dragOperationsMask": 1});
        for kind in ["dragEnter", "dragOver", "drop"] {
            self.call(
                "Input.dispatchDragEvent",
                json!({"type": kind, "x": x, "y": y, "data": data}),
            )
            .await;
        }
    }

    /// Sets the files of a file input.
    pub async fn set_files(&mut self, selector: &str, files: &[&Path]) {
        let r = self
            .call(
                "Runtime.evaluate",
                json!({"expression": format!("document.querySelector({selector:?})")}),
            )
            .await;
        let object_id = r["result"]["objectId"]
            .as_str()
            .unwrap_or_else(|| panic!("no element {selector}"))
            .to_owned();
        let files: Vec<String> = files.iter().map(|p| p.display().to_string()).collect();
        self.call(
            "DOM.setFileInputFiles",
            json!({"files": files, "objectId": object_id}),
        )
        .await;
    }

    /// Sets the viewport (phone: `mobile` true).
    pub async fn viewport(&mut self, width: u32, height: u32, mobile: bool) {
        self.call(
            "Emulation.setDeviceMetricsOverride",
            json!({"width": width, "height": height, "deviceScaleFactor": 1, "mobile": mobile}),
        )
        .await;
    }

    /// Saves a PNG of the page under `target/web-screenshots/`.
    pub async fn screenshot(&mut self, name: &str) {
        use base64::Engine;
        // A page busy drawing 3D on a software renderer can starve the
        // capture: a missing screenshot is reported, not a failure.
        let Some(r) = self
            .try_call("Page.captureScreenshot", json!({"format": "png"}), 30)
            .await
        else {
            eprintln!("screenshot {name}: no frame within 30 s, skipped");
            return;
        };
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(r["data"].as_str().unwrap())
            .unwrap();
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("target/web-screenshots");
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join(format!("{name}.png")), bytes).unwrap();
    }

    /// Cuts the network (`offline`) or restores it, with throttling when
    /// `throughput` (bytes/s) and `latency` (ms) are given.
    pub async fn network(&mut self, offline: bool, latency_ms: f64, throughput: f64) {
        self.call(
            "Network.emulateNetworkConditions",
            json!({"offline": offline, "latency": latency_ms,
                "downloadThroughput": throughput, "uploadThroughput": throughput}),
        )
        .await;
    }

    /// Log entries and exceptions seen so far, as text.
    pub fn problems(&self) -> Vec<String> {
        self.events
            .iter()
            .filter_map(|e| match e["method"].as_str() {
                Some("Log.entryAdded") if e["params"]["entry"]["level"] == "error" => Some(
                    e["params"]["entry"]["text"]
                        .as_str()
                        .unwrap_or("")
                        .to_owned(),
                ),
                Some("Runtime.exceptionThrown") => {
                    Some(e["params"]["exceptionDetails"].to_string())
                }
                _ => None,
            })
            .collect()
    }

    /// Bytes received (encoded, as on the wire) for finished requests since
    /// the events were last cleared.
    pub fn bytes_received(&self) -> f64 {
        self.events
            .iter()
            .filter(|e| e["method"] == "Network.loadingFinished")
            .filter_map(|e| e["params"]["encodedDataLength"].as_f64())
            .sum()
    }
}
