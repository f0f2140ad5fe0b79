//! Tests of rules compilation, validation and lookups.

use super::*;
use crate::config::{Config, SuiteKind};

fn url(s: &str) -> Url {
    Url::parse(s).unwrap()
}

/// Two pools with two nodes each, written as `Config` normalises them.
fn pools() -> Vec<PoolConfig> {
    vec![
        PoolConfig {
            name: "collabora".into(),
            kind: SuiteKind::Collabora,
            nodes: vec![url("http://127.0.0.1:9980/"), url("http://127.0.0.1:9981/")],
            proof: Default::default(),
        },
        PoolConfig {
            name: "onlyoffice".into(),
            kind: SuiteKind::OnlyOffice,
            nodes: vec![
                url("http://127.0.0.1:8000/"),
                url("https://oo.example.org/prefix/"),
            ],
            proof: Default::default(),
        },
    ]
}

const DEFAULT: &str =
    "prefer = [\"collabora\"]\n[extensions]\ndocx = \"onlyoffice\"\nodt = \"collabora\"\n";

/// Compiles `default.toml` = [`DEFAULT`] plus organisation files `(name.toml, text)`.
fn compile(orgs: &[(&str, &str)]) -> Result<RuleSet, ConfigError> {
    let paths: Vec<PathBuf> = orgs
        .iter()
        .map(|(n, _)| Path::new("rules").join(n))
        .collect();
    let sources: Vec<(&Path, &str)> = paths
        .iter()
        .zip(orgs)
        .map(|(p, (_, text))| (p.as_path(), *text))
        .collect();
    RuleSet::from_sources(
        (Path::new("rules/default.toml"), DEFAULT),
        &sources,
        &pools(),
    )
}

/// The error one organisation file `acme.toml` gives.
fn org_error(text: &str) -> ConfigError {
    compile(&[("acme.toml", text)]).expect_err("the file should be refused")
}

#[test]
fn shipped_default_rules_compile() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("rules");
    let rules = RuleSet::load(&dir, &pools()).unwrap();
    assert_eq!(rules.owner_of("docx"), Some("onlyoffice"));
    assert_eq!(rules.owner_of("odg"), Some("collabora"));
    assert_eq!(rules.owner_of("pdf"), None);
    assert_eq!(rules.preference(), ["collabora", "onlyoffice"]);
    // The `.sample` is documentation, not an organisation.
    assert_eq!(rules.organisations(), 0);
}

#[test]
fn shipped_example_compiles_against_the_shipped_settings() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let config = Config::from_file(&root.join("officeswitch.toml")).unwrap();
    let sample = std::fs::read_to_string(root.join("rules/example-org.toml.sample")).unwrap();
    let default = std::fs::read_to_string(root.join("rules/default.toml")).unwrap();
    let rules = RuleSet::from_sources(
        (Path::new("rules/default.toml"), &default),
        &[(Path::new("rules/example-org.toml"), &sample)],
        &config.pools,
    )
    .unwrap();
    let org = rules
        .organisation_for(&url(
            "https://cloud.example.org:8443/index.php/apps/richdocuments/wopi/files/7",
        ))
        .unwrap();
    assert_eq!(org.name(), "example-org");
    assert_eq!(rules.pool_for(org, "docx"), Some("collabora"));
    assert_eq!(rules.pool_for(org, "xlsx"), Some("collabora"));
    assert_eq!(
        org.pinned_nodes("collabora"),
        Some(&config.pools[0].nodes[..1])
    );
}

#[test]
fn unknown_pool_is_located() {
    let src = "prefer = []\n[extensions]\ndocx = \"msoffice\"\n";
    let err = RuleSet::from_str(Path::new("r/default.toml"), src, &pools()).unwrap_err();
    assert_eq!(
        (err.key.as_str(), err.line),
        ("extensions.docx", Some(3)),
        "{err}"
    );
    assert!(err.message.contains("msoffice"));
}

#[test]
fn bad_extension_is_refused() {
    let src = "[extensions]\n\".docx\" = \"collabora\"\n";
    let err = RuleSet::from_str(Path::new("d.toml"), src, &pools()).unwrap_err();
    assert_eq!(err.key, "extensions..docx");
}

#[test]
fn preference_is_completed_with_unlisted_pools() {
    let src = "prefer = [\"onlyoffice\"]\n";
    let rules = RuleSet::from_str(Path::new("d.toml"), src, &pools()).unwrap();
    assert_eq!(rules.preference(), ["onlyoffice", "collabora"]);
}

const ACME: &str = r#"# Acme
origins = ["https://Cloud.Acme.example", "http://10.0.0.5:8080"]
all = "collabora"
[extensions]
xlsx = "onlyoffice"
[nodes]
collabora = ["http://127.0.0.1:9981"]
onlyoffice = ["https://OO.example.org:443/prefix", "http://127.0.0.1:8000/"]
"#;

const BETA: &str = "origins = [\"https://beta.example:8443\", \"https://[::1]\"]\n";

#[test]
fn organisations_are_found_by_origin() {
    let rules = compile(&[("acme.toml", ACME), ("beta.toml", BETA)]).unwrap();
    assert_eq!(rules.organisations(), 2);
    let org = |u: &str| rules.organisation_for(&url(u)).map(Organisation::name);
    let wopi = "/index.php/apps/richdocuments/wopi/files/12_oc";
    // Host case and the default port do not matter; Url normalises both.
    assert_eq!(
        org(&format!("https://cloud.acme.example{wopi}")),
        Some("acme")
    );
    assert_eq!(
        org(&format!("https://CLOUD.ACME.EXAMPLE:443{wopi}")),
        Some("acme")
    );
    assert_eq!(org("https://cloud.acme.example"), Some("acme"));
    // Scheme and port are part of the origin.
    assert_eq!(org(&format!("http://cloud.acme.example{wopi}")), None);
    assert_eq!(org(&format!("https://cloud.acme.example:8443{wopi}")), None);
    // IP literals in any spelling normalise to the same address.
    assert_eq!(org("http://10.0.0.5:8080/x"), Some("acme"));
    assert_eq!(org("http://0x0a.0.0.5:8080/x"), Some("acme"));
    assert_eq!(org("http://10.0.0.5/x"), None);
    assert_eq!(org("https://beta.example:8443/x"), Some("beta"));
    assert_eq!(org("https://beta.example/x"), None);
    assert_eq!(org("https://[0:0::1]:443/x"), Some("beta"));
    // Unknown hosts and non-http schemes belong to nobody.
    assert_eq!(org("https://unknown.example/x"), None);
    assert_eq!(org("ftp://cloud.acme.example/x"), None);
    assert_eq!(org("wss://cloud.acme.example/x"), None);
    assert_eq!(org("https://cloud.acme.example.evil.example/x"), None);

    let acme = rules
        .organisation_for(&url("https://cloud.acme.example/"))
        .unwrap();
    assert_eq!(
        acme.origins(),
        ["https://cloud.acme.example:443", "http://10.0.0.5:8080"]
    );
}

#[test]
fn pool_precedence_is_extension_then_all_then_default() {
    let rules = compile(&[("acme.toml", ACME), ("beta.toml", BETA)]).unwrap();
    let acme = rules
        .organisation_for(&url("https://cloud.acme.example/"))
        .unwrap();
    let beta = rules
        .organisation_for(&url("https://beta.example:8443/"))
        .unwrap();
    assert_eq!(rules.pool_for(acme, "xlsx"), Some("onlyoffice")); // extension override
    assert_eq!(rules.pool_for(acme, "docx"), Some("collabora")); // `all` beats default
    assert_eq!(rules.pool_for(acme, "pdf"), Some("collabora")); // `all` covers everything
    assert_eq!(rules.pool_for(beta, "docx"), Some("onlyoffice")); // default.toml
    assert_eq!(rules.pool_for(beta, "odt"), Some("collabora"));
    assert_eq!(rules.pool_for(beta, "pdf"), None); // nothing names it

    let ext_only = "origins = [\"https://c.example\"]\n[extensions]\ndocx = \"collabora\"\n";
    let rules = compile(&[("c.toml", ext_only)]).unwrap();
    let c = rules.organisation_for(&url("https://c.example/")).unwrap();
    assert_eq!(rules.pool_for(c, "docx"), Some("collabora"));
    assert_eq!(rules.pool_for(c, "xlsx"), None);
    assert_eq!(rules.pool_for(c, "odt"), Some("collabora"));
}

#[test]
fn pinned_nodes_are_the_pools_own_urls() {
    let rules = compile(&[("acme.toml", ACME), ("beta.toml", BETA)]).unwrap();
    let acme = rules
        .organisation_for(&url("https://cloud.acme.example/"))
        .unwrap();
    let beta = rules
        .organisation_for(&url("https://beta.example:8443/"))
        .unwrap();
    assert_eq!(
        acme.pinned_nodes("collabora"),
        Some(&[url("http://127.0.0.1:9981/")][..])
    );
    let oo = acme.pinned_nodes("onlyoffice").unwrap();
    assert_eq!(
        oo,
        [pools()[1].nodes[1].clone(), pools()[1].nodes[0].clone()]
    );
    assert_eq!(acme.pinned_nodes("nope"), None);
    assert_eq!(beta.pinned_nodes("collabora"), None);
}

#[test]
fn pinned_nodes_match_nodes_as_the_settings_parse_them() {
    let settings = r#"
public_url = "https://office.example.org"
listen = "127.0.0.1:0"
[keys]
proof_key = "k.pem"
[[pool]]
name = "collabora"
kind = "collabora"
nodes = ["http://127.0.0.1:9980", "https://COOL.example.org:443/cool"]
"#;
    let config = Config::from_str(Path::new("officeswitch.toml"), settings).unwrap();
    let org = "origins = [\"https://a.example\"]\n[nodes]\ncollabora = [\"https://cool.example.org/cool/\", \"http://127.0.0.1:9980/\"]\n";
    let rules = RuleSet::from_sources(
        (Path::new("default.toml"), ""),
        &[(Path::new("a.toml"), org)],
        &config.pools,
    )
    .unwrap();
    let a = rules.organisation_for(&url("https://a.example/")).unwrap();
    let pinned = a.pinned_nodes("collabora").unwrap();
    assert_eq!(
        pinned,
        [
            config.pools[0].nodes[1].clone(),
            config.pools[0].nodes[0].clone()
        ]
    );
}

/// Every validation error names the right key and line.
#[test]
fn organisation_errors_are_located() {
    let cases: &[(&str, &str, usize, &str)] = &[
        // (file text, key, line, part of the message)
        (
            "origins = [\"https://a\"]\nall = \"msoffice\"\n",
            "all",
            2,
            "no pool named `msoffice`",
        ),
        (
            "origins = [\"https://a\"]\n[extensions]\ndocx = \"msoffice\"\n",
            "extensions.docx",
            3,
            "msoffice",
        ),
        (
            "origins = [\"https://a\"]\n[extensions]\nDOCX = \"collabora\"\n",
            "extensions.DOCX",
            3,
            "lower-case",
        ),
        (
            "origins = [\"https://a\"]\n[extensions]\n\".docx\" = \"collabora\"\n",
            "extensions..docx",
            3,
            "without the dot",
        ),
        (
            "origins = [\"https://a/nextcloud\"]\n",
            "origins[0]",
            1,
            "a path (`/nextcloud`)",
        ),
        (
            "origins = [\"https://a/?x=1\"]\n",
            "origins[0]",
            1,
            "a query",
        ),
        (
            "origins = [\"https://a#top\"]\n",
            "origins[0]",
            1,
            "a fragment",
        ),
        (
            "origins = [\"https://user@a\"]\n",
            "origins[0]",
            1,
            "credentials",
        ),
        (
            "origins = [\"https://:secret@a\"]\n",
            "origins[0]",
            1,
            "credentials",
        ),
        ("origins = [\"ftp://a\"]\n", "origins[0]", 1, "not `ftp:`"),
        (
            "origins = [\"file:///etc\"]\n",
            "origins[0]",
            1,
            "not `file:`",
        ),
        (
            "origins = [\"cloud.example.org\"]\n",
            "origins[0]",
            1,
            "not a URL",
        ),
        ("origins = [\"https://\"]\n", "origins[0]", 1, "not a URL"),
        ("# x\norigins = []\n", "origins", 2, "at least one origin"),
        (
            "origins = [\n  \"https://a\",\n  \"https://A:443/\",\n]\n",
            "origins[1]",
            3,
            "listed twice (also origins[0], line 2)",
        ),
        (
            "origins = [\"http://127.1\", \"http://127.0.0.1:80\"]\n",
            "origins[1]",
            1,
            "listed twice",
        ),
        (
            "origins = [\"https://a\"]\n[nodes]\ncollabora = [\"http://127.0.0.1:9999\"]\n",
            "nodes.collabora[0]",
            3,
            "not a node of pool `collabora`",
        ),
        (
            "origins = [\"https://a\"]\n[nodes]\nonlyoffice = [\"https://oo.example.org/other\"]\n",
            "nodes.onlyoffice[0]",
            3,
            "not a node of pool `onlyoffice`",
        ),
        (
            "origins = [\"https://a\"]\n[nodes]\ncollabora = [\n  \"http://127.0.0.1:9980\",\n  \"http://127.0.0.1:9980/\",\n]\n",
            "nodes.collabora[1]",
            5,
            "listed twice",
        ),
        (
            "origins = [\"https://a\"]\n[nodes]\ncollabora = [\"http://u@127.0.0.1:9980\"]\n",
            "nodes.collabora[0]",
            3,
            "credentials",
        ),
        (
            "origins = [\"https://a\"]\n[nodes]\ncollabora = []\n",
            "nodes.collabora",
            3,
            "at least one node",
        ),
        (
            "origins = [\"https://a\"]\n[nodes]\nmsoffice = [\"http://127.0.0.1:9980\"]\n",
            "nodes.msoffice",
            3,
            "no pool named `msoffice`",
        ),
        (
            "origins = [\"https://a\"]\n\nalll = \"collabora\"\n",
            "alll",
            3,
            "unknown field",
        ),
        (
            "origins = [\"https://a\"]\n[extensions]\ndocx = 3\n",
            "",
            3,
            "string",
        ),
    ];
    for (text, key, line, message) in cases {
        let err = org_error(text);
        assert_eq!(
            (err.key.as_str(), err.line),
            (*key, Some(*line)),
            "for {text:?}: {err}"
        );
        assert!(err.message.contains(message), "for {text:?}: {err}");
        assert_eq!(err.file, Path::new("rules/acme.toml"), "{err}");
        assert!(
            err.to_string()
                .starts_with(&format!("rules/acme.toml:{line}: ")),
            "{err}"
        );
    }
}

#[test]
fn missing_origins_is_refused() {
    let err = org_error("all = \"collabora\"\n");
    assert!(err.message.contains("origins"), "{err}");
}

#[test]
fn duplicate_origin_across_organisations_names_the_other_file() {
    let first = "# first\n\norigins = [\"https://shared.example\", \"https://a.example\"]\n";
    let second = "origins = [\n  \"https://b.example\",\n  \"https://SHARED.example:443\",\n]\n";
    let err = compile(&[("alpha.toml", first), ("beta.toml", second)]).unwrap_err();
    assert_eq!(err.file, Path::new("rules/beta.toml"));
    assert_eq!(
        (err.key.as_str(), err.line),
        ("origins[1]", Some(3)),
        "{err}"
    );
    assert!(
        err.message
            .contains("already belongs to organisation `alpha` (rules/alpha.toml:3)"),
        "{err}"
    );
    // Different scheme or port: different origins, both fine.
    let third = "origins = [\"http://shared.example\", \"https://shared.example:8443\"]\n";
    let rules = compile(&[("alpha.toml", first), ("gamma.toml", third)]).unwrap();
    assert_eq!(rules.organisations(), 2);
}

#[test]
fn organisation_file_names_are_checked() {
    let err = compile(&[("my org.toml", "origins = [\"https://a\"]\n")]).unwrap_err();
    assert_eq!(err.file, Path::new("rules/my org.toml"));
    assert!(err.message.contains("letters, digits"), "{err}");
}

#[test]
fn load_reads_every_organisation_file_and_skips_the_rest() {
    let dir = tempfile::tempdir().unwrap();
    let write = |name: &str, text: &str| std::fs::write(dir.path().join(name), text).unwrap();
    write("default.toml", DEFAULT);
    write("acme.toml", ACME);
    write("beta.toml", BETA);
    write("example-org.toml.sample", "this is not TOML");
    write(".#acme.toml", "editor lock file, not TOML");
    write(".acme.toml.swp", "swap file");
    write("README", "notes");
    std::fs::create_dir(dir.path().join("old.toml")).unwrap();
    let rules = RuleSet::load(dir.path(), &pools()).unwrap();
    assert_eq!(rules.organisations(), 2);
    let beta = rules
        .organisation_for(&url("https://beta.example:8443/"))
        .unwrap();
    assert_eq!(beta.name(), "beta");

    write("zeta.toml", "origins = [\"https://beta.example:8443\"]\n");
    let err = RuleSet::load(dir.path(), &pools()).unwrap_err();
    assert_eq!(err.file, dir.path().join("zeta.toml"));
    assert!(err.message.contains("organisation `beta`"), "{err}");
}

#[test]
fn missing_directory_or_default_file_is_an_error() {
    let dir = tempfile::tempdir().unwrap();
    let err = RuleSet::load(dir.path(), &pools()).unwrap_err();
    assert_eq!(err.file, dir.path().join("default.toml"));
    let err = RuleSet::load(&dir.path().join("absent"), &pools()).unwrap_err();
    assert!(err.message.contains("cannot read"), "{err}");
}
