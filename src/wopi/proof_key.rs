//! WOPI proof keys: officeswitch's own RSA key pair, and the public keys editors advertise.
//!
//! A WOPI client (an editor such as Collabora Online or OnlyOffice) signs each request it makes
//! to a WOPI host with an RSA private key (`X-WOPI-Proof`, `X-WOPI-ProofOld`). The signed bytes
//! are the access token, the uppercased request URL and the `X-WOPI-TimeStamp` ticks; the
//! signature is RSASSA-PKCS1-v1_5 over SHA-256. The editor publishes the public half in the
//! `<proof-key>` element of its discovery XML, and a host such as Nextcloud checks every WOPI
//! call against it.
//!
//! officeswitch sits between hosts and several editors. It checks an editor's proof against that
//! editor's discovery key, then forwards the call with a different URL and token, so the editor's
//! signature no longer fits. officeswitch therefore signs forwarded calls with a key pair of its
//! own ([`ProofKey`], kept on disk as an unencrypted PKCS#8 PEM file) and advertises that public
//! key in the merged discovery it serves to hosts.
//!
//! Discovery carries a public key in two encodings, each base64 (standard alphabet, padded). Both
//! are read and written by [`PublicProofKey`]:
//! - `modulus` + `exponent`: the RSA modulus and public exponent as big-endian unsigned integers
//!   (what Nextcloud richdocuments uses);
//! - `value`: a Microsoft CryptoAPI `PUBLICKEYBLOB`, laid out as `06 02 00 00` (`PUBLICKEYBLOB`,
//!   version 2), `00 A4 00 00` (`CALG_RSA_KEYX`), `"RSA1"`, the bit length and public exponent as
//!   little-endian `u32`s, then the modulus as little-endian bytes (what Office-style hosts use).
//!
//! The discovery attributes `oldvalue`, `oldmodulus` and `oldexponent` use the same encodings for
//! the previous key during a key rotation.

use std::fmt;
use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use aws_lc_rs::encoding::AsDer as _;
use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::rsa::{KeyPair, KeySize};
use aws_lc_rs::signature::{
    KeyPair as _, RSA_PKCS1_2048_8192_SHA256, RSA_PKCS1_SHA256, RsaPublicKeyComponents,
};
use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, STANDARD_PAD_INDIFFERENT};

use super::secret_file::{self, WriteError};

/// Smallest RSA modulus, in bits, officeswitch accepts for signing or verifying.
const MIN_BITS: usize = 2048;
/// Largest RSA modulus, in bits, aws-lc signs or verifies with.
const MAX_BITS: usize = 8192;

/// The `PUBLICKEYBLOB` header: `BLOBHEADER` (bType, bVersion, reserved, aiKeyAlg) then the
/// `RSAPUBKEY` magic.
const CAPI_BLOBHEADER: [u8; 8] = [0x06, 0x02, 0x00, 0x00, 0x00, 0xA4, 0x00, 0x00];
const CAPI_RSA1: &[u8; 4] = b"RSA1";
/// Header (8) + magic (4) + bitlen (4) + pubexp (4).
const CAPI_HEADER_LEN: usize = 20;

const PEM_PKCS8_LABEL: &str = "PRIVATE KEY";

/// DER encoding of the PKCS#8 algorithm OID rsaEncryption (1.2.840.113549.1.1.1).
const OID_RSA_ENCRYPTION: &[u8] = &[0x2A, 0x86, 0x48, 0x86, 0xF7, 0x0D, 0x01, 0x01, 0x01];

/// officeswitch's WOPI proof key: the RSA private key it signs forwarded WOPI requests with.
///
/// Generated keys are RSA 2048; loaded keys may be 2048 to 8192 bits. `Debug` shows only the
/// public half.
pub struct ProofKey {
    pair: KeyPair,
    public: PublicProofKey,
}

impl ProofKey {
    /// Generates a fresh RSA 2048 key, for a first start or a key rotation.
    pub fn generate() -> Result<Self, KeyError> {
        let pair = KeyPair::generate(KeySize::Rsa2048).map_err(|_| KeyError::Generate)?;
        Self::from_pair(pair)
    }

    /// Parses an unencrypted PKCS#8 PEM (`-----BEGIN PRIVATE KEY-----`) RSA key, the format
    /// officeswitch stores its key in. Other PEM kinds (PKCS#1, encrypted, OpenSSH), non-RSA keys
    /// and keys under 2048 bits get an error that says what was found and how to fix it.
    pub fn from_pkcs8_pem(pem: &str) -> Result<Self, KeyError> {
        let mut der = pem_pkcs8_der(pem)?;
        let key = Self::from_pkcs8_der(&der);
        wipe(&mut der);
        key
    }

    /// Reads and parses the PKCS#8 PEM key file at `path`; every error names the path.
    pub fn load(path: &Path) -> Result<Self, KeyError> {
        let mut text = fs::read_to_string(path).map_err(|error| KeyError::Read {
            path: path.to_owned(),
            error,
        })?;
        let key = Self::from_pkcs8_pem(&text).map_err(|error| KeyError::InFile {
            path: path.to_owned(),
            error: Box::new(error),
        });
        wipe_string(&mut text);
        key
    }

    /// Encodes the key as an unencrypted PKCS#8 PEM, the format [`ProofKey::load`] reads. The
    /// result holds the private key: write it only to a file readable by officeswitch alone.
    pub fn to_pkcs8_pem(&self) -> Result<String, KeyError> {
        let der = self.pair.as_der().map_err(|_| KeyError::Encode)?;
        let mut b64 = STANDARD.encode(der.as_ref());
        let mut pem = String::with_capacity(b64.len() + b64.len() / 64 + 64);
        pem.push_str("-----BEGIN PRIVATE KEY-----\n");
        for line in b64.as_bytes().chunks(64) {
            // Base64 output is ASCII, so every chunk is valid UTF-8.
            pem.push_str(std::str::from_utf8(line).map_err(|_| KeyError::Encode)?);
            pem.push('\n');
        }
        pem.push_str("-----END PRIVATE KEY-----\n");
        wipe_string(&mut b64);
        Ok(pem)
    }

    /// The public half, to advertise in officeswitch's discovery `<proof-key>`.
    pub fn public(&self) -> &PublicProofKey {
        &self.public
    }

    /// Signs `message` with RSASSA-PKCS1-v1_5 over SHA-256, the WOPI proof algorithm; `message`
    /// is the proof byte string (token, uppercased URL, timestamp), not its hash.
    pub fn sign(&self, message: &[u8]) -> Result<Vec<u8>, KeyError> {
        let mut signature = vec![0; self.pair.public_modulus_len()];
        self.pair
            .sign(
                &RSA_PKCS1_SHA256,
                &SystemRandom::new(),
                message,
                &mut signature,
            )
            .map_err(|_| KeyError::Sign)?;
        Ok(signature)
    }

    fn from_pkcs8_der(der: &[u8]) -> Result<Self, KeyError> {
        let (algorithm, private_key) = pkcs8_parts(der).ok_or(KeyError::MalformedPkcs8)?;
        if algorithm != OID_RSA_ENCRYPTION {
            return Err(KeyError::NotRsa {
                algorithm: algorithm_name(algorithm),
            });
        }
        let modulus = rsa_private_key_modulus(private_key).ok_or(KeyError::MalformedPkcs8)?;
        let bits = bit_len(modulus);
        if bits < MIN_BITS {
            return Err(KeyError::TooSmall { bits });
        }
        if bits > MAX_BITS {
            return Err(KeyError::TooLarge { bits });
        }
        let pair = KeyPair::from_pkcs8(der).map_err(|rejected| KeyError::Rejected {
            reason: rejected.description_(),
        })?;
        Self::from_pair(pair)
    }

    fn from_pair(pair: KeyPair) -> Result<Self, KeyError> {
        let public_key = pair.public_key();
        let public = PublicProofKey::from_be_bytes(
            public_key.modulus().big_endian_without_leading_zero(),
            public_key.exponent().big_endian_without_leading_zero(),
        )?;
        Ok(Self { pair, public })
    }
}

impl fmt::Debug for ProofKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ProofKey")
            .field("bits", &self.public.bits())
            .field("modulus", &self.public.modulus_b64())
            .field("exponent", &self.public.exponent_b64())
            .finish_non_exhaustive()
    }
}

/// Writes a new PKCS#8 PEM key to `path` (mode 0600 on unix, parent directories created), so an
/// operator can create or rotate officeswitch's key. An existing file is kept unless `force`.
/// The key is written to a temporary file in the same directory and then renamed into place, so
/// `path` never holds a partial key.
pub fn write_new_key(path: &Path, force: bool) -> Result<ProofKey, KeyError> {
    let written = |result: Result<(), WriteError>| match result {
        Ok(()) => Ok(()),
        Err(WriteError::Exists) => Err(KeyError::Exists {
            path: path.to_owned(),
        }),
        Err(WriteError::Io(error)) => Err(KeyError::Write {
            path: path.to_owned(),
            error,
        }),
    };
    // Cheap early refusal, before generating a key for nothing.
    written(secret_file::check_absent(path, force))?;
    let key = ProofKey::generate()?;
    let mut pem = key.to_pkcs8_pem()?;
    let result = secret_file::write_new(path, force, pem.as_bytes());
    wipe_string(&mut pem);
    written(result)?;
    Ok(key)
}

/// An RSA public proof key, as read from or written to a discovery `<proof-key>` element; used to
/// verify editors' proofs and to advertise officeswitch's own key.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PublicProofKey {
    /// Big-endian modulus without leading zero bytes.
    modulus: Vec<u8>,
    /// Big-endian public exponent without leading zero bytes (at most 4 bytes).
    exponent: Vec<u8>,
}

impl PublicProofKey {
    /// Reads a key from the discovery `modulus` and `exponent` attributes (base64 big-endian
    /// integers), the form Nextcloud verifies with.
    pub fn from_modulus_exponent_b64(modulus: &str, exponent: &str) -> Result<Self, KeyError> {
        let modulus = decode_b64(modulus, "modulus")?;
        let exponent = decode_b64(exponent, "exponent")?;
        Self::from_be_bytes(&modulus, &exponent)
    }

    /// Reads a key from the discovery `value` attribute: a base64 Microsoft CryptoAPI
    /// `PUBLICKEYBLOB` whose header must be `06 02 00 00`, `00 A4 00 00`, `"RSA1"`.
    pub fn from_capi_blob_b64(value: &str) -> Result<Self, KeyError> {
        let blob = decode_b64(value, "value")?;
        if blob.len() < CAPI_HEADER_LEN {
            return Err(KeyError::CapiBlob(format!(
                "it is {} bytes long, shorter than the {CAPI_HEADER_LEN}-byte header",
                blob.len()
            )));
        }
        if blob[..8] != CAPI_BLOBHEADER {
            return Err(KeyError::CapiBlob(format!(
                "its BLOBHEADER is {}, expected {} (PUBLICKEYBLOB, version 2, CALG_RSA_KEYX)",
                hex(&blob[..8]),
                hex(&CAPI_BLOBHEADER)
            )));
        }
        if &blob[8..12] != CAPI_RSA1 {
            return Err(KeyError::CapiBlob(format!(
                "its RSAPUBKEY magic is {}, expected 52 53 41 31 (\"RSA1\")",
                hex(&blob[8..12])
            )));
        }
        let bitlen = u32::from_le_bytes([blob[12], blob[13], blob[14], blob[15]]);
        let pubexp = u32::from_le_bytes([blob[16], blob[17], blob[18], blob[19]]);
        let modulus_le = &blob[CAPI_HEADER_LEN..];
        if !bitlen.is_multiple_of(8) || modulus_le.len() as u64 != u64::from(bitlen / 8) {
            return Err(KeyError::CapiBlob(format!(
                "its header says bitlen {bitlen}, but {} modulus bytes follow",
                modulus_le.len()
            )));
        }
        let modulus: Vec<u8> = modulus_le.iter().rev().copied().collect();
        Self::from_be_bytes(&modulus, &pubexp.to_be_bytes())
    }

    /// The discovery `modulus` attribute: base64 of the big-endian modulus.
    pub fn modulus_b64(&self) -> String {
        STANDARD.encode(&self.modulus)
    }

    /// The discovery `exponent` attribute: base64 of the big-endian exponent ("AQAB" for 65537).
    pub fn exponent_b64(&self) -> String {
        STANDARD.encode(&self.exponent)
    }

    /// The discovery `value` attribute: base64 of the Microsoft CryptoAPI `PUBLICKEYBLOB`.
    pub fn capi_blob_b64(&self) -> String {
        let mut blob = Vec::with_capacity(CAPI_HEADER_LEN + self.modulus.len());
        blob.extend_from_slice(&CAPI_BLOBHEADER);
        blob.extend_from_slice(CAPI_RSA1);
        // The constructor bounds the modulus to 8192 bits, so these fit in u32.
        let bitlen = u32::try_from(self.modulus.len() * 8).unwrap_or(u32::MAX);
        blob.extend_from_slice(&bitlen.to_le_bytes());
        blob.extend_from_slice(&self.exponent_u32().to_le_bytes());
        blob.extend(self.modulus.iter().rev());
        STANDARD.encode(blob)
    }

    /// Checks an RSASSA-PKCS1-v1_5 SHA-256 `signature` (raw bytes, not base64) over `message`
    /// (the proof byte string): true only if this key made it.
    pub fn verify(&self, message: &[u8], signature: &[u8]) -> bool {
        RsaPublicKeyComponents {
            n: self.modulus.as_slice(),
            e: self.exponent.as_slice(),
        }
        .verify(&RSA_PKCS1_2048_8192_SHA256, message, signature)
        .is_ok()
    }

    /// The modulus size in bits.
    fn bits(&self) -> usize {
        bit_len(&self.modulus)
    }

    fn exponent_u32(&self) -> u32 {
        // The constructor keeps the exponent to at most 4 bytes.
        self.exponent
            .iter()
            .fold(0u32, |acc, &b| (acc << 8) | u32::from(b))
    }

    /// Validates big-endian components (leading zeros allowed) and stores them without leading
    /// zeros, so keys read from either encoding compare equal.
    fn from_be_bytes(modulus: &[u8], exponent: &[u8]) -> Result<Self, KeyError> {
        let modulus = strip_leading_zeros(modulus);
        let exponent = strip_leading_zeros(exponent);
        let bits = bit_len(modulus);
        if !(MIN_BITS..=MAX_BITS).contains(&bits) {
            return Err(KeyError::PublicKey(format!(
                "the modulus has {bits} bits; WOPI proofs are checked only with {MIN_BITS} to \
                 {MAX_BITS}-bit RSA keys"
            )));
        }
        if modulus.last().is_some_and(|b| b & 1 == 0) {
            return Err(KeyError::PublicKey(
                "the modulus is even, so it is not an RSA modulus".to_owned(),
            ));
        }
        if exponent.len() > 4 {
            return Err(KeyError::PublicKey(format!(
                "the exponent is {} bytes long; at most 4 fit a CryptoAPI PUBLICKEYBLOB",
                exponent.len()
            )));
        }
        let key = Self {
            modulus: modulus.to_vec(),
            exponent: exponent.to_vec(),
        };
        let e = key.exponent_u32();
        if e < 3 || e.is_multiple_of(2) {
            return Err(KeyError::PublicKey(format!(
                "the exponent is {e}; an RSA public exponent must be odd and at least 3"
            )));
        }
        Ok(key)
    }
}

/// Why a proof key could not be generated, read, written or used. Messages name the problem and
/// the fix, and never contain private key material.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    /// The key file could not be read.
    #[error("cannot read proof key file {}: {error}", path.display())]
    Read {
        /// The key file.
        path: PathBuf,
        /// The I/O error.
        error: io::Error,
    },
    /// The key file was read but does not hold a usable key.
    #[error("proof key file {}: {error}", path.display())]
    InFile {
        /// The key file.
        path: PathBuf,
        /// What is wrong with its content.
        error: Box<KeyError>,
    },
    /// The PEM is PKCS#1 (`BEGIN RSA PRIVATE KEY`), which officeswitch does not read.
    #[error(
        "the proof key is a PKCS#1 PEM (\"-----BEGIN RSA PRIVATE KEY-----\"), but officeswitch \
         reads only unencrypted PKCS#8 (\"-----BEGIN PRIVATE KEY-----\"); convert it with: \
         openssl pkcs8 -topk8 -nocrypt -in OLD_KEY_FILE -out NEW_KEY_FILE"
    )]
    Pkcs1,
    /// The PEM is an encrypted PKCS#8 key.
    #[error(
        "the proof key is encrypted (\"-----BEGIN ENCRYPTED PRIVATE KEY-----\"), but officeswitch \
         needs it unencrypted; decrypt it with: openssl pkey -in OLD_KEY_FILE -out NEW_KEY_FILE"
    )]
    Encrypted,
    /// The file is an OpenSSH private key (as `ssh-keygen` writes by default).
    #[error(
        "the proof key is in OpenSSH format (\"-----BEGIN OPENSSH PRIVATE KEY-----\"), but \
         officeswitch reads only unencrypted PKCS#8 (\"-----BEGIN PRIVATE KEY-----\"); convert a \
         copy in place with: ssh-keygen -p -m PKCS8 -N \"\" -f KEY_FILE_COPY"
    )]
    OpenSsh,
    /// The PEM holds something other than a private key (or a private key kind not read here).
    #[error(
        "expected a PKCS#8 RSA private key (\"-----BEGIN PRIVATE KEY-----\"), found \
         \"-----BEGIN {label}-----\""
    )]
    WrongPemLabel {
        /// The label found after `-----BEGIN `.
        label: String,
    },
    /// No PEM block at all.
    #[error(
        "no PEM block found; expected a PKCS#8 RSA private key starting with \
         \"-----BEGIN PRIVATE KEY-----\""
    )]
    NotPem,
    /// The PEM block is broken (unterminated, or its body is not base64).
    #[error("malformed PEM private key: {0}")]
    BadPem(&'static str),
    /// The PEM body decodes, but not to a PKCS#8 `PrivateKeyInfo`.
    #[error("the \"BEGIN PRIVATE KEY\" block is not a valid PKCS#8 DER private key")]
    MalformedPkcs8,
    /// A PKCS#8 key of another algorithm.
    #[error(
        "the proof key is {algorithm}, but WOPI proof keys must be plain RSA (PKCS#8 algorithm \
         rsaEncryption); generate one with: \
         openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:2048 -out KEY_FILE"
    )]
    NotRsa {
        /// The key's algorithm, by name or OID.
        algorithm: String,
    },
    /// An RSA key too weak to use.
    #[error(
        "the RSA proof key has {bits} bits; officeswitch requires at least 2048; generate a new \
         one with: openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:2048 -out KEY_FILE"
    )]
    TooSmall {
        /// The modulus size.
        bits: usize,
    },
    /// An RSA key larger than aws-lc supports.
    #[error("the RSA proof key has {bits} bits; at most 8192 are supported")]
    TooLarge {
        /// The modulus size.
        bits: usize,
    },
    /// aws-lc refused the key (for instance inconsistent RSA components).
    #[error("the RSA proof key was rejected by aws-lc ({reason}); the key file may be corrupt")]
    Rejected {
        /// aws-lc's short reason.
        reason: &'static str,
    },
    /// RSA key generation failed.
    #[error("generating an RSA 2048 proof key failed")]
    Generate,
    /// Serializing the key as PKCS#8 failed.
    #[error("encoding the proof key as PKCS#8 failed")]
    Encode,
    /// Signing failed.
    #[error("signing with the proof key failed")]
    Sign,
    /// [`write_new_key`] found a file already at the path.
    #[error(
        "proof key file {} already exists; use --force to replace it (hosts then need \
         officeswitch's new discovery before they accept its proofs)",
        path.display()
    )]
    Exists {
        /// The existing file.
        path: PathBuf,
    },
    /// [`write_new_key`] could not create the directory or write the file.
    #[error("cannot write proof key file {}: {error}", path.display())]
    Write {
        /// The key file.
        path: PathBuf,
        /// The I/O error.
        error: io::Error,
    },
    /// A discovery attribute is not base64.
    #[error("the discovery proof-key {field} is not valid base64: {error}")]
    Base64 {
        /// `modulus`, `exponent` or `value`.
        field: &'static str,
        /// The decoder's complaint.
        error: base64::DecodeError,
    },
    /// A discovery `value` is not an RSA CryptoAPI `PUBLICKEYBLOB`.
    #[error("the discovery proof-key value is not a CryptoAPI RSA PUBLICKEYBLOB: {0}")]
    CapiBlob(String),
    /// The public key components are not a usable RSA key.
    #[error("invalid RSA proof public key: {0}")]
    PublicKey(String),
}

/// Finds the PKCS#8 block in `pem` and decodes it, or explains what kind of key the text holds.
fn pem_pkcs8_der(pem: &str) -> Result<Vec<u8>, KeyError> {
    let mut labels = Vec::new();
    let mut rest = pem;
    while let Some(start) = rest.find("-----BEGIN ") {
        let after = &rest[start + "-----BEGIN ".len()..];
        let Some(end) = after.find("-----") else {
            break;
        };
        let label = &after[..end];
        let body_start = &after[end + "-----".len()..];
        if label == PEM_PKCS8_LABEL {
            let end_marker = "-----END PRIVATE KEY-----";
            let Some(body_end) = body_start.find(end_marker) else {
                return Err(KeyError::BadPem(
                    "\"-----BEGIN PRIVATE KEY-----\" has no matching \"-----END PRIVATE KEY-----\"",
                ));
            };
            let mut body: Vec<u8> = body_start[..body_end]
                .bytes()
                .filter(|b| !b.is_ascii_whitespace())
                .collect();
            let der = STANDARD.decode(&body);
            wipe(&mut body);
            // The decoder's error would quote a character of the private key: leave it out.
            return der.map_err(|_| KeyError::BadPem("the body is not valid base64"));
        }
        labels.push(label);
        rest = body_start;
    }
    // Name the private key if there is one (`openssl ecparam -genkey` puts parameters first).
    let label = labels
        .iter()
        .find(|label| label.ends_with("PRIVATE KEY"))
        .or(labels.first());
    match label.copied() {
        None => Err(KeyError::NotPem),
        Some("RSA PRIVATE KEY") => Err(KeyError::Pkcs1),
        Some("ENCRYPTED PRIVATE KEY") => Err(KeyError::Encrypted),
        Some("OPENSSH PRIVATE KEY") => Err(KeyError::OpenSsh),
        Some("EC PRIVATE KEY") => Err(KeyError::NotRsa {
            algorithm: "an EC key (SEC1 \"BEGIN EC PRIVATE KEY\")".to_owned(),
        }),
        Some("DSA PRIVATE KEY") => Err(KeyError::NotRsa {
            algorithm: "a DSA key (\"BEGIN DSA PRIVATE KEY\")".to_owned(),
        }),
        Some(label) => Err(KeyError::WrongPemLabel {
            label: label.chars().take(64).collect(),
        }),
    }
}

/// Splits a DER TLV off `input`: (tag, contents, rest). Definite lengths only, as DER requires.
fn der_next(input: &[u8]) -> Option<(u8, &[u8], &[u8])> {
    let (&tag, rest) = input.split_first()?;
    let (&first, mut rest) = rest.split_first()?;
    let len = if first < 0x80 {
        usize::from(first)
    } else {
        let n = usize::from(first & 0x7F);
        if n == 0 || n > 4 || rest.len() < n {
            return None;
        }
        let len = rest[..n]
            .iter()
            .fold(0usize, |acc, &b| (acc << 8) | usize::from(b));
        rest = &rest[n..];
        len
    };
    if rest.len() < len {
        return None;
    }
    Some((tag, &rest[..len], &rest[len..]))
}

/// From a PKCS#8 `PrivateKeyInfo`: the algorithm OID contents and the `privateKey` octets.
fn pkcs8_parts(der: &[u8]) -> Option<(&[u8], &[u8])> {
    let (0x30, info, _) = der_next(der)? else {
        return None;
    };
    let (0x02, _version, rest) = der_next(info)? else {
        return None;
    };
    let (0x30, algorithm, rest) = der_next(rest)? else {
        return None;
    };
    let (0x06, oid, _parameters) = der_next(algorithm)? else {
        return None;
    };
    let (0x04, private_key, _) = der_next(rest)? else {
        return None;
    };
    Some((oid, private_key))
}

/// From a PKCS#1 `RSAPrivateKey`: the modulus integer contents.
fn rsa_private_key_modulus(der: &[u8]) -> Option<&[u8]> {
    let (0x30, key, _) = der_next(der)? else {
        return None;
    };
    let (0x02, _version, rest) = der_next(key)? else {
        return None;
    };
    let (0x02, modulus, _) = der_next(rest)? else {
        return None;
    };
    Some(modulus)
}

/// A readable name for a PKCS#8 algorithm OID, for [`KeyError::NotRsa`].
fn algorithm_name(oid: &[u8]) -> String {
    let known = match oid {
        [0x2A, 0x86, 0x48, 0x86, 0xF7, 0x0D, 0x01, 0x01, 0x0A] => {
            Some("an RSASSA-PSS-restricted key (OID 1.2.840.113549.1.1.10)")
        }
        [0x2A, 0x86, 0x48, 0xCE, 0x3D, 0x02, 0x01] => Some("an EC key"),
        [0x2A, 0x86, 0x48, 0xCE, 0x38, 0x04, 0x01] => Some("a DSA key"),
        [0x2B, 0x65, 0x6E] => Some("an X25519 key"),
        [0x2B, 0x65, 0x6F] => Some("an X448 key"),
        [0x2B, 0x65, 0x70] => Some("an Ed25519 key"),
        [0x2B, 0x65, 0x71] => Some("an Ed448 key"),
        _ => None,
    };
    match known {
        Some(name) => name.to_owned(),
        None => format!("a key of algorithm OID {}", oid_dotted(oid)),
    }
}

/// Dotted-decimal form of DER OID contents.
fn oid_dotted(oid: &[u8]) -> String {
    let mut arcs: Vec<u64> = Vec::new();
    let mut value: u64 = 0;
    for &b in oid {
        value = (value << 7) | u64::from(b & 0x7F);
        if b & 0x80 == 0 {
            if arcs.is_empty() {
                let first = (value / 40).min(2);
                arcs.push(first);
                arcs.push(value - first * 40);
            } else {
                arcs.push(value);
            }
            value = 0;
        }
    }
    arcs.iter()
        .map(u64::to_string)
        .collect::<Vec<_>>()
        .join(".")
}

/// Decodes a discovery attribute (standard alphabet; padding optional; outer spaces ignored).
fn decode_b64(text: &str, field: &'static str) -> Result<Vec<u8>, KeyError> {
    STANDARD_PAD_INDIFFERENT
        .decode(text.trim())
        .map_err(|error| KeyError::Base64 { field, error })
}

fn strip_leading_zeros(bytes: &[u8]) -> &[u8] {
    let first = bytes.iter().position(|&b| b != 0).unwrap_or(bytes.len());
    &bytes[first..]
}

/// Bit length of a big-endian unsigned integer.
fn bit_len(be: &[u8]) -> usize {
    let be = strip_leading_zeros(be);
    match be.first() {
        None => 0,
        Some(&top) => be.len() * 8 - top.leading_zeros() as usize,
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes
        .iter()
        .map(|b| format!("{b:02X}"))
        .collect::<Vec<_>>()
        .join(" ")
}

/// Best-effort erasure of a buffer that held private key material.
fn wipe(buf: &mut [u8]) {
    buf.fill(0);
    std::hint::black_box(&buf);
}

fn wipe_string(text: &mut String) {
    let mut bytes = std::mem::take(text).into_bytes();
    wipe(&mut bytes);
}

#[cfg(test)]
mod tests {
    use super::*;

    use aws_lc_rs::signature::{ECDSA_P256_SHA256_ASN1_SIGNING, EcdsaKeyPair, Ed25519KeyPair};

    // Microsoft's sample keys; their proof vectors are checked in `wopi::proof`.
    use crate::wopi::proof::ms_vectors::{MS_MODULUS, MS_OLD_MODULUS, MS_OLD_VALUE, MS_VALUE};

    const FIXTURES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../shared/fixtures/");

    fn b64(text: &str) -> Vec<u8> {
        STANDARD.decode(text).unwrap()
    }

    fn ms_current() -> PublicProofKey {
        PublicProofKey::from_modulus_exponent_b64(MS_MODULUS, "AQAB").unwrap()
    }

    fn ms_old() -> PublicProofKey {
        PublicProofKey::from_modulus_exponent_b64(MS_OLD_MODULUS, "AQAB").unwrap()
    }

    fn fixture(name: &str) -> String {
        let path = format!("{FIXTURES}{name}");
        fs::read_to_string(&path).unwrap_or_else(|e| panic!("cannot read fixture {path}: {e}"))
    }

    /// The value of attribute `name` (a whole attribute name, so "modulus" does not match
    /// "oldmodulus").
    fn attribute<'a>(xml: &'a str, name: &str) -> &'a str {
        let needle = format!("{name}=\"");
        let start = xml
            .match_indices(&needle)
            .map(|(i, _)| i)
            .find(|&i| i > 0 && xml.as_bytes()[i - 1].is_ascii_whitespace())
            .unwrap_or_else(|| panic!("attribute {name} not found"))
            + needle.len();
        let len = xml[start..].find('"').expect("unterminated attribute");
        &xml[start..start + len]
    }

    fn pem_wrap(label: &str, der: &[u8]) -> String {
        let b64 = STANDARD.encode(der);
        let lines: Vec<&str> = b64
            .as_bytes()
            .chunks(64)
            .map(|c| std::str::from_utf8(c).unwrap())
            .collect();
        format!(
            "-----BEGIN {label}-----\n{}\n-----END {label}-----\n",
            lines.join("\n")
        )
    }

    fn der_tlv(tag: u8, contents: &[u8]) -> Vec<u8> {
        let mut out = vec![tag];
        let len = contents.len();
        if len < 0x80 {
            out.push(u8::try_from(len).unwrap());
        } else {
            let bytes = u32::try_from(len).unwrap().to_be_bytes();
            let bytes = strip_leading_zeros(&bytes);
            out.push(0x80 | u8::try_from(bytes.len()).unwrap());
            out.extend_from_slice(bytes);
        }
        out.extend_from_slice(contents);
        out
    }

    /// A structurally valid PKCS#8 RSA key whose modulus has `bits` bits (other fields dummy).
    fn fake_rsa_pkcs8(bits: usize) -> Vec<u8> {
        let mut modulus = vec![0xFF; bits / 8];
        modulus.insert(0, 0); // positive INTEGER
        let mut rsa_key = der_tlv(0x02, &[0]);
        rsa_key.extend(der_tlv(0x02, &modulus));
        for _ in 0..7 {
            rsa_key.extend(der_tlv(0x02, &[3]));
        }
        let mut algorithm = der_tlv(0x06, OID_RSA_ENCRYPTION);
        algorithm.extend(der_tlv(0x05, &[]));
        let mut info = der_tlv(0x02, &[0]);
        info.extend(der_tlv(0x30, &algorithm));
        info.extend(der_tlv(0x04, &der_tlv(0x30, &rsa_key)));
        der_tlv(0x30, &info)
    }

    #[test]
    fn generate_pem_round_trip_keeps_public_key_and_signing_power() {
        let key = ProofKey::generate().unwrap();
        assert_eq!(key.public().bits(), 2048);
        assert_eq!(key.public().exponent_b64(), "AQAB");
        assert_eq!(b64(&key.public().modulus_b64()).len(), 256);

        let pem = key.to_pkcs8_pem().unwrap();
        assert!(
            pem.starts_with("-----BEGIN PRIVATE KEY-----\n"),
            "{}",
            &pem[..30]
        );
        assert!(pem.ends_with("-----END PRIVATE KEY-----\n"));
        assert!(pem.lines().all(|line| line.len() <= 64));

        let parsed = ProofKey::from_pkcs8_pem(&pem).unwrap();
        assert_eq!(parsed.public(), key.public());
        // The private half survived too: the parsed key signs for the original public key.
        let signature = parsed.sign(b"round trip").unwrap();
        assert!(key.public().verify(b"round trip", &signature));
        // And the PEM is stable.
        assert_eq!(parsed.to_pkcs8_pem().unwrap(), pem);
    }

    #[test]
    fn pem_with_crlf_and_surrounding_text_parses() {
        let key = ProofKey::generate().unwrap();
        let pem = key.to_pkcs8_pem().unwrap().replace('\n', "\r\n");
        let text = format!("# officeswitch proof key\r\n{pem}\r\ntrailing\r\n");
        assert_eq!(
            ProofKey::from_pkcs8_pem(&text).unwrap().public(),
            key.public()
        );
    }

    #[test]
    fn pem_with_certificate_before_key_finds_the_key() {
        let key = ProofKey::generate().unwrap();
        let text = format!(
            "{}{}",
            pem_wrap("CERTIFICATE", b"not really a certificate"),
            key.to_pkcs8_pem().unwrap()
        );
        assert_eq!(
            ProofKey::from_pkcs8_pem(&text).unwrap().public(),
            key.public()
        );
    }

    #[test]
    fn pkcs1_pem_is_refused_with_conversion_command() {
        let pem = pem_wrap("RSA PRIVATE KEY", &[0x30, 0x00]);
        let error = ProofKey::from_pkcs8_pem(&pem).unwrap_err();
        assert!(matches!(error, KeyError::Pkcs1), "{error:?}");
        let message = error.to_string();
        assert!(message.contains("BEGIN RSA PRIVATE KEY"), "{message}");
        assert!(
            message.contains("openssl pkcs8 -topk8 -nocrypt"),
            "{message}"
        );
    }

    #[test]
    fn other_pem_kinds_are_named() {
        let error = ProofKey::from_pkcs8_pem(&pem_wrap("ENCRYPTED PRIVATE KEY", &[1])).unwrap_err();
        assert!(matches!(error, KeyError::Encrypted), "{error:?}");
        let error = ProofKey::from_pkcs8_pem(&pem_wrap("OPENSSH PRIVATE KEY", &[1])).unwrap_err();
        assert!(matches!(error, KeyError::OpenSsh), "{error:?}");
        assert!(error.to_string().contains("ssh-keygen -p -m PKCS8"));
        let error = ProofKey::from_pkcs8_pem(&pem_wrap("PUBLIC KEY", &[1])).unwrap_err();
        assert!(
            matches!(&error, KeyError::WrongPemLabel { label } if label == "PUBLIC KEY"),
            "{error:?}"
        );
        let ec_params_first = format!(
            "{}{}",
            pem_wrap("EC PARAMETERS", &[6, 1, 0]),
            pem_wrap("EC PRIVATE KEY", &[1])
        );
        let error = ProofKey::from_pkcs8_pem(&ec_params_first).unwrap_err();
        assert!(matches!(error, KeyError::NotRsa { .. }), "{error:?}");
        let error = ProofKey::from_pkcs8_pem("just some text").unwrap_err();
        assert!(matches!(error, KeyError::NotPem), "{error:?}");
        let error = ProofKey::from_pkcs8_pem("-----BEGIN PRIVATE KEY-----\nAAAA\n").unwrap_err();
        assert!(matches!(error, KeyError::BadPem(_)), "{error:?}");
        let error = ProofKey::from_pkcs8_pem(&pem_wrap("PRIVATE KEY", b"garbage")).unwrap_err();
        assert!(matches!(error, KeyError::MalformedPkcs8), "{error:?}");
    }

    #[test]
    fn bad_base64_in_pem_does_not_echo_key_text() {
        let pem = "-----BEGIN PRIVATE KEY-----\nMIIE!secretish\n-----END PRIVATE KEY-----\n";
        let error = ProofKey::from_pkcs8_pem(pem).unwrap_err();
        assert!(matches!(error, KeyError::BadPem(_)), "{error:?}");
        assert!(!error.to_string().contains("secretish"));
        assert!(!format!("{error:?}").contains("secretish"));
    }

    #[test]
    fn non_rsa_pkcs8_keys_are_refused_by_algorithm() {
        let rng = SystemRandom::new();
        let ed25519 = Ed25519KeyPair::generate_pkcs8(&rng).unwrap();
        let error =
            ProofKey::from_pkcs8_pem(&pem_wrap("PRIVATE KEY", ed25519.as_ref())).unwrap_err();
        assert!(
            matches!(&error, KeyError::NotRsa { algorithm } if algorithm.contains("Ed25519")),
            "{error:?}"
        );
        assert!(error.to_string().contains("must be plain RSA"));

        let ec = EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_ASN1_SIGNING, &rng).unwrap();
        let error = ProofKey::from_pkcs8_pem(&pem_wrap("PRIVATE KEY", ec.as_ref())).unwrap_err();
        assert!(
            matches!(&error, KeyError::NotRsa { algorithm } if algorithm.contains("EC")),
            "{error:?}"
        );
    }

    #[test]
    fn rsa_keys_under_2048_bits_are_refused_with_their_size() {
        let error =
            ProofKey::from_pkcs8_pem(&pem_wrap("PRIVATE KEY", &fake_rsa_pkcs8(1024))).unwrap_err();
        assert!(
            matches!(error, KeyError::TooSmall { bits: 1024 }),
            "{error:?}"
        );
        assert!(error.to_string().contains("1024 bits"));
        assert!(error.to_string().contains("at least 2048"));
        // A 2048-bit key with nonsense components passes the size check and is refused by aws-lc.
        let error =
            ProofKey::from_pkcs8_pem(&pem_wrap("PRIVATE KEY", &fake_rsa_pkcs8(2048))).unwrap_err();
        assert!(matches!(error, KeyError::Rejected { .. }), "{error:?}");
    }

    #[test]
    fn oid_names() {
        assert_eq!(oid_dotted(OID_RSA_ENCRYPTION), "1.2.840.113549.1.1.1");
        assert_eq!(
            algorithm_name(&[0x2A, 0x03]),
            "a key of algorithm OID 1.2.3"
        );
    }

    #[test]
    fn debug_shows_no_private_material() {
        let key = ProofKey::generate().unwrap();
        let debug = format!("{key:?}");
        assert!(debug.contains(&key.public().modulus_b64()), "{debug}");
        let pem = key.to_pkcs8_pem().unwrap();
        // Past the first lines (version, algorithm, modulus), the PEM is private exponent and
        // primes; none of it may appear.
        for line in pem.lines().skip(8).filter(|l| !l.starts_with("-----")) {
            assert!(!debug.contains(line), "Debug leaks PEM line {line}");
        }
        assert!(!debug.contains("PRIVATE"));
    }

    #[test]
    fn ms_capi_blob_sample() {
        assert_eq!(ms_current().capi_blob_b64(), MS_VALUE);
        assert_eq!(
            PublicProofKey::from_capi_blob_b64(MS_VALUE).unwrap(),
            ms_current()
        );
        assert_eq!(ms_old().capi_blob_b64(), MS_OLD_VALUE);
        assert_eq!(
            PublicProofKey::from_capi_blob_b64(MS_OLD_VALUE).unwrap(),
            ms_old()
        );
        assert!(MS_VALUE.starts_with("BgIAAACkAABSU0ExAAgAAAEAAQDFEthb"));
        assert_eq!(ms_current().modulus_b64(), MS_MODULUS);
        assert_eq!(ms_current().exponent_b64(), "AQAB");
    }

    fn check_fixture_triples(name: &str) {
        let xml = fixture(name);
        for prefix in ["", "old"] {
            let value = attribute(&xml, &format!("{prefix}value"));
            let modulus = attribute(&xml, &format!("{prefix}modulus"));
            let exponent = attribute(&xml, &format!("{prefix}exponent"));
            let from_parts = PublicProofKey::from_modulus_exponent_b64(modulus, exponent)
                .unwrap_or_else(|e| panic!("{name} {prefix}modulus: {e}"));
            let from_blob = PublicProofKey::from_capi_blob_b64(value)
                .unwrap_or_else(|e| panic!("{name} {prefix}value: {e}"));
            assert_eq!(from_parts.capi_blob_b64(), value, "{name} {prefix}value");
            assert_eq!(from_blob, from_parts, "{name} {prefix}");
            assert_eq!(from_blob.modulus_b64(), modulus, "{name} {prefix}modulus");
            assert_eq!(
                from_blob.exponent_b64(),
                exponent,
                "{name} {prefix}exponent"
            );
            assert_eq!(from_blob.bits(), 2048, "{name} {prefix}");
        }
    }

    #[test]
    fn collabora_fixture_encodings_agree() {
        check_fixture_triples("collabora-discovery-proof-key-reduced.xml");
    }

    #[test]
    fn onlyoffice_fixture_encodings_agree() {
        check_fixture_triples("onlyoffice-discovery-reduced-ocis.xml");
    }

    #[test]
    fn generated_key_encodings_round_trip() {
        let key = ProofKey::generate().unwrap();
        let public = key.public();
        assert_eq!(
            &PublicProofKey::from_capi_blob_b64(&public.capi_blob_b64()).unwrap(),
            public
        );
        assert_eq!(
            &PublicProofKey::from_modulus_exponent_b64(
                &public.modulus_b64(),
                &public.exponent_b64()
            )
            .unwrap(),
            public
        );
    }

    #[test]
    fn leading_zeros_and_missing_padding_are_tolerated() {
        let mut modulus = vec![0, 0];
        modulus.extend(b64(MS_MODULUS));
        let padded = STANDARD.encode(&modulus);
        let key = PublicProofKey::from_modulus_exponent_b64(&padded, "AAEAAQ==").unwrap();
        assert_eq!(key, ms_current());
        let unpadded = MS_MODULUS.trim_end_matches('=');
        assert_eq!(
            PublicProofKey::from_modulus_exponent_b64(unpadded, "AQAB").unwrap(),
            ms_current()
        );
    }

    #[test]
    fn malformed_capi_blobs_are_refused() {
        let good = b64(MS_VALUE);
        let encode = |bytes: &[u8]| STANDARD.encode(bytes);

        let error = PublicProofKey::from_capi_blob_b64(&encode(&good[..10])).unwrap_err();
        assert!(matches!(error, KeyError::CapiBlob(_)), "{error:?}");

        let mut private_blob = good.clone();
        private_blob[0] = 0x07; // PRIVATEKEYBLOB
        let error = PublicProofKey::from_capi_blob_b64(&encode(&private_blob)).unwrap_err();
        assert!(error.to_string().contains("BLOBHEADER is 07 02"), "{error}");

        let mut signature_alg = good.clone();
        signature_alg[5] = 0x24; // CALG_RSA_SIGN
        assert!(PublicProofKey::from_capi_blob_b64(&encode(&signature_alg)).is_err());

        let mut rsa2 = good.clone();
        rsa2[11] = b'2';
        let error = PublicProofKey::from_capi_blob_b64(&encode(&rsa2)).unwrap_err();
        assert!(error.to_string().contains("magic"), "{error}");

        let error =
            PublicProofKey::from_capi_blob_b64(&encode(&good[..good.len() - 1])).unwrap_err();
        assert!(error.to_string().contains("bitlen 2048"), "{error}");

        let error = PublicProofKey::from_capi_blob_b64("not base64!").unwrap_err();
        assert!(
            matches!(error, KeyError::Base64 { field: "value", .. }),
            "{error:?}"
        );
    }

    #[test]
    fn unusable_public_components_are_refused() {
        let modulus = b64(MS_MODULUS);
        let error =
            PublicProofKey::from_modulus_exponent_b64(&STANDARD.encode(&modulus[..128]), "AQAB")
                .unwrap_err();
        assert!(error.to_string().contains("1024 bits"), "{error}");
        let error = PublicProofKey::from_modulus_exponent_b64(MS_MODULUS, "AQAA").unwrap_err();
        assert!(error.to_string().contains("65536"), "{error}");
        let error = PublicProofKey::from_modulus_exponent_b64(MS_MODULUS, "AQAAAAE=").unwrap_err();
        assert!(error.to_string().contains("5 bytes"), "{error}");
        let error = PublicProofKey::from_modulus_exponent_b64("", "AQAB").unwrap_err();
        assert!(error.to_string().contains("0 bits"), "{error}");
        let error = PublicProofKey::from_modulus_exponent_b64(MS_MODULUS, "%%").unwrap_err();
        assert!(
            matches!(
                error,
                KeyError::Base64 {
                    field: "exponent",
                    ..
                }
            ),
            "{error:?}"
        );
    }

    #[test]
    fn sign_verify_tamper_and_wrong_key() {
        let key = ProofKey::generate().unwrap();
        let other = ProofKey::generate().unwrap();
        let message = crate::wopi::proof::message(
            "token",
            "https://nc.example/wopi/files/1?access_token=token",
            638_000_000_000_000_000,
        );
        let signature = key.sign(&message).unwrap();
        assert_eq!(signature.len(), 256);
        assert!(key.public().verify(&message, &signature));
        assert!(!other.public().verify(&message, &signature));

        for i in [0, 100, signature.len() - 1] {
            let mut tampered = signature.clone();
            tampered[i] ^= 0x01;
            assert!(!key.public().verify(&message, &tampered), "byte {i}");
        }
        let mut tampered_message = message.clone();
        tampered_message[5] ^= 0x20;
        assert!(!key.public().verify(&tampered_message, &signature));

        assert!(!key.public().verify(&message, &signature[..255]));
        assert!(!key.public().verify(&message, &[]));
        // PKCS#1 v1.5 with SHA-256 is deterministic.
        assert_eq!(key.sign(&message).unwrap(), signature);
    }

    #[test]
    fn load_names_the_path() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("missing_key.pem");
        let error = ProofKey::load(&missing).unwrap_err();
        assert!(matches!(error, KeyError::Read { .. }), "{error:?}");
        assert!(error.to_string().contains("missing_key.pem"), "{error}");

        let pkcs1 = dir.path().join("pkcs1_key");
        fs::write(&pkcs1, pem_wrap("RSA PRIVATE KEY", &[0x30, 0x00])).unwrap();
        let error = ProofKey::load(&pkcs1).unwrap_err();
        let message = error.to_string();
        assert!(message.contains(&*pkcs1.to_string_lossy()), "{message}");
        assert!(
            message.contains("openssl pkcs8 -topk8 -nocrypt"),
            "{message}"
        );
        assert!(
            matches!(&error, KeyError::InFile { error, .. } if matches!(**error, KeyError::Pkcs1))
        );
    }

    #[test]
    fn write_new_key_creates_refuses_and_forces() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("nested/dirs/proof_key.pem");

        let first = write_new_key(&path, false).unwrap();
        let first_pem = fs::read_to_string(&path).unwrap();
        assert_eq!(ProofKey::load(&path).unwrap().public(), first.public());

        let error = write_new_key(&path, false).unwrap_err();
        assert!(matches!(error, KeyError::Exists { .. }), "{error:?}");
        assert!(error.to_string().contains("--force"), "{error}");
        assert!(error.to_string().contains("proof_key.pem"), "{error}");
        assert_eq!(
            fs::read_to_string(&path).unwrap(),
            first_pem,
            "file was changed"
        );

        let second = write_new_key(&path, true).unwrap();
        assert_ne!(second.public(), first.public());
        assert_eq!(ProofKey::load(&path).unwrap().public(), second.public());

        // No temporary files left behind.
        let names: Vec<_> = fs::read_dir(path.parent().unwrap())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, vec![std::ffi::OsString::from("proof_key.pem")]);

        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt as _;
            let mode = fs::metadata(&path).unwrap().permissions().mode() & 0o777;
            assert_eq!(mode, 0o600, "mode {mode:o}");
        }
    }

    #[cfg(unix)]
    #[test]
    fn write_new_key_never_replaces_a_directory() {
        let dir = tempfile::tempdir().unwrap();
        let occupied = dir.path().join("occupied");
        fs::create_dir(&occupied).unwrap();
        assert!(matches!(
            write_new_key(&occupied, false),
            Err(KeyError::Exists { .. })
        ));
        assert!(write_new_key(&occupied, true).is_err());
        assert!(occupied.is_dir());
    }
}
