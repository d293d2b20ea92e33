//! Who the store says it is and whom it trusts: credentials set apart from the
//! URL, and TLS with a private CA, client certificates and a server name
//! (feature `tls`). Everything here is checked at `build()`; certificates and
//! keys are read and parsed there, so a bad file fails the build, not the
//! first request.

use std::net::SocketAddr;
use std::sync::Arc;

use cache_core::ConfigError;
#[cfg(feature = "tls")]
use redis::ConnectionAddr;
use redis::{ConnectionInfo, IntoConnectionInfo, RedisFuture};

#[cfg(feature = "tls")]
pub use tls::{TlsOptions, TlsRoots};

/// A username and password given apart from the URL; the password never
/// appears in `Debug`.
#[derive(Clone, Default)]
pub(crate) struct Credentials {
    pub(crate) username: Option<String>,
    pub(crate) password: Option<String>,
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Credentials")
            .field("username", &self.username)
            .field("password", &self.password.as_ref().map(|_| "***"))
            .finish()
    }
}

/// Everything about connecting securely that the builder collected.
#[derive(Clone, Debug, Default)]
pub(crate) struct Security {
    pub(crate) credentials: Credentials,
    #[cfg(feature = "tls")]
    pub(crate) tls: Option<TlsOptions>,
}

/// The URL checked and parsed, with the separate credentials applied (they
/// win over the URL's).
pub(crate) fn connection_info(
    field: &'static str,
    url: &str,
    credentials: &Credentials,
) -> Result<ConnectionInfo, ConfigError> {
    check_scheme(field, url)?;
    // redis-rs's messages never echo the URL; ours do not either.
    let mut info = url
        .into_connection_info()
        .map_err(|e| ConfigError::new(field, format!("not a valid Redis URL: {e}")))?;
    let mut settings = info.redis_settings().clone();
    if let Some(user) = &credentials.username {
        settings = settings.set_username(user);
    }
    if let Some(password) = &credentials.password {
        settings = settings.set_password(password);
    }
    info = info.set_redis_settings(settings);
    Ok(info)
}

fn check_scheme(field: &'static str, url: &str) -> Result<(), ConfigError> {
    let scheme = url.split_once("://").map(|(s, _)| s);
    match scheme {
        Some("redis" | "redis+unix" | "unix") => Ok(()),
        Some("rediss") if url.contains("#insecure") => Err(ConfigError::new(
            field,
            "`#insecure` (TLS without certificate checks) is not supported: give the server's CA \
             with `tls(TlsOptions::new().ca_pem_file(..))` instead",
        )),
        Some("rediss") if cfg!(feature = "tls") => Ok(()),
        Some("rediss") => Err(ConfigError::new(
            field,
            "rediss:// (TLS) needs the `tls` feature (of cache-store-redis or resilient-cache)",
        )),
        _ => Err(ConfigError::new(
            field,
            // The URL is not echoed: it may carry a password.
            "is not a redis://, rediss:// or redis+unix:// URL",
        )),
    }
}

/// Whether `info` is a TLS address.
#[cfg(feature = "tls")]
fn is_tls(info: &ConnectionInfo) -> bool {
    matches!(info.addr(), ConnectionAddr::TcpTls { .. })
}

/// Connects to `host` whenever the client asks for `name`: TLS then verifies
/// the certificate against `name` (and sends it as SNI) while the socket goes
/// to the real address.
#[derive(Clone, Debug)]
pub(crate) struct PinnedHost {
    pub(crate) name: Arc<str>,
    pub(crate) host: Arc<str>,
}

impl redis::io::AsyncDNSResolver for PinnedHost {
    fn resolve<'a, 'b: 'a>(
        &'a self,
        host: &'b str,
        port: u16,
    ) -> RedisFuture<'a, Box<dyn Iterator<Item = SocketAddr> + Send + 'a>> {
        let target = if host == &*self.name {
            self.host.to_string()
        } else {
            host.to_owned()
        };
        Box::pin(async move {
            let addrs: Vec<SocketAddr> = tokio::net::lookup_host((target.as_str(), port))
                .await?
                .collect();
            Ok(Box::new(addrs.into_iter()) as Box<dyn Iterator<Item = SocketAddr> + Send>)
        })
    }
}

/// `info` with TLS applied (the certificates, and the server name: the address
/// then names the server and `PinnedHost` maps it back).
#[cfg(feature = "tls")]
pub(crate) fn with_tls(
    info: ConnectionInfo,
    options: &TlsOptions,
    certs: &redis::TlsCertificates,
) -> Result<(ConnectionInfo, Option<PinnedHost>), ConfigError> {
    if !is_tls(&info) {
        return Err(ConfigError::new(
            "tls",
            "TLS options need rediss:// URLs (this one is not TLS)",
        ));
    }
    let (info, pinned) = match (options.server_name_ref(), info.addr().clone()) {
        (Some(name), ConnectionAddr::TcpTls { host, port, .. }) => {
            let pinned = PinnedHost {
                name: name.into(),
                host: host.into(),
            };
            let addr = ConnectionAddr::TcpTls {
                host: name.to_owned(),
                port,
                insecure: false,
                tls_params: None,
            };
            (info.set_addr(addr), Some(pinned))
        }
        _ => (info, None),
    };
    let client = redis::Client::build_with_tls(info, certs.clone())
        .map_err(|e| ConfigError::new("tls", e.to_string()))?;
    Ok((client.get_connection_info().clone(), pinned))
}

#[cfg(feature = "tls")]
mod tls {
    use std::path::PathBuf;

    use cache_core::ConfigError;
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};

    /// Which roots a TLS connection trusts besides the CAs given with
    /// [`TlsOptions::ca_pem`].
    #[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
    #[non_exhaustive]
    pub enum TlsRoots {
        /// The Mozilla root store compiled in (`webpki-root-certs`), plus the
        /// given CAs. The default: works the same on every machine.
        #[default]
        WebPki,
        /// The operating system's store (`/etc/ssl/certs` and the like, read at
        /// build), plus the given CAs.
        Platform,
        /// Only the given CAs: a private CA's servers only (at least one CA
        /// must be given).
        GivenOnly,
    }

    /// PEM given inline or read from a file at build.
    #[derive(Clone)]
    enum Pem {
        Inline(Vec<u8>),
        File(PathBuf),
    }

    impl Pem {
        fn read(&self, what: &str) -> Result<Vec<u8>, ConfigError> {
            match self {
                Pem::Inline(bytes) => Ok(bytes.clone()),
                Pem::File(path) => std::fs::read(path).map_err(|e| {
                    ConfigError::new(
                        "tls",
                        format!("cannot read the {what} file {}: {e}", path.display()),
                    )
                }),
            }
        }
    }

    impl std::fmt::Debug for Pem {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            match self {
                Pem::Inline(b) => write!(f, "<{} bytes of PEM>", b.len()),
                Pem::File(p) => write!(f, "{}", p.display()),
            }
        }
    }

    /// TLS settings for `rediss://` connections (feature `tls`): extra CAs,
    /// which roots to trust, a client certificate for mutual TLS, and a server
    /// name to verify instead of the URL's host. Certificate verification is
    /// always on; there is no insecure mode.
    ///
    /// ```no_run
    /// use cache_store_redis::{RedisStore, TlsOptions, TlsRoots};
    ///
    /// let store = RedisStore::builder()
    ///     .url("rediss://10.0.0.5:6380")
    ///     .tls(
    ///         TlsOptions::new()
    ///             .ca_pem_file("/etc/redis/ca.crt")
    ///             .roots(TlsRoots::GivenOnly)
    ///             .client_cert_pem_files("/etc/redis/client.crt", "/etc/redis/client.key")
    ///             .server_name("redis.internal"),
    ///     )
    ///     .build()?;
    /// # Ok::<(), cache_core::ConfigError>(())
    /// ```
    #[derive(Clone, Debug, Default)]
    pub struct TlsOptions {
        cas: Vec<Pem>,
        roots: TlsRoots,
        client: Option<(Pem, Pem)>,
        server_name: Option<String>,
    }

    impl TlsOptions {
        /// The defaults: the built-in roots, no client certificate.
        #[must_use]
        pub fn new() -> Self {
            Self::default()
        }

        /// Also trusts the CA certificate(s) in `pem`.
        #[must_use]
        pub fn ca_pem(mut self, pem: impl Into<Vec<u8>>) -> Self {
            self.cas.push(Pem::Inline(pem.into()));
            self
        }

        /// Also trusts the CA certificate(s) in the PEM file at `path` (read at build).
        #[must_use]
        pub fn ca_pem_file(mut self, path: impl Into<PathBuf>) -> Self {
            self.cas.push(Pem::File(path.into()));
            self
        }

        /// Which roots to trust besides the given CAs (default [`TlsRoots::WebPki`]).
        #[must_use]
        pub fn roots(mut self, roots: TlsRoots) -> Self {
            self.roots = roots;
            self
        }

        /// Presents this certificate chain and private key (PEM) for mutual TLS.
        #[must_use]
        pub fn client_cert_pem(
            mut self,
            cert: impl Into<Vec<u8>>,
            key: impl Into<Vec<u8>>,
        ) -> Self {
            self.client = Some((Pem::Inline(cert.into()), Pem::Inline(key.into())));
            self
        }

        /// [`client_cert_pem`](Self::client_cert_pem) from files (read at build).
        #[must_use]
        pub fn client_cert_pem_files(
            mut self,
            cert: impl Into<PathBuf>,
            key: impl Into<PathBuf>,
        ) -> Self {
            self.client = Some((Pem::File(cert.into()), Pem::File(key.into())));
            self
        }

        /// Verifies the server's certificate for `name` (and sends it as SNI)
        /// instead of the URL's host, which is still where the connection goes.
        /// Standalone only: a cluster's nodes are reached at the addresses it
        /// announces.
        #[must_use]
        pub fn server_name(mut self, name: impl Into<String>) -> Self {
            self.server_name = Some(name.into());
            self
        }

        pub(crate) fn server_name_ref(&self) -> Option<&str> {
            self.server_name.as_deref()
        }

        /// Reads and checks everything, and turns it into what the client takes.
        pub(crate) fn certificates(&self) -> Result<redis::TlsCertificates, ConfigError> {
            if let Some(name) = &self.server_name
                && rustls::pki_types::ServerName::try_from(name.as_str()).is_err()
            {
                return Err(ConfigError::new(
                    "tls",
                    "server_name is not a valid DNS name or IP address",
                ));
            }
            let mut given = Vec::new();
            for ca in &self.cas {
                let pem = ca.read("CA")?;
                let n = CertificateDer::pem_slice_iter(&pem)
                    .map(|c| c.map(|_| ()))
                    .collect::<Result<Vec<()>, _>>()
                    .map_err(|e| ConfigError::new("tls", format!("a CA is not valid PEM: {e}")))?
                    .len();
                if n == 0 {
                    return Err(ConfigError::new("tls", "a CA PEM holds no certificate"));
                }
                given.extend_from_slice(&pem);
                given.push(b'\n');
            }
            let root_cert = match self.roots {
                TlsRoots::GivenOnly if given.is_empty() => {
                    return Err(ConfigError::new(
                        "tls",
                        "TlsRoots::GivenOnly needs at least one CA (ca_pem or ca_pem_file)",
                    ));
                }
                TlsRoots::GivenOnly => Some(given),
                // Nothing to add to the client's own built-in roots.
                TlsRoots::WebPki if given.is_empty() => None,
                TlsRoots::WebPki => {
                    for cert in webpki_root_certs::TLS_SERVER_ROOT_CERTS {
                        push_pem(&mut given, cert);
                    }
                    Some(given)
                }
                TlsRoots::Platform => {
                    let found = rustls_native_certs::load_native_certs();
                    if found.certs.is_empty() {
                        return Err(ConfigError::new(
                            "tls",
                            "TlsRoots::Platform: no certificate found in the system's store",
                        ));
                    }
                    for cert in &found.certs {
                        push_pem(&mut given, cert);
                    }
                    Some(given)
                }
            };
            let client_tls = match &self.client {
                None => None,
                Some((cert, key)) => {
                    let (cert, key) = (cert.read("client certificate")?, key.read("client key")?);
                    if CertificateDer::pem_slice_iter(&cert).next().is_none() {
                        return Err(ConfigError::new(
                            "tls",
                            "the client certificate PEM holds no certificate",
                        ));
                    }
                    // The key's parse error is generic on purpose: it must not quote the key.
                    PrivateKeyDer::from_pem_slice(&key).map_err(|_| {
                        ConfigError::new("tls", "the client key is not a PEM private key")
                    })?;
                    Some(redis::ClientTlsConfig {
                        client_cert: cert,
                        client_key: key,
                    })
                }
            };
            Ok(redis::TlsCertificates {
                client_tls,
                root_cert,
            })
        }
    }

    /// Appends `der` as a PEM certificate block.
    fn push_pem(out: &mut Vec<u8>, der: &[u8]) {
        out.extend_from_slice(b"-----BEGIN CERTIFICATE-----\n");
        let encoded = base64(der);
        for line in encoded.as_bytes().chunks(64) {
            out.extend_from_slice(line);
            out.push(b'\n');
        }
        out.extend_from_slice(b"-----END CERTIFICATE-----\n");
    }

    /// Standard base64 with padding.
    fn base64(bytes: &[u8]) -> String {
        const TABLE: &[u8; 64] =
            b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
        let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
        for chunk in bytes.chunks(3) {
            let b = [
                chunk[0],
                *chunk.get(1).unwrap_or(&0),
                *chunk.get(2).unwrap_or(&0),
            ];
            let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
            for (i, shift) in [18, 12, 6, 0].into_iter().enumerate() {
                if i <= chunk.len() {
                    out.push(char::from(TABLE[((n >> shift) & 63) as usize]));
                } else {
                    out.push('=');
                }
            }
        }
        out
    }

    #[cfg(test)]
    mod tests {
        use super::*;

        #[test]
        fn base64_matches_the_rfc_vectors() {
            for (plain, encoded) in [
                ("", ""),
                ("f", "Zg=="),
                ("fo", "Zm8="),
                ("foo", "Zm9v"),
                ("foob", "Zm9vYg=="),
                ("fooba", "Zm9vYmE="),
                ("foobar", "Zm9vYmFy"),
            ] {
                assert_eq!(base64(plain.as_bytes()), encoded);
            }
        }

        #[test]
        fn the_built_in_roots_round_trip_through_pem() {
            let mut pem = Vec::new();
            for cert in webpki_root_certs::TLS_SERVER_ROOT_CERTS {
                push_pem(&mut pem, cert);
            }
            let parsed: Vec<_> = CertificateDer::pem_slice_iter(&pem)
                .collect::<Result<_, _>>()
                .expect("valid PEM");
            assert_eq!(parsed.len(), webpki_root_certs::TLS_SERVER_ROOT_CERTS.len());
            assert_eq!(&*parsed[0], &*webpki_root_certs::TLS_SERVER_ROOT_CERTS[0]);
        }

        #[test]
        fn bad_settings_fail_at_build_without_quoting_secrets() {
            let key = "-----BEGIN PRIVATE KEY-----\nc2VjcmV0LWtleS1tYXRlcmlhbA==\n-----END PRIVATE KEY-----\n";
            let err = TlsOptions::new()
                .roots(TlsRoots::GivenOnly)
                .certificates()
                .expect_err("no CA");
            assert!(err.to_string().contains("at least one CA"), "{err}");
            let err = TlsOptions::new()
                .ca_pem("not pem")
                .certificates()
                .expect_err("no cert");
            assert!(err.to_string().contains("no certificate"), "{err}");
            let err = TlsOptions::new()
                .ca_pem_file("/nonexistent/ca.crt")
                .certificates()
                .expect_err("no file");
            assert!(err.to_string().contains("/nonexistent/ca.crt"), "{err}");
            let err = TlsOptions::new()
                .client_cert_pem("nothing", key)
                .certificates()
                .expect_err("no client cert");
            assert!(!err.to_string().contains("c2VjcmV0"), "{err}");
            assert!(
                !format!("{:?}", TlsOptions::new().client_cert_pem("c", key)).contains("c2VjcmV0")
            );
        }
    }
}
