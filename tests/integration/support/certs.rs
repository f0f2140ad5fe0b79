//! Throw-away TLS material made at test time: a private CA and a leaf certificate for
//! `localhost` and `127.0.0.1`, written to a temporary directory.
//!
//! Why generate instead of checking files in: no private key lives in the repository, no
//! certificate expires under the test suite, and each run proves the whole chain (the
//! proxy loads PEM files from disk, the client trusts only this CA).

use std::fs;
use std::path::PathBuf;
use std::sync::Arc;

use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose,
};
use rustls::pki_types::CertificateDer;
use rustls::pki_types::pem::PemObject;

/// A CA and a server certificate signed by it, as PEM files in a temporary directory.
pub struct TestCerts {
    /// Owns the directory; the files are deleted when this is dropped.
    pub dir: tempfile::TempDir,
    /// The leaf certificate (PEM), valid for `localhost` and `127.0.0.1`.
    pub cert_path: PathBuf,
    /// The leaf's private key (PKCS#8 PEM).
    pub key_path: PathBuf,
    /// The CA certificate (PEM), also written to [`TestCerts::ca_path`], for clients and
    /// for configuring officeswitch to trust TLS editors.
    pub ca_pem: String,
    /// The CA certificate file.
    pub ca_path: PathBuf,
}

impl TestCerts {
    /// Generates a fresh CA and leaf and writes `ca.pem`, `cert.pem`, `key.pem`.
    pub fn generate() -> Self {
        let ca_key = KeyPair::generate().expect("test certs: cannot generate the CA key");
        let mut ca_params = CertificateParams::new(Vec::<String>::new())
            .expect("test certs: empty SAN list is valid");
        ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca_params
            .distinguished_name
            .push(DnType::CommonName, "officeswitch test CA");
        ca_params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        let ca_cert = ca_params
            .self_signed(&ca_key)
            .expect("test certs: cannot self-sign the CA");
        let issuer = Issuer::new(ca_params, ca_key);

        let leaf_key = KeyPair::generate().expect("test certs: cannot generate the leaf key");
        let mut leaf_params =
            CertificateParams::new(vec!["localhost".to_owned(), "127.0.0.1".to_owned()])
                .expect("test certs: localhost and 127.0.0.1 are valid SANs");
        leaf_params
            .distinguished_name
            .push(DnType::CommonName, "localhost");
        leaf_params.use_authority_key_identifier_extension = true;
        leaf_params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        leaf_params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        let leaf_cert = leaf_params
            .signed_by(&leaf_key, &issuer)
            .expect("test certs: cannot sign the leaf");

        let dir = tempfile::tempdir().expect("test certs: cannot create a temporary directory");
        let ca_path = dir.path().join("ca.pem");
        let cert_path = dir.path().join("cert.pem");
        let key_path = dir.path().join("key.pem");
        let ca_pem = ca_cert.pem();
        fs::write(&ca_path, &ca_pem).expect("test certs: cannot write ca.pem");
        fs::write(&cert_path, leaf_cert.pem()).expect("test certs: cannot write cert.pem");
        fs::write(&key_path, leaf_key.serialize_pem()).expect("test certs: cannot write key.pem");
        Self {
            dir,
            cert_path,
            key_path,
            ca_pem,
            ca_path,
        }
    }

    /// A client configuration that trusts only this CA and offers `alpn` (e.g.
    /// `&[b"h2", b"http/1.1"]`; empty for no ALPN). Uses the aws-lc-rs provider explicitly,
    /// so it works whatever process-wide default provider is (or is not) installed.
    pub fn client_config(&self, alpn: &[&[u8]]) -> rustls::ClientConfig {
        let ca = CertificateDer::from_pem_slice(self.ca_pem.as_bytes())
            .expect("test certs: the CA PEM parses");
        let mut roots = rustls::RootCertStore::empty();
        roots
            .add(ca)
            .expect("test certs: the CA is a valid trust anchor");
        let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        let mut config = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .expect("test certs: aws-lc-rs supports the default protocol versions")
            .with_root_certificates(roots)
            .with_no_client_auth();
        config.alpn_protocols = alpn.iter().map(|protocol| protocol.to_vec()).collect();
        config
    }
}
