//! Access tokens officeswitch mints for editors, and the file ids that name documents.
//!
//! When a document is opened, officeswitch replaces Nextcloud's `WOPISrc` with
//! `{public_url}/wopi/files/{file_id}` and Nextcloud's `access_token` with a token of its own.
//! The editor calls back with that token; officeswitch checks it, recovers the real `WOPISrc`
//! and Nextcloud's token from it, and forwards the call. URLs inside host responses
//! (`TemplateSource`, `FileUrl`, settings files, PutRelativeFile `Url`) become "link" tokens that
//! carry the full host URL; richdocuments' settings endpoint and its settings token become a
//! "settings" token ([`GrantKind::Settings`]).
//!
//! **No shared state.** Everything needed to forward a call is inside the token, sealed with
//! keys derived from one secret file (`[keys] token_secret`). Any officeswitch instance holding
//! the same file accepts any token and computes the same file ids, so instances behind a load
//! balancer need no session store, and a restart loses nothing.
//!
//! **What the editor can learn.** A token is an HS256 JWT (`header.payload.signature`); its
//! payload is only base64, so the editor can read it: the file id (`fid`), expiry (`exp`),
//! issue time (`iat`), kind (`k`: `f`, `l`, `s` or `o`), an opaque 16-character digest of the host token
//! (`sub`, a keyed HMAC: it binds the token to the host's grant without revealing it), and `enc`.
//! The organisation, editor pool, host URL and host token are only inside `enc`: AES-256-GCM
//! with a random nonce and the file id as associated data. File ids are keyed HMACs, so they
//! reveal neither the organisation nor the URL either (only that two ids share an organisation
//! tag).
//!
//! **What the editor cannot do.** Forge or alter a token (HMAC), extend its expiry (signed `exp`,
//! checked by [`TokenKeys::check`] against the caller's clock), or use it for another document
//! (the signed `fid` must equal the file id in the URL, and `enc` is bound to it). Only the one
//! header officeswitch writes is accepted, so there is no algorithm to choose; `jsonwebtoken`
//! (aws-lc-rs backend) signs and verifies, and the claims are read only after the signature
//! checks out. Tokens are `[A-Za-z0-9_.-]` only, the same percent-encoded or not.
//!
//! **Rotation.** Replacing `token_secret` changes every file id: co-editors of one document who
//! opened it just before and just after the change get different file ids, so they land in
//! different editor sessions and do not see each other's edits — rotate in a quiet hour.
//! Tokens minted under the previous secret keep working while it is configured as
//! `old_token_secret` (until they expire, at most `wopi.max_token_ttl_secs`).
//!
//! Keys are derived from the secret with HKDF-SHA256 (aws-lc-rs), one info label per use, so
//! the JWT, encryption, file-id and digest keys are independent.

use std::fmt;
use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use aws_lc_rs::aead::{AES_256_GCM, Aad, NONCE_LEN, Nonce, RandomizedNonceKey};
use aws_lc_rs::{hkdf, hmac};
use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, STANDARD_PAD_INDIFFERENT, URL_SAFE_NO_PAD};
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey};
use serde::{Deserialize, Serialize};

use super::secret_file::{self, WriteError};

/// Fewest secret bytes accepted: the full strength of the 256-bit derived keys.
pub const MIN_SECRET_BYTES: usize = 32;
/// Most secret bytes accepted; anything longer is a wrong file, not a stronger key.
const MAX_SECRET_BYTES: usize = 1024;
/// Bytes [`TokenSecret::generate`] draws.
const GENERATED_SECRET_BYTES: usize = 32;

/// Length of a file id.
pub const FILE_ID_LEN: usize = 32;
/// Length of the organisation tag every file id starts with ([`TokenKeys::org_tag`]).
pub const ORG_TAG_LEN: usize = 8;
/// HMAC bytes behind the organisation tag (6 bytes = 8 base64 characters).
const ORG_TAG_BYTES: usize = 6;
/// HMAC bytes behind the document part of a file id (18 bytes = 24 base64 characters).
const DOC_ID_BYTES: usize = 18;
/// HMAC bytes behind `sub` (12 bytes = 16 base64 characters).
const SUB_BYTES: usize = 12;
/// base64url of `{"typ":"JWT","alg":"HS256"}`, the header `jsonwebtoken` writes for HS256:
/// the first part of every token.
const HEADER_B64: &str = "eyJ0eXAiOiJKV1QiLCJhbGciOiJIUzI1NiJ9";
/// Longest token [`TokenKeys::check`] looks at (and [`TokenKeys::mint`] produces); real ones
/// are well under 2 KiB, and request heads are capped anyway.
const MAX_TOKEN_LEN: usize = 16 * 1024;
/// AES-GCM tag length.
const TAG_LEN: usize = 16;

/// HKDF salt: fixes the derivation to officeswitch tokens, version 1.
const HKDF_SALT: &[u8] = b"officeswitch token keys v1";
/// HKDF info labels, one per derived key.
const INFO_JWT: &[u8] = b"officeswitch/v1/jwt-hs256";
const INFO_ENC: &[u8] = b"officeswitch/v1/enc-aes-256-gcm";
const INFO_ID: &[u8] = b"officeswitch/v1/file-id";
const INFO_SUB: &[u8] = b"officeswitch/v1/sub";

/// A token secret: at least 32 random bytes, stored as standard base64 on one line in a file
/// only officeswitch can read (mode 0600, see [`write_new_secret`]).
///
/// The keys are derived as soon as the secret is read, and the raw bytes are wiped right
/// then; the derived keys live in aws-lc and jsonwebtoken, which clear them when dropped.
/// `Debug` shows nothing of either.
pub struct TokenSecret(DerivedKeys);

impl TokenSecret {
    /// Draws a fresh 32-byte secret (check-config's stand-in for a secret the server would
    /// generate, and tests).
    ///
    /// # Errors
    /// [`TokenKeyError::Generate`] when the system random generator fails.
    pub fn generate() -> Result<Self, TokenKeyError> {
        let mut bytes = random_secret()?;
        let secret = Self::from_bytes(&bytes);
        wipe(&mut bytes);
        secret
    }

    /// Reads the base64 secret file at `path` (surrounding whitespace and line breaks are
    /// ignored); every error names the path and none quotes the file.
    ///
    /// # Errors
    /// [`TokenKeyError::Read`] or [`TokenKeyError::InFile`].
    pub fn load(path: &Path) -> Result<Self, TokenKeyError> {
        let mut raw = fs::read(path).map_err(|error| TokenKeyError::Read {
            path: path.to_owned(),
            error,
        })?;
        let mut compact: Vec<u8> = raw
            .iter()
            .copied()
            .filter(|b| !b.is_ascii_whitespace())
            .collect();
        wipe(&mut raw);
        // The decoder's error would quote a character of the secret: leave it out.
        let decoded = STANDARD_PAD_INDIFFERENT.decode(&compact);
        wipe(&mut compact);
        let in_file = |error| TokenKeyError::InFile {
            path: path.to_owned(),
            error: Box::new(error),
        };
        let mut bytes = decoded.map_err(|_| in_file(TokenKeyError::NotBase64))?;
        let secret = Self::from_bytes(&bytes).map_err(in_file);
        wipe(&mut bytes);
        secret
    }

    /// A secret from raw bytes (32 to 1024 of them); for tests, benches and [`Self::load`].
    ///
    /// # Errors
    /// [`TokenKeyError::TooShort`], [`TokenKeyError::TooLong`], or [`TokenKeyError::Derive`].
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, TokenKeyError> {
        if bytes.len() < MIN_SECRET_BYTES {
            return Err(TokenKeyError::TooShort { bytes: bytes.len() });
        }
        if bytes.len() > MAX_SECRET_BYTES {
            return Err(TokenKeyError::TooLong { bytes: bytes.len() });
        }
        DerivedKeys::derive(bytes).map(TokenSecret)
    }
}

impl fmt::Debug for TokenSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("TokenSecret(..)")
    }
}

/// Writes a new random secret to `path` (mode 0600 on unix, parent directories created) and
/// returns it, so a first start or an operator can create one. An existing file is kept unless
/// `force`. The secret goes to a temporary file in the same directory and is then renamed into
/// place, so `path` never holds a partial secret.
///
/// # Errors
/// [`TokenKeyError::Exists`] without `force` when `path` exists; [`TokenKeyError::Write`].
pub fn write_new_secret(path: &Path, force: bool) -> Result<TokenSecret, TokenKeyError> {
    let written = |result: Result<(), WriteError>| match result {
        Ok(()) => Ok(()),
        Err(WriteError::Exists) => Err(TokenKeyError::Exists {
            path: path.to_owned(),
        }),
        Err(WriteError::Io(error)) => Err(TokenKeyError::Write {
            path: path.to_owned(),
            error,
        }),
    };
    written(secret_file::check_absent(path, force))?;
    let mut bytes = random_secret()?;
    let secret = TokenSecret::from_bytes(&bytes);
    let mut text = STANDARD.encode(bytes).into_bytes();
    wipe(&mut bytes);
    let secret = secret?;
    text.push(b'\n');
    let result = secret_file::write_new(path, force, &text);
    wipe(&mut text);
    written(result)?;
    Ok(secret)
}

/// Why a token secret could not be generated, read or written. Messages name the file and
/// never contain secret material.
#[derive(Debug, thiserror::Error)]
pub enum TokenKeyError {
    /// The secret file could not be read.
    #[error("cannot read token secret file {}: {error}", path.display())]
    Read {
        /// The secret file.
        path: PathBuf,
        /// The I/O error.
        error: io::Error,
    },
    /// The secret file was read but does not hold a usable secret.
    #[error("token secret file {}: {error}", path.display())]
    InFile {
        /// The secret file.
        path: PathBuf,
        /// What is wrong with its content.
        error: Box<TokenKeyError>,
    },
    /// The file content is not base64.
    #[error(
        "the secret is not standard base64; create a new one with: \
         head -c 32 /dev/urandom | base64 > FILE"
    )]
    NotBase64,
    /// Too few bytes to be a strong secret.
    #[error(
        "the secret has {bytes} bytes, at least {MIN_SECRET_BYTES} random bytes are needed; \
         create a new one with: head -c 32 /dev/urandom | base64 > FILE"
    )]
    TooShort {
        /// Decoded length.
        bytes: usize,
    },
    /// Far more bytes than a secret needs: probably the wrong file.
    #[error(
        "the secret has {bytes} bytes, at most {MAX_SECRET_BYTES} are read: is it the right file?"
    )]
    TooLong {
        /// Decoded length.
        bytes: usize,
    },
    /// The system random generator failed.
    #[error("generating a token secret failed: the system random generator is unavailable")]
    Generate,
    /// Deriving keys from the secret failed (aws-lc refused; should not happen).
    #[error("deriving token keys from the secret failed")]
    Derive,
    /// [`write_new_secret`] found a file already at the path.
    #[error(
        "token secret file {} already exists; use --force to replace it (this changes every \
         file id; keep the previous file as keys.old_token_secret so outstanding tokens work)",
        path.display()
    )]
    Exists {
        /// The existing file.
        path: PathBuf,
    },
    /// [`write_new_secret`] could not create the directory or write the file.
    #[error("cannot write token secret file {}: {error}", path.display())]
    Write {
        /// The secret file.
        path: PathBuf,
        /// The I/O error.
        error: io::Error,
    },
}

/// The keys one secret yields, each from its own HKDF label.
struct DerivedKeys {
    /// HS256 signing key of the JWT.
    jwt_encode: EncodingKey,
    /// The same key, for verification.
    jwt_decode: DecodingKey,
    /// Seals `enc`.
    enc: RandomizedNonceKey,
    /// File ids and organisation tags.
    id: hmac::Key,
    /// `sub`, the digest of the host token.
    sub: hmac::Key,
}

impl DerivedKeys {
    fn derive(secret: &[u8]) -> Result<Self, TokenKeyError> {
        let prk = hkdf::Salt::new(hkdf::HKDF_SHA256, HKDF_SALT).extract(secret);
        let expand = |info: &'static [u8]| -> Result<[u8; 32], TokenKeyError> {
            let info = [info];
            let mut out = [0u8; 32];
            prk.expand(&info, hkdf::HKDF_SHA256)
                .and_then(|okm| okm.fill(&mut out))
                .map_err(|_| TokenKeyError::Derive)?;
            Ok(out)
        };
        let mut jwt = expand(INFO_JWT)?;
        let mut enc = expand(INFO_ENC)?;
        let mut id = expand(INFO_ID)?;
        let mut sub = expand(INFO_SUB)?;
        let keys = RandomizedNonceKey::new(&AES_256_GCM, &enc)
            .map_err(|_| TokenKeyError::Derive)
            .map(|enc| DerivedKeys {
                jwt_encode: EncodingKey::from_secret(&jwt),
                jwt_decode: DecodingKey::from_secret(&jwt),
                enc,
                id: hmac::Key::new(hmac::HMAC_SHA256, &id),
                sub: hmac::Key::new(hmac::HMAC_SHA256, &sub),
            });
        for bytes in [&mut jwt, &mut enc, &mut id, &mut sub] {
            wipe(bytes);
        }
        keys
    }

    /// Whether this key made the HS256 `signature` (base64url) over `message`.
    ///
    /// # Errors
    /// [`TokenError::Malformed`] when `signature` is not base64url.
    fn signed(&self, message: &str, signature: &str) -> Result<bool, TokenError> {
        jsonwebtoken::crypto::verify(
            signature,
            message.as_bytes(),
            &self.jwt_decode,
            Algorithm::HS256,
        )
        .map_err(|_| TokenError::Malformed)
    }

    /// `sub`: 16 base64url characters of HMAC(sub key, host token).
    fn sub(&self, host_token: &str) -> String {
        let tag = hmac::sign(&self.sub, host_token.as_bytes());
        URL_SAFE_NO_PAD.encode(&tag.as_ref()[..SUB_BYTES])
    }

    /// `nonce || ciphertext || tag` of `plain`, bound to `file_id`.
    fn seal(&self, mut plain: Vec<u8>, file_id: &str) -> Result<Vec<u8>, TokenError> {
        let nonce = self
            .enc
            .seal_in_place_append_tag(Aad::from(file_id.as_bytes()), &mut plain)
            .map_err(|_| TokenError::Mint("encryption failed".into()))?;
        let mut sealed = Vec::with_capacity(NONCE_LEN + plain.len());
        sealed.extend_from_slice(nonce.as_ref());
        sealed.extend_from_slice(&plain);
        Ok(sealed)
    }

    /// The plaintext of `sealed` (`nonce || ciphertext || tag`), if this key sealed it for
    /// `file_id`.
    fn open(&self, sealed: &[u8], file_id: &str) -> Option<Vec<u8>> {
        let (nonce, body) = sealed.split_at_checked(NONCE_LEN)?;
        if body.len() < TAG_LEN {
            return None;
        }
        let nonce = Nonce::try_assume_unique_for_key(nonce).ok()?;
        let mut buf = body.to_vec();
        let len = self
            .enc
            .open_in_place(nonce, Aad::from(file_id.as_bytes()), &mut buf)
            .ok()?
            .len();
        buf.truncate(len);
        Some(buf)
    }
}

/// The keys officeswitch mints and checks tokens and derives file ids with: those of the
/// current secret, plus the previous secret's during a rotation (checking only).
pub struct TokenKeys {
    current: DerivedKeys,
    old: Option<DerivedKeys>,
}

impl TokenKeys {
    /// Keys from the current secret and, during a rotation, the previous one.
    pub fn new(current: TokenSecret, old: Option<TokenSecret>) -> Self {
        TokenKeys {
            current: current.0,
            old: old.map(|o| o.0),
        }
    }

    /// Opaque, stable id of one document: [`Self::org_tag`] (8 characters) followed by 24
    /// characters of base64url(HMAC-SHA256(id key, `org` \0 `wopi_src`)); 32 characters of
    /// `[A-Za-z0-9_-]`. The same inputs give the same id on every instance sharing the secret
    /// (so all co-editors meet on one editor node), and the id reveals neither input. Always
    /// uses the current secret.
    pub fn file_id(&self, org: &str, wopi_src: &str) -> String {
        let mut id = String::with_capacity(FILE_ID_LEN);
        self.push_org_tag(org, &mut id);
        let mut ctx = hmac::Context::with_key(&self.current.id);
        ctx.update(org.as_bytes());
        ctx.update(&[0]);
        ctx.update(wopi_src.as_bytes());
        let tag = ctx.sign();
        URL_SAFE_NO_PAD.encode_string(&tag.as_ref()[..DOC_ID_BYTES], &mut id);
        id
    }

    /// The first 8 characters of every file id of `org`: base64url(HMAC(id key, "org" \0
    /// `org`)) truncated. Lets routing find a file id's organisation without a lookup table
    /// shared between instances.
    pub fn org_tag(&self, org: &str) -> String {
        let mut tag = String::with_capacity(ORG_TAG_LEN);
        self.push_org_tag(org, &mut tag);
        tag
    }

    fn push_org_tag(&self, org: &str, out: &mut String) {
        let mut ctx = hmac::Context::with_key(&self.current.id);
        ctx.update(b"org\0");
        ctx.update(org.as_bytes());
        let tag = ctx.sign();
        URL_SAFE_NO_PAD.encode_string(&tag.as_ref()[..ORG_TAG_BYTES], out);
    }

    /// Mints a token for `grant`, valid until `grant.expires_at` (unix seconds), with the
    /// current secret.
    ///
    /// # Errors
    /// [`TokenError::Mint`] when `grant.file_id` is not a file id or sealing fails.
    pub fn mint(&self, grant: &Grant) -> Result<String, TokenError> {
        if !is_file_id(&grant.file_id) {
            return Err(TokenError::Mint("the grant's file id is malformed".into()));
        }
        let keys = &self.current;
        let plain = serde_json::to_vec(&Sealed {
            org: &grant.org,
            pool: &grant.pool,
            url: &grant.url,
            tok: &grant.host_token,
            ro: grant.read_only,
        })
        .map_err(|e| TokenError::Mint(format!("cannot encode the grant: {e}")))?;
        let enc = URL_SAFE_NO_PAD.encode(keys.seal(plain, &grant.file_id)?);
        let claims = ClaimsOut {
            fid: &grant.file_id,
            exp: grant.expires_at,
            iat: unix_now(),
            k: grant.kind.claim(),
            sub: &keys.sub(&grant.host_token),
            enc: &enc,
        };
        let claims = serde_json::to_vec(&claims)
            .map_err(|e| TokenError::Mint(format!("cannot encode the claims: {e}")))?;
        // What `jsonwebtoken::encode` does, with the header encoded once for all tokens.
        let mut token = String::with_capacity(HEADER_B64.len() + claims.len() * 4 / 3 + 48);
        token.push_str(HEADER_B64);
        token.push('.');
        URL_SAFE_NO_PAD.encode_string(&claims, &mut token);
        let signature =
            jsonwebtoken::crypto::sign(token.as_bytes(), &keys.jwt_encode, Algorithm::HS256)
                .map_err(|e| TokenError::Mint(format!("cannot sign the token: {e}")))?;
        token.push('.');
        token.push_str(&signature);
        if token.len() > MAX_TOKEN_LEN {
            return Err(TokenError::Mint(format!(
                "the token would be {} bytes, more than {MAX_TOKEN_LEN}: the host URL is too long",
                token.len()
            )));
        }
        Ok(token)
    }

    /// Checks `token`'s signature (current key, then old), its expiry (`exp` must be after
    /// `now_unix`), that it was minted for `file_id`, and decrypts it (current key, then old).
    ///
    /// # Errors
    /// The first check that fails, as a [`TokenError`].
    pub fn check(&self, token: &str, file_id: &str, now_unix: u64) -> Result<Grant, TokenError> {
        if token.len() > MAX_TOKEN_LEN || !token.bytes().all(is_token_byte) {
            return Err(TokenError::Malformed);
        }
        // Only the one header officeswitch writes: no algorithm choice for a forger.
        let (message, signature) = token.rsplit_once('.').ok_or(TokenError::Malformed)?;
        let payload = message
            .strip_prefix(HEADER_B64)
            .and_then(|rest| rest.strip_prefix('.'))
            .filter(|payload| !payload.contains('.'))
            .ok_or(TokenError::Malformed)?;
        let signer = if self.current.signed(message, signature)? {
            &self.current
        } else {
            match &self.old {
                Some(old) if old.signed(message, signature)? => old,
                _ => return Err(TokenError::BadSignature),
            }
        };
        let claims: ClaimsIn = URL_SAFE_NO_PAD
            .decode(payload)
            .ok()
            .and_then(|json| serde_json::from_slice(&json).ok())
            .ok_or(TokenError::Malformed)?;
        if claims.exp <= now_unix {
            return Err(TokenError::Expired);
        }
        if claims.fid != file_id {
            return Err(TokenError::OtherFile);
        }
        let kind = match claims.k.as_str() {
            "f" => GrantKind::File,
            "l" => GrantKind::Link,
            "o" => GrantKind::Open,
            "s" => GrantKind::Settings,
            _ => return Err(TokenError::Malformed),
        };
        let sealed = URL_SAFE_NO_PAD
            .decode(&claims.enc)
            .map_err(|_| TokenError::Malformed)?;
        let (mut plain, opener) = std::iter::once(&self.current)
            .chain(self.old.as_ref())
            .find_map(|keys| keys.open(&sealed, &claims.fid).map(|p| (p, keys)))
            .ok_or(TokenError::Undecryptable)?;
        let inner = serde_json::from_slice::<SealedOwned>(&plain);
        wipe(&mut plain);
        let inner = inner.map_err(|_| TokenError::Undecryptable)?;
        // Signed and sealed by the same secret, for the same host token.
        if !std::ptr::eq(opener, signer) || opener.sub(&inner.tok) != claims.sub {
            return Err(TokenError::Undecryptable);
        }
        Ok(Grant {
            kind,
            file_id: claims.fid,
            org: inner.org,
            pool: inner.pool,
            url: inner.url,
            host_token: inner.tok,
            expires_at: claims.exp,
            read_only: inner.ro,
        })
    }
}

impl fmt::Debug for TokenKeys {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TokenKeys")
            .field("old", &self.old.is_some())
            .finish_non_exhaustive()
    }
}

/// What a minted token stands for: everything needed to forward an editor's call to the host.
#[derive(Clone, PartialEq, Eq)]
pub struct Grant {
    /// A file (WOPI endpoints) or a link (one host URL).
    pub kind: GrantKind,
    /// The document's file id ([`TokenKeys::file_id`]).
    pub file_id: String,
    /// Organisation whose rules admitted the open.
    pub org: String,
    /// Editor pool the document was opened in.
    pub pool: String,
    /// File: the host's `WOPISrc` (no query). Link: the full host URL, query included.
    /// Settings: the host's settings endpoint (no query).
    pub url: String,
    /// The host's original `access_token` (empty for a link whose URL carries its own token;
    /// the settings token for settings).
    pub host_token: String,
    /// Expiry, unix seconds.
    pub expires_at: u64,
    /// The document was opened read-only (richdocuments' `permission=readonly`: an old
    /// version, the compare view, a read-only preview). Sealed in the token from the open
    /// on, so that no later call can lose it: editors that ignore the open's query
    /// (ONLYOFFICE) are told and held to it ([`crate::proxy::dialect`]).
    pub read_only: bool,
}

impl fmt::Debug for Grant {
    /// Never prints the host token, nor the URL's query (a link URL carries a token there).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let url = match self.url.split_once('?') {
            Some((base, _)) => format!("{base}?[redacted]"),
            None => self.url.clone(),
        };
        f.debug_struct("Grant")
            .field("kind", &self.kind)
            .field("file_id", &self.file_id)
            .field("org", &self.org)
            .field("pool", &self.pool)
            .field("url", &url)
            .field("host_token", &"[redacted]")
            .field("expires_at", &self.expires_at)
            .field("read_only", &self.read_only)
            .finish()
    }
}

/// Which kind of host resource a token opens.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GrantKind {
    /// A document: `/wopi/files/{file_id}[/contents]`.
    File,
    /// One host URL from a host response: `/wopi/links/{file_id}`.
    Link,
    /// An open ticket: the host `WOPISrc` an open was admitted for, carried in the
    /// editor page's address between the two steps of an open ([`crate::proxy::open`]).
    /// It holds no host token (the re-posted form brings that) and opens no endpoint.
    Open,
    /// One Nextcloud's settings endpoint (richdocuments' `.../wopi/settings`) with the
    /// settings token Nextcloud gave for it: `/wopi/settings/{file_id}[/upload]`, where the
    /// id names the organisation and endpoint, not a document ([`crate::proxy::settings`]).
    /// A settings token is not tied to one document, so it gets a kind of its own: a file
    /// token stands for a document's WOPI calls, a settings token for no document at all.
    Settings,
}

impl GrantKind {
    fn claim(self) -> &'static str {
        match self {
            GrantKind::File => "f",
            GrantKind::Link => "l",
            GrantKind::Open => "o",
            GrantKind::Settings => "s",
        }
    }
}

/// Why a token is refused (or could not be minted). `Display` never contains the token.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    /// Not a token officeswitch could have minted (shape, encoding, claims).
    #[error("malformed token")]
    Malformed,
    /// The signature fits neither the current nor the old secret.
    #[error("token signature does not verify")]
    BadSignature,
    /// Past its `exp`.
    #[error("token expired")]
    Expired,
    /// Minted for another document.
    #[error("token is for another file")]
    OtherFile,
    /// Signed, but the sealed grant does not open (or does not match the signed claims).
    #[error("token grant cannot be decrypted")]
    Undecryptable,
    /// Minting failed.
    #[error("cannot mint a token: {0}")]
    Mint(String),
}

impl TokenError {
    /// A short fixed label for logs and metrics.
    pub fn reason(&self) -> &'static str {
        match self {
            TokenError::Malformed => "malformed",
            TokenError::BadSignature => "bad_signature",
            TokenError::Expired => "expired",
            TokenError::OtherFile => "other_file",
            TokenError::Undecryptable => "undecryptable",
            TokenError::Mint(_) => "mint_failed",
        }
    }
}

/// True when `text` could be a file id (32 characters of `[A-Za-z0-9_-]`); lets routing
/// reject junk before any HMAC.
pub fn is_file_id(text: &str) -> bool {
    text.len() == FILE_ID_LEN
        && text
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

/// A file id held inline, so that a routed request carries it without allocating.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct FileId([u8; FILE_ID_LEN]);

impl FileId {
    /// `text` as a file id, if it is one ([`is_file_id`]).
    pub fn parse(text: &str) -> Option<FileId> {
        if !is_file_id(text) {
            return None;
        }
        let mut bytes = [0u8; FILE_ID_LEN];
        bytes.copy_from_slice(text.as_bytes());
        Some(FileId(bytes))
    }

    /// The id as text.
    pub fn as_str(&self) -> &str {
        // Only ASCII from `parse` is ever stored.
        std::str::from_utf8(&self.0).unwrap_or_default()
    }
}

impl fmt::Debug for FileId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "FileId({})", self.as_str())
    }
}

/// JWT characters: base64url and the two dots.
fn is_token_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.')
}

/// Readable JWT claims, as minted.
#[derive(Serialize)]
struct ClaimsOut<'a> {
    fid: &'a str,
    exp: u64,
    iat: u64,
    k: &'static str,
    sub: &'a str,
    enc: &'a str,
}

/// Readable JWT claims, as checked.
#[derive(Deserialize)]
struct ClaimsIn {
    fid: String,
    exp: u64,
    k: String,
    sub: String,
    enc: String,
}

/// The sealed part of a grant, as minted. `ro` is left out when false, so writable
/// grants seal exactly what they did before it existed.
#[derive(Serialize)]
struct Sealed<'a> {
    org: &'a str,
    pool: &'a str,
    url: &'a str,
    tok: &'a str,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    ro: bool,
}

/// The sealed part of a grant, as checked; tokens minted before `ro` existed are
/// writable, as they were.
#[derive(Deserialize)]
struct SealedOwned {
    org: String,
    pool: String,
    url: String,
    tok: String,
    #[serde(default)]
    ro: bool,
}

/// Seconds since the Unix epoch: the clock token expiries, and every other officeswitch
/// timestamp in seconds, are read on.
pub fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

fn random_secret() -> Result<[u8; GENERATED_SECRET_BYTES], TokenKeyError> {
    let mut bytes = [0u8; GENERATED_SECRET_BYTES];
    aws_lc_rs::rand::fill(&mut bytes).map_err(|_| TokenKeyError::Generate)?;
    Ok(bytes)
}

/// Best-effort erasure of a buffer that held secret material.
fn wipe(buf: &mut [u8]) {
    buf.fill(0);
    std::hint::black_box(&buf);
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: u64 = 1_750_000_000;
    const WOPI_SRC: &str =
        "https://nc.example.com:443/index.php/apps/richdocuments/wopi/files/4242_ocabc123def";
    const HOST_TOKEN: &str = "Zq8YtZ0xZ1yHostToken/+=";

    fn keys(seed: u8) -> TokenKeys {
        TokenKeys::new(secret(seed), None)
    }

    fn secret(seed: u8) -> TokenSecret {
        TokenSecret::from_bytes(&[seed; 32]).unwrap()
    }

    fn grant(keys: &TokenKeys) -> Grant {
        Grant {
            kind: GrantKind::File,
            file_id: keys.file_id("acme", WOPI_SRC),
            org: "acme".into(),
            pool: "collabora".into(),
            url: WOPI_SRC.into(),
            host_token: HOST_TOKEN.into(),
            expires_at: NOW + 3600,
            read_only: false,
        }
    }

    /// `token` with the character at `index` replaced by another base64url character.
    fn flip(token: &str, index: usize) -> String {
        let mut bytes = token.as_bytes().to_vec();
        bytes[index] = if bytes[index] == b'A' { b'B' } else { b'A' };
        String::from_utf8(bytes).unwrap()
    }

    #[test]
    fn round_trip_for_files_and_links() {
        let keys = keys(1);
        let file = grant(&keys);
        let token = keys.mint(&file).unwrap();
        assert!(token.bytes().all(is_token_byte), "{token}");
        assert_eq!(token.split('.').count(), 3);
        assert_eq!(keys.check(&token, &file.file_id, NOW).unwrap(), file);

        let link = Grant {
            kind: GrantKind::Link,
            url: "https://nc.example.com/index.php/apps/richdocuments/wopi/settings?type=userconfig&access_token=s3t&fileId=-1".into(),
            host_token: String::new(),
            ..file.clone()
        };
        let token = keys.mint(&link).unwrap();
        assert_eq!(keys.check(&token, &link.file_id, NOW).unwrap(), link);
        // Tokens are random (nonce): two mints differ but both check.
        assert_ne!(keys.mint(&link).unwrap(), token);

        let read_only = Grant {
            read_only: true,
            ..file.clone()
        };
        let token = keys.mint(&read_only).unwrap();
        assert!(keys.check(&token, &file.file_id, NOW).unwrap().read_only);

        let settings = Grant {
            kind: GrantKind::Settings,
            url: "https://nc.example.com/index.php/apps/richdocuments/wopi/settings".into(),
            host_token: "settings-token".into(),
            ..file
        };
        let token = keys.mint(&settings).unwrap();
        assert_eq!(
            keys.check(&token, &settings.file_id, NOW).unwrap(),
            settings
        );
    }

    #[test]
    fn file_ids_are_stable_opaque_and_tagged() {
        let keys = keys(1);
        let id = keys.file_id("acme", WOPI_SRC);
        assert_eq!(id.len(), FILE_ID_LEN);
        assert!(is_file_id(&id), "{id}");
        assert_eq!(id, keys.file_id("acme", WOPI_SRC));
        assert_eq!(
            id,
            TokenKeys::new(secret(1), None).file_id("acme", WOPI_SRC)
        );
        assert_ne!(id, keys.file_id("globex", WOPI_SRC));
        assert_ne!(id, keys.file_id("acme", &format!("{WOPI_SRC}0")));
        assert_ne!(
            id,
            TokenKeys::new(secret(2), None).file_id("acme", WOPI_SRC)
        );

        let tag = keys.org_tag("acme");
        assert_eq!(tag.len(), ORG_TAG_LEN);
        assert!(id.starts_with(&tag));
        assert!(
            keys.file_id("acme", "https://other/wopi/files/1")
                .starts_with(&tag)
        );
        assert_ne!(tag, keys.org_tag("globex"));
        // The old secret does not change ids: they always come from the current one.
        let rotated = TokenKeys::new(secret(1), Some(secret(2)));
        assert_eq!(rotated.file_id("acme", WOPI_SRC), id);
    }

    #[test]
    fn is_file_id_rejects_junk() {
        assert!(is_file_id(&"aZ09-_".repeat(6)[..32]));
        assert!(!is_file_id(&"a".repeat(31)));
        assert!(!is_file_id(&"a".repeat(33)));
        assert!(!is_file_id(&format!("{}.", "a".repeat(31))));
        assert!(!is_file_id(&format!("{}é", "a".repeat(30))));
    }

    #[test]
    fn forged_tokens_are_refused() {
        let keys = keys(1);
        let grant = grant(&keys);
        let token = keys.mint(&grant).unwrap();
        let dots: Vec<usize> = token.match_indices('.').map(|(i, _)| i).collect();
        // One character in the middle of each part.
        let header = flip(&token, dots[0] / 2);
        let payload = flip(&token, (dots[0] + dots[1]) / 2);
        let signature = flip(&token, (dots[1] + token.len()) / 2);
        assert_eq!(
            keys.check(&header, &grant.file_id, NOW),
            Err(TokenError::Malformed)
        );
        assert_eq!(
            keys.check(&payload, &grant.file_id, NOW),
            Err(TokenError::BadSignature)
        );
        assert_eq!(
            keys.check(&signature, &grant.file_id, NOW),
            Err(TokenError::BadSignature)
        );
        for junk in [
            "",
            "a.b",
            "a.b.c",
            "not a token",
            &format!("{token}.x"),
            &format!("{token}%"),
        ] {
            assert_eq!(
                keys.check(junk, &grant.file_id, NOW),
                Err(TokenError::Malformed),
                "{junk}"
            );
        }
        assert_eq!(
            keys.check(&"a".repeat(MAX_TOKEN_LEN + 1), &grant.file_id, NOW),
            Err(TokenError::Malformed)
        );
    }

    #[test]
    fn tokens_are_standard_jwts_with_one_fixed_header() {
        use jsonwebtoken::{Header, Validation};
        let keys = keys(1);
        let grant = grant(&keys);
        let token = keys.mint(&grant).unwrap();
        // jsonwebtoken's own decoder accepts them...
        let mut validation = Validation::new(Algorithm::HS256);
        validation.validate_exp = false;
        let decoded = jsonwebtoken::decode::<serde_json::Value>(
            &token,
            &keys.current.jwt_decode,
            &validation,
        )
        .unwrap();
        assert_eq!(decoded.claims["exp"], grant.expires_at);
        // ...and its encoder writes the header `check` insists on.
        let standard = jsonwebtoken::encode(
            &Header::new(Algorithm::HS256),
            &decoded.claims,
            &keys.current.jwt_encode,
        )
        .unwrap();
        assert!(
            standard.starts_with(&format!("{HEADER_B64}.")),
            "{standard}"
        );
        assert!(keys.check(&standard, &grant.file_id, NOW).is_ok());
        // A properly signed token with any other header is refused.
        let mut header = Header::new(Algorithm::HS256);
        header.kid = Some("x".into());
        let other =
            jsonwebtoken::encode(&header, &decoded.claims, &keys.current.jwt_encode).unwrap();
        assert_eq!(
            keys.check(&other, &grant.file_id, NOW),
            Err(TokenError::Malformed)
        );
    }

    #[test]
    fn a_token_signed_with_alg_none_is_refused() {
        let keys = keys(1);
        let grant = grant(&keys);
        let token = keys.mint(&grant).unwrap();
        let (_, rest) = token.split_once('.').unwrap();
        let (payload, _) = rest.split_once('.').unwrap();
        let none = URL_SAFE_NO_PAD.encode(br#"{"alg":"none","typ":"JWT"}"#);
        let forged = format!("{none}.{payload}.");
        assert!(keys.check(&forged, &grant.file_id, NOW).is_err());
    }

    #[test]
    fn wrong_secret_expired_and_other_file_are_refused() {
        let keys = keys(1);
        let grant = grant(&keys);
        let token = keys.mint(&grant).unwrap();
        assert_eq!(
            TokenKeys::new(secret(2), None).check(&token, &grant.file_id, NOW),
            Err(TokenError::BadSignature)
        );
        assert_eq!(
            keys.check(&token, &grant.file_id, grant.expires_at),
            Err(TokenError::Expired)
        );
        assert_eq!(
            keys.check(&token, &grant.file_id, grant.expires_at + 1),
            Err(TokenError::Expired)
        );
        assert!(
            keys.check(&token, &grant.file_id, grant.expires_at - 1)
                .is_ok()
        );
        let other = keys.file_id("acme", "https://nc.example.com:443/wopi/files/1");
        assert_eq!(keys.check(&token, &other, NOW), Err(TokenError::OtherFile));
    }

    #[test]
    fn rotation_accepts_old_tokens_only_while_configured() {
        let before = keys(1);
        let grant = grant(&before);
        let token = before.mint(&grant).unwrap();
        let rotated = TokenKeys::new(secret(2), Some(secret(1)));
        assert_eq!(rotated.check(&token, &grant.file_id, NOW).unwrap(), grant);
        let after = TokenKeys::new(secret(2), None);
        assert_eq!(
            after.check(&token, &grant.file_id, NOW),
            Err(TokenError::BadSignature)
        );
        // New tokens come from the current secret: the old one alone refuses them.
        let fresh = rotated.mint(&grant).unwrap();
        assert!(rotated.check(&fresh, &grant.file_id, NOW).is_ok());
        assert_eq!(
            before.check(&fresh, &grant.file_id, NOW),
            Err(TokenError::BadSignature)
        );
    }

    #[test]
    fn payload_reveals_no_org_url_or_host_token() {
        let keys = keys(1);
        let mut grant = grant(&keys);
        grant.org = "acme-corporation".into();
        grant.pool = "collabora-pool".into();
        let token = keys.mint(&grant).unwrap();
        let readable: Vec<u8> = token
            .split('.')
            .take(2)
            .flat_map(|part| URL_SAFE_NO_PAD.decode(part).unwrap())
            .collect();
        let readable = String::from_utf8_lossy(&readable);
        for secret in [
            "acme-corporation",
            "collabora-pool",
            "nc.example.com",
            "richdocuments",
            "4242_ocabc123def",
            "Zq8YtZ0xZ1y",
        ] {
            assert!(!readable.contains(secret), "{secret} in {readable}");
            assert!(!token.contains(secret), "{secret} in the token");
        }
        let payload: serde_json::Value = serde_json::from_str(
            &String::from_utf8(
                URL_SAFE_NO_PAD
                    .decode(token.split('.').nth(1).unwrap())
                    .unwrap(),
            )
            .unwrap(),
        )
        .unwrap();
        let mut names: Vec<&str> = payload
            .as_object()
            .unwrap()
            .keys()
            .map(String::as_str)
            .collect();
        names.sort_unstable();
        assert_eq!(names, ["enc", "exp", "fid", "iat", "k", "sub"]);
        assert_eq!(payload["sub"].as_str().unwrap().len(), 16);
        assert_eq!(payload["fid"], grant.file_id.as_str());
    }

    #[test]
    fn sealed_grant_is_bound_to_its_file_id() {
        // Re-signing someone else's `enc` under another fid needs the JWT key; even with it
        // (simulated here), the AAD refuses the move.
        let keys = keys(1);
        let grant = grant(&keys);
        let plain = serde_json::to_vec(&Sealed {
            org: "acme",
            pool: "p",
            url: "u",
            tok: "t",
            ro: false,
        })
        .unwrap();
        let sealed = keys.current.seal(plain, &grant.file_id).unwrap();
        assert!(keys.current.open(&sealed, &grant.file_id).is_some());
        assert!(keys.current.open(&sealed, &"x".repeat(32)).is_none());
        assert!(keys.current.open(&sealed[..20], &grant.file_id).is_none());
        assert!(keys.current.open(&[], &grant.file_id).is_none());
    }

    #[test]
    fn mint_refuses_a_bad_file_id() {
        let keys = keys(1);
        let mut grant = grant(&keys);
        grant.file_id = "short".into();
        let err = keys.mint(&grant).unwrap_err();
        assert_eq!(err.reason(), "mint_failed");
    }

    #[test]
    fn debug_redacts_secrets() {
        let keys = keys(1);
        let mut grant = grant(&keys);
        grant.kind = GrantKind::Link;
        grant.url = "https://nc/wopi/settings?access_token=LinkSecret".into();
        let debug = format!("{grant:?}");
        assert!(!debug.contains("Zq8YtZ0xZ1y"), "{debug}");
        assert!(!debug.contains("LinkSecret"), "{debug}");
        assert!(
            debug.contains("acme") && debug.contains("https://nc/wopi/settings"),
            "{debug}"
        );
        assert_eq!(format!("{:?}", secret(1)), "TokenSecret(..)");
        assert!(!format!("{keys:?}").contains("1, 1"));
    }

    #[test]
    fn errors_have_reasons_and_never_echo_the_token() {
        let keys = keys(1);
        let grant = grant(&keys);
        let token = keys.mint(&grant).unwrap();
        for err in [
            keys.check(&flip(&token, token.len() - 10), &grant.file_id, NOW),
            keys.check(&token, &grant.file_id, NOW + 7200),
            keys.check(&format!("{token}!"), &grant.file_id, NOW),
        ]
        .map(Result::unwrap_err)
        {
            assert!(!err.to_string().contains(&token[..20]), "{err}");
            assert!(!err.reason().is_empty());
        }
        assert_eq!(TokenError::OtherFile.reason(), "other_file");
    }

    #[test]
    fn secrets_are_checked_when_loaded() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("missing.secret");
        let err = TokenSecret::load(&missing).unwrap_err();
        assert!(matches!(err, TokenKeyError::Read { .. }), "{err:?}");
        assert!(err.to_string().contains("missing.secret"), "{err}");

        let short = dir.path().join("short.secret");
        fs::write(
            &short,
            format!("{}\n", STANDARD_PAD_INDIFFERENT.encode([9u8; 16])),
        )
        .unwrap();
        let err = TokenSecret::load(&short).unwrap_err();
        let message = err.to_string();
        assert!(message.contains("short.secret"), "{message}");
        assert!(message.contains("16 bytes"), "{message}");
        assert!(
            matches!(&err, TokenKeyError::InFile { error, .. } if matches!(**error, TokenKeyError::TooShort { bytes: 16 }))
        );

        let bad = dir.path().join("bad.secret");
        fs::write(&bad, "not*base64!SecretPart\n").unwrap();
        let err = TokenSecret::load(&bad).unwrap_err();
        let message = err.to_string();
        assert!(message.contains("bad.secret"), "{message}");
        assert!(message.contains("base64"), "{message}");
        assert!(!message.contains("SecretPart") && !format!("{err:?}").contains("SecretPart"));

        let good = dir.path().join("good.secret");
        let bytes: Vec<u8> = (0..48).collect();
        fs::write(
            &good,
            format!("  {}\r\n", STANDARD_PAD_INDIFFERENT.encode(&bytes)),
        )
        .unwrap();
        let loaded = TokenKeys::new(TokenSecret::load(&good).unwrap(), None);
        let direct = TokenKeys::new(TokenSecret::from_bytes(&bytes).unwrap(), None);
        assert_eq!(loaded.file_id("o", "u"), direct.file_id("o", "u"));

        assert!(matches!(
            TokenSecret::from_bytes(&[0; 2000]),
            Err(TokenKeyError::TooLong { bytes: 2000 })
        ));
    }

    #[test]
    fn write_new_secret_creates_refuses_and_forces() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("nested/keys/token.secret");
        let first = TokenKeys::new(write_new_secret(&path, false).unwrap(), None);
        let text = fs::read_to_string(&path).unwrap();
        assert!(
            text.ends_with('\n') && text.lines().count() == 1,
            "{text:?}"
        );
        assert_eq!(
            STANDARD_PAD_INDIFFERENT.decode(text.trim()).unwrap().len(),
            GENERATED_SECRET_BYTES
        );
        let loaded = TokenKeys::new(TokenSecret::load(&path).unwrap(), None);
        assert_eq!(loaded.file_id("o", "u"), first.file_id("o", "u"));

        let err = write_new_secret(&path, false).unwrap_err();
        assert!(matches!(err, TokenKeyError::Exists { .. }), "{err:?}");
        assert!(err.to_string().contains("--force"), "{err}");
        assert_eq!(fs::read_to_string(&path).unwrap(), text);

        let second = TokenKeys::new(write_new_secret(&path, true).unwrap(), None);
        assert_ne!(second.file_id("o", "u"), first.file_id("o", "u"));
        let names: Vec<_> = fs::read_dir(path.parent().unwrap())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, vec![std::ffi::OsString::from("token.secret")]);
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt as _;
            let mode = fs::metadata(&path).unwrap().permissions().mode() & 0o777;
            assert_eq!(mode, 0o600, "mode {mode:o}");
        }
    }

    #[test]
    fn keys_are_shareable_between_threads() {
        fn assert_send_sync<T: Send + Sync>() {}
        assert_send_sync::<TokenKeys>();
        assert_send_sync::<TokenSecret>();
    }
}
