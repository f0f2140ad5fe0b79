//! WOPI proofs: the `X-WOPI-Proof`, `X-WOPI-ProofOld` and `X-WOPI-TimeStamp` headers.
//!
//! An editor signs each WOPI call so the host knows it came from the editor it trusts
//! (Microsoft's "Verifying that requests originate from Office", here called [MS-PK]).
//! officeswitch checks the proofs editors send ([`verify`]) and, because it forwards the call
//! with another URL and token, signs the forwarded call again with its own key ([`Signer`]).
//!
//! The signed bytes, the signature algorithm and the key-rotation rule follow [MS-PK]; Collabora
//! (`wsd/ProofKey.cpp`), OnlyOffice (`wopiUtils.js`) and Nextcloud richdocuments
//! (`ProofKeyService.php`, `WOPIMiddleware.php`) agree on them, and richdocuments is the host
//! officeswitch's signatures must satisfy. Notes: `shared/notes/proof-keys.md`.

use std::fmt;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, STANDARD_PAD_INDIFFERENT};
use http::header::{HeaderMap, HeaderName, HeaderValue};

use crate::discovery::ProofKeyPair;
use crate::wopi::proof_key::{KeyError, ProofKey};

/// Oldest accepted `X-WOPI-TimeStamp`: 20 minutes (WOPI spec; richdocuments checks the same).
/// It bounds how long a captured proof can be replayed.
pub const MAX_AGE: Duration = Duration::from_secs(20 * 60);

/// How far in the future a timestamp may be. Editor nodes and officeswitch run on different
/// machines whose clocks drift, so a few minutes ahead is clock skew, not an attack; but an
/// unbounded future timestamp would keep a captured proof fresh for as long as its timestamp is
/// ahead, defeating [`MAX_AGE`]. richdocuments has no such check; [MS-PK] does not forbid one.
const MAX_AHEAD: Duration = Duration::from_secs(5 * 60);

/// .NET ticks per second (one tick is 100 ns).
const TICKS_PER_SEC: u64 = 10_000_000;
/// .NET ticks of 1970-01-01T00:00:00Z.
const UNIX_EPOCH_TICKS: u64 = 621_355_968_000_000_000;

const TIMESTAMP: HeaderName = HeaderName::from_static("x-wopi-timestamp");
const PROOF: HeaderName = HeaderName::from_static("x-wopi-proof");
const PROOF_OLD: HeaderName = HeaderName::from_static("x-wopi-proofold");

/// .NET ticks (100 ns since 0001-01-01T00:00:00Z) of `time`: the unit of `X-WOPI-TimeStamp`.
/// Saturates at 0 and `u64::MAX` for times no clock reports.
pub fn ticks(time: SystemTime) -> u64 {
    let ticks = match time.duration_since(UNIX_EPOCH) {
        Ok(since) => u128::from(UNIX_EPOCH_TICKS) + since.as_nanos() / 100,
        Err(before) => {
            u128::from(UNIX_EPOCH_TICKS).saturating_sub(before.duration().as_nanos() / 100)
        }
    };
    u64::try_from(ticks).unwrap_or(u64::MAX)
}

/// The current time in .NET ticks.
pub fn ticks_now() -> u64 {
    ticks(SystemTime::now())
}

/// The signed bytes: u32be len + access_token, u32be len + URL upper-cased (ASCII), u32be 8 +
/// u64be ticks. Only ASCII letters are upper-cased, as Collabora does; hosts upper-case with
/// Unicode rules, which agree for the percent-encoded URLs WOPI uses.
pub fn message(access_token: &str, url: &str, ticks: u64) -> Vec<u8> {
    let mut out = Vec::with_capacity(4 + access_token.len() + 4 + url.len() + 4 + 8);
    out.extend_from_slice(&len_u32(access_token).to_be_bytes());
    out.extend_from_slice(access_token.as_bytes());
    out.extend_from_slice(&len_u32(url).to_be_bytes());
    out.extend(url.bytes().map(|b| b.to_ascii_uppercase()));
    out.extend_from_slice(&8u32.to_be_bytes());
    out.extend_from_slice(&ticks.to_be_bytes());
    out
}

/// A length prefix. Header values and URLs are far below 4 GiB; a longer string cannot be
/// signed meaningfully anyway, so it saturates instead of panicking.
fn len_u32(text: &str) -> u32 {
    u32::try_from(text.len()).unwrap_or(u32::MAX)
}

/// The three proof headers of a request, as received (strings, not yet decoded).
#[derive(Debug, Clone, Default)]
pub struct ProofHeaders {
    /// `X-WOPI-TimeStamp`: decimal .NET ticks.
    pub timestamp: Option<String>,
    /// `X-WOPI-Proof`: base64 signature with the editor's current key.
    pub proof: Option<String>,
    /// `X-WOPI-ProofOld`: base64 signature with the editor's previous key (old editors omit it).
    pub proof_old: Option<String>,
}

impl ProofHeaders {
    /// Reads `X-WOPI-TimeStamp`, `X-WOPI-Proof` and `X-WOPI-ProofOld` (the first value of
    /// each). Bytes that are not UTF-8 are kept lossily, so such a header still counts as
    /// present and then fails to decode.
    pub fn from_headers(headers: &HeaderMap) -> Self {
        let get = |name: &HeaderName| {
            headers
                .get(name)
                .map(|value| String::from_utf8_lossy(value.as_bytes()).into_owned())
        };
        Self {
            timestamp: get(&TIMESTAMP),
            proof: get(&PROOF),
            proof_old: get(&PROOF_OLD),
        }
    }

    /// True when the request carries no `X-WOPI-Proof` (an empty value counts as none): the
    /// editor does not sign, or the call did not come from an editor.
    pub fn is_absent(&self) -> bool {
        present(self.proof.as_deref()).is_none()
    }
}

/// A header value, unless missing or blank.
fn present(value: Option<&str>) -> Option<&str> {
    value.map(str::trim).filter(|v| !v.is_empty())
}

/// Which rule accepted a proof (for logs/metrics).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProofMatch {
    /// `X-WOPI-Proof` verified with the current key: the usual case.
    ProofWithCurrent,
    /// `X-WOPI-Proof` verified with the old key: the editor still signs with a key the
    /// discovery now lists as old (the host refreshed discovery before the editor rotated).
    ProofWithOld,
    /// `X-WOPI-ProofOld` verified with the current key: the editor rotated its key but the
    /// discovery read here predates the rotation.
    ProofOldWithCurrent,
}

impl ProofMatch {
    /// Human wording, for the command line.
    fn describe(self) -> &'static str {
        match self {
            Self::ProofWithCurrent => "proof with current key",
            Self::ProofWithOld => "proof with old key",
            Self::ProofOldWithCurrent => "proof-old with current key",
        }
    }
}

/// Why a proof is refused. Display never prints a proof, token or URL value, only the reason,
/// so it can go to logs.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProofError {
    /// No `X-WOPI-Proof` header (or an empty one).
    #[error("no X-WOPI-Proof header")]
    Missing,
    /// A proof but no `X-WOPI-TimeStamp`, so the signed bytes cannot be rebuilt.
    #[error("X-WOPI-Proof without X-WOPI-TimeStamp")]
    MissingTimestamp,
    /// `X-WOPI-TimeStamp` is not a decimal `u64`.
    #[error("X-WOPI-TimeStamp is not a decimal tick count")]
    BadTimestamp,
    /// The timestamp is older than [`MAX_AGE`].
    #[error("X-WOPI-TimeStamp is {age_secs} s old, more than the {} s allowed", MAX_AGE.as_secs())]
    Stale {
        /// Age in seconds, rounded up.
        age_secs: u64,
    },
    /// The timestamp is ahead of now by more than the allowed clock skew.
    #[error(
        "X-WOPI-TimeStamp is {ahead_secs} s in the future, more than the {} s of clock skew allowed",
        MAX_AHEAD.as_secs()
    )]
    InFuture {
        /// How far ahead, in seconds, rounded up.
        ahead_secs: u64,
    },
    /// A proof header that is not base64.
    #[error("X-WOPI-Proof or X-WOPI-ProofOld is not base64")]
    BadEncoding,
    /// Well-formed, but no signature verifies with any key.
    #[error("no proof verifies with the editor's current or old key")]
    NoMatch,
}

impl ProofError {
    /// A short snake_case label for metrics and structured logs.
    pub fn reason(&self) -> &'static str {
        match self {
            Self::Missing => "missing",
            Self::MissingTimestamp => "missing_timestamp",
            Self::BadTimestamp => "bad_timestamp",
            Self::Stale { .. } => "stale",
            Self::InFuture { .. } => "in_future",
            Self::BadEncoding => "bad_encoding",
            Self::NoMatch => "no_match",
        }
    }
}

/// Verifies a request's proof against every key pair given: a pool may have several nodes with
/// distinct keys, and any pair may match. An empty `keys` matches nothing.
///
/// Per pair the rule is [MS-PK]'s (also richdocuments'): `X-WOPI-Proof` with the current key, or
/// `X-WOPI-Proof` with the old key, or `X-WOPI-ProofOld` with the current key. The rules are tried
/// in that order across all pairs, so the common case costs one RSA verification per distinct
/// current key; keys repeated across pairs (a pool sharing one key, `old == current`) are tried
/// once. The timestamp is checked first, so replays cost no RSA work: older than [`MAX_AGE`] is
/// [`ProofError::Stale`], more than 5 minutes ahead of `now_ticks` is [`ProofError::InFuture`].
///
/// `access_token` and `url` are what the editor signed: the token as sent and the full URL it
/// called, query included.
pub fn verify(
    headers: &ProofHeaders,
    access_token: &str,
    url: &str,
    keys: &[&ProofKeyPair],
    now_ticks: u64,
) -> Result<ProofMatch, ProofError> {
    let proof = present(headers.proof.as_deref()).ok_or(ProofError::Missing)?;
    let timestamp = present(headers.timestamp.as_deref()).ok_or(ProofError::MissingTimestamp)?;
    let ticks: u64 = timestamp.parse().map_err(|_| ProofError::BadTimestamp)?;
    check_window(ticks, now_ticks)?;
    let proof = decode(proof)?;
    let message = message(access_token, url, ticks);

    for (i, pair) in keys.iter().enumerate() {
        if !keys[..i].iter().any(|p| p.current == pair.current)
            && pair.current.verify(&message, &proof)
        {
            return Ok(ProofMatch::ProofWithCurrent);
        }
    }
    for (i, pair) in keys.iter().enumerate() {
        // Every current key has already been tried on this signature.
        let tried = keys.iter().any(|p| p.current == pair.old)
            || keys[..i].iter().any(|p| p.old == pair.old);
        if !tried && pair.old.verify(&message, &proof) {
            return Ok(ProofMatch::ProofWithOld);
        }
    }
    let Some(proof_old) = present(headers.proof_old.as_deref()) else {
        return Err(ProofError::NoMatch);
    };
    // Decoded only now: a broken ProofOld does not spoil a valid Proof.
    let proof_old = decode(proof_old)?;
    if proof_old == proof {
        // Signers without an old key repeat the proof; the current keys refused it above.
        return Err(ProofError::NoMatch);
    }
    for (i, pair) in keys.iter().enumerate() {
        if !keys[..i].iter().any(|p| p.current == pair.current)
            && pair.current.verify(&message, &proof_old)
        {
            return Ok(ProofMatch::ProofOldWithCurrent);
        }
    }
    Err(ProofError::NoMatch)
}

/// Refuses timestamps outside [`MAX_AGE`] behind and [`MAX_AHEAD`] ahead of `now_ticks`.
fn check_window(ticks: u64, now_ticks: u64) -> Result<(), ProofError> {
    let to_ticks = |d: Duration| d.as_secs() * TICKS_PER_SEC;
    if let Some(age) = now_ticks.checked_sub(ticks)
        && age > to_ticks(MAX_AGE)
    {
        return Err(ProofError::Stale {
            age_secs: age.div_ceil(TICKS_PER_SEC),
        });
    }
    if let Some(ahead) = ticks.checked_sub(now_ticks)
        && ahead > to_ticks(MAX_AHEAD)
    {
        return Err(ProofError::InFuture {
            ahead_secs: ahead.div_ceil(TICKS_PER_SEC),
        });
    }
    Ok(())
}

/// Decodes a proof header: standard alphabet, padding optional, outer spaces ignored.
fn decode(text: &str) -> Result<Vec<u8>, ProofError> {
    STANDARD_PAD_INDIFFERENT
        .decode(text.trim())
        .map_err(|_| ProofError::BadEncoding)
}

/// officeswitch's own signing keys: signs `X-WOPI-Proof` with the current key and
/// `X-WOPI-ProofOld` with the old one, or with the current key when there is no old key, as
/// Collabora does (hosts then accept it by the "Proof with current" rule).
#[derive(Clone)]
pub struct Signer {
    current: Arc<ProofKey>,
    old: Option<Arc<ProofKey>>,
}

impl Signer {
    /// A signer with the current key and, during a rotation, the previous one.
    pub fn new(current: Arc<ProofKey>, old: Option<Arc<ProofKey>>) -> Self {
        Self { current, old }
    }

    /// Signs a forwarded call: `access_token` and `url` as the host will see them (the host's
    /// token and its own absolute URL), `ticks` usually [`ticks_now`].
    pub fn sign(&self, access_token: &str, url: &str, ticks: u64) -> Result<SignedProof, KeyError> {
        let message = message(access_token, url, ticks);
        let proof = STANDARD.encode(self.current.sign(&message)?);
        let proof_old = match &self.old {
            Some(old) if old.public() != self.current.public() => {
                STANDARD.encode(old.sign(&message)?)
            }
            // PKCS#1 v1.5 signatures are deterministic: the same key gives the same bytes, so
            // reuse them instead of a second RSA private-key operation.
            _ => proof.clone(),
        };
        Ok(SignedProof {
            timestamp: ticks.to_string(),
            proof,
            proof_old,
        })
    }
}

impl fmt::Debug for Signer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // `ProofKey`'s Debug shows only the public half.
        f.debug_struct("Signer")
            .field("current", &self.current)
            .field("old", &self.old)
            .finish()
    }
}

/// The headers to send: proofs base64 (standard, padded), timestamp decimal ticks.
#[derive(Debug, Clone)]
pub struct SignedProof {
    /// `X-WOPI-TimeStamp`.
    pub timestamp: String,
    /// `X-WOPI-Proof`.
    pub proof: String,
    /// `X-WOPI-ProofOld`.
    pub proof_old: String,
}

impl SignedProof {
    /// Inserts the three headers, replacing any the editor sent (its proofs are for another URL
    /// and token, so they would only fail at the host).
    pub fn apply(&self, headers: &mut HeaderMap) {
        for (name, value) in [
            (TIMESTAMP, &self.timestamp),
            (PROOF, &self.proof),
            (PROOF_OLD, &self.proof_old),
        ] {
            // Decimal and base64 are always valid header values.
            if let Ok(value) = HeaderValue::from_str(value) {
                headers.insert(name, value);
            }
        }
    }

    /// The three headers as `Name: value` lines, as the command line prints them.
    fn header_lines(&self) -> String {
        format!(
            "X-WOPI-TimeStamp: {}\nX-WOPI-Proof: {}\nX-WOPI-ProofOld: {}\n",
            self.timestamp, self.proof, self.proof_old
        )
    }
}

/// `officeswitch proof verify|sign`: reproduce a proof failure from a log line, or produce the
/// headers officeswitch would send, without a settings file.
pub mod command {
    use std::path::{Path, PathBuf};
    use std::process::ExitCode;

    use super::{ProofError, ProofHeaders, ProofMatch, SignedProof, Signer, ticks_now, verify};
    use crate::cli::{ProofCommand, ProofSignArgs, ProofVerifyArgs};
    use crate::discovery::{Discovery, ProofKeyPair};
    use crate::wopi::proof_key::{KeyError, ProofKey, PublicProofKey};

    /// Exit code of `proof verify` when the proof is invalid.
    const EXIT_INVALID: u8 = 1;
    /// Exit code when the check could not run (unusable keys or files); clap also uses 2 for
    /// usage errors.
    const EXIT_CANNOT_CHECK: u8 = 2;

    /// Why a proof command could not run at all (as opposed to finding a proof invalid).
    #[derive(Debug, thiserror::Error)]
    pub enum CommandError {
        /// A `--discovery` file could not be read.
        #[error("cannot read discovery file {}: {error}", path.display())]
        ReadDiscovery {
            /// The file.
            path: PathBuf,
            /// The I/O error.
            error: std::io::Error,
        },
        /// A `--discovery` file is not a discovery document.
        #[error("{}: not a usable discovery document: {error}", path.display())]
        ParseDiscovery {
            /// The file.
            path: PathBuf,
            /// The parser's complaint.
            error: crate::discovery::document::ParseError,
        },
        /// A `--discovery` file has no `<proof-key>`: that editor does not sign.
        #[error(
            "{}: the discovery has no <proof-key>, so that editor does not sign its WOPI calls",
            path.display()
        )]
        NoProofKey {
            /// The file.
            path: PathBuf,
        },
        /// A key given on the command line or a key file is unusable.
        #[error("{0}")]
        Key(#[from] KeyError),
    }

    /// Runs `officeswitch proof ...`, prints the result and returns the exit code: `verify`
    /// exits 0 when valid, 1 when invalid; both exit 2 when they cannot run.
    pub fn run(command: &ProofCommand) -> ExitCode {
        let outcome = match command {
            ProofCommand::Verify(args) => verify_command(args, ticks_now()).map(|result| {
                println!("{}", report(&result));
                if result.is_ok() {
                    ExitCode::SUCCESS
                } else {
                    ExitCode::from(EXIT_INVALID)
                }
            }),
            ProofCommand::Sign(args) => sign_command(args, ticks_now()).map(|signed| {
                print!("{}", signed.header_lines());
                ExitCode::SUCCESS
            }),
        };
        outcome.unwrap_or_else(|error| {
            eprintln!("error: {error}");
            ExitCode::from(EXIT_CANNOT_CHECK)
        })
    }

    /// `proof verify`: the verdict of [`verify`] for the arguments, with the window checked
    /// against `--now`, else `now_ticks`, or not at all with `--ignore-time`.
    pub fn verify_command(
        args: &ProofVerifyArgs,
        now_ticks: u64,
    ) -> Result<Result<ProofMatch, ProofError>, CommandError> {
        let pairs = key_pairs(args)?;
        let keys: Vec<&ProofKeyPair> = pairs.iter().collect();
        let headers = ProofHeaders {
            timestamp: Some(args.timestamp.clone()),
            proof: Some(args.proof.clone()),
            proof_old: args.proof_old.clone(),
        };
        let now = match (args.ignore_time, args.now) {
            // "Now" is the timestamp itself, so the window always passes; an unparsable
            // timestamp is still reported by `verify`.
            (true, _) => args.timestamp.trim().parse().unwrap_or(now_ticks),
            (false, Some(now)) => now,
            (false, None) => now_ticks,
        };
        Ok(verify(&headers, &args.token, &args.url, &keys, now))
    }

    /// The line `proof verify` prints: `valid (...)` or `invalid: <reason> (<why>)`.
    pub fn report(result: &Result<ProofMatch, ProofError>) -> String {
        match result {
            Ok(matched) => format!("valid ({})", matched.describe()),
            Err(error @ ProofError::NoMatch) => format!(
                "invalid: {} ({error}; check that --url is exactly the URL the editor called, \
                 scheme, host, port, path and whole query, and --token is the token as sent)",
                error.reason()
            ),
            Err(error) => format!("invalid: {} ({error})", error.reason()),
        }
    }

    /// `proof sign`: signs with `--key` (and `--old-key`) at `--timestamp`, else `now_ticks`.
    pub fn sign_command(args: &ProofSignArgs, now_ticks: u64) -> Result<SignedProof, CommandError> {
        let current = ProofKey::load(&args.key)?;
        let old = args.old_key.as_deref().map(ProofKey::load).transpose()?;
        let signer = Signer::new(current.into(), old.map(Into::into));
        Ok(signer.sign(&args.token, &args.url, args.timestamp.unwrap_or(now_ticks))?)
    }

    /// The key pairs the arguments name: from each `--discovery` file, or one pair from
    /// `--modulus`/`--exponent` or `--value` (old key defaulting to the current one, as in a
    /// discovery without `old*` attributes).
    fn key_pairs(args: &ProofVerifyArgs) -> Result<Vec<ProofKeyPair>, CommandError> {
        if !args.discovery.is_empty() {
            return args
                .discovery
                .iter()
                .map(|path| from_discovery(path))
                .collect();
        }
        let (current, old) = match (&args.modulus, &args.exponent, &args.value) {
            (Some(modulus), Some(exponent), _) => {
                let current = PublicProofKey::from_modulus_exponent_b64(modulus, exponent)?;
                let old = match (&args.old_modulus, &args.old_exponent) {
                    (Some(modulus), Some(exponent)) => Some(
                        PublicProofKey::from_modulus_exponent_b64(modulus, exponent)?,
                    ),
                    _ => None,
                };
                (current, old)
            }
            (_, _, Some(value)) => {
                let current = PublicProofKey::from_capi_blob_b64(value)?;
                let old = args
                    .old_value
                    .as_deref()
                    .map(PublicProofKey::from_capi_blob_b64)
                    .transpose()?;
                (current, old)
            }
            // clap requires one key source; report it like a key problem if called otherwise.
            _ => {
                return Err(KeyError::PublicKey(
                    "give --discovery, --modulus with --exponent, or --value".to_owned(),
                )
                .into());
            }
        };
        let old = old.unwrap_or_else(|| current.clone());
        Ok(vec![ProofKeyPair { current, old }])
    }

    fn from_discovery(path: &Path) -> Result<ProofKeyPair, CommandError> {
        let xml = std::fs::read(path).map_err(|error| CommandError::ReadDiscovery {
            path: path.to_owned(),
            error,
        })?;
        let discovery = Discovery::parse(&xml).map_err(|error| CommandError::ParseDiscovery {
            path: path.to_owned(),
            error,
        })?;
        discovery.proof_key.ok_or_else(|| CommandError::NoProofKey {
            path: path.to_owned(),
        })
    }
}

/// Microsoft's published proof-key sample data, shared by the proof and proof-key tests.
/// Source: Office-Online-Test-Tools-and-Documentation, samples/python/proof_keys/tests.py (the
/// same data as the C# ProofKeyTests.cs); Collabora's test/WopiProofTests.cpp reuses it.
#[cfg(test)]
pub(crate) mod ms_vectors {
    /// Current key, CryptoAPI `PUBLICKEYBLOB`.
    pub(crate) const MS_VALUE: &str = "BgIAAACkAABSU0ExAAgAAAEAAQDFEthb5dkE+fGnJgsmY3IXmoFxj1cOwVYLpLNTEksnVRzbXcPfaSl/kFxn5b4QajhH1sTtXECZY6ZUyiDi1NG5ukFc9Fppgt0ywnuJqNBRWPfvLTOaVZRTtr8X8hqL+dPldOI3qFUW2zF6DEsAO9y74l3s6MqNjawCME5X0jb28TOrbXXsDfIGLEN3VBFO3wyhlRZKOmR9ZiqxQbpOz0Ltgv3HYci9OVN9c8YYV5T+fHI0Wtxg4F9lJHlB6MHPV9seVqr4ieM027NG89LhHm9BJEtceII09JgmkwLFUB/s2YGirUwZewk0efw1GL861PE7Vjdn2bIdmGSCRfFQlnPQ";
    /// Current key modulus (exponent `AQAB`).
    pub(crate) const MS_MODULUS: &str = "0HOWUPFFgmSYHbLZZzdWO/HUOr8YNfx5NAl7GUytooHZ7B9QxQKTJpj0NIJ4XEskQW8e4dLzRrPbNOOJ+KpWHttXz8HoQXkkZV/gYNxaNHJ8/pRXGMZzfVM5vchhx/2C7ULPTrpBsSpmfWQ6ShaVoQzfThFUd0MsBvIN7HVtqzPx9jbSV04wAqyNjcro7F3iu9w7AEsMejHbFlWoN+J05dP5ixryF7+2U5RVmjMt7/dYUdCoiXvCMt2CaVr0XEG6udHU4iDKVKZjmUBc7cTWRzhqEL7lZ1yQfylp38Nd2xxVJ0sSU7OkC1bBDlePcYGaF3JjJgsmp/H5BNnlW9gSxQ==";
    /// Old key, CryptoAPI `PUBLICKEYBLOB`.
    pub(crate) const MS_OLD_VALUE: &str = "BgIAAACkAABSU0ExAAgAAAEAAQClucwAqDjPvK3/nrmf51f8tsDkBeuCQnz8qYn66hftzDfzn2zR8RlGDXfm3wKsTBwDDzL2QXsJm09c9/p8FpPi39lpM31dfO/7KyqbQ4x/lfa9Y6SyPIP2eG/tKrXbkeIoWfyCtuQqeY6HrmijYOKc6IN4WOJWaWl2etVu8FRnk2plvlEHLm0N8x5ytCSCd776XXHmY7UzMiR0p6IGLpVfKM0ulQY65bmCGvDxkZwSOJyDV/hkQDGluMRLqQHrSAbnAn+ZKh3NTNspveigbUkakPIX8wc2I8ztzjvXXOp3KPzNFfQQGjLMo51CILxH6pRUvb4q8+VDijfiWvdvafq7";
    /// Old key modulus (exponent `AQAB`).
    pub(crate) const MS_OLD_MODULUS: &str = "u/ppb/da4jeKQ+XzKr69VJTqR7wgQp2jzDIaEPQVzfwod+pc1zvO7cwjNgfzF/KQGkltoOi9KdtMzR0qmX8C5wZI6wGpS8S4pTFAZPhXg5w4EpyR8fAagrnlOgaVLs0oX5UuBqKndCQyM7Vj5nFd+r53giS0ch7zDW0uB1G+ZWqTZ1TwbtV6dmlpVuJYeIPonOJgo2iuh455KuS2gvxZKOKR27Uq7W949oM8sqRjvfaVf4xDmyor++98XX0zadnf4pMWfPr3XE+bCXtB9jIPAxxMrALf5ncNRhnx0Wyf8zfM7Rfq+omp/HxCgusF5MC2/Ffnn7me/628zzioAMy5pQ==";

    /// One Microsoft proof sample: token, ticks, URL, X-WOPI-Proof, X-WOPI-ProofOld.
    pub(crate) struct MsProof {
        pub(crate) token: &'static str,
        pub(crate) ticks: u64,
        pub(crate) url: &'static str,
        pub(crate) proof: &'static str,
        pub(crate) proof_old: &'static str,
    }

    /// "test_proof_current_key1": X-WOPI-Proof was made with the current key.
    pub(crate) const MS_PROOF_CURRENT: MsProof = MsProof {
        token: "yZhdN1qgywcOQWhyEMVpB6NE3pvBksvcLXsrFKXNtBeDTPW%2fu62g2t%2fOCWSlb3jUGaz1zc%2fzOzbNgAredLdhQI1Q7sPPqUv2owO78olmN74DV%2fv52OZIkBG%2b8jqjwmUobcjXVIC1BG9g%2fynMN0itZklL2x27Z2imCF6xELcQUuGdkoXBj%2bI%2bTlKM",
        ticks: 635655897610773532,
        url: "https://contoso.com/wopi/files/vHxYyRGM8VfmSGwGYDBMIQPzuE+sSC6kw+zWZw2Nyg?access_token=yZhdN1qgywcOQWhyEMVpB6NE3pvBksvcLXsrFKXNtBeDTPW%2fu62g2t%2fOCWSlb3jUGaz1zc%2fzOzbNgAredLdhQI1Q7sPPqUv2owO78olmN74DV%2fv52OZIkBG%2b8jqjwmUobcjXVIC1BG9g%2fynMN0itZklL2x27Z2imCF6xELcQUuGdkoXBj%2bI%2bTlKM",
        proof: "IflL8OWCOCmws5qnDD5kYMraMGI3o+T+hojoDREbjZSkxbbx7XIS1Av85lohPKjyksocpeVwqEYm9nVWfnq05uhDNGp2MsNyhPO9unZ6w25Rjs1hDFM0dmvYx8wlQBNZ/CFPaz3inCMaaP4PtU85YepaDccAjNc1gikdy3kSMeG1XZuaDixHvMKzF/60DMfLMBIu5xP4Nt8i8Gi2oZs4REuxi6yxOv2vQJQ5+8Wu2Olm8qZvT4FEIQT9oZAXebn/CxyvyQv+RVpoU2gb4BreXAdfKthWF67GpJyhr+ibEVDoIIolUvviycyEtjsaEBpOf6Ne/OLRNu98un7WNDzMTQ==",
        proof_old: "lWBTpWW8q80WC1eJEH5HMnGka4/LUF7zjUPqBwRMO0JzVcnjICvMP2TZPB2lJfy/4ctIstCN6P1t38NCTTbLWlXuE+c4jqL9r2HPAdPPcPYiBAE1Evww93GpxVyOVcGADffshQvfaYFCfwL9vrBRstaQuWI0N5QlBCtWbnObF4dFsFWRRSZVU0X9YcNGhVX1NkVFVfCKG63Q/JkL+TnsJ7zqb7ZQpbS19tYyy4abtlGKWm3Zc1Jq9hPI3XVpoARXEO8cW6lT932QGdZiNr9aW2c15zTC6WiTxVeu7RW2Y0meX+Sfyrfu7GFb5JXDJAq8ZrUEUWABv1BOhHz5vLYHIA==",
    };

    /// "test_old_proof_current_key1": X-WOPI-ProofOld was made with the current key.
    pub(crate) const MS_PROOF_OLD_CURRENT: MsProof = MsProof {
        token: "zo7pjAbo%2fyof%2bvtUJn5gXpYcSl7TSSx0TbQGJbWJSll9PTjRRsAbG%2fSNL7FM2n5Ei3jQ8UJsW4RidT5R4tl1lrCi1%2bhGjxfWAC9pRRl6J3M1wZk9uFkWEeGzbtGByTkaGJkBqgKV%2ffxg%2bvATAhVr6E3LHCBAN91Wi8UG",
        ticks: 635655898374047766,
        url: "https://contoso.com/wopi/files/RVQ29k8tf3h8cJ/Endy+aAMPy0iGhLatGNrhvKofPY9p2w?access_token=zo7pjAbo%2fyof%2bvtUJn5gXpYcSl7TSSx0TbQGJbWJSll9PTjRRsAbG%2fSNL7FM2n5Ei3jQ8UJsW4RidT5R4tl1lrCi1%2bhGjxfWAC9pRRl6J3M1wZk9uFkWEeGzbtGByTkaGJkBqgKV%2ffxg%2bvATAhVr6E3LHCBAN91Wi8UG",
        proof: "qQhMjQf9Zohj+S/wvhe+RD6W5TIEqJwDWO3zX9DB85yRe3Ide7EPQDCY9dAZtJpWkIDDzU+8FEwnexF0EhPimfCkmAyoPpkl2YYvQvvwUK2gdlk3WboWOVszm17p4dSDA0TDMPYsjaAGHKM/nPnTyIMzRyArEzoy2vNkLEP6qdBIuMP2aCtGsciwMjYifHYRIRenB7H7I+FkwH0UaoTUCoo2PJkyZjy1nK6OwGVWaWG0G8g7Zy+K3bRYV+7cNaM5SB720ezhmYYJJvsIdRvO7pLsjAuTo4KJhvmVFCipwyCdllVHY83GjuGOsAbHIIohl0Ttq59o0jp4w2wUs8U+mQ==",
        proof_old: "PjKR1BTNNnfOrUzfo27cLIhlrbSiOVZaANadDyHxKij/77ZYId+liyXoawvvQQPgnBH1dW6jqpr6fh5ZxZ9IOtaV+cTSUGnGdRSn7FyKs1ClpApKsZBO/iRBLXw3HDWOLc0jnA2bnxY8yqbEPmH5IBC9taYzxnf7aGjc6AWFHfs6AEQ8lMio6UoASNzjy3VVNzUX+CK+e5Z45coT0X60mjaJmidGfPdWIfyUw8sSuUwxQa1uNXAd8IceRUL7j5s9/kk7EwsihCw1Y3L+XJGG5zMsGhM9bTK5mvxj30UdmZORouNHdywOfdHaB1iOeKOk+yvWFMW3JsYShWbUhZUOEQ==",
    };

    /// "test_proof_old_key1": X-WOPI-Proof was made with the old key.
    pub(crate) const MS_PROOF_OLD_KEY: MsProof = MsProof {
        token: "pbocsujrb9BafFujWh%2fuh7Y6S5nBnonddEzDzV0zEFrBwhiu5lzjXRezXDC9N4acvJeGVB5CWAcxPz6cJ6FzJmwA4ZgGP6FaV%2b6CDkJYID3FJhHFrbw8f2kRfaceRjV1PzXEvFXulnz2K%2fwwv0rF2B4A1wGQrnmwxGIv9cL5PBC4",
        ticks: 635655898062751632,
        url: "https://contoso.com/wopi/files/DJNj59eQlM6BvwzAHkykiB1vNOWRuxT487+guv3v7HexfA?access_token=pbocsujrb9BafFujWh%2fuh7Y6S5nBnonddEzDzV0zEFrBwhiu5lzjXRezXDC9N4acvJeGVB5CWAcxPz6cJ6FzJmwA4ZgGP6FaV%2b6CDkJYID3FJhHFrbw8f2kRfaceRjV1PzXEvFXulnz2K%2fwwv0rF2B4A1wGQrnmwxGIv9cL5PBC4",
        proof: "qF15pAAnOATqpUTLHIS/Z5K7OYFVjWcgKGbHPa0eHRayXsb6JKTelGQhvs74gEFgg1mIgcCORwAtMzLmEFmOHgrdvkGvRzT3jtVVtwkxEhQt8aQL20N0Nwn4wNah0HeBHskdvmA1G/qcaFp8uTgHpRYFoBaSHEP3AZVNFg5y2jyYR34nNj359gktc2ZyLel3J3j7XtyjpRPHvvYVQfh7RsArLQ0VGp8sL4/BDHdSsUyJ8FXe67TSrz6TMZPwhEUR8dYHYek9qbQjC+wxPpo3G/yusucm1gHo0BjW/l36cI8FRmNs1Fqaeppxqu31FhR8dEl7w5dwefa9wOUKcChF6A==",
        proof_old: "KmYzHJ9tu4SXfoiWzOkUIc0Bh8H3eJrA3OnDSbu2hT68EuLTp2vmvvFcHyHIiO8DuKj7u13MxkpuUER6VSIJp3nYfm91uEE/3g61V3SzaeRXdnkcKUa5x+ulKViECL2n4mpHzNnymxojFW5Y4lKUU4qEGzjE71K1DSFTU/CBkdqycsuy/Oct8G4GhA3O4MynlCf64B9LIhlWe4G+hxZgxIO0pq7w/1SH27nvScWiljVqgOAKr0Oidk/7sEfyBcOlerLgS/A00nJYYJk23DjrKGTKz1YY0CMEsROJCMiW11caxr0aKseOYlfmb6K1RXxtmiDpJ2T4y8jintjEdzEWDA==",
    };

    /// "test_invalid1": neither proof verifies with either key.
    pub(crate) const MS_PROOF_INVALID: MsProof = MsProof {
        token: "7DHGrfxYtgXxfaXF%2benHF3PTGMrgNlYktkbQB8q%2fn2aQwzYQ6qTmqNJRnJm5QIMXS7WbIxMy0LXaova2h687Md4%2bNTazty3P7HD3j5q9anbCuLsUJHtSXfKANUetLyAjFWq6egtMZJSHzDajO0EaHTeA9M7zJg1j69dEMoLmIbxP03kwAvBrdVQmjFdFryKw",
        ticks: 635655899260461032,
        url: "https://contoso.com/wopi/files/Dy07US/uXVeOMwgyEqGqeVNnyOoaRxR+es2atR08tZPMatf0gf0?access_token=7DHGrfxYtgXxfaXF%2benHF3PTGMrgNlYktkbQB8q%2fn2aQwzYQ6qTmqNJRnJm5QIMXS7WbIxMy0LXaova2h687Md4%2bNTazty3P7HD3j5q9anbCuLsUJHtSXfKANUetLyAjFWq6egtMZJSHzDajO0EaHTeA9M7zJg1j69dEMoLmIbxP03kwAvBrdVQmjFdFryKw",
        proof: "Y/wVmPuvWJ5Q/Gl/a5mCkTrCKbfHWYiMG6cxmJgD+M/yYFzTsfcgbK2IRAlCR2eqGx3a5wh5bQzlC6Y/sKo2IE9Irz/NHFpV55zYfdwDi5ccwXSd34jWVUgkM3uL1r6KVmHcQH/ew10p54FVatXatuGp2Y+cq9BScYV1a45U8fs9zYoZcTAYvdWeYXmJbRGMOLLxab3fOiulPmbw+gOqpYPbuInc0yut6eGxAUmY1ENxpN7nbUqI3LbJvmE3PuX8Ifgg3RCsaFJEqC6JR36MjG+VqoKaFI6hh/ZWLR4y7FBarSmQBr2VlAHrcWCJIMXoOOKaHdsDfNCb3A24LFvdAQ==",
        proof_old: "Pdbk1FoAB4zhxaDptfVOwTCmrNgWO6zdokoI3VYO8eshE9nJR1Rzr9K2666za29IfT050jJX0EBanIXAawL4rFA6swPHYQAzf3pWJqwvqIbaLYvi4104IBWhm9XdZ7C1jDUmG8DgwbKrXZfg7xxZ/hzPlwEp5Y9ZijD/ReAgRs0Va8/ytWc3AJ+121Q1Ss9U8vD08K5+wg1PVYyNa2YGBpVJbt2ZSt8dvuciWZujFDTzgLvRr6w17kg6+jkiwJyz2ZIL6ytyiUE1oJzsbslIZN3yGHEcmXZZ8Xz5q8fzrLUVmRx1kX6FE2QzRe4+6Q+qNeI8Ct7dj7JBBdbK2Jq+6A==",
    };
}

#[cfg(test)]
mod tests {
    use super::ms_vectors::*;
    use super::*;
    use crate::wopi::proof_key::PublicProofKey;

    const MINUTE: u64 = 60 * TICKS_PER_SEC;

    fn b64(text: &str) -> Vec<u8> {
        STANDARD.decode(text).unwrap()
    }

    fn ms_current() -> PublicProofKey {
        PublicProofKey::from_modulus_exponent_b64(MS_MODULUS, "AQAB").unwrap()
    }

    fn ms_old() -> PublicProofKey {
        PublicProofKey::from_modulus_exponent_b64(MS_OLD_MODULUS, "AQAB").unwrap()
    }

    fn ms_pair() -> ProofKeyPair {
        ProofKeyPair {
            current: ms_current(),
            old: ms_old(),
        }
    }

    /// A freshly generated key pair (old == current), unrelated to the vectors.
    fn other_pair() -> ProofKeyPair {
        let key = ProofKey::generate().unwrap().public().clone();
        ProofKeyPair {
            current: key.clone(),
            old: key,
        }
    }

    fn headers_of(v: &MsProof) -> ProofHeaders {
        ProofHeaders {
            timestamp: Some(v.ticks.to_string()),
            proof: Some(v.proof.to_owned()),
            proof_old: Some(v.proof_old.to_owned()),
        }
    }

    /// Verifies a Microsoft vector one minute after it was made.
    fn verify_ms(v: &MsProof, keys: &[&ProofKeyPair]) -> Result<ProofMatch, ProofError> {
        verify(&headers_of(v), v.token, v.url, keys, v.ticks + MINUTE)
    }

    #[test]
    fn ticks_of_unix_epoch_and_known_dates() {
        assert_eq!(ticks(UNIX_EPOCH), 621_355_968_000_000_000);
        // 2015-04-28 (the Microsoft vectors' era), at 100 ns resolution.
        let t = UNIX_EPOCH + Duration::new(1_430_000_000, 123_456_789);
        assert_eq!(ticks(t), 621_355_968_000_000_000 + 14_300_000_001_234_567);
        // Before 1970 counts down; nothing panics at the extremes.
        assert_eq!(
            ticks(UNIX_EPOCH - Duration::from_secs(1)),
            621_355_968_000_000_000 - TICKS_PER_SEC
        );
        assert_eq!(ticks(UNIX_EPOCH - Duration::from_secs(u64::MAX / 4)), 0);
        assert!(ticks_now() > 638_000_000_000_000_000); // after 2022
    }

    #[test]
    fn message_matches_hand_built_bytes() {
        let got = message("tok", "https://h/x?a=tok", 0x0102_0304_0506_0708);
        let mut want = vec![0, 0, 0, 3];
        want.extend_from_slice(b"tok");
        want.extend_from_slice(&[0, 0, 0, 17]);
        want.extend_from_slice(b"HTTPS://H/X?A=TOK");
        want.extend_from_slice(&[0, 0, 0, 8, 1, 2, 3, 4, 5, 6, 7, 8]);
        assert_eq!(got, want);
        // The token keeps its case; only ASCII in the URL is upper-cased.
        let got = message("aB", "é%2f", 1);
        assert_eq!(&got[..6], &[0, 0, 0, 2, b'a', b'B']);
        assert_eq!(&got[6..10], &[0, 0, 0, 5]);
        assert_eq!(&got[10..15], "é%2F".as_bytes());
    }

    #[test]
    fn ms_vectors_with_public_keys() {
        let (current, old) = (ms_current(), ms_old());

        let c = &MS_PROOF_CURRENT;
        let bytes = message(c.token, c.url, c.ticks);
        assert!(current.verify(&bytes, &b64(c.proof)));
        assert!(!old.verify(&bytes, &b64(c.proof)));
        // The same signature over the URL not upper-cased, or other ticks, fails.
        let mut lowercase = Vec::new();
        lowercase.extend_from_slice(&len_u32(c.token).to_be_bytes());
        lowercase.extend_from_slice(c.token.as_bytes());
        lowercase.extend_from_slice(&len_u32(c.url).to_be_bytes());
        lowercase.extend_from_slice(c.url.as_bytes());
        lowercase.extend_from_slice(&8u32.to_be_bytes());
        lowercase.extend_from_slice(&c.ticks.to_be_bytes());
        assert!(!current.verify(&lowercase, &b64(c.proof)));
        assert!(!current.verify(&message(c.token, c.url, c.ticks + 1), &b64(c.proof)));

        let c = &MS_PROOF_OLD_CURRENT;
        let bytes = message(c.token, c.url, c.ticks);
        assert!(!current.verify(&bytes, &b64(c.proof)));
        assert!(!old.verify(&bytes, &b64(c.proof)));
        assert!(current.verify(&bytes, &b64(c.proof_old)));

        let c = &MS_PROOF_OLD_KEY;
        let bytes = message(c.token, c.url, c.ticks);
        assert!(!current.verify(&bytes, &b64(c.proof)));
        assert!(old.verify(&bytes, &b64(c.proof)));

        let c = &MS_PROOF_INVALID;
        let bytes = message(c.token, c.url, c.ticks);
        for key in [&current, &old] {
            for signature in [c.proof, c.proof_old] {
                assert!(!key.verify(&bytes, &b64(signature)));
            }
        }
    }

    #[test]
    fn ms_proof_with_current_key() {
        let pair = ms_pair();
        assert_eq!(
            verify_ms(&MS_PROOF_CURRENT, &[&pair]),
            Ok(ProofMatch::ProofWithCurrent)
        );
        // Also from the CryptoAPI `value` form of the same key.
        let from_value = ProofKeyPair {
            current: PublicProofKey::from_capi_blob_b64(MS_VALUE).unwrap(),
            old: PublicProofKey::from_capi_blob_b64(MS_OLD_VALUE).unwrap(),
        };
        assert_eq!(
            verify_ms(&MS_PROOF_CURRENT, &[&from_value]),
            Ok(ProofMatch::ProofWithCurrent)
        );
    }

    #[test]
    fn ms_proof_old_with_current_key() {
        let pair = ms_pair();
        assert_eq!(
            verify_ms(&MS_PROOF_OLD_CURRENT, &[&pair]),
            Ok(ProofMatch::ProofOldWithCurrent)
        );
        // Without X-WOPI-ProofOld, nothing matches.
        let mut headers = headers_of(&MS_PROOF_OLD_CURRENT);
        headers.proof_old = None;
        let v = &MS_PROOF_OLD_CURRENT;
        assert_eq!(
            verify(&headers, v.token, v.url, &[&pair], v.ticks),
            Err(ProofError::NoMatch)
        );
    }

    #[test]
    fn ms_proof_with_old_key() {
        let pair = ms_pair();
        assert_eq!(
            verify_ms(&MS_PROOF_OLD_KEY, &[&pair]),
            Ok(ProofMatch::ProofWithOld)
        );
        // A discovery that lists only the current key (old == current) refuses it.
        let current_only = ProofKeyPair {
            current: ms_current(),
            old: ms_current(),
        };
        assert_eq!(
            verify_ms(&MS_PROOF_OLD_KEY, &[&current_only]),
            Err(ProofError::NoMatch)
        );
    }

    #[test]
    fn ms_invalid_proof() {
        let pair = ms_pair();
        assert_eq!(
            verify_ms(&MS_PROOF_INVALID, &[&pair]),
            Err(ProofError::NoMatch)
        );
        // A valid proof for another URL or token does not carry over.
        let v = &MS_PROOF_CURRENT;
        let tampered = v.url.replace("contoso.com", "contoso.org");
        assert_eq!(
            verify(&headers_of(v), v.token, &tampered, &[&pair], v.ticks),
            Err(ProofError::NoMatch)
        );
        assert_eq!(
            verify(&headers_of(v), "other", v.url, &[&pair], v.ticks),
            Err(ProofError::NoMatch)
        );
        assert_eq!(verify_ms(v, &[]), Err(ProofError::NoMatch));
    }

    #[test]
    fn any_of_several_pairs_may_match() {
        let (a, b, ms) = (other_pair(), other_pair(), ms_pair());
        for v in [&MS_PROOF_CURRENT, &MS_PROOF_OLD_KEY, &MS_PROOF_OLD_CURRENT] {
            assert_eq!(verify_ms(v, &[&a, &b, &ms]), verify_ms(v, &[&ms]));
            assert!(verify_ms(v, &[&ms, &a]).is_ok());
        }
        assert_eq!(
            verify_ms(&MS_PROOF_CURRENT, &[&a, &b]),
            Err(ProofError::NoMatch)
        );
        // Duplicated pairs (a pool sharing one key) change nothing.
        assert_eq!(
            verify_ms(&MS_PROOF_OLD_CURRENT, &[&ms, &ms, &ms]),
            Ok(ProofMatch::ProofOldWithCurrent)
        );
    }

    #[test]
    fn timestamp_window() {
        let pair = ms_pair();
        let v = &MS_PROOF_CURRENT;
        let at = |now| verify(&headers_of(v), v.token, v.url, &[&pair], now);
        assert_eq!(at(v.ticks), Ok(ProofMatch::ProofWithCurrent));
        assert_eq!(at(v.ticks + 20 * MINUTE), Ok(ProofMatch::ProofWithCurrent));
        assert_eq!(
            at(v.ticks + 20 * MINUTE + 1),
            Err(ProofError::Stale { age_secs: 1201 })
        );
        assert_eq!(
            at(v.ticks + 60 * MINUTE),
            Err(ProofError::Stale { age_secs: 3600 })
        );
        assert_eq!(at(v.ticks - 5 * MINUTE), Ok(ProofMatch::ProofWithCurrent));
        assert_eq!(
            at(v.ticks - 5 * MINUTE - 1),
            Err(ProofError::InFuture { ahead_secs: 301 })
        );
        assert_eq!(
            at(0),
            Err(ProofError::InFuture {
                ahead_secs: v.ticks.div_ceil(TICKS_PER_SEC)
            })
        );
        assert_eq!(
            at(u64::MAX),
            Err(ProofError::Stale {
                age_secs: (u64::MAX - v.ticks).div_ceil(TICKS_PER_SEC)
            })
        );
        // A replay is refused before any RSA work, even with a bad signature.
        let mut bad = headers_of(v);
        bad.proof = Some("AAAA".into());
        assert_eq!(
            verify(&bad, v.token, v.url, &[&pair], v.ticks + 60 * MINUTE),
            Err(ProofError::Stale { age_secs: 3600 })
        );
    }

    #[test]
    fn missing_and_malformed_headers() {
        let pair = ms_pair();
        let v = &MS_PROOF_CURRENT;
        let check = |headers: &ProofHeaders| verify(headers, v.token, v.url, &[&pair], v.ticks);

        for proof in [None, Some(String::new()), Some("  ".into())] {
            let headers = ProofHeaders {
                proof,
                ..headers_of(v)
            };
            assert!(headers.is_absent());
            assert_eq!(check(&headers), Err(ProofError::Missing));
        }
        assert!(!headers_of(v).is_absent());

        let mut headers = headers_of(v);
        headers.timestamp = None;
        assert_eq!(check(&headers), Err(ProofError::MissingTimestamp));
        for garbage in ["abc", "-1", "1.5", "99999999999999999999", "0x10"] {
            headers.timestamp = Some(garbage.into());
            assert_eq!(check(&headers), Err(ProofError::BadTimestamp), "{garbage}");
        }
        // Surrounding spaces are tolerated.
        headers.timestamp = Some(format!(" {} ", v.ticks));
        assert_eq!(check(&headers), Ok(ProofMatch::ProofWithCurrent));

        let mut headers = headers_of(v);
        headers.proof = Some("not base64!".into());
        assert_eq!(check(&headers), Err(ProofError::BadEncoding));
        // Unpadded base64 is accepted.
        headers.proof = Some(v.proof.trim_end_matches('=').into());
        assert_eq!(check(&headers), Ok(ProofMatch::ProofWithCurrent));

        // A broken ProofOld does not spoil a valid Proof, but is reported when it was needed.
        let mut headers = headers_of(v);
        headers.proof_old = Some("%%%".into());
        assert_eq!(check(&headers), Ok(ProofMatch::ProofWithCurrent));
        let w = &MS_PROOF_INVALID;
        let mut headers = headers_of(w);
        headers.proof_old = Some("%%%".into());
        assert_eq!(
            verify(&headers, w.token, w.url, &[&pair], w.ticks),
            Err(ProofError::BadEncoding)
        );
    }

    #[test]
    fn errors_print_reasons_never_values() {
        let all = [
            ProofError::Missing,
            ProofError::MissingTimestamp,
            ProofError::BadTimestamp,
            ProofError::Stale { age_secs: 3600 },
            ProofError::InFuture { ahead_secs: 400 },
            ProofError::BadEncoding,
            ProofError::NoMatch,
        ];
        let reasons: Vec<_> = all.iter().map(ProofError::reason).collect();
        assert_eq!(
            reasons,
            [
                "missing",
                "missing_timestamp",
                "bad_timestamp",
                "stale",
                "in_future",
                "bad_encoding",
                "no_match"
            ]
        );
        assert!(
            ProofError::Stale { age_secs: 3600 }
                .to_string()
                .contains("3600 s")
        );
        // Errors carry no strings at all, so they cannot hold a value; check the wording too.
        let v = &MS_PROOF_CURRENT;
        for error in all {
            let text = error.to_string();
            for secret in [v.token, v.url, v.proof, &v.ticks.to_string()] {
                assert!(!text.contains(secret), "{text}");
            }
        }
    }

    #[test]
    fn headers_are_read_by_name() {
        let mut map = HeaderMap::new();
        assert!(ProofHeaders::from_headers(&map).is_absent());
        map.insert("X-WOPI-TimeStamp", HeaderValue::from_static("42"));
        map.insert("x-wopi-proof", HeaderValue::from_static("cHJvb2Y="));
        map.insert("X-WOPI-ProofOld", HeaderValue::from_static("b2xk"));
        map.insert("X-WOPI-Other", HeaderValue::from_static("x"));
        let headers = ProofHeaders::from_headers(&map);
        assert_eq!(headers.timestamp.as_deref(), Some("42"));
        assert_eq!(headers.proof.as_deref(), Some("cHJvb2Y="));
        assert_eq!(headers.proof_old.as_deref(), Some("b2xk"));
        assert!(!headers.is_absent());
        // Non-UTF-8 bytes still count as present, then fail to decode.
        map.insert(
            "x-wopi-proof",
            HeaderValue::from_bytes(b"\xff\xfe").unwrap(),
        );
        let headers = ProofHeaders::from_headers(&map);
        assert!(!headers.is_absent());
        assert_eq!(
            decode(headers.proof.as_deref().unwrap()),
            Err(ProofError::BadEncoding)
        );
    }

    #[test]
    fn sign_verify_round_trip_with_rotation() {
        let old = Arc::new(ProofKey::generate().unwrap());
        let new = Arc::new(ProofKey::generate().unwrap());
        let url =
            "https://nc.example/index.php/apps/richdocuments/wopi/files/42_oc?access_token=tok";
        let now = ticks_now();

        // Before the rotation: the host knows only `old` (as current and old).
        let before = Signer::new(old.clone(), None);
        let signed = before.sign("tok", url, now).unwrap();
        assert_eq!(signed.timestamp, now.to_string());
        let known_before = ProofKeyPair {
            current: old.public().clone(),
            old: old.public().clone(),
        };
        let headers = received(&signed);
        assert_eq!(
            verify(&headers, "tok", url, &[&known_before], now),
            Ok(ProofMatch::ProofWithCurrent)
        );

        // officeswitch rotated: it signs Proof with `new`, ProofOld with `old`.
        let after = Signer::new(new.clone(), Some(old.clone()));
        let signed = after.sign("tok", url, now).unwrap();
        assert_ne!(signed.proof, signed.proof_old);
        let headers = received(&signed);
        // A host with the stale discovery accepts it through ProofOld...
        assert_eq!(
            verify(&headers, "tok", url, &[&known_before], now),
            Ok(ProofMatch::ProofOldWithCurrent)
        );
        // ...and one with the new discovery through Proof.
        let known_after = ProofKeyPair {
            current: new.public().clone(),
            old: old.public().clone(),
        };
        assert_eq!(
            verify(&headers, "tok", url, &[&known_after], now),
            Ok(ProofMatch::ProofWithCurrent)
        );
        // A host that already rotated while the old signer still runs: Proof with old.
        let signed = before.sign("tok", url, now).unwrap();
        assert_eq!(
            verify(&received(&signed), "tok", url, &[&known_after], now),
            Ok(ProofMatch::ProofWithOld)
        );
        // Another URL, token or time fails.
        assert_eq!(
            verify(
                &headers,
                "tok",
                &url.replace("42_oc", "43_oc"),
                &[&known_after],
                now
            ),
            Err(ProofError::NoMatch)
        );
        assert_eq!(
            verify(&headers, "tok2", url, &[&known_after], now),
            Err(ProofError::NoMatch)
        );
        let mut later = headers.clone();
        later.timestamp = Some((now + 1).to_string());
        assert_eq!(
            verify(&later, "tok", url, &[&known_after], now),
            Err(ProofError::NoMatch)
        );
    }

    /// What a host receives when `signed` is applied to a request.
    fn received(signed: &SignedProof) -> ProofHeaders {
        let mut map = HeaderMap::new();
        signed.apply(&mut map);
        ProofHeaders::from_headers(&map)
    }

    #[test]
    fn signer_without_old_key_signs_proof_old_with_current() {
        let key = Arc::new(ProofKey::generate().unwrap());
        let signed = Signer::new(key.clone(), None)
            .sign("t", "https://h/", 7)
            .unwrap();
        assert_eq!(signed.proof, signed.proof_old);
        let bytes = message("t", "https://h/", 7);
        assert!(key.public().verify(&bytes, &b64(&signed.proof_old)));
        // An "old" key equal to the current one behaves the same.
        let same = Signer::new(key.clone(), Some(key.clone()))
            .sign("t", "https://h/", 7)
            .unwrap();
        assert_eq!(same.proof_old, signed.proof);
        // Standard, padded base64 of a 256-byte signature.
        assert_eq!(signed.proof.len(), 344);
        assert!(signed.proof.ends_with('='));
    }

    #[test]
    fn apply_replaces_the_editors_headers() {
        let key = Arc::new(ProofKey::generate().unwrap());
        let signed = Signer::new(key, None).sign("t", "https://h/", 7).unwrap();
        let mut map = HeaderMap::new();
        map.append("x-wopi-proof", HeaderValue::from_static("editor1"));
        map.append("x-wopi-proof", HeaderValue::from_static("editor2"));
        map.insert("x-wopi-timestamp", HeaderValue::from_static("1"));
        map.insert("x-wopi-proofold", HeaderValue::from_static("editor"));
        signed.apply(&mut map);
        assert_eq!(map.get_all("x-wopi-proof").iter().count(), 1);
        assert_eq!(map["x-wopi-proof"], signed.proof.as_str());
        assert_eq!(map["x-wopi-proofold"], signed.proof_old.as_str());
        assert_eq!(map["x-wopi-timestamp"], "7");
        assert_eq!(
            signed.header_lines(),
            format!(
                "X-WOPI-TimeStamp: 7\nX-WOPI-Proof: {}\nX-WOPI-ProofOld: {}\n",
                signed.proof, signed.proof_old
            )
        );
    }

    #[test]
    fn signer_debug_shows_no_private_key() {
        let key = Arc::new(ProofKey::generate().unwrap());
        let pem = key.to_pkcs8_pem().unwrap();
        let debug = format!("{:?}", Signer::new(key, None));
        assert!(debug.starts_with("Signer"), "{debug}");
        for line in pem.lines().skip(8).filter(|l| !l.starts_with("-----")) {
            assert!(!debug.contains(line), "Debug leaks PEM line {line}");
        }
    }

    mod command {
        use std::path::Path;

        use super::super::command::{CommandError, report, sign_command, verify_command};
        use super::*;
        use crate::cli::{ProofSignArgs, ProofVerifyArgs};

        fn args_for(v: &MsProof) -> ProofVerifyArgs {
            ProofVerifyArgs {
                url: v.url.to_owned(),
                token: v.token.to_owned(),
                timestamp: v.ticks.to_string(),
                proof: v.proof.to_owned(),
                proof_old: Some(v.proof_old.to_owned()),
                discovery: Vec::new(),
                modulus: Some(MS_MODULUS.to_owned()),
                exponent: Some("AQAB".to_owned()),
                old_modulus: Some(MS_OLD_MODULUS.to_owned()),
                old_exponent: Some("AQAB".to_owned()),
                value: None,
                old_value: None,
                now: Some(v.ticks),
                ignore_time: false,
            }
        }

        fn discovery_xml(proof_key: &str) -> String {
            format!(
                "<wopi-discovery><net-zone name=\"external-http\"><app name=\"writer\">\
                 <action name=\"edit\" ext=\"odt\" urlsrc=\"https://e/x?\"/></app></net-zone>\
                 {proof_key}</wopi-discovery>"
            )
        }

        fn write(dir: &Path, name: &str, text: &str) -> std::path::PathBuf {
            let path = dir.join(name);
            std::fs::write(&path, text).unwrap();
            path
        }

        #[test]
        fn verify_with_modulus_exponent() {
            for (v, want) in [
                (&MS_PROOF_CURRENT, "valid (proof with current key)"),
                (&MS_PROOF_OLD_KEY, "valid (proof with old key)"),
                (&MS_PROOF_OLD_CURRENT, "valid (proof-old with current key)"),
            ] {
                let result = verify_command(&args_for(v), 0).unwrap();
                assert_eq!(report(&result), want);
            }
            let result = verify_command(&args_for(&MS_PROOF_INVALID), 0).unwrap();
            assert_eq!(result, Err(ProofError::NoMatch));
            assert!(
                report(&result).starts_with("invalid: no_match ("),
                "{}",
                report(&result)
            );

            // Without old key arguments the old key is the current one.
            let mut args = args_for(&MS_PROOF_OLD_KEY);
            args.old_modulus = None;
            args.old_exponent = None;
            assert_eq!(verify_command(&args, 0).unwrap(), Err(ProofError::NoMatch));
        }

        #[test]
        fn verify_with_capi_value() {
            let mut args = args_for(&MS_PROOF_OLD_KEY);
            (
                args.modulus,
                args.exponent,
                args.old_modulus,
                args.old_exponent,
            ) = (None, None, None, None);
            args.value = Some(MS_VALUE.to_owned());
            args.old_value = Some(MS_OLD_VALUE.to_owned());
            assert_eq!(
                verify_command(&args, 0).unwrap(),
                Ok(ProofMatch::ProofWithOld)
            );
        }

        #[test]
        fn verify_time_now_and_ignore_time() {
            let v = &MS_PROOF_CURRENT;
            let mut args = args_for(v);
            args.now = None;
            // The vectors are from 2015: stale against the clock.
            let result = verify_command(&args, ticks_now()).unwrap();
            assert!(
                matches!(result, Err(ProofError::Stale { .. })),
                "{result:?}"
            );
            let line = report(&result);
            assert!(
                line.starts_with("invalid: stale (X-WOPI-TimeStamp is "),
                "{line}"
            );
            assert!(line.contains(" s old"), "{line}");
            args.ignore_time = true;
            assert_eq!(
                verify_command(&args, ticks_now()).unwrap(),
                Ok(ProofMatch::ProofWithCurrent)
            );
            args.now = Some(v.ticks + 21 * MINUTE);
            args.ignore_time = false;
            assert_eq!(
                verify_command(&args, 0).unwrap(),
                Err(ProofError::Stale { age_secs: 1260 })
            );
            args.timestamp = "garbage".into();
            args.ignore_time = true;
            assert_eq!(
                verify_command(&args, 0).unwrap(),
                Err(ProofError::BadTimestamp)
            );
        }

        #[test]
        fn verify_with_discovery_files() {
            let dir = tempfile::tempdir().unwrap();
            let ms = write(
                dir.path(),
                "ms.xml",
                &discovery_xml(&format!(
                    "<proof-key modulus=\"{MS_MODULUS}\" exponent=\"AQAB\" \
                     oldmodulus=\"{MS_OLD_MODULUS}\" oldexponent=\"AQAB\"/>"
                )),
            );
            let other = other_pair();
            let other = write(
                dir.path(),
                "other.xml",
                &discovery_xml(&format!(
                    "<proof-key value=\"{}\"/>",
                    other.current.capi_blob_b64()
                )),
            );
            let mut args = args_for(&MS_PROOF_OLD_CURRENT);
            (
                args.modulus,
                args.exponent,
                args.old_modulus,
                args.old_exponent,
            ) = (None, None, None, None);
            args.discovery = vec![other.clone(), ms];
            assert_eq!(
                verify_command(&args, 0).unwrap(),
                Ok(ProofMatch::ProofOldWithCurrent)
            );
            args.discovery = vec![other];
            assert_eq!(verify_command(&args, 0).unwrap(), Err(ProofError::NoMatch));

            let unsigned = write(dir.path(), "unsigned.xml", &discovery_xml(""));
            args.discovery = vec![unsigned];
            let error = verify_command(&args, 0).unwrap_err();
            assert!(
                matches!(error, CommandError::NoProofKey { .. }),
                "{error:?}"
            );
            assert!(error.to_string().contains("unsigned.xml"), "{error}");
            assert!(error.to_string().contains("no <proof-key>"), "{error}");

            let html = write(dir.path(), "page.html", "<html><body>502</body></html>");
            args.discovery = vec![html];
            let error = verify_command(&args, 0).unwrap_err();
            assert!(
                matches!(error, CommandError::ParseDiscovery { .. }),
                "{error:?}"
            );

            args.discovery = vec![dir.path().join("missing.xml")];
            let error = verify_command(&args, 0).unwrap_err();
            assert!(
                matches!(error, CommandError::ReadDiscovery { .. }),
                "{error:?}"
            );
        }

        #[test]
        fn verify_reports_unusable_keys() {
            let mut args = args_for(&MS_PROOF_CURRENT);
            args.modulus = Some("AAAA".to_owned());
            let error = verify_command(&args, 0).unwrap_err();
            assert!(matches!(error, CommandError::Key(_)), "{error:?}");
        }

        #[test]
        fn sign_then_verify() {
            let dir = tempfile::tempdir().unwrap();
            let key_path = dir.path().join("key.pem");
            let old_path = dir.path().join("old.pem");
            let key = crate::wopi::proof_key::write_new_key(&key_path, false).unwrap();
            let old = crate::wopi::proof_key::write_new_key(&old_path, false).unwrap();
            let url = "https://nc.example/wopi/files/1?access_token=abc";
            let mut sign = ProofSignArgs {
                url: url.to_owned(),
                token: "abc".to_owned(),
                timestamp: Some(638_500_000_000_000_000),
                key: key_path.clone(),
                old_key: Some(old_path),
            };
            let signed = sign_command(&sign, 1).unwrap();
            assert_eq!(signed.timestamp, "638500000000000000");
            let bytes = message("abc", url, 638_500_000_000_000_000);
            assert!(key.public().verify(&bytes, &b64(&signed.proof)));
            assert!(old.public().verify(&bytes, &b64(&signed.proof_old)));

            sign.timestamp = None;
            sign.old_key = None;
            let signed = sign_command(&sign, 638_600_000_000_000_000).unwrap();
            assert_eq!(signed.timestamp, "638600000000000000");
            assert_eq!(signed.proof, signed.proof_old);
            let args = ProofVerifyArgs {
                url: url.to_owned(),
                token: "abc".to_owned(),
                timestamp: signed.timestamp.clone(),
                proof: signed.proof.clone(),
                proof_old: Some(signed.proof_old.clone()),
                discovery: Vec::new(),
                modulus: Some(key.public().modulus_b64()),
                exponent: Some(key.public().exponent_b64()),
                old_modulus: None,
                old_exponent: None,
                value: None,
                old_value: None,
                now: None,
                ignore_time: false,
            };
            assert_eq!(
                verify_command(&args, 638_600_000_000_000_000).unwrap(),
                Ok(ProofMatch::ProofWithCurrent)
            );

            sign.key = dir.path().join("missing.pem");
            let error = sign_command(&sign, 1).unwrap_err();
            assert!(error.to_string().contains("missing.pem"), "{error}");
        }
    }
}
