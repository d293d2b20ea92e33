//! Certificates made at test time, and `redis-server` arguments that serve TLS
//! with them: a private CA, a server certificate it signed (for `localhost` and
//! `127.0.0.1`), a client certificate it signed (for mutual TLS), a self-signed
//! server certificate, and a second CA that signed nothing here.

use std::path::{Path, PathBuf};

use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
};
use tempfile::TempDir;

use crate::error::TestkitError;

/// A private PKI for one test: PEM strings and the files `redis-server` reads.
///
/// ```no_run
/// let pki = cache_testkit::TestPki::generate()?;
/// let server = cache_testkit::RedisServer::start_tls(&pki, cache_testkit::TlsServer::default())?;
/// assert!(server.tls_url().starts_with("rediss://localhost:"));
/// assert!(pki.ca_pem().contains("BEGIN CERTIFICATE"));
/// # Ok::<(), cache_testkit::TestkitError>(())
/// ```
#[derive(Debug)]
pub struct TestPki {
    dir: TempDir,
    ca_pem: String,
    other_ca_pem: String,
    client_cert_pem: String,
    client_key_pem: String,
}

/// How a TLS test server presents itself.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TlsServer {
    /// Require a client certificate signed by the CA (`--tls-auth-clients yes`).
    pub auth_clients: bool,
    /// Present the self-signed certificate instead of the CA-signed one.
    pub self_signed: bool,
}

fn pki_err(e: impl std::fmt::Display) -> TestkitError {
    TestkitError::Pki(e.to_string())
}

fn ca(name: &str) -> Result<(String, Issuer<'static, KeyPair>), TestkitError> {
    let key = KeyPair::generate().map_err(pki_err)?;
    let mut params = CertificateParams::new(Vec::<String>::new()).map_err(pki_err)?;
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.distinguished_name.push(DnType::CommonName, name);
    let cert = params.self_signed(&key).map_err(pki_err)?;
    Ok((cert.pem(), Issuer::new(params, key)))
}

/// A leaf certificate for `names`, signed by `issuer` (self-signed without one).
fn leaf(
    names: &[&str],
    usages: &[ExtendedKeyUsagePurpose],
    issuer: Option<&Issuer<'static, KeyPair>>,
) -> Result<(String, String), TestkitError> {
    let key = KeyPair::generate().map_err(pki_err)?;
    let names: Vec<String> = names.iter().map(|n| (*n).to_owned()).collect();
    let mut params = CertificateParams::new(names).map_err(pki_err)?;
    params
        .distinguished_name
        .push(DnType::CommonName, "cache-testkit");
    params.extended_key_usages = usages.to_vec();
    let cert = match issuer {
        Some(issuer) => params.signed_by(&key, issuer),
        None => params.self_signed(&key),
    }
    .map_err(pki_err)?;
    Ok((cert.pem(), key.serialize_pem()))
}

impl TestPki {
    /// Generates the CA, the certificates and their files.
    pub fn generate() -> Result<Self, TestkitError> {
        let dir = tempfile::Builder::new().prefix("cache-pki-").tempdir()?;
        let (ca_pem, issuer) = ca("cache-testkit CA")?;
        let (other_ca_pem, _) = ca("cache-testkit other CA")?;
        let server_names = ["localhost", "127.0.0.1"];
        // Cluster nodes present their server certificate to each other as
        // clients too (the cluster bus always checks both ends).
        let node = [
            ExtendedKeyUsagePurpose::ServerAuth,
            ExtendedKeyUsagePurpose::ClientAuth,
        ];
        let (server_pem, server_key) = leaf(&server_names, &node, Some(&issuer))?;
        let (self_pem, self_key) = leaf(&server_names, &node, None)?;
        let (client_cert_pem, client_key_pem) = leaf(
            &["cache-client"],
            &[ExtendedKeyUsagePurpose::ClientAuth],
            Some(&issuer),
        )?;
        for (name, text) in [
            ("ca.crt", &ca_pem),
            ("server.crt", &server_pem),
            ("server.key", &server_key),
            ("self.crt", &self_pem),
            ("self.key", &self_key),
        ] {
            std::fs::write(dir.path().join(name), text)?;
        }
        Ok(TestPki {
            dir,
            ca_pem,
            other_ca_pem,
            client_cert_pem,
            client_key_pem,
        })
    }

    /// The CA's certificate (PEM).
    #[must_use]
    pub fn ca_pem(&self) -> &str {
        &self.ca_pem
    }

    /// Another CA's certificate (PEM): it signed nothing the servers present.
    #[must_use]
    pub fn other_ca_pem(&self) -> &str {
        &self.other_ca_pem
    }

    /// A client certificate signed by the CA (PEM), for mutual TLS.
    #[must_use]
    pub fn client_cert_pem(&self) -> &str {
        &self.client_cert_pem
    }

    /// The client certificate's private key (PEM).
    #[must_use]
    pub fn client_key_pem(&self) -> &str {
        &self.client_key_pem
    }

    /// The CA certificate's file.
    #[must_use]
    pub fn ca_file(&self) -> PathBuf {
        self.file("ca.crt")
    }

    fn file(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// `redis-server` arguments serving TLS on `tls_port` as `options` says.
    #[must_use]
    pub fn server_args(&self, tls_port: u16, options: TlsServer) -> Vec<String> {
        let (cert, key) = if options.self_signed {
            ("self.crt", "self.key")
        } else {
            ("server.crt", "server.key")
        };
        let path = |p: &Path| p.display().to_string();
        vec![
            "--tls-port".into(),
            tls_port.to_string(),
            "--tls-cert-file".into(),
            path(&self.file(cert)),
            "--tls-key-file".into(),
            path(&self.file(key)),
            "--tls-ca-cert-file".into(),
            path(&self.file("ca.crt")),
            "--tls-auth-clients".into(),
            if options.auth_clients { "yes" } else { "no" }.into(),
        ]
    }
}
