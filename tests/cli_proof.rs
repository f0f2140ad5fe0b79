//! `officeswitch proof sign` and `proof verify` as a hoster runs them: sign with a key from
//! `keys generate`, verify the printed headers against a discovery file, refuse a tampered URL.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a panic is a failure

use std::path::Path;
use std::process::{Command, Output};

use officeswitch::wopi::proof_key::ProofKey;

const BIN: &str = env!("CARGO_BIN_EXE_officeswitch");
const URL: &str =
    "https://nc.example/index.php/apps/richdocuments/wopi/files/42_oc?access_token=tok-1";

fn run(args: &[&str]) -> Output {
    // No settings file exists in the temp dir: the proof commands must not need one.
    Command::new(BIN)
        .args(args)
        .output()
        .expect("run officeswitch")
}

fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// A minimal discovery carrying `key` as the current and old proof key.
fn write_discovery(path: &Path, key: Option<&ProofKey>) {
    let proof_key = key.map_or(String::new(), |key| {
        let public = key.public();
        format!(
            "<proof-key value=\"{}\" modulus=\"{}\" exponent=\"{}\"/>",
            public.capi_blob_b64(),
            public.modulus_b64(),
            public.exponent_b64()
        )
    });
    let xml = format!(
        "<?xml version=\"1.0\" encoding=\"utf-8\"?>\n<wopi-discovery><net-zone \
         name=\"external-http\"><app name=\"writer\"><action name=\"edit\" ext=\"odt\" \
         urlsrc=\"https://editor.example/browser/x/cool.html?\"/></app></net-zone>{proof_key}\
         </wopi-discovery>\n"
    );
    std::fs::write(path, xml).expect("write discovery");
}

#[test]
fn sign_then_verify_with_the_binary() {
    let dir = tempfile::tempdir().expect("tempdir");
    let key_path = dir.path().join("proof_key.pem");
    let key_arg = key_path.to_str().expect("utf-8 path");
    let generated = run(&["keys", "generate", "--out", key_arg]);
    assert!(generated.status.success(), "{generated:?}");

    let signed = run(&[
        "proof", "sign", "--url", URL, "--token", "tok-1", "--key", key_arg,
    ]);
    assert!(signed.status.success(), "{signed:?}");
    let text = stdout(&signed);
    let header = |name: &str| {
        text.lines()
            .find_map(|line| line.strip_prefix(&format!("{name}: ")))
            .unwrap_or_else(|| panic!("no {name} line in {text}"))
            .to_owned()
    };
    let (timestamp, proof, proof_old) = (
        header("X-WOPI-TimeStamp"),
        header("X-WOPI-Proof"),
        header("X-WOPI-ProofOld"),
    );
    assert_eq!(text.lines().count(), 3, "{text}");
    assert_eq!(proof, proof_old, "no old key: ProofOld repeats Proof");

    let key = ProofKey::load(&key_path).expect("load key");
    let discovery = dir.path().join("discovery.xml");
    write_discovery(&discovery, Some(&key));
    let discovery_arg = discovery.to_str().expect("utf-8 path");
    let verify = |url: &str, keys: &[&str]| {
        let mut args = vec![
            "proof",
            "verify",
            "--url",
            url,
            "--token",
            "tok-1",
            "--timestamp",
            &timestamp,
            "--proof",
            &proof,
            "--proof-old",
            &proof_old,
        ];
        args.extend_from_slice(keys);
        run(&args)
    };

    let valid = verify(URL, &["--discovery", discovery_arg]);
    assert_eq!(valid.status.code(), Some(0), "{valid:?}");
    assert_eq!(stdout(&valid).trim(), "valid (proof with current key)");

    let (modulus, exponent) = (key.public().modulus_b64(), key.public().exponent_b64());
    let valid = verify(URL, &["--modulus", &modulus, "--exponent", &exponent]);
    assert_eq!(valid.status.code(), Some(0), "{valid:?}");

    let tampered = verify(
        &URL.replace("42_oc", "43_oc"),
        &["--discovery", discovery_arg],
    );
    assert_eq!(tampered.status.code(), Some(1), "{tampered:?}");
    assert!(
        stdout(&tampered).starts_with("invalid: no_match"),
        "{tampered:?}"
    );

    // A timestamp from an hour before `--now`: stale, unless only signatures are checked.
    let now = (timestamp.parse::<u64>().expect("ticks") + 36_000_000_000).to_string();
    let stale = verify(URL, &["--discovery", discovery_arg, "--now", &now]);
    assert_eq!(stale.status.code(), Some(1), "{stale:?}");
    assert!(stdout(&stale).starts_with("invalid: stale (X-WOPI-TimeStamp is 3600 s old"));

    // A discovery without a proof-key cannot check anything: exit 2 with the reason.
    let unsigned = dir.path().join("unsigned.xml");
    write_discovery(&unsigned, None);
    let cannot = verify(
        URL,
        &["--discovery", unsigned.to_str().expect("utf-8 path")],
    );
    assert_eq!(cannot.status.code(), Some(2), "{cannot:?}");
    assert!(String::from_utf8_lossy(&cannot.stderr).contains("no <proof-key>"));

    // No key source at all is a usage error.
    let usage = verify(URL, &[]);
    assert_eq!(usage.status.code(), Some(2), "{usage:?}");
}
