//! A real browser for the integration tests: headless Debian Chromium driven over the
//! Chrome DevTools Protocol (CDP), recording everything the page and **all** its frames
//! did, so a failing test can print what the browser saw ([`Page::report`]).
//!
//! ```text
//! let browser = match Browser::launch().await { Ok(b) => b, Err(_skip) => return };
//! let alice = browser.user("alice").await?;          // own cookies (browser context)
//! let page = alice.open(&url).await?;                // waits for the page's load event
//! page.wait_for("window.__messages.length > 0", WAIT).await?;
//! page.eval_in_frame("http://office.localhost:", "location.href").await?;
//! assert!(..., "{}", page.report());
//! ```
//!
//! Why a hand-written CDP client over `tokio-tungstenite` and not `chromiumoxide` (0.9.1,
//! tried first). Build cost: as a dev-dependency it changed the unified features of
//! shared crates (futures-util, hyper, ...), so the whole dependency tree rebuilt, and its
//! generated `chromiumoxide_cdp` (111k lines) alone was still compiling after 5.4 min
//! (1.4 min CPU) on the shared 2-core machine; the build was stopped after 15 min.
//! Correctness: its protocol types are generated for CDP revision 1566079 and its enums
//! have no catch-all, while the installed Chromium (156) already sends values they lack,
//! e.g. `Network.CorsError` `InsecureLocalNetwork` / `InvalidLocalNetworkAccess`. An
//! event carrying one fails to deserialise and chromiumoxide drops it with a log line,
//! so the very `Network.loadingFailed` a test needs to see would be missing from the
//! report. It also hands each event type to its own stream, losing the order between
//! `requestWillBeSent` and `responseReceived`. Here every event stays a
//! `serde_json::Value`, in arrival order, whatever Chromium version sends it.
//!
//! Frames: Chromium is started with site isolation off
//! (`--disable-features=IsolateOrigins,site-per-process --disable-site-isolation-trials`),
//! so cross-origin iframes live in the page's renderer and their network, console and
//! execution-context events arrive on the page's own CDP session. In case a frame still
//! gets its own process (a future Chromium ignoring the flags), the page session also
//! auto-attaches to child targets, paused until their domains are enabled, and their
//! events go to the same record.

use std::collections::{HashMap, VecDeque};
use std::fmt::{self, Write as _};
use std::io::{BufRead as _, BufReader, Write as _};
use std::os::unix::process::CommandExt as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use base64::Engine as _;
use futures_util::{SinkExt as _, StreamExt as _};
use serde_json::{Value, json};
use tokio::sync::{Notify, mpsc, oneshot};
use tokio_tungstenite::tungstenite::Message;

/// The Chromium binary used unless `CHROMIUM` names another.
pub const DEFAULT_CHROMIUM: &str = "/usr/bin/chromium";

/// How long Chromium may take to print its DevTools address.
const LAUNCH_TIMEOUT: Duration = Duration::from_secs(30);

/// How long one CDP command may take to be answered.
const CALL_TIMEOUT: Duration = Duration::from_secs(20);

/// How long [`User::open`] waits for the page's load event.
const LOAD_TIMEOUT: Duration = Duration::from_secs(20);

/// How often [`Page::wait_for`] re-evaluates its expression.
const POLL: Duration = Duration::from_millis(50);

/// Lines of Chromium's stderr kept for error messages.
const STDERR_LINES: usize = 40;

/// Why a browser test did not run: no Chromium binary. [`Browser::launch`] prints
/// `skipped: no chromium (...)` to stderr when it returns one, so the skip is visible in
/// the test output.
#[derive(Debug)]
pub struct Skip(pub String);

impl fmt::Display for Skip {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "skipped: no chromium ({})", self.0)
    }
}

/// A headless Chromium process and the CDP connection to it. Dropping it kills the
/// whole process group (browser, zygotes, renderers) and removes the temporary profile.
pub struct Browser {
    /// The connection shared with every user and page.
    conn: Arc<Conn>,
    /// The browser process, leader of its own process group.
    child: Child,
    /// The profile directory (`--user-data-dir`), removed after the process is gone.
    profile: Option<tempfile::TempDir>,
}

impl Browser {
    /// Starts headless Chromium (`CHROMIUM` or [`DEFAULT_CHROMIUM`]) with a fresh
    /// profile and connects to it. `Err(Skip)` (after printing the `skipped:` line) when
    /// the binary is absent; panics with Chromium's stderr when it exists but does not
    /// start, since that is a broken setup a test must not hide.
    pub async fn launch() -> Result<Browser, Skip> {
        let binary = std::env::var_os("CHROMIUM")
            .map(PathBuf::from)
            .unwrap_or_else(|| PathBuf::from(DEFAULT_CHROMIUM));
        if !binary.is_file() {
            let skip = Skip(format!("{} not found; set CHROMIUM", binary.display()));
            // Straight to stderr, past the test harness's capture, so the skip shows
            // even for a passing test.
            let _ = writeln!(std::io::stderr(), "{skip}");
            return Err(skip);
        }
        let profile = tempfile::Builder::new()
            .prefix("officeswitch-chromium-")
            .tempdir()
            .expect("temporary profile directory");
        let mut child = Command::new(&binary)
            .args([
                "--headless=new",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-dev-shm-usage",
                "--no-first-run",
                "--no-default-browser-check",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
                "--mute-audio",
                "--password-store=basic",
                "--use-mock-keychain",
                // Cross-origin iframes in the page's own renderer, so their network
                // events reach the page's CDP session (see the module docs).
                "--disable-features=IsolateOrigins,site-per-process",
                "--disable-site-isolation-trials",
                "--remote-debugging-port=0",
                "--window-size=1280,900",
            ])
            .arg(format!("--user-data-dir={}", profile.path().display()))
            .arg("about:blank")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            // Its own process group, so Drop can kill every Chromium process at once.
            .process_group(0)
            .spawn()
            .unwrap_or_else(|err| panic!("cannot start {}: {err}", binary.display()));
        let stderr_tail = Arc::new(Mutex::new(VecDeque::new()));
        let (ws_url_tx, ws_url_rx) = oneshot::channel();
        let stderr = child.stderr.take().expect("piped stderr");
        let tail = Arc::clone(&stderr_tail);
        // Drains stderr for the browser's life (a full pipe would block Chromium); ends
        // at EOF when the process group is killed.
        std::thread::spawn(move || {
            let mut ws_url_tx = Some(ws_url_tx);
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if let Some(url) = line.strip_prefix("DevTools listening on ")
                    && let Some(tx) = ws_url_tx.take()
                {
                    let _ = tx.send(url.trim().to_string());
                }
                let mut tail = lock(&tail);
                if tail.len() == STDERR_LINES {
                    tail.pop_front();
                }
                tail.push_back(line);
            }
        });
        let mut browser = Browser {
            conn: Arc::new(Conn::default()),
            child,
            profile: Some(profile),
        };
        let ws_url = match tokio::time::timeout(LAUNCH_TIMEOUT, ws_url_rx).await {
            Ok(Ok(url)) => url,
            _ => {
                let status = browser.child.try_wait();
                let tail: Vec<String> = lock(&stderr_tail).iter().cloned().collect();
                panic!(
                    "{} printed no DevTools address within {LAUNCH_TIMEOUT:?} (exit: {status:?}); stderr:\n{}",
                    binary.display(),
                    tail.join("\n")
                );
            }
        };
        let (socket, _) = tokio_tungstenite::connect_async(ws_url.as_str())
            .await
            .unwrap_or_else(|err| panic!("cannot connect to Chromium at {ws_url}: {err}"));
        browser.conn = Conn::start(socket);
        Ok(browser)
    }

    /// A new user: a fresh browser context (`Target.createBrowserContext`), i.e. its own
    /// cookies, storage and cache, as a second person on another computer.
    pub async fn user(&self, name: &str) -> Result<User, String> {
        let created = self
            .conn
            .call(None, "Target.createBrowserContext", json!({}))
            .await?;
        let context = created["browserContextId"]
            .as_str()
            .ok_or_else(|| format!("no browserContextId in {created}"))?
            .to_string();
        Ok(User {
            name: name.to_string(),
            context: Arc::new(BrowserContext {
                id: context,
                conn: Arc::clone(&self.conn),
            }),
            conn: Arc::clone(&self.conn),
        })
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        // SIGKILL to the process group: the browser and every helper it forked. `kill`
        // takes a negative pid for a group; std has no killpg.
        let group = format!("-{}", self.child.id());
        let _ = Command::new("kill")
            .args(["-KILL", "--", &group])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
        let _ = self.child.kill();
        let _ = self.child.wait();
        // Only now that nothing writes into it.
        drop(self.profile.take());
    }
}

/// One user of the browser: an isolated browser context, disposed (closing its pages)
/// when the user and every page it opened are dropped.
pub struct User {
    /// The name tests gave it, shown in reports.
    name: String,
    /// The context, shared with the user's pages: a page a helper returns outlives the
    /// `User` value it was opened from.
    context: Arc<BrowserContext>,
    /// The browser's connection.
    conn: Arc<Conn>,
}

impl User {
    /// The name given to [`Browser::user`].
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Opens `url` in a new tab of this user and waits (bounded) for its load event.
    /// Recording starts before navigation, so the first request is in the record too.
    /// A navigation error or a missing load event is an `Err` with the report.
    pub async fn open(&self, url: &str) -> Result<Page, String> {
        let created = self
            .conn
            .call(
                None,
                "Target.createTarget",
                json!({"url": "about:blank", "browserContextId": self.context.id}),
            )
            .await?;
        let target = created["targetId"]
            .as_str()
            .ok_or_else(|| format!("no targetId in {created}"))?
            .to_string();
        let attached = self
            .conn
            .call(
                None,
                "Target.attachToTarget",
                json!({"targetId": target, "flatten": true}),
            )
            .await?;
        let session = attached["sessionId"]
            .as_str()
            .ok_or_else(|| format!("no sessionId in {attached}"))?
            .to_string();
        let record = Arc::new(Record::default());
        record.lock().main_session = session.clone();
        self.conn.register(&session, &record);
        for (method, params) in session_setup() {
            self.conn.call(Some(&session), method, params).await?;
        }
        let page = Page {
            user: self.name.clone(),
            url: url.to_string(),
            target,
            session,
            record,
            conn: Arc::clone(&self.conn),
            _context: Arc::clone(&self.context),
        };
        let loads_before = page.record.lock().main_loads;
        let navigated = page
            .conn
            .call(Some(&page.session), "Page.navigate", json!({"url": url}))
            .await?;
        if let Some(error) = navigated["errorText"].as_str().filter(|e| !e.is_empty()) {
            return Err(format!(
                "navigating to {url} failed: {error}\n{}",
                page.report()
            ));
        }
        page.wait_observed("the page's load event", LOAD_TIMEOUT, |page| {
            page.record.lock().main_loads > loads_before
        })
        .await?;
        Ok(page)
    }
}

/// A `browserContextId`, disposed when the last holder (user or page) goes.
struct BrowserContext {
    /// `browserContextId`.
    id: String,
    /// The browser's connection.
    conn: Arc<Conn>,
}

impl Drop for BrowserContext {
    fn drop(&mut self) {
        self.conn.fire(
            None,
            "Target.disposeBrowserContext",
            json!({"browserContextId": self.id}),
        );
    }
}

/// The commands that make a session report what we record; the same for the page and
/// for any auto-attached child target. Auto-attach pauses children until
/// `Runtime.runIfWaitingForDebugger`, so none of their first requests is missed.
fn session_setup() -> Vec<(&'static str, Value)> {
    vec![
        ("Runtime.enable", json!({})),
        ("Network.enable", json!({})),
        ("Page.enable", json!({})),
        ("Log.enable", json!({})),
        (
            "Target.setAutoAttach",
            json!({"autoAttach": true, "waitForDebuggerOnStart": true, "flatten": true}),
        ),
        ("Runtime.runIfWaitingForDebugger", json!({})),
    ]
}

/// One network request as the browser saw it (one entry per redirect hop).
#[derive(Clone, Debug, Default)]
pub struct Request {
    /// CDP `requestId` (shared by the hops of a redirect chain).
    pub id: String,
    /// The URL requested.
    pub url: String,
    /// `GET`, `POST`, ...
    pub method: String,
    /// The CDP frame id of the frame that made it.
    pub frame: Option<String>,
    /// That frame's URL when last seen (its document's URL), to tell frames apart.
    pub frame_url: Option<String>,
    /// `Document`, `Script`, `Image`, `XHR`, `WebSocket`, ...
    pub resource_type: String,
    /// The HTTP status, once a response (or redirect) arrived.
    pub status: Option<u16>,
    /// `Network.loadingFailed` `errorText`, e.g. `net::ERR_BLOCKED_BY_RESPONSE`.
    pub error: Option<String>,
    /// `Network.loadingFailed` `blockedReason`, e.g. `csp`.
    pub blocked_reason: Option<String>,
    /// `Network.loadingFailed` `corsErrorStatus`, as `corsError (failedParameter)`.
    pub cors_error: Option<String>,
    /// Whether loading ended (finished or failed).
    pub done: bool,
}

impl Request {
    /// Failed to load, or answered with a status of 400 or more.
    pub fn failed(&self) -> bool {
        self.error.is_some() || self.status.is_some_and(|s| s >= 400)
    }
}

/// One WebSocket a page or frame opened.
#[derive(Clone, Debug, Default)]
pub struct WebSocket {
    /// CDP `requestId`.
    pub id: String,
    /// `ws://...` or `wss://...`.
    pub url: String,
    /// The handshake's HTTP status (101 when accepted).
    pub handshake_status: Option<u16>,
    /// Messages received from the server.
    pub frames_received: u64,
    /// Messages sent by the page.
    pub frames_sent: u64,
    /// `Network.webSocketFrameError` messages.
    pub errors: Vec<String>,
    /// Whether `Network.webSocketClosed` arrived.
    pub closed: bool,
}

/// A tab of one user. Everything it and its frames did is recorded from before the
/// first request on. Dropping it closes the tab.
pub struct Page {
    /// The user's name, for reports.
    user: String,
    /// The URL opened.
    url: String,
    /// CDP `targetId`.
    target: String,
    /// CDP `sessionId` of the page (flat mode).
    session: String,
    /// What the browser reported.
    record: Arc<Record>,
    /// The browser's connection.
    conn: Arc<Conn>,
    /// Keeps the user's browser context (and so this tab) alive.
    _context: Arc<BrowserContext>,
}

impl Page {
    /// Evaluates `js` in the top document (main world), awaiting a returned promise;
    /// the result by value (`null` for `undefined`). A thrown exception is an `Err`.
    pub async fn eval(&self, js: &str) -> Result<Value, String> {
        self.evaluate(&self.session, js, None).await
    }

    /// Polls `js_bool_expr` in the top document until it is truthy; `Err` (with the last
    /// evaluation error, if any) after `timeout`. Exceptions count as "not yet".
    pub async fn wait_for(&self, js_bool_expr: &str, timeout: Duration) -> Result<(), String> {
        let expr = truthy(js_bool_expr);
        self.poll(timeout, js_bool_expr, || self.eval(&expr)).await
    }

    /// Evaluates `js` in the main world of the frame whose URL starts with
    /// `frame_url_prefix` (the deepest such frame when several match), so the frame's own
    /// globals are visible. Works for cross-origin frames: the frame is found with
    /// `Page.getFrameTree` and its default execution context from
    /// `Runtime.executionContextCreated`.
    pub async fn eval_in_frame(&self, frame_url_prefix: &str, js: &str) -> Result<Value, String> {
        let (session, context) = self.frame_context(frame_url_prefix).await?;
        self.evaluate(&session, js, Some(context)).await
    }

    /// [`Page::wait_for`] inside the frame of [`Page::eval_in_frame`]; a frame that is not
    /// there yet counts as "not yet".
    pub async fn wait_for_in_frame(
        &self,
        frame_url_prefix: &str,
        js_bool_expr: &str,
        timeout: Duration,
    ) -> Result<(), String> {
        let expr = truthy(js_bool_expr);
        self.poll(timeout, js_bool_expr, || {
            self.eval_in_frame(frame_url_prefix, &expr)
        })
        .await
    }

    /// Waits until `seen(self)` holds, re-checking whenever the browser reports
    /// something (no polling); `Err` naming `what` after `timeout`.
    pub async fn wait_observed(
        &self,
        what: &str,
        timeout: Duration,
        seen: impl Fn(&Page) -> bool,
    ) -> Result<(), String> {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            // Registered before the check, so an event in between still wakes us.
            let changed = self.record.changed.notified();
            if seen(self) {
                return Ok(());
            }
            if tokio::time::timeout_at(deadline, changed).await.is_err() {
                return Err(format!("{what}: not seen within {timeout:?}"));
            }
        }
    }

    /// Types `text` into the editor as a user does: a click in the editor (see
    /// [`Page::click_editor`]), then the text (see [`Page::insert_text`]).
    pub async fn click_and_type(&self, text: &str) -> Result<(), String> {
        self.click_editor(1).await?;
        self.insert_text(text).await
    }

    /// Clicks `clicks` times (2: a double click) in the middle of the page's editor iframe,
    /// a third of the way down, which puts the caret in the document and focuses the
    /// editor's input; then gives the editor a moment to move its caret and focus. `Err`
    /// when there is no iframe or a command fails.
    pub async fn click_editor(&self, clicks: u32) -> Result<(), String> {
        let rect = self
            .eval(
                "(() => { const f = document.querySelector('iframe'); if (!f) return null; \
                 const r = f.getBoundingClientRect(); \
                 return {x: r.left + r.width / 2, y: r.top + r.height / 3}; })()",
            )
            .await?;
        let (Some(x), Some(y)) = (rect["x"].as_f64(), rect["y"].as_f64()) else {
            return Err(format!("{}: no editor iframe to type into", self.user));
        };
        for count in 1..=clicks {
            for kind in ["mousePressed", "mouseReleased"] {
                self.conn
                    .call(
                        Some(&self.session),
                        "Input.dispatchMouseEvent",
                        json!({"type": kind, "x": x, "y": y, "button": "left", "clickCount": count}),
                    )
                    .await?;
            }
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
        Ok(())
    }

    /// Inserts `text` as one `Input.insertText`, which the browser delivers to the focused
    /// element whichever frame it is in.
    pub async fn insert_text(&self, text: &str) -> Result<(), String> {
        self.conn
            .call(
                Some(&self.session),
                "Input.insertText",
                json!({"text": text}),
            )
            .await?;
        Ok(())
    }

    /// Presses and releases Enter in whatever element has the focus (ends a spreadsheet
    /// cell's input, as a user does before leaving).
    pub async fn press_enter(&self) -> Result<(), String> {
        for (kind, text) in [("keyDown", "\r"), ("keyUp", "")] {
            self.conn
                .call(
                    Some(&self.session),
                    "Input.dispatchKeyEvent",
                    json!({"type": kind, "key": "Enter", "code": "Enter",
                           "windowsVirtualKeyCode": 13, "text": text}),
                )
                .await?;
        }
        Ok(())
    }

    /// Saves a PNG of the viewport to `path` (for looking at a failure by eye).
    pub async fn screenshot(&self, path: &Path) -> Result<(), String> {
        let shot = self
            .conn
            .call(
                Some(&self.session),
                "Page.captureScreenshot",
                json!({"format": "png"}),
            )
            .await?;
        let data = shot["data"].as_str().ok_or("no screenshot data")?;
        let png = base64::engine::general_purpose::STANDARD
            .decode(data)
            .map_err(|err| format!("screenshot is not base64: {err}"))?;
        std::fs::write(path, png).map_err(|err| format!("{}: {err}", path.display()))
    }

    /// Every request of the page and its frames, in the order they started.
    pub fn requests(&self) -> Vec<Request> {
        let record = self.record.lock();
        record
            .requests
            .iter()
            .map(|r| {
                let mut r = r.clone();
                r.frame_url = r.frame.as_ref().and_then(|f| record.frames.get(f).cloned());
                r
            })
            .collect()
    }

    /// The requests that failed ([`Request::failed`]: a network error or a status of
    /// 400 or more).
    pub fn failed_requests(&self) -> Vec<Request> {
        self.requests()
            .into_iter()
            .filter(Request::failed)
            .collect()
    }

    /// Console messages, uncaught exceptions and browser log entries, one line each,
    /// prefixed with their kind, in arrival order. CSP refusals are log entries: Chromium
    /// 156 writes `[log.error security] Framing '<url>' violates the following Content
    /// Security Policy directive: "frame-ancestors ...". The request has been blocked.`
    /// (older versions: "Refused to frame ..."); the frame's document request then fails
    /// with `net::ERR_BLOCKED_BY_RESPONSE`.
    pub fn console(&self) -> Vec<String> {
        self.record.lock().console.clone()
    }

    /// Every WebSocket opened by the page or its frames.
    pub fn websockets(&self) -> Vec<WebSocket> {
        self.record.lock().websockets.clone()
    }

    /// A readable dump of what the browser saw for this page: frames, requests with
    /// statuses and failures, WebSockets, console, and the CSP lines again on their own.
    /// Tests print it when an assertion fails.
    pub fn report(&self) -> String {
        let requests = self.requests();
        let record = self.record.lock();
        let mut out = String::new();
        let _ = writeln!(
            out,
            "==== what the browser saw: user {:?}, page {} ====",
            self.user, self.url
        );
        let _ = writeln!(out, "frames ({}):", record.frames.len());
        // The top frame first, then the others.
        let mut frames: Vec<(&String, &String)> = record.frames.iter().collect();
        frames.sort_by_key(|(id, _)| record.main_frame.as_ref() != Some(*id));
        for (id, url) in frames {
            let main = if record.main_frame.as_ref() == Some(id) {
                "main "
            } else {
                ""
            };
            let _ = writeln!(out, "  {main}{url}");
        }
        let _ = writeln!(out, "requests ({}):", requests.len());
        for r in &requests {
            let outcome = match (&r.error, r.status, r.done) {
                (Some(error), _, _) => format!("FAILED {error}"),
                (None, Some(status), _) => status.to_string(),
                (None, None, true) => "no response".to_string(),
                (None, None, false) => "pending".to_string(),
            };
            let _ = write!(
                out,
                "  {outcome} {} {} [{}]",
                r.method,
                shorten(&r.url),
                r.resource_type
            );
            if let Some(reason) = &r.blocked_reason {
                let _ = write!(out, " blocked={reason}");
            }
            if let Some(cors) = &r.cors_error {
                let _ = write!(out, " cors={cors}");
            }
            if let Some(frame) = &r.frame_url {
                let _ = write!(out, " (frame {frame})");
            }
            out.push('\n');
        }
        let _ = writeln!(out, "websockets ({}):", record.websockets.len());
        for ws in &record.websockets {
            let status = ws
                .handshake_status
                .map_or("no handshake".to_string(), |s| format!("handshake {s}"));
            let _ = writeln!(
                out,
                "  {} {status}, {} received, {} sent{}{}",
                ws.url,
                ws.frames_received,
                ws.frames_sent,
                if ws.closed { ", closed" } else { "" },
                if ws.errors.is_empty() {
                    String::new()
                } else {
                    format!(", errors: {}", ws.errors.join("; "))
                }
            );
        }
        let _ = writeln!(out, "console ({}):", record.console.len());
        for line in &record.console {
            let _ = writeln!(out, "  {line}");
        }
        let csp: Vec<&str> = record
            .console
            .iter()
            .filter(|l| l.contains("Content Security Policy") || l.contains("Refused to"))
            .map(|l| l.as_str())
            .collect();
        let _ = writeln!(out, "csp ({}):", csp.len());
        for line in csp {
            let _ = writeln!(out, "  {line}");
        }
        let _ = writeln!(out, "==== end (target {}) ====", self.target);
        out
    }

    /// `Runtime.evaluate` on `session`, in `context` (a `uniqueContextId`) or the
    /// session's top document.
    async fn evaluate(
        &self,
        session: &str,
        js: &str,
        context: Option<String>,
    ) -> Result<Value, String> {
        let mut params = json!({
            "expression": js,
            "returnByValue": true,
            "awaitPromise": true,
        });
        if let Some(context) = context {
            params["uniqueContextId"] = Value::String(context);
        }
        let answer = self
            .conn
            .call(Some(session), "Runtime.evaluate", params)
            .await?;
        if let Some(details) = answer.get("exceptionDetails") {
            let description = details["exception"]["description"]
                .as_str()
                .or(details["text"].as_str())
                .unwrap_or("exception");
            return Err(format!("{js}: {description}"));
        }
        Ok(answer["result"]
            .get("value")
            .cloned()
            .unwrap_or(Value::Null))
    }

    /// Re-evaluates with `eval` every [`POLL`] until it gives `true`, at most `timeout`.
    async fn poll<F, Fut>(&self, timeout: Duration, what: &str, eval: F) -> Result<(), String>
    where
        F: Fn() -> Fut,
        Fut: Future<Output = Result<Value, String>>,
    {
        let start = Instant::now();
        let mut last_error = None;
        loop {
            match eval().await {
                Ok(Value::Bool(true)) => return Ok(()),
                Ok(_) => {}
                Err(err) => last_error = Some(err),
            }
            if start.elapsed() >= timeout {
                let error = last_error.map_or(String::new(), |e| format!(" (last error: {e})"));
                return Err(format!("{what}: not true within {timeout:?}{error}"));
            }
            tokio::time::sleep(POLL).await;
        }
    }

    /// The session and `uniqueContextId` of the main world of the frame whose URL starts
    /// with `prefix`.
    async fn frame_context(&self, prefix: &str) -> Result<(String, String), String> {
        let tree = self
            .conn
            .call(Some(&self.session), "Page.getFrameTree", json!({}))
            .await?;
        let mut frames = Vec::new();
        flatten_frames(&tree["frameTree"], 0, &mut frames);
        let (frame, _) = frames
            .iter()
            .filter(|(_, (url, _))| url.starts_with(prefix))
            .max_by_key(|(_, (_, depth))| *depth)
            .map(|(id, (url, _))| (id.clone(), url.clone()))
            .ok_or_else(|| {
                let urls: Vec<&str> = frames.iter().map(|(_, (u, _))| u.as_str()).collect();
                format!("no frame whose URL starts with {prefix}; frames: {urls:?}")
            })?;
        let record = self.record.lock();
        record
            .contexts
            .iter()
            .rev()
            .find(|c| c.frame == frame && c.default)
            .map(|c| (c.session.clone(), c.unique.clone()))
            .ok_or_else(|| format!("frame {frame} ({prefix}...) has no JavaScript context yet"))
    }
}

impl Drop for Page {
    fn drop(&mut self) {
        self.conn.unregister(&self.session);
        self.conn
            .fire(None, "Target.closeTarget", json!({"targetId": self.target}));
    }
}

/// A URL for the report: `data:` URLs (Chromium's error pages are full of them) cut to
/// their first 60 characters.
fn shorten(url: &str) -> String {
    match url.char_indices().nth(60) {
        Some((cut, _)) if url.starts_with("data:") => {
            format!("{}... ({} chars)", &url[..cut], url.len())
        }
        _ => url.to_string(),
    }
}

/// `!!(expr)`, as an expression.
fn truthy(expr: &str) -> String {
    format!("!!({expr})")
}

/// (frame id, (url, depth)) of every frame of a `Page.getFrameTree` node.
fn flatten_frames(node: &Value, depth: usize, out: &mut Vec<(String, (String, usize))>) {
    let frame = &node["frame"];
    if let Some(id) = frame["id"].as_str() {
        let url = frame["url"].as_str().unwrap_or_default().to_string()
            + frame["urlFragment"].as_str().unwrap_or_default();
        out.push((id.to_string(), (url, depth)));
    }
    for child in node["childFrames"].as_array().into_iter().flatten() {
        flatten_frames(child, depth + 1, out);
    }
}

/// A JavaScript execution context (`Runtime.executionContextCreated`).
#[derive(Clone, Debug)]
struct Context {
    /// The session it belongs to.
    session: String,
    /// `executionContextId` (unique per session only).
    id: i64,
    /// `uniqueId`, valid across sessions.
    unique: String,
    /// `auxData.frameId`.
    frame: String,
    /// `auxData.isDefault`: the frame's main world.
    default: bool,
}

/// What the browser reported for one page (and its child targets).
#[derive(Default)]
struct Record {
    /// The observations.
    state: Mutex<Observed>,
    /// Woken on every recorded event ([`Page::wait_observed`]).
    changed: Notify,
}

impl Record {
    fn lock(&self) -> MutexGuard<'_, Observed> {
        lock(&self.state)
    }
}

/// The observations of a [`Record`].
#[derive(Default)]
struct Observed {
    /// Frame id -> its document's URL (latest navigation).
    frames: std::collections::BTreeMap<String, String>,
    /// The top frame's id.
    main_frame: Option<String>,
    /// The page's own session (child targets have others).
    main_session: String,
    /// `Page.loadEventFired` count of the top document.
    main_loads: u64,
    /// Requests, in start order.
    requests: Vec<Request>,
    /// `requestId` -> index of its latest entry in `requests`.
    request_index: HashMap<String, usize>,
    /// WebSockets, in creation order.
    websockets: Vec<WebSocket>,
    /// Console, exception and log lines.
    console: Vec<String>,
    /// Live execution contexts.
    contexts: Vec<Context>,
}

impl Observed {
    /// Folds one CDP event of `session` into the record.
    fn on_event(&mut self, session: &str, method: &str, p: &Value) {
        match method {
            "Page.frameNavigated" => {
                let frame = &p["frame"];
                let id = str_of(&frame["id"]);
                if frame.get("parentId").is_none() {
                    self.main_frame.get_or_insert_with(|| id.clone());
                }
                self.frames.insert(id, str_of(&frame["url"]));
            }
            "Page.frameDetached" => {
                self.frames.remove(&str_of(&p["frameId"]));
            }
            "Page.loadEventFired" if session == self.main_session => self.main_loads += 1,
            "Page.javascriptDialogOpening" => self.console.push(format!(
                "[dialog {}] {} (accepted)",
                str_of(&p["type"]),
                str_of(&p["message"])
            )),
            "Network.requestWillBeSent" => {
                let id = str_of(&p["requestId"]);
                if let Some(redirect) = p.get("redirectResponse") {
                    self.with_request(&id, |r| {
                        r.status = status_of(&redirect["status"]);
                        r.done = true;
                    });
                }
                let request = Request {
                    id: id.clone(),
                    url: str_of(&p["request"]["url"])
                        + p["request"]["urlFragment"].as_str().unwrap_or_default(),
                    method: str_of(&p["request"]["method"]),
                    frame: p["frameId"].as_str().map(str::to_string),
                    frame_url: None,
                    resource_type: p["type"].as_str().unwrap_or("Other").to_string(),
                    ..Request::default()
                };
                self.request_index.insert(id, self.requests.len());
                self.requests.push(request);
            }
            "Network.responseReceived" => {
                let status = status_of(&p["response"]["status"]);
                self.with_request(&str_of(&p["requestId"]), |r| r.status = status);
            }
            "Network.loadingFinished" => {
                self.with_request(&str_of(&p["requestId"]), |r| r.done = true);
            }
            "Network.loadingFailed" => {
                let error = str_of(&p["errorText"]);
                let canceled = p["canceled"].as_bool() == Some(true);
                let blocked = p["blockedReason"].as_str().map(str::to_string);
                let cors = p.get("corsErrorStatus").map(|c| {
                    format!(
                        "{} ({})",
                        str_of(&c["corsError"]),
                        str_of(&c["failedParameter"])
                    )
                });
                self.with_request(&str_of(&p["requestId"]), |r| {
                    r.error = Some(if canceled {
                        format!("{error} (canceled)")
                    } else {
                        error
                    });
                    r.blocked_reason = blocked;
                    r.cors_error = cors;
                    r.done = true;
                });
            }
            "Network.webSocketCreated" => self.websockets.push(WebSocket {
                id: str_of(&p["requestId"]),
                url: str_of(&p["url"]),
                ..WebSocket::default()
            }),
            "Network.webSocketHandshakeResponseReceived" => {
                let status = status_of(&p["response"]["status"]);
                self.with_websocket(p, |ws| ws.handshake_status = status);
            }
            "Network.webSocketFrameReceived" => {
                self.with_websocket(p, |ws| ws.frames_received += 1)
            }
            "Network.webSocketFrameSent" => self.with_websocket(p, |ws| ws.frames_sent += 1),
            "Network.webSocketFrameError" => {
                let message = str_of(&p["errorMessage"]);
                self.with_websocket(p, |ws| ws.errors.push(message));
            }
            "Network.webSocketClosed" => self.with_websocket(p, |ws| ws.closed = true),
            "Runtime.consoleAPICalled" => {
                let args: Vec<String> = p["args"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .map(remote_object_text)
                    .collect();
                let at = p["stackTrace"]["callFrames"][0]
                    .as_object()
                    .map(|f| format!(" ({}:{})", str_of(&f["url"]), &f["lineNumber"]))
                    .unwrap_or_default();
                let origin = self.context_origin(session, &p["executionContextId"]);
                self.console.push(format!(
                    "[console.{}{origin}] {}{at}",
                    str_of(&p["type"]),
                    args.join(" ")
                ));
            }
            "Runtime.exceptionThrown" => {
                let d = &p["exceptionDetails"];
                let description = d["exception"]["description"]
                    .as_str()
                    .map(|s| format!(": {s}"))
                    .unwrap_or_default();
                let origin = self.context_origin(session, &d["executionContextId"]);
                self.console.push(format!(
                    "[exception{origin}] {}{description} ({}:{})",
                    str_of(&d["text"]),
                    str_of(&d["url"]),
                    &d["lineNumber"]
                ));
            }
            "Log.entryAdded" => {
                let e = &p["entry"];
                let url = e["url"]
                    .as_str()
                    .map(|u| format!(" ({u})"))
                    .unwrap_or_default();
                self.console.push(format!(
                    "[log.{} {}] {}{url}",
                    str_of(&e["level"]),
                    str_of(&e["source"]),
                    str_of(&e["text"])
                ));
            }
            "Inspector.targetCrashed" => self.console.push("[crash] the renderer crashed".into()),
            "Runtime.executionContextCreated" => {
                let c = &p["context"];
                self.contexts.push(Context {
                    session: session.to_string(),
                    id: c["id"].as_i64().unwrap_or_default(),
                    unique: str_of(&c["uniqueId"]),
                    frame: str_of(&c["auxData"]["frameId"]),
                    default: c["auxData"]["isDefault"].as_bool() == Some(true),
                });
            }
            "Runtime.executionContextDestroyed" => {
                let id = p["executionContextId"].as_i64();
                self.contexts
                    .retain(|c| !(c.session == session && Some(c.id) == id));
            }
            "Runtime.executionContextsCleared" => self.contexts.retain(|c| c.session != session),
            _ => {}
        }
    }

    /// Applies `f` to the latest entry of request `id`, if known.
    fn with_request(&mut self, id: &str, f: impl FnOnce(&mut Request)) {
        if let Some(&index) = self.request_index.get(id) {
            f(&mut self.requests[index]);
        }
    }

    /// Applies `f` to the WebSocket of the event's `requestId`, if known.
    fn with_websocket(&mut self, p: &Value, f: impl FnOnce(&mut WebSocket)) {
        let id = str_of(&p["requestId"]);
        if let Some(ws) = self.websockets.iter_mut().rev().find(|ws| ws.id == id) {
            f(ws);
        }
    }

    /// ` @ <frame url>` of an execution context, for console lines from frames.
    fn context_origin(&self, session: &str, id: &Value) -> String {
        let id = id.as_i64();
        self.contexts
            .iter()
            .find(|c| c.session == session && Some(c.id) == id)
            .and_then(|c| self.frames.get(&c.frame))
            .map(|url| format!(" @ {url}"))
            .unwrap_or_default()
    }
}

/// A JSON string's text, or `""`.
fn str_of(value: &Value) -> String {
    value.as_str().unwrap_or_default().to_string()
}

/// An HTTP status from a JSON number.
fn status_of(value: &Value) -> Option<u16> {
    value.as_f64().map(|s| s as u16)
}

/// How a console argument reads: its value, else its description.
fn remote_object_text(object: &Value) -> String {
    match object.get("value") {
        Some(Value::String(s)) => s.clone(),
        Some(other) => other.to_string(),
        None => object["description"]
            .as_str()
            .or(object["unserializableValue"].as_str())
            .unwrap_or_else(|| object["type"].as_str().unwrap_or("?"))
            .to_string(),
    }
}

/// Locks, ignoring poisoning (a panicking test must still be able to print its report).
fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

/// The CDP connection: commands out, answers matched by id, events routed by session.
#[derive(Default)]
struct Conn {
    /// Messages for the writer task; `None` until connected.
    out: Mutex<Option<mpsc::UnboundedSender<Message>>>,
    /// The next command id.
    next_id: AtomicU64,
    /// Commands awaiting an answer.
    pending: Mutex<HashMap<u64, oneshot::Sender<Result<Value, String>>>>,
    /// Session id -> the record its events go to.
    sessions: Mutex<HashMap<String, Arc<Record>>>,
}

impl Conn {
    /// Starts the reader and writer tasks on `socket`.
    fn start<S>(socket: tokio_tungstenite::WebSocketStream<S>) -> Arc<Conn>
    where
        S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
    {
        let (mut sink, mut stream) = socket.split();
        let (out, mut outgoing) = mpsc::unbounded_channel::<Message>();
        let conn = Arc::new(Conn {
            out: Mutex::new(Some(out)),
            ..Conn::default()
        });
        tokio::spawn(async move {
            while let Some(message) = outgoing.recv().await {
                if sink.send(message).await.is_err() {
                    break;
                }
            }
        });
        let reader = Arc::clone(&conn);
        tokio::spawn(async move {
            while let Some(Ok(message)) = stream.next().await {
                if let Message::Text(text) = message
                    && let Ok(value) = serde_json::from_str::<Value>(text.as_str())
                {
                    reader.dispatch(value);
                }
            }
            // Connection gone: fail whoever still waits.
            for (_, waiter) in lock(&reader.pending).drain() {
                let _ = waiter.send(Err("the browser connection closed".to_string()));
            }
            lock(&reader.out).take();
        });
        conn
    }

    /// Routes one message from Chromium.
    fn dispatch(&self, message: Value) {
        if let Some(id) = message["id"].as_u64() {
            if let Some(waiter) = lock(&self.pending).remove(&id) {
                let answer = match message.get("error") {
                    Some(error) => Err(format!("CDP error: {error}")),
                    None => Ok(message["result"].clone()),
                };
                let _ = waiter.send(answer);
            }
            return;
        }
        if std::env::var_os("CDP_DEBUG").is_some() {
            let m = message["method"].as_str().unwrap_or("");
            if !m.starts_with("Network.")
                && !m.starts_with("Runtime.console")
                && !m.starts_with("Log.")
            {
                eprintln!(
                    "CDP {} {}",
                    m,
                    message.to_string().chars().take(300).collect::<String>()
                );
            }
        }
        let (Some(method), Some(session)) =
            (message["method"].as_str(), message["sessionId"].as_str())
        else {
            return;
        };
        let Some(record) = lock(&self.sessions).get(session).cloned() else {
            return;
        };
        let params = &message["params"];
        if method == "Target.attachedToTarget" {
            // A child target (out-of-process frame, worker): same record, same setup;
            // it waits for `runIfWaitingForDebugger`, the last setup command.
            if let Some(child) = params["sessionId"].as_str() {
                self.register(child, &record);
                for (method, params) in session_setup() {
                    self.fire(Some(child), method, params);
                }
            }
            return;
        }
        if method == "Page.javascriptDialogOpening" {
            // An `alert()`/`confirm()` blocks the whole renderer (every frame of the page):
            // accept it, as a user would click OK, and keep it in the record.
            self.fire(
                Some(session),
                "Page.handleJavaScriptDialog",
                json!({"accept": true}),
            );
        }
        record.lock().on_event(session, method, params);
        record.changed.notify_waiters();
    }

    /// Events of `session` go to `record` from now on.
    fn register(&self, session: &str, record: &Arc<Record>) {
        lock(&self.sessions).insert(session.to_string(), Arc::clone(record));
    }

    /// Events of `session` are ignored from now on.
    fn unregister(&self, session: &str) {
        lock(&self.sessions).remove(session);
    }

    /// Sends a command without waiting for the answer (used from `Drop`).
    fn fire(&self, session: Option<&str>, method: &str, params: Value) -> Option<u64> {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed) + 1;
        let mut command = json!({"id": id, "method": method, "params": params});
        if let Some(session) = session {
            command["sessionId"] = Value::String(session.to_string());
        }
        let out = lock(&self.out);
        out.as_ref()?
            .send(Message::Text(command.to_string().into()))
            .ok()?;
        Some(id)
    }

    /// Sends a command and waits (at most [`CALL_TIMEOUT`]) for its result.
    async fn call(
        &self,
        session: Option<&str>,
        method: &str,
        params: Value,
    ) -> Result<Value, String> {
        let (tx, rx) = oneshot::channel();
        // The id is reserved first so the answer cannot arrive before we listen.
        let id = self.next_id.fetch_add(1, Ordering::Relaxed) + 1;
        lock(&self.pending).insert(id, tx);
        let mut command = json!({"id": id, "method": method, "params": params});
        if let Some(session) = session {
            command["sessionId"] = Value::String(session.to_string());
        }
        let sent = lock(&self.out)
            .as_ref()
            .is_some_and(|out| out.send(Message::Text(command.to_string().into())).is_ok());
        if !sent {
            lock(&self.pending).remove(&id);
            return Err(format!("{method}: the browser connection is closed"));
        }
        match tokio::time::timeout(CALL_TIMEOUT, rx).await {
            Ok(Ok(answer)) => answer.map_err(|err| format!("{method}: {err}")),
            Ok(Err(_)) => Err(format!("{method}: the browser connection closed")),
            Err(_) => {
                lock(&self.pending).remove(&id);
                Err(format!("{method}: no answer within {CALL_TIMEOUT:?}"))
            }
        }
    }
}
