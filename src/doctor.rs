//! `officeswitch doctor`: after set-up, ask every node of every pool what officeswitch
//! will see, and say per check whether editing will work and what to change.
//!
//! It reads the same settings as the server (through [`app::prepare`], so every error
//! `check-config` reports is a failure here too), fetches each node's discovery exactly as
//! the discovery service does ([`crate::discovery::service::fetch_discovery`]: same client, same forwarding
//! headers, same limits), and prints one verdict per check:
//!
//! - `ok`: checked, fine;
//! - `warn`: works, but something is weaker than it should be;
//! - `FAIL`: editing breaks; the line says the fix;
//! - `todo`: a setting on the editors or Nextcloud that officeswitch cannot see from here,
//!   given as a concrete instruction.
//!
//! The checks live in [`nodes`] (what each node and pool answers) and [`instructions`]
//! (framing and the allow-lists to set). The exit status is 1 when any check fails, 2 when
//! the settings themselves cannot be loaded, else 0 (warnings and todos included). Nothing
//! printed is a secret: proof keys are public and shown by a short prefix of their modulus.

pub mod instructions;
pub mod nodes;

use std::fmt;
use std::path::Path;
use std::process::ExitCode;

use serde::Serialize;

use crate::app::{self, MissingKey};
use crate::config::Config;

/// How a check came out.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Level {
    /// Checked and fine.
    Ok,
    /// Works, but weaker than it should be.
    Warn,
    /// Editing breaks until fixed.
    Fail,
    /// A setting officeswitch cannot check; the message is the instruction.
    Todo,
}

impl Level {
    /// The word that starts a text line, padded to one width so the messages line up.
    fn word(self) -> &'static str {
        match self {
            Level::Ok => "ok  ",
            Level::Warn => "warn",
            Level::Fail => "FAIL",
            Level::Todo => "todo",
        }
    }
}

/// One check's result.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Verdict {
    /// How it came out.
    pub level: Level,
    /// What was checked: `pool collabora node http://...`, `pool onlyoffice`, `nextcloud`.
    pub scope: String,
    /// The check's name (`reachable`, `discovery`, `origin`, `proof_key`...), for `--json`.
    pub check: &'static str,
    /// What was found (or, for `todo`, what to do).
    pub message: String,
    /// What to change, for `warn` and `FAIL`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fix: Option<String>,
}

impl Verdict {
    /// A verdict without a fix.
    pub fn new(level: Level, scope: &str, check: &'static str, message: String) -> Verdict {
        Verdict {
            level,
            scope: scope.to_string(),
            check,
            message,
            fix: None,
        }
    }

    /// A verdict with a fix.
    pub fn with_fix(
        level: Level,
        scope: &str,
        check: &'static str,
        message: String,
        fix: String,
    ) -> Verdict {
        Verdict {
            fix: Some(fix),
            ..Verdict::new(level, scope, check, message)
        }
    }
}

impl fmt::Display for Verdict {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}: {}", self.level.word(), self.scope, self.message)?;
        if let Some(fix) = &self.fix {
            write!(f, "; fix: {fix}")?;
        }
        Ok(())
    }
}

/// Runs every check on the settings at `path`; prints text lines or, with `json`, one JSON
/// object. Exit 0 without failures, 1 with, 2 when the settings cannot be loaded.
pub fn run(path: &Path, json: bool) -> ExitCode {
    let prepared = Config::from_file(path)
        .map_err(app::StartupError::from)
        .and_then(|c| app::prepare(c, MissingKey::Report));
    let prepared = match prepared {
        Ok(p) => p,
        Err(e) => {
            let verdict = Verdict::with_fix(
                Level::Fail,
                "settings",
                "settings",
                e.to_string(),
                format!(
                    "correct {} (officeswitch check-config shows the same error)",
                    path.display()
                ),
            );
            print(&[verdict], json);
            return ExitCode::from(2);
        }
    };
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("cannot start the async runtime: {e}");
            return ExitCode::from(2);
        }
    };
    let verdicts = runtime.block_on(async {
        let mut verdicts = nodes::check(&prepared).await;
        verdicts.extend(instructions::check(&prepared).await);
        verdicts
    });
    print(&verdicts, json);
    if verdicts.iter().any(|v| v.level == Level::Fail) {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    }
}

/// Prints the verdicts and a summary line (text), or one JSON object.
fn print(verdicts: &[Verdict], json: bool) {
    let count = |level| verdicts.iter().filter(|v| v.level == level).count();
    let (ok, warn, fail, todo) = (
        count(Level::Ok),
        count(Level::Warn),
        count(Level::Fail),
        count(Level::Todo),
    );
    if json {
        let out = serde_json::json!({
            "verdicts": verdicts,
            "ok": ok, "warn": warn, "fail": fail, "todo": todo,
        });
        println!("{out}");
        return;
    }
    for v in verdicts {
        println!("{v}");
    }
    let outcome = if fail > 0 {
        "editing will break until the FAIL lines are fixed"
    } else {
        "nothing found that breaks editing; do the todo lines once"
    };
    println!("doctor: {ok} ok, {warn} warn, {fail} FAIL, {todo} todo: {outcome}");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_line_up_and_carry_the_fix() {
        let ok = Verdict::new(
            Level::Ok,
            "pool collabora node http://a/",
            "discovery",
            "discovery parsed (3 actions)".into(),
        );
        assert_eq!(
            ok.to_string(),
            "ok   pool collabora node http://a/: discovery parsed (3 actions)"
        );
        let fail = Verdict::with_fix(
            Level::Fail,
            "pool onlyoffice",
            "proof_keys",
            "nodes differ".into(),
            "share one key".into(),
        );
        assert_eq!(
            fail.to_string(),
            "FAIL pool onlyoffice: nodes differ; fix: share one key"
        );
        let json = serde_json::to_value(&fail).unwrap();
        assert_eq!(json["level"], "fail");
        assert_eq!(json["fix"], "share one key");
        assert!(serde_json::to_value(&ok).unwrap().get("fix").is_none());
    }
}
