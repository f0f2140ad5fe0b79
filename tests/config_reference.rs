//! The configuration reference (`docs/configuration.md`) against the settings type: every key
//! `officeswitch.toml` accepts has its row in the reference table, and every row names a key
//! that exists, so a key cannot be added (or removed) without its documentation.
//!
//! The keys come from serde, not from a list kept here: `FileConfig` and each of its sections
//! deny unknown fields, and serde's error for an unknown field lists the expected ones. Sections
//! are found the same way (a key that takes a table answers a table with that error), so a new
//! section is checked without touching this file.
//!
//! The README's minimal configuration is checked too: it loads, with its organisation file.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a panic is a failure

use std::collections::BTreeSet;
use std::fmt::Write as _;
use std::path::Path;

use officeswitch::config::Config;
use officeswitch::config::file::FileConfig;
use officeswitch::rules::RuleSet;

/// A key no settings struct has; the error it causes lists the keys they do have.
const UNKNOWN: &str = "officeswitch_no_such_key";

/// Floors below today's 14 sections and 54 keys: if serde or toml word the error differently,
/// the probe finds nothing and this test must fail rather than pass on an empty list.
const MIN_SECTIONS: usize = 10;
const MIN_KEYS: usize = 40;

/// One level of a key's path: a table (`[tls]`) or an array of tables (`[[pool]]`).
#[derive(Clone)]
struct Level {
    name: String,
    array: bool,
}

/// Settings text with `UNKNOWN` inside the table at `path` (the top level when empty).
fn probe_text(path: &[Level]) -> String {
    let mut text = String::new();
    for depth in 1..=path.len() {
        let dotted: Vec<&str> = path[..depth].iter().map(|l| l.name.as_str()).collect();
        let dotted = dotted.join(".");
        if path[depth - 1].array {
            writeln!(text, "[[{dotted}]]").unwrap();
        } else {
            writeln!(text, "[{dotted}]").unwrap();
        }
    }
    writeln!(text, "{UNKNOWN} = 1").unwrap();
    text
}

/// The keys the table at `path` accepts, read from serde's unknown-field error; `None` when
/// `path` is not a table (the value there is a string, a number, a list of strings...).
fn keys_of(path: &[Level]) -> Option<Vec<String>> {
    let text = probe_text(path);
    let message = match toml::from_str::<FileConfig>(&text) {
        Ok(_) => panic!("settings with an unknown key were accepted:\n{text}"),
        Err(e) => e.to_string(),
    };
    let marker = format!("unknown field `{UNKNOWN}`, expected ");
    let start = message.find(&marker)? + marker.len();
    let list = message[start..].lines().next().unwrap_or_default();
    // "one of `a`, `b`, `c`" or "`a`": the names are the backquoted parts.
    Some(
        list.split('`')
            .skip(1)
            .step_by(2)
            .map(String::from)
            .collect(),
    )
}

/// How the reference table names a key: `public_url`, `[tls] listen`, `[[pool]] name`.
fn row_name(path: &[Level], key: &str) -> String {
    let Some(last) = path.last() else {
        return key.to_string();
    };
    let dotted: Vec<&str> = path.iter().map(|l| l.name.as_str()).collect();
    let dotted = dotted.join(".");
    if last.array {
        format!("[[{dotted}]] {key}")
    } else {
        format!("[{dotted}] {key}")
    }
}

/// Every key officeswitch.toml accepts, as row names, and how many tables hold them.
fn accepted_keys() -> (BTreeSet<String>, usize) {
    let mut keys = BTreeSet::new();
    let mut tables = 0;
    let mut pending: Vec<Vec<Level>> = vec![Vec::new()];
    while let Some(path) = pending.pop() {
        let fields = keys_of(&path).expect("every probed path is a table");
        if !path.is_empty() {
            tables += 1;
        }
        for field in fields {
            let child = |array| {
                let mut child = path.clone();
                child.push(Level {
                    name: field.clone(),
                    array,
                });
                child
            };
            if keys_of(&child(false)).is_some() {
                pending.push(child(false));
            } else if keys_of(&child(true)).is_some() {
                pending.push(child(true));
            } else {
                keys.insert(row_name(&path, &field));
            }
        }
    }
    (keys, tables)
}

fn read(relative: &str) -> String {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join(relative);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// The first cell of each row of the table headed `| key | default | meaning |`, without
/// its backquotes.
fn documented_keys(reference: &str) -> BTreeSet<String> {
    let rows = reference
        .lines()
        .skip_while(|l| l.trim() != "| key | default | meaning |")
        .skip(2)
        .take_while(|l| l.starts_with('|'));
    let mut keys = BTreeSet::new();
    for line in rows {
        let cell = line.split('|').nth(1).unwrap_or_default().trim();
        let key = cell
            .strip_prefix('`')
            .and_then(|c| c.strip_suffix('`'))
            .unwrap_or_else(|| panic!("a key cell is `backquoted`: {line}"));
        keys.insert(key.to_string());
    }
    keys
}

#[test]
fn every_settings_key_has_its_row_in_the_configuration_reference_and_no_row_is_stale() {
    let (accepted, tables) = accepted_keys();
    assert!(
        tables >= MIN_SECTIONS && accepted.len() >= MIN_KEYS,
        "the unknown-field probe found {tables} sections and {} keys (at least {MIN_SECTIONS} \
         and {MIN_KEYS} expected): has serde's error message changed? {accepted:?}",
        accepted.len()
    );
    let documented = documented_keys(&read("docs/configuration.md"));

    let missing: Vec<String> = accepted
        .difference(&documented)
        .map(|k| format!("  | `{k}` | <default> | <meaning> |"))
        .collect();
    assert!(
        missing.is_empty(),
        "officeswitch.toml accepts keys that docs/configuration.md does not document; add \
         these rows to its table:\n{}",
        missing.join("\n")
    );
    let stale: Vec<&String> = documented.difference(&accepted).collect();
    assert!(
        stale.is_empty(),
        "docs/configuration.md documents keys officeswitch.toml does not accept: {stale:?}"
    );
}

/// The first ```toml block after `heading` in `markdown`.
fn toml_block_after<'a>(markdown: &'a str, heading: &str) -> &'a str {
    let section = &markdown[markdown.find(heading).expect(heading)..];
    let start = section.find("```toml\n").expect("a toml block") + "```toml\n".len();
    let end = section[start..].find("```").expect("the block's end");
    &section[start..start + end]
}

#[test]
fn the_readmes_minimal_configuration_loads() {
    let readme = read("README.md");
    let settings = toml_block_after(&readme, "## Minimal configuration");
    let config = Config::from_str(Path::new("/etc/officeswitch/officeswitch.toml"), settings)
        .unwrap_or_else(|e| panic!("README's minimal configuration: {e}"));

    let organisation = toml_block_after(&readme, "`rules/acme.toml`:");
    let rules = RuleSet::from_sources(
        (Path::new("rules/default.toml"), &read("rules/default.toml")),
        &[(Path::new("rules/acme.toml"), organisation)],
        &config.pools,
    )
    .unwrap_or_else(|e| panic!("README's organisation file: {e}"));
    assert_eq!(rules.organisations(), 1);
}
