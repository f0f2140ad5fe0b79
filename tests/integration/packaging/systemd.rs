//! The systemd unit: officeswitch's command line, signals and room for the drain.

use super::*;

// ---------------------------------------------------------------------------------------
// systemd
// ---------------------------------------------------------------------------------------

/// A unit file: section -> (key, value) in order (keys may repeat).
fn parse_unit(text: &str) -> BTreeMap<String, Vec<(String, String)>> {
    let mut sections: BTreeMap<String, Vec<(String, String)>> = BTreeMap::new();
    let mut current = String::new();
    for line in text.lines().map(str::trim) {
        if line.is_empty() || line.starts_with('#') || line.starts_with(';') {
            continue;
        }
        if let Some(name) = line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
            current = name.to_string();
            sections.entry(current.clone()).or_default();
        } else if let Some((key, value)) = line.split_once('=') {
            sections
                .entry(current.clone())
                .or_default()
                .push((key.trim().to_string(), value.trim().to_string()));
        }
    }
    sections
}

/// A systemd time span (`90`, `90s`, `1min 30s`, `2m`) in seconds.
fn systemd_seconds(span: &str) -> Option<u64> {
    let mut total = 0;
    for part in span.split_whitespace() {
        let digits: String = part.chars().take_while(char::is_ascii_digit).collect();
        let value: u64 = digits.parse().ok()?;
        total += value
            * match &part[digits.len()..] {
                "" | "s" | "sec" | "second" | "seconds" => 1,
                "m" | "min" | "minute" | "minutes" => 60,
                "h" | "hr" | "hour" | "hours" => 3600,
                _ => return None,
            };
    }
    Some(total)
}

const UNIT: &str = "deploy/systemd/officeswitch.service";

#[test]
fn systemd_unit_runs_officeswitch_with_room_for_the_drain() {
    let unit = parse_unit(&read(UNIT));
    let unit_name = Path::new(UNIT)
        .file_name()
        .and_then(|n| n.to_str())
        .unwrap_or_default();
    let mut problems = Vec::new();
    for section in ["Unit", "Service", "Install"] {
        if !unit.contains_key(section) {
            problems.push(format!("no [{section}] section"));
        }
    }
    let service = unit.get("Service").cloned().unwrap_or_default();
    let values = |key: &str| -> Vec<&str> {
        service
            .iter()
            .filter(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
            .collect()
    };
    let value = |key: &str| values(key).last().copied().unwrap_or_default();

    // ExecStart runs the binary on the example settings, which officeswitch's loader accepts.
    let exec: Vec<&str> = value("ExecStart").split_whitespace().collect();
    if !exec
        .first()
        .is_some_and(|b| b.starts_with('/') && b.ends_with("/officeswitch"))
    {
        problems.push(format!(
            "ExecStart {exec:?} does not run an absolute .../officeswitch"
        ));
    }
    let config_path = exec
        .iter()
        .position(|a| *a == "--config")
        .and_then(|at| exec.get(at + 1))
        .map(PathBuf::from)
        .expect("ExecStart passes --config");
    let config = Config::from_str(&config_path, &read("deploy/systemd/officeswitch.toml"))
        .unwrap_or_else(|e| panic!("deploy/systemd/officeswitch.toml: {e}"));

    if !matches!(value("Type"), "simple" | "exec") {
        problems.push(format!(
            "Type={}: officeswitch does not notify or fork",
            value("Type")
        ));
    }
    if value("KillSignal") != "SIGTERM" {
        problems.push("KillSignal is not SIGTERM (the drain signal)".into());
    }
    let reload = value("ExecReload");
    if !(reload.contains("kill") && reload.contains("-HUP") && reload.contains("$MAINPID")) {
        problems.push(format!("ExecReload={reload}: SIGHUP reloads the rules"));
    }
    match systemd_seconds(value("TimeoutStopSec")) {
        Some(stop) if Duration::from_secs(stop) > config.drain.deadline => {}
        other => problems.push(format!(
            "TimeoutStopSec {other:?} s is not longer than [drain] deadline {:?}",
            config.drain.deadline
        )),
    }

    // Identity and files: a non-root user whose state directory is state_dir, and key
    // files it can read (credentials of this unit, or its state directory).
    if value("DynamicUser") != "yes" && matches!(value("User"), "" | "root" | "0") {
        problems.push("neither DynamicUser=yes nor a non-root User=".into());
    }
    let state = format!("/var/lib/{}", value("StateDirectory"));
    if value("StateDirectory").is_empty() || config.state_dir != Path::new(&state) {
        problems.push(format!(
            "state_dir {} is not StateDirectory= ({state})",
            config.state_dir.display()
        ));
    }
    let credentials_dir = PathBuf::from(format!("/run/credentials/{unit_name}"));
    let credentials: BTreeSet<&str> = values("LoadCredential")
        .iter()
        .filter_map(|v| v.split_once(':').map(|(name, _)| name))
        .collect();
    let mut key_files = vec![
        config.keys.proof_key.clone(),
        config.keys.token_secret.clone(),
    ];
    key_files.extend(config.admin.as_ref().map(|a| a.token_file.clone()));
    for path in key_files {
        let credential = path
            .strip_prefix(&credentials_dir)
            .ok()
            .and_then(|p| p.to_str());
        let ok = match credential {
            Some(name) => credentials.contains(name),
            None => path.starts_with(&config.state_dir),
        };
        if !ok {
            problems.push(format!(
                "{}: neither a LoadCredential= of {unit_name} nor in the state directory",
                path.display()
            ));
        }
    }

    // Hardening.
    for (key, expected) in [
        ("NoNewPrivileges", "yes"),
        ("ProtectSystem", "strict"),
        ("ProtectHome", "yes"),
        ("PrivateTmp", "yes"),
        ("PrivateDevices", "yes"),
        ("RestrictSUIDSGID", "yes"),
    ] {
        if value(key) != expected {
            problems.push(format!("{key} is not {expected}"));
        }
    }
    let listen = config.listen.expect("plain listener").port();
    if listen < 1024 && !value("AmbientCapabilities").contains("CAP_NET_BIND_SERVICE") {
        problems.push(format!("listens on {listen} without CAP_NET_BIND_SERVICE"));
    }
    if value("LimitNOFILE").parse::<u64>().unwrap_or(0) < 16_384 {
        problems.push("LimitNOFILE below 16384: each WebSocket tunnel holds two sockets".into());
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

#[test]
fn systemd_unit_passes_systemd_analyze_verify() {
    // verify checks that the binaries exist: point the unit at the one cargo built.
    let dir = tempfile::tempdir().expect("temp dir");
    let unit_name = Path::new(UNIT).file_name().expect("unit file name");
    let unit = dir.path().join(unit_name);
    let text = read(UNIT).replace(
        "/usr/local/bin/officeswitch",
        env!("CARGO_BIN_EXE_officeswitch"),
    );
    std::fs::write(&unit, text).expect("write unit");
    let unit_arg = unit.display().to_string();
    let Some(out) = run_tool(
        "systemd-analyze",
        &["verify", &unit_arg],
        dir.path(),
        Duration::from_secs(60),
    ) else {
        skipped("systemd-analyze verify", "systemd-analyze not installed");
        return;
    };
    // verify exits 0 on unknown keys and bad values but names the file in its warnings.
    let name = unit_name.to_string_lossy();
    let warnings: Vec<&str> = out
        .text
        .lines()
        .filter(|l| l.contains(name.as_ref()))
        .collect();
    assert!(
        out.success && warnings.is_empty(),
        "systemd-analyze verify:\n{}",
        out.text
    );
}
