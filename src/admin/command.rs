//! `officeswitch nodes [drain|undrain NODE]`: the admin API from a shell on the
//! officeswitch host.
//!
//! The admin listener and token come from the settings file (`[admin]`) unless given on
//! the command line. The request goes over plain HTTP: the admin listener has no TLS, which
//! is why it belongs on loopback or an internal network.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderValue, Method, Request, StatusCode, Uri, header};
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use serde::Deserialize;
use url::Url;

use super::{DrainReply, PinsState, load_token};
use crate::cli::{NodesArgs, NodesCommand};
use crate::config::Config;

/// Exit code when the admin API answers with an error status.
const EXIT_REFUSED: u8 = 1;
/// Exit code when the admin listener is not configured or cannot be reached (clap also
/// uses 2, for usage errors).
const EXIT_UNREACHABLE: u8 = 2;

/// Time the whole exchange may take: the admin API answers from memory, or gives up on
/// the pin store after a few seconds.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(15);

/// Why `officeswitch nodes` did not get its answer.
#[derive(Debug, thiserror::Error)]
pub enum CommandError {
    /// No admin listener to ask: no `[admin]` section, an unusable settings file or
    /// `--admin`, or an unusable token file.
    #[error("{0}")]
    NotConfigured(String),
    /// Nothing answers at the admin address.
    #[error("cannot reach the admin listener at {admin}: {error}")]
    Unreachable {
        /// The address asked.
        admin: String,
        /// Why, with its causes.
        error: String,
    },
    /// The admin API answered with an error status.
    #[error("the admin API answered {status}: {body}")]
    Refused {
        /// The status.
        status: StatusCode,
        /// The body, as text.
        body: String,
    },
    /// A success status with a body this command cannot read (another version?).
    #[error("the admin API's answer is not what this officeswitch expects: {0}")]
    BadAnswer(String),
}

impl CommandError {
    /// The exit code: 1 when the API refused or answered oddly, 2 when there was nothing
    /// to ask.
    pub fn exit_code(&self) -> u8 {
        match self {
            CommandError::NotConfigured(_) | CommandError::Unreachable { .. } => EXIT_UNREACHABLE,
            CommandError::Refused { .. } | CommandError::BadAnswer(_) => EXIT_REFUSED,
        }
    }
}

/// Runs `officeswitch nodes ...` with settings file `config`, prints the answer and returns
/// the exit code (0, or [`CommandError::exit_code`]).
pub fn run(config: &Path, args: &NodesArgs) -> ExitCode {
    match execute(config, args) {
        Ok(text) => {
            print!("{text}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("{e}");
            ExitCode::from(e.exit_code())
        }
    }
}

/// Asks the admin API and renders its answer.
///
/// # Errors
/// See [`CommandError`].
pub fn execute(config: &Path, args: &NodesArgs) -> Result<String, CommandError> {
    let (base, token_file) = target(config, args)?;
    let token = load_token(&token_file).map_err(|e| CommandError::NotConfigured(e.to_string()))?;
    let (method, path, body) = match &args.action {
        None => (Method::GET, "/admin/nodes", None),
        Some(NodesCommand::Drain { node }) => {
            (Method::POST, "/admin/nodes/drain", Some(node.as_str()))
        }
        Some(NodesCommand::Undrain { node }) => {
            (Method::POST, "/admin/nodes/undrain", Some(node.as_str()))
        }
    };
    let body = body.map(|node| serde_json::json!({ "node": node }).to_string());
    let answer = call(&base, method, path, &token, body)?;
    if args.json {
        let text = String::from_utf8_lossy(&answer);
        return Ok(format!("{}\n", text.trim_end()));
    }
    let bad = |e: serde_json::Error| CommandError::BadAnswer(e.to_string());
    Ok(match &args.action {
        None => table(&serde_json::from_slice(&answer).map_err(bad)?),
        Some(_) => drain_sentence(&serde_json::from_slice(&answer).map_err(bad)?),
    })
}

/// The admin base URL and token file: from the command line, else from `[admin]`.
fn target(config: &Path, args: &NodesArgs) -> Result<(Url, PathBuf), CommandError> {
    let settings = match (&args.admin, &args.token_file) {
        (Some(_), Some(_)) => None,
        _ => {
            let config = Config::from_file(config).map_err(|e| {
                CommandError::NotConfigured(format!(
                    "{e}\n(give --admin and --token-file to ask without a settings file)"
                ))
            })?;
            Some(config.admin.ok_or_else(|| {
                CommandError::NotConfigured(format!(
                    "{}: no [admin] section, so officeswitch serves no admin listener; \
                     add one with `listen` and `token_file`, or give --admin and --token-file",
                    config.path.display()
                ))
            })?)
        }
    };
    let base = match (&args.admin, &settings) {
        (Some(admin), _) => admin_url(admin)?,
        (None, Some(settings)) => loopback_url(settings.listen)?,
        (None, None) => unreachable_settings()?,
    };
    let token_file = match (&args.token_file, settings) {
        (Some(path), _) => path.clone(),
        (None, Some(settings)) => settings.token_file,
        (None, None) => unreachable_settings()?,
    };
    Ok((base, token_file))
}

/// Settings are read whenever an argument is missing; kept as an error rather than a panic.
fn unreachable_settings<T>() -> Result<T, CommandError> {
    Err(CommandError::NotConfigured(
        "give --admin and --token-file, or a settings file with [admin]".into(),
    ))
}

/// `--admin`: `http://host:port` or `host:port`; plain HTTP only.
fn admin_url(text: &str) -> Result<Url, CommandError> {
    let text = text.trim();
    let full = if text.contains("://") {
        text.to_string()
    } else {
        format!("http://{text}")
    };
    let url = Url::parse(&full)
        .map_err(|e| CommandError::NotConfigured(format!("--admin {text}: not a URL: {e}")))?;
    if url.scheme() != "http" || url.host().is_none() {
        return Err(CommandError::NotConfigured(format!(
            "--admin {text}: the admin listener speaks plain http (http://host:port)"
        )));
    }
    Ok(url)
}

/// The URL of `[admin] listen`; an unspecified address (`0.0.0.0`) is asked on loopback.
fn loopback_url(listen: SocketAddr) -> Result<Url, CommandError> {
    let ip = match listen.ip() {
        IpAddr::V4(ip) if ip.is_unspecified() => IpAddr::V4(Ipv4Addr::LOCALHOST),
        IpAddr::V6(ip) if ip.is_unspecified() => IpAddr::V6(Ipv6Addr::LOCALHOST),
        ip => ip,
    };
    let addr = SocketAddr::new(ip, listen.port());
    Url::parse(&format!("http://{addr}/")).map_err(|e| {
        CommandError::NotConfigured(format!("[admin] listen {listen}: not usable: {e}"))
    })
}

/// One request to the admin API; the body of a 2xx answer.
fn call(
    base: &Url,
    method: Method,
    path: &str,
    token: &str,
    body: Option<String>,
) -> Result<Bytes, CommandError> {
    let admin = base.as_str().trim_end_matches('/').to_string();
    let uri: Uri = format!("{admin}{path}")
        .parse()
        .map_err(|e| CommandError::NotConfigured(format!("admin URL {admin}: {e}")))?;
    let mut authorization = HeaderValue::from_str(&format!("Bearer {token}")).map_err(|_| {
        CommandError::NotConfigured("the admin token cannot be sent in a header".into())
    })?;
    authorization.set_sensitive(true);
    let mut request = Request::builder()
        .method(method)
        .uri(uri)
        .header(header::AUTHORIZATION, authorization);
    if body.is_some() {
        request = request.header(header::CONTENT_TYPE, "application/json");
    }
    let request = request
        .body(Full::new(Bytes::from(body.unwrap_or_default())))
        .map_err(|e| CommandError::NotConfigured(format!("cannot build the request: {e}")))?;
    let unreachable = |error: String| CommandError::Unreachable {
        admin: admin.clone(),
        error,
    };
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| unreachable(format!("cannot start the async runtime: {e}")))?;
    let exchange = async {
        let client: Client<_, Full<Bytes>> = Client::builder(TokioExecutor::new()).build_http();
        let response = client
            .request(request)
            .await
            .map_err(|e| unreachable(chain(&e)))?;
        let status = response.status();
        let body = response
            .into_body()
            .collect()
            .await
            .map_err(|e| unreachable(chain(&e)))?
            .to_bytes();
        Ok::<_, CommandError>((status, body))
    };
    let (status, body) = runtime
        .block_on(async { tokio::time::timeout(REQUEST_TIMEOUT, exchange).await })
        .map_err(|_| unreachable(format!("no answer within {REQUEST_TIMEOUT:?}")))??;
    if !status.is_success() {
        return Err(CommandError::Refused {
            status,
            body: String::from_utf8_lossy(&body).trim_end().to_string(),
        });
    }
    Ok(body)
}

/// An error and its causes, `a: b: c` (hyper's own message is only "client error").
fn chain(error: &(dyn std::error::Error + 'static)) -> String {
    let mut text = error.to_string();
    let mut cause = error.source();
    while let Some(e) = cause {
        text.push_str(": ");
        text.push_str(&e.to_string());
        cause = e.source();
    }
    text
}

/// One node as `GET /admin/nodes` lists it (the fields the table shows).
#[derive(Debug, Deserialize)]
struct Node {
    pool: String,
    node: String,
    healthy: bool,
    draining: bool,
    /// `listed`, `leaving` or `gone` (absent from older instances).
    #[serde(default)]
    membership: Option<String>,
    last_error: Option<String>,
    pinned_documents: Option<u64>,
}

/// `GET /admin/nodes`.
#[derive(Debug, Deserialize)]
struct NodeList {
    nodes: Vec<Node>,
    pins: PinsState,
}

/// The node list as aligned columns, then a line about the pin store.
fn table(list: &NodeList) -> String {
    let mut rows = vec![[
        "POOL".to_string(),
        "NODE".into(),
        "HEALTH".into(),
        "DRAINING".into(),
        "PINNED".into(),
        "LAST ERROR".into(),
    ]];
    for n in &list.nodes {
        rows.push([
            n.pool.clone(),
            n.node.clone(),
            if n.healthy { "up" } else { "down" }.into(),
            // A node that left the settings takes no new document either: say why.
            match n.membership.as_deref() {
                Some(other @ ("leaving" | "gone")) => other.into(),
                _ if n.draining => "yes".into(),
                _ => "no".into(),
            },
            n.pinned_documents.map_or("?".into(), |c| c.to_string()),
            n.last_error.clone().unwrap_or_else(|| "-".into()),
        ]);
    }
    let mut widths = [0usize; 6];
    for row in &rows {
        for (width, cell) in widths.iter_mut().zip(row) {
            *width = (*width).max(cell.chars().count());
        }
    }
    let mut out = String::new();
    for row in &rows {
        let mut line = String::new();
        for (i, cell) in row.iter().enumerate() {
            if i + 1 < row.len() {
                line.push_str(&format!("{cell:<width$}  ", width = widths[i]));
            } else {
                line.push_str(cell);
            }
        }
        out.push_str(line.trim_end());
        out.push('\n');
    }
    if list.pins.reachable {
        out.push_str(&format!("pins: {} store\n", list.pins.store));
    } else {
        out.push_str(&format!(
            "pins: {} store UNREACHABLE, pinned documents unknown (?)\n",
            list.pins.store
        ));
    }
    out
}

/// What a drain or undrain did, in words.
fn drain_sentence(reply: &DrainReply) -> String {
    let what = match (reply.draining, reply.changed) {
        (true, true) => "draining now: no new documents go to it, its open documents stay",
        (true, false) => "was already draining",
        (false, true) => "no longer draining: takes new documents again",
        (false, false) => "was not draining",
    };
    let reach = if reply.shared {
        "every instance sharing the pin store follows"
    } else {
        "on this instance only for now: the pin store is unreachable, the others follow \
         once it is back"
    };
    format!("{}: {what} ({reach})\n", reply.node)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_table_aligns_columns_and_marks_unknown_counts() {
        let list: NodeList = serde_json::from_str(
            r#"{"nodes":[
                {"pool":"collabora","suite":"collabora","node":"http://10.0.0.1:9980/",
                 "healthy":true,"draining":false,"consecutive_failures":0,"last_error":null,
                 "since_unix":1,"pinned_documents":12},
                {"pool":"onlyoffice","suite":"onlyoffice","node":"http://10.0.1.1/",
                 "healthy":false,"draining":true,"consecutive_failures":3,
                 "last_error":"connection refused","since_unix":1,"pinned_documents":null},
                {"pool":"collabora","suite":"collabora","node":"http://10.0.0.3:9980/",
                 "healthy":true,"draining":false,"membership":"leaving","consecutive_failures":0,
                 "last_error":null,"since_unix":1,"pinned_documents":4}],
              "pins":{"store":"redis","reachable":false}}"#,
        )
        .expect("node list");
        assert_eq!(
            table(&list),
            "POOL        NODE                   HEALTH  DRAINING  PINNED  LAST ERROR\n\
             collabora   http://10.0.0.1:9980/  up      no        12      -\n\
             onlyoffice  http://10.0.1.1/       down    yes       ?       connection refused\n\
             collabora   http://10.0.0.3:9980/  up      leaving   4       -\n\
             pins: redis store UNREACHABLE, pinned documents unknown (?)\n"
        );
    }

    #[test]
    fn admin_addresses_are_plain_http_on_loopback() {
        assert_eq!(
            admin_url("127.0.0.1:9091").expect("url").as_str(),
            "http://127.0.0.1:9091/"
        );
        assert_eq!(
            admin_url("http://[::1]:9091").expect("url").as_str(),
            "http://[::1]:9091/"
        );
        for bad in ["https://127.0.0.1:9091", "http://", "ftp://x"] {
            let err = admin_url(bad).expect_err(bad);
            assert_eq!(err.exit_code(), EXIT_UNREACHABLE, "{err}");
        }
        let listen: SocketAddr = "0.0.0.0:9091".parse().expect("addr");
        assert_eq!(
            loopback_url(listen).expect("url").as_str(),
            "http://127.0.0.1:9091/"
        );
        let listen: SocketAddr = "[::]:9091".parse().expect("addr");
        assert_eq!(
            loopback_url(listen).expect("url").as_str(),
            "http://[::1]:9091/"
        );
    }

    #[test]
    fn drain_answers_read_as_sentences() {
        let reply = |draining, changed| DrainReply {
            node: "http://10.0.0.2:9980/".into(),
            draining,
            changed,
            shared: true,
        };
        assert!(
            drain_sentence(&reply(true, true)).starts_with("http://10.0.0.2:9980/: draining now")
        );
        assert_eq!(
            drain_sentence(&reply(false, false)),
            "http://10.0.0.2:9980/: was not draining (every instance sharing the pin store follows)\n"
        );
        let unshared = DrainReply {
            shared: false,
            ..reply(true, true)
        };
        assert!(drain_sentence(&unshared).contains("on this instance only for now"));
    }
}
