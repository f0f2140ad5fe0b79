//! The Dockerfile and `.dockerignore`; the image where a Docker engine runs.

use super::*;

// ---------------------------------------------------------------------------------------
// Docker
// ---------------------------------------------------------------------------------------

/// One `FROM` stage of a Dockerfile: its `FROM` arguments and instructions.
struct Stage {
    from: Vec<String>,
    instructions: Vec<(String, String)>,
}

impl Stage {
    fn all<'a>(&'a self, instruction: &'static str) -> impl Iterator<Item = &'a str> + 'a {
        self.instructions
            .iter()
            .filter(move |(i, _)| i == instruction)
            .map(|(_, args)| args.as_str())
    }

    fn last(&self, instruction: &'static str) -> Option<&str> {
        self.all(instruction).last()
    }

    /// The stage's name (`FROM image AS name`).
    fn name(&self) -> Option<&str> {
        match self.from.as_slice() {
            [_, as_, name] if as_.eq_ignore_ascii_case("as") => Some(name),
            _ => None,
        }
    }
}

/// The Dockerfile's stages, with continuation lines joined and comments dropped.
fn dockerfile_stages() -> Vec<Stage> {
    let text = read("Dockerfile");
    let mut logical = Vec::new();
    let mut pending = String::new();
    for line in text.lines() {
        let trimmed = line.trim();
        // Docker drops comment lines, also inside a continued instruction.
        if trimmed.starts_with('#') {
            continue;
        }
        if let Some(continued) = trimmed.strip_suffix('\\') {
            pending.push_str(continued);
            pending.push(' ');
        } else {
            pending.push_str(trimmed);
            if !pending.trim().is_empty() {
                logical.push(std::mem::take(&mut pending));
            }
            pending.clear();
        }
    }
    let mut stages: Vec<Stage> = Vec::new();
    for line in logical {
        let (instruction, args) = line.split_once(' ').unwrap_or((&line, ""));
        let instruction = instruction.to_ascii_uppercase();
        if instruction == "FROM" {
            stages.push(Stage {
                from: args.split_whitespace().map(String::from).collect(),
                instructions: Vec::new(),
            });
        } else if let Some(stage) = stages.last_mut() {
            stage
                .instructions
                .push((instruction, args.trim().to_string()));
        }
    }
    stages
}

/// The numeric user the image runs as.
pub(super) fn dockerfile_uid() -> u64 {
    let stages = dockerfile_stages();
    let user = stages
        .last()
        .and_then(|s| s.last("USER"))
        .expect("the final stage sets USER");
    user.split(':')
        .next()
        .and_then(|u| u.parse().ok())
        .unwrap_or_else(|| panic!("USER {user}: use a numeric uid so runAsNonRoot can check it"))
}

/// `.dockerignore` as Docker applies it: the last matching pattern wins, `!` re-includes,
/// and a pattern matching a directory covers everything in it.
fn docker_ignored(path: &str, patterns: &[String]) -> bool {
    let mut ignored = false;
    let components: Vec<&str> = path.trim_matches('/').split('/').collect();
    for pattern in patterns {
        let (include, pattern) = match pattern.strip_prefix('!') {
            Some(p) => (true, p),
            None => (false, pattern.as_str()),
        };
        let pattern = pattern.trim_matches('/');
        let matches = (1..=components.len()).any(|n| {
            let prefix = components[..n].join("/");
            glob_match(pattern, &prefix)
        });
        if matches {
            ignored = !include;
        }
    }
    ignored
}

/// Docker's `filepath.Match` plus `**`: `*` within one path component, `**/` any depth.
fn glob_match(pattern: &str, path: &str) -> bool {
    if let Some(rest) = pattern.strip_prefix("**/") {
        let parts: Vec<&str> = path.split('/').collect();
        return (0..parts.len()).any(|i| glob_match(rest, &parts[i..].join("/")));
    }
    let (p_parts, s_parts): (Vec<&str>, Vec<&str>) =
        (pattern.split('/').collect(), path.split('/').collect());
    p_parts.len() == s_parts.len()
        && p_parts
            .iter()
            .zip(&s_parts)
            .all(|(p, s)| wildcard(p.as_bytes(), s.as_bytes()))
}

fn wildcard(p: &[u8], s: &[u8]) -> bool {
    match (p.first(), s.first()) {
        (None, None) => true,
        (Some(b'*'), _) => wildcard(&p[1..], s) || (!s.is_empty() && wildcard(p, &s[1..])),
        (Some(b'?'), Some(_)) => wildcard(&p[1..], &s[1..]),
        (Some(a), Some(b)) if a == b => wildcard(&p[1..], &s[1..]),
        _ => false,
    }
}

#[test]
fn dockerfile_builds_a_small_non_root_image_of_the_release_binary() {
    let stages = dockerfile_stages();
    let mut problems = Vec::new();
    assert!(
        stages.len() >= 2,
        "a multi-stage build: a Rust builder and a small runtime"
    );
    let builder = &stages[0];
    let runtime = stages.last().expect("a final stage");
    let builder_name = builder
        .name()
        .expect("the build stage is named (FROM ... AS builder)");
    if !builder
        .all("RUN")
        .any(|r| r.contains("cargo build --release --locked"))
    {
        problems.push("the builder does not run `cargo build --release --locked`".into());
    }
    // Dependencies are built in a layer before the sources are copied.
    let copies: Vec<&str> = builder.all("COPY").collect();
    let manifest = copies.iter().position(|c| c.contains("Cargo.lock"));
    let sources = copies.iter().position(|c| c.starts_with("src"));
    match (manifest, sources) {
        (Some(m), Some(s)) if m < s => {
            let between: Vec<&(String, String)> = builder
                .instructions
                .iter()
                .skip_while(|(i, a)| !(i == "COPY" && a.contains("Cargo.lock")))
                .take_while(|(i, a)| !(i == "COPY" && a.starts_with("src")))
                .collect();
            if !between
                .iter()
                .any(|(i, a)| i == "RUN" && a.contains("cargo build"))
            {
                problems.push("no dependency build between copying Cargo.lock and src".into());
            }
        }
        _ => problems
            .push("Cargo.toml/Cargo.lock are not copied before src (dependency layer)".into()),
    }
    let base = runtime.from.first().map(String::as_str).unwrap_or_default();
    if !(base.contains("slim") || base.contains("distroless")) {
        problems.push(format!(
            "runtime image {base}: use a slim or distroless base"
        ));
    }
    let binary_copy = runtime.all("COPY").find(|c| {
        c.starts_with(&format!("--from={builder_name} ")) && c.contains("release/officeswitch")
    });
    let binary = binary_copy
        .and_then(|c| c.split_whitespace().last())
        .expect("the runtime copies target/release/officeswitch from the builder");
    let entrypoint = runtime.last("ENTRYPOINT").unwrap_or_default();
    if !entrypoint.contains(binary) {
        problems.push(format!("ENTRYPOINT {entrypoint} does not run {binary}"));
    }
    if dockerfile_uid() == 0 {
        problems.push("USER is root".into());
    }
    if runtime.last("STOPSIGNAL") != Some("SIGTERM") {
        problems.push("STOPSIGNAL is not SIGTERM".into());
    }

    // The default configuration: where the image puts it, what it listens on, its rules.
    let config_copy = runtime
        .all("COPY")
        .find(|c| c.starts_with("deploy/docker/officeswitch.toml"))
        .expect("the runtime copies deploy/docker/officeswitch.toml");
    let config_path = PathBuf::from(config_copy.split_whitespace().last().unwrap_or_default());
    let config = Config::from_str(&config_path, &read("deploy/docker/officeswitch.toml"))
        .unwrap_or_else(|e| panic!("deploy/docker/officeswitch.toml: {e}"));
    if runtime.last("WORKDIR").map(Path::new) != config_path.parent() {
        problems.push(format!(
            "WORKDIR is not {}: `docker run IMAGE check-config` reads officeswitch.toml there",
            config_path.parent().unwrap_or(Path::new("")).display()
        ));
    }
    let listen = config.listen.expect("plain listener");
    if !listen.ip().is_unspecified() {
        problems.push(format!(
            "listen {listen}: a container must listen on all addresses"
        ));
    }
    let exposed: Vec<&str> = runtime
        .all("EXPOSE")
        .flat_map(str::split_whitespace)
        .collect();
    if !exposed
        .iter()
        .any(|p| p.split('/').next() == Some(&listen.port().to_string()))
    {
        problems.push(format!(
            "EXPOSE {exposed:?} does not include {}",
            listen.port()
        ));
    }
    let rules_copy = runtime.all("COPY").find(|c| c.starts_with("rules"));
    match rules_copy.and_then(|c| c.split_whitespace().last()) {
        Some(dest) if Path::new(dest.trim_end_matches('/')) == config.rules_dir => {}
        other => problems.push(format!(
            "rules/ is copied to {other:?}, rules_dir is {}",
            config.rules_dir.display()
        )),
    }
    if let Err(e) = RuleSet::load(&repo("rules"), &config.pools) {
        problems.push(format!(
            "the image's rules do not load with its settings: {e}"
        ));
    }
    let state = config.state_dir.display().to_string();
    if !runtime.all("VOLUME").any(|v| v.contains(&state)) {
        problems.push(format!("state_dir {state} is not a VOLUME"));
    }
    if !runtime
        .all("RUN")
        .any(|r| r.contains(&state) && (r.contains("install -d -o") || r.contains("chown")))
    {
        problems.push(format!(
            "state_dir {state} is not created for the image's user"
        ));
    }
    for key in [&config.keys.proof_key, &config.keys.token_secret] {
        if key.starts_with(&config.state_dir) && !config.keys.generate_missing {
            problems.push(format!(
                "{} is in the state volume but generate_missing is off",
                key.display()
            ));
        }
    }

    // The build context: what the Dockerfile copies is in it, build output is not.
    let patterns: Vec<String> = read(".dockerignore")
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .map(String::from)
        .collect();
    for path in [
        "target",
        "target/release/officeswitch",
        "state/keys/proof_key.pem",
    ] {
        if !docker_ignored(path, &patterns) {
            problems.push(format!(".dockerignore lets {path} into the build context"));
        }
    }
    for stage in &stages {
        for copy in stage.all("COPY").filter(|c| !c.starts_with("--from")) {
            let words: Vec<&str> = copy
                .split_whitespace()
                .filter(|w| !w.starts_with("--"))
                .collect();
            for source in &words[..words.len().saturating_sub(1)] {
                if !repo(source).exists() {
                    problems.push(format!("COPY {source}: no such file in the repository"));
                } else if docker_ignored(source, &patterns) {
                    problems.push(format!("COPY {source}: excluded by .dockerignore"));
                }
            }
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

#[test]
fn dockerignore_matching_follows_docker() {
    let patterns: Vec<String> = ["*", "!src/", "!deploy/docker/", "target/", "**/*.pem"]
        .map(String::from)
        .into();
    assert!(docker_ignored("target", &patterns));
    assert!(docker_ignored("README.md", &patterns));
    assert!(docker_ignored("deploy/kubernetes/config.yaml", &patterns));
    assert!(!docker_ignored(
        "deploy/docker/officeswitch.toml",
        &patterns
    ));
    assert!(!docker_ignored("src/main.rs", &patterns));
    assert!(docker_ignored("src/keys/a.pem", &patterns));
}

#[test]
fn docker_image_builds_and_runs_as_non_root() {
    let root = repo("");
    let engine = run_tool(
        "docker",
        &["info", "--format", "{{.ServerVersion}}"],
        &root,
        Duration::from_secs(20),
    );
    match engine {
        Some(out) if out.success => {}
        Some(out) => {
            skipped(
                "docker build",
                &format!(
                    "no Docker engine ({})",
                    out.stderr
                        .lines()
                        .find(|l| !l.trim().is_empty())
                        .unwrap_or("docker info failed")
                ),
            );
            return;
        }
        None => {
            skipped("docker build", "no docker client installed");
            return;
        }
    }
    let tag = format!("officeswitch-packaging-test:{}", std::process::id());
    let build = run_tool(
        "docker",
        &["build", "-t", &tag, "."],
        &root,
        Duration::from_secs(40 * 60),
    )
    .expect("docker answered a moment ago");
    assert!(build.success, "docker build:\n{}", build.text);
    let docker_run = |args: &[&str]| {
        let mut all = vec!["run", "--rm"];
        all.extend_from_slice(args);
        run_tool("docker", &all, &root, Duration::from_secs(60)).expect("docker")
    };
    let version = docker_run(&[&tag, "--version"]);
    let check = docker_run(&[&tag, "check-config"]);
    let uid = docker_run(&["--entrypoint", "id", &tag, "-u"]);
    let _ = run_tool(
        "docker",
        &["rmi", "-f", &tag],
        &root,
        Duration::from_secs(60),
    );
    assert!(
        version.success && version.stdout.contains(env!("CARGO_PKG_VERSION")),
        "officeswitch --version in the image:\n{}",
        version.text
    );
    assert!(check.success, "check-config in the image:\n{}", check.text);
    assert_eq!(
        uid.stdout.trim(),
        dockerfile_uid().to_string(),
        "{}",
        uid.text
    );
}
