//! TLS for the suite's gRPC traffic: a server's certificate and key (and,
//! for mutual TLS, the CA its clients' certificates must chain to), and a
//! client's CA, certificate and expected server name (the movie service's
//! calls to its upstreams, the `healthcheck` probe).
//!
//! PEM files are read and checked at start-up, so a wrong path or a file of
//! the wrong kind stops the process with a message that names the setting
//! and the file. Key material never reaches a message or a `Debug` output.
use std::{
    fmt,
    path::{Path, PathBuf},
    sync::Arc,
};

use rustls_pki_types::{CertificateDer, PrivateKeyDer, pem::PemObject};

const TLS_CERT: &str = "--tls-cert (TLS_CERT)";
const TLS_KEY: &str = "--tls-key (TLS_KEY)";
const TLS_CLIENT_CA: &str = "--tls-client-ca (TLS_CLIENT_CA)";

/// A server's TLS settings, flattened into [`crate::server::ServerArgs`].
#[derive(Debug, Clone, Default, clap::Args)]
pub struct ServerTlsArgs {
    /// PEM certificate (chain) of this server; with --tls-key the server speaks only TLS [default: plaintext]
    #[arg(long, env = "TLS_CERT")]
    pub tls_cert: Option<PathBuf>,

    /// PEM private key of --tls-cert (PKCS#8, PKCS#1 or SEC1)
    #[arg(long, env = "TLS_KEY")]
    pub tls_key: Option<PathBuf>,

    /// PEM CA certificate(s): clients must present a certificate signed by one of them (mutual TLS) [default: no client certificate asked for]
    #[arg(long, env = "TLS_CLIENT_CA")]
    pub tls_client_ca: Option<PathBuf>,
}

impl ServerTlsArgs {
    /// `off`, `on` or `mutual`, for the start-up log line.
    pub fn mode(&self) -> &'static str {
        match (self.tls_cert.is_some(), self.tls_client_ca.is_some()) {
            (false, _) => "off",
            (true, false) => "on",
            (true, true) => "mutual",
        }
    }

    /// The server's TLS configuration, its files read and checked; `None`
    /// when TLS is off.
    pub fn server_config(&self) -> Result<Option<ServerTls>, TlsError> {
        let Some((cert, key)) = both((TLS_CERT, self.tls_cert.as_deref()), (TLS_KEY, self.tls_key.as_deref()))? else {
            if self.tls_client_ca.is_some() {
                return Err(TlsError::Needs { given: TLS_CLIENT_CA, needed: "--tls-cert and --tls-key" });
            }
            return Ok(None);
        };
        let (cert_pem, key_pem) = (read_certificates(TLS_CERT, cert)?, read_private_key(TLS_KEY, key)?);
        let client_ca_pem = match &self.tls_client_ca {
            Some(client_ca) => Some(read_certificates(TLS_CLIENT_CA, client_ca)?),
            None => None,
        };
        // rustls checks the key against its certificate, and the client CA,
        // here: a pair that does not match stops the start instead of every
        // handshake.
        let rustls = rustls_server_config(&cert_pem, &key_pem, client_ca_pem.as_deref()).map_err(|source| {
            let settings = format!("certificate {}, key {}", cert.display(), key.display());
            TlsError::Unusable { settings, source }
        })?;
        Ok(Some(ServerTls { rustls: Arc::new(rustls) }))
    }
}

/// A server's checked TLS configuration, for the handshake of every
/// accepted connection. Its `Debug` shows no key material.
#[derive(Clone)]
pub struct ServerTls {
    rustls: Arc<rustls::ServerConfig>,
}

impl ServerTls {
    /// The handshake of accepted connections.
    pub fn acceptor(&self) -> tokio_rustls::TlsAcceptor {
        tokio_rustls::TlsAcceptor::from(self.rustls.clone())
    }
}

impl fmt::Debug for ServerTls {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ServerTls")
    }
}

/// A rustls server presenting the certificate chain of `cert_pem` with the
/// key of `key_pem`, asking every client for a certificate that chains to
/// `client_ca_pem` when it is given (mutual TLS), and speaking HTTP/2 (ALPN
/// `h2`).
fn rustls_server_config(
    cert_pem: &[u8],
    key_pem: &[u8],
    client_ca_pem: Option<&[u8]>,
) -> Result<rustls::ServerConfig, Box<dyn std::error::Error + Send + Sync>> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder =
        rustls::ServerConfig::builder_with_provider(provider.clone()).with_safe_default_protocol_versions()?;
    let builder = match client_ca_pem {
        Some(client_ca_pem) => {
            let mut roots = rustls::RootCertStore::empty();
            roots.add_parsable_certificates(CertificateDer::pem_slice_iter(client_ca_pem).filter_map(Result::ok));
            let verifier =
                rustls::server::WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider).build()?;
            builder.with_client_cert_verifier(verifier)
        }
        None => builder.with_no_client_auth(),
    };
    let chain = CertificateDer::pem_slice_iter(cert_pem).collect::<Result<Vec<_>, _>>()?;
    let key = PrivateKeyDer::from_pem_slice(key_pem)?;
    let mut config = builder.with_single_cert(chain, key)?;
    config.alpn_protocols = vec![b"h2".to_vec()];
    Ok(config)
}

/// The movie service's TLS settings for its calls to the metadata and
/// rating services.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct UpstreamTlsArgs {
    /// PEM CA certificate(s) the metadata and rating services' certificates must chain to; calls to them then use TLS [default: plaintext]
    #[arg(long, env = "UPSTREAM_TLS_CA")]
    pub upstream_tls_ca: Option<PathBuf>,

    /// PEM client certificate presented to the metadata and rating services (for their --tls-client-ca), with --upstream-tls-key
    #[arg(long, env = "UPSTREAM_TLS_CERT")]
    pub upstream_tls_cert: Option<PathBuf>,

    /// PEM private key of --upstream-tls-cert
    #[arg(long, env = "UPSTREAM_TLS_KEY")]
    pub upstream_tls_key: Option<PathBuf>,

    /// Name the upstreams' certificates must be issued for, when instances are addressed by IP and their certificates name a host [default: the host of each instance's address]
    #[arg(long, env = "UPSTREAM_TLS_DOMAIN")]
    pub upstream_tls_domain: Option<String>,
}

impl UpstreamTlsArgs {
    /// The client TLS configuration of upstream calls; `None` when TLS is off.
    pub fn client_tls(&self) -> Result<Option<ClientTls>, TlsError> {
        ClientTlsFiles {
            ca: ("--upstream-tls-ca (UPSTREAM_TLS_CA)", self.upstream_tls_ca.as_deref()),
            cert: ("--upstream-tls-cert (UPSTREAM_TLS_CERT)", self.upstream_tls_cert.as_deref()),
            key: ("--upstream-tls-key (UPSTREAM_TLS_KEY)", self.upstream_tls_key.as_deref()),
            domain: ("--upstream-tls-domain (UPSTREAM_TLS_DOMAIN)", self.upstream_tls_domain.as_deref()),
        }
        .client_tls()
    }
}

/// A client's TLS settings, each with the name it was given under (e.g.
/// `--upstream-tls-ca (UPSTREAM_TLS_CA)`) for the error messages.
pub struct ClientTlsFiles<'a> {
    /// The CA that server certificates must chain to; TLS is on when set.
    pub ca: (&'static str, Option<&'a Path>),
    /// The client certificate, for mutual TLS; with `key`.
    pub cert: (&'static str, Option<&'a Path>),
    pub key: (&'static str, Option<&'a Path>),
    /// The name server certificates must carry, instead of the address's host.
    pub domain: (&'static str, Option<&'a str>),
}

impl ClientTlsFiles<'_> {
    /// The configuration these settings describe, its files read and
    /// checked; `None` when no CA is given (plaintext). A certificate, key
    /// or domain without a CA is an error: with no CA, nothing could be
    /// trusted.
    pub fn client_tls(&self) -> Result<Option<ClientTls>, TlsError> {
        let identity = both(self.cert, self.key)?;
        let (ca_name, Some(ca)) = self.ca else {
            let given = [self.cert, self.key].into_iter().find(|(_, path)| path.is_some()).map(|(name, _)| name);
            let given = given.or(self.domain.1.map(|_| self.domain.0));
            return match given {
                Some(given) => Err(TlsError::Needs { given, needed: self.ca.0 }),
                None => Ok(None),
            };
        };
        let ca_pem = read_certificates(ca_name, ca)?;
        let mut description = format!("CA {}", ca.display());
        let identity_pem = match identity {
            Some((cert, key)) => {
                description.push_str(&format!(", client certificate {}", cert.display()));
                Some((read_certificates(self.cert.0, cert)?, read_private_key(self.key.0, key)?))
            }
            None => None,
        };
        if let Some(domain) = self.domain.1 {
            description.push_str(&format!(", server name {domain}"));
        }
        // rustls checks the key against its certificate here, so that a
        // pair that does not match stops the start instead of every
        // handshake.
        let rustls =
            rustls_client_config(&ca_pem, identity_pem.as_ref().map(|(cert, key)| (cert.as_slice(), key.as_slice())))
                .map_err(|source| TlsError::Unusable { settings: description.clone(), source: source.into() })?;
        Ok(Some(ClientTls { rustls: Arc::new(rustls), server_name: self.domain.1.map(str::to_owned), description }))
    }
}

/// A client's checked TLS configuration, for [`crate::upstream::Connection`]
/// (movie's upstream calls, the `healthcheck` probe). Its `Debug` names the
/// files, never their contents.
#[derive(Clone)]
pub struct ClientTls {
    rustls: Arc<rustls::ClientConfig>,
    server_name: Option<String>,
    description: String,
}

impl ClientTls {
    /// The settings as a rustls configuration, offering HTTP/2 (ALPN `h2`).
    pub fn rustls(&self) -> Arc<rustls::ClientConfig> {
        self.rustls.clone()
    }

    /// The name server certificates must carry, when it is not the host
    /// connected to.
    pub fn server_name(&self) -> Option<&str> {
        self.server_name.as_deref()
    }

    /// These settings, checking certificates against `name` unless a server
    /// name was configured (which always wins).
    pub fn or_server_name(&self, name: &str) -> Self {
        Self { server_name: Some(self.server_name.clone().unwrap_or_else(|| name.to_owned())), ..self.clone() }
    }
}

/// A rustls client trusting the CA certificates of `ca_pem` only, with a
/// client certificate when `identity` (certificate and key PEM) is given,
/// and offering HTTP/2.
fn rustls_client_config(
    ca_pem: &[u8],
    identity: Option<(&[u8], &[u8])>,
) -> Result<rustls::ClientConfig, rustls::Error> {
    let mut roots = rustls::RootCertStore::empty();
    roots.add_parsable_certificates(CertificateDer::pem_slice_iter(ca_pem).filter_map(Result::ok));
    let builder = rustls::ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
        .with_safe_default_protocol_versions()?
        .with_root_certificates(roots);
    let mut config = match identity {
        Some((cert_pem, key_pem)) => {
            let chain = CertificateDer::pem_slice_iter(cert_pem).filter_map(Result::ok).collect();
            let key = PrivateKeyDer::from_pem_slice(key_pem)
                .map_err(|_| rustls::Error::General("the private key cannot be parsed".into()))?;
            builder.with_client_auth_cert(chain, key)?
        }
        None => builder.with_no_client_auth(),
    };
    config.alpn_protocols = vec![b"h2".to_vec()];
    Ok(config)
}

impl fmt::Debug for ClientTls {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ClientTls({})", self.description)
    }
}

impl fmt::Display for ClientTls {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.description)
    }
}

/// Why TLS settings cannot be used. Messages name settings and files, never
/// what the files hold.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("{given} is set but {missing} is not: give both or neither")]
    Incomplete { given: &'static str, missing: &'static str },
    #[error("{given} needs {needed}")]
    Needs { given: &'static str, needed: &'static str },
    #[error("cannot read {setting} file {}", .path.display())]
    Read {
        setting: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{setting} file {} is not valid PEM: {problem}", .path.display())]
    InvalidPem { setting: &'static str, path: PathBuf, problem: &'static str },
    #[error("{setting} file {} holds no PEM certificate (-----BEGIN CERTIFICATE-----)", .path.display())]
    NoCertificate { setting: &'static str, path: PathBuf },
    #[error(
        "{setting} file {} holds no PEM private key (-----BEGIN PRIVATE KEY-----, RSA PRIVATE KEY or EC PRIVATE KEY)",
        .path.display()
    )]
    NoPrivateKey { setting: &'static str, path: PathBuf },
    #[error("the TLS settings ({settings}) cannot be used")]
    Unusable {
        settings: String,
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
}

/// Both halves of a certificate and its key, or neither.
fn both<'a>(
    cert: (&'static str, Option<&'a Path>),
    key: (&'static str, Option<&'a Path>),
) -> Result<Option<(&'a Path, &'a Path)>, TlsError> {
    match (cert, key) {
        ((_, Some(cert)), (_, Some(key))) => Ok(Some((cert, key))),
        ((_, None), (_, None)) => Ok(None),
        ((given, Some(_)), (missing, None)) | ((missing, None), (given, Some(_))) => {
            Err(TlsError::Incomplete { given, missing })
        }
    }
}

fn read(setting: &'static str, path: &Path) -> Result<Vec<u8>, TlsError> {
    std::fs::read(path).map_err(|source| TlsError::Read { setting, path: path.to_owned(), source })
}

/// The file's bytes, once it is known to hold at least one PEM certificate.
fn read_certificates(setting: &'static str, path: &Path) -> Result<Vec<u8>, TlsError> {
    let pem = read(setting, path)?;
    let certificates: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(&pem)
        .collect::<Result<_, _>>()
        .map_err(|error| invalid_pem(setting, path, &error))?;
    if certificates.is_empty() {
        return Err(TlsError::NoCertificate { setting, path: path.to_owned() });
    }
    Ok(pem)
}

/// The file's bytes, once it is known to hold a PEM private key.
fn read_private_key(setting: &'static str, path: &Path) -> Result<Vec<u8>, TlsError> {
    let pem = read(setting, path)?;
    match PrivateKeyDer::from_pem_slice(&pem) {
        Ok(_) => Ok(pem),
        Err(rustls_pki_types::pem::Error::NoItemsFound) => {
            Err(TlsError::NoPrivateKey { setting, path: path.to_owned() })
        }
        Err(error) => Err(invalid_pem(setting, path, &error)),
    }
}

/// The PEM parser's errors can quote the file (a line, base64 text): only
/// what kind of problem it is goes into the message.
fn invalid_pem(setting: &'static str, path: &Path, error: &rustls_pki_types::pem::Error) -> TlsError {
    use rustls_pki_types::pem::Error;
    let problem = match error {
        Error::MissingSectionEnd { .. } => "a section has no -----END line",
        Error::IllegalSectionStart { .. } => "a -----BEGIN line is malformed",
        Error::Base64Decode(_) => "a section is not valid base64",
        Error::SectionTooLarge => "a section is too large",
        _ => "it cannot be parsed",
    };
    TlsError::InvalidPem { setting, path: path.to_owned(), problem }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file(contents: &str) -> tempfile::NamedTempFile {
        let file = tempfile::NamedTempFile::new().unwrap();
        std::fs::write(file.path(), contents).unwrap();
        file
    }

    fn server(cert: Option<&Path>, key: Option<&Path>, client_ca: Option<&Path>) -> ServerTlsArgs {
        ServerTlsArgs {
            tls_cert: cert.map(Path::to_owned),
            tls_key: key.map(Path::to_owned),
            tls_client_ca: client_ca.map(Path::to_owned),
        }
    }

    fn message(error: &TlsError) -> String {
        telemetry::Chain(error).to_string()
    }

    #[test]
    fn no_settings_is_plaintext() {
        assert!(ServerTlsArgs::default().server_config().unwrap().is_none());
        assert!(UpstreamTlsArgs::default().client_tls().unwrap().is_none());
        assert_eq!(ServerTlsArgs::default().mode(), "off");
    }

    #[test]
    fn a_certificate_without_its_key_or_a_key_without_its_certificate_is_refused() {
        let pem = file("unused");
        let error = server(Some(pem.path()), None, None).server_config().unwrap_err();
        assert_eq!(
            error.to_string(),
            "--tls-cert (TLS_CERT) is set but --tls-key (TLS_KEY) is not: give both or neither"
        );
        let error = server(None, Some(pem.path()), None).server_config().unwrap_err();
        assert_eq!(
            error.to_string(),
            "--tls-key (TLS_KEY) is set but --tls-cert (TLS_CERT) is not: give both or neither"
        );
        let error = server(None, None, Some(pem.path())).server_config().unwrap_err();
        assert_eq!(error.to_string(), "--tls-client-ca (TLS_CLIENT_CA) needs --tls-cert and --tls-key");
    }

    #[test]
    fn a_client_certificate_or_server_name_without_a_ca_is_refused() {
        let pem = file("unused");
        let upstream = UpstreamTlsArgs { upstream_tls_cert: Some(pem.path().into()), ..Default::default() };
        let error = upstream.client_tls().unwrap_err();
        assert_eq!(
            error.to_string(),
            "--upstream-tls-cert (UPSTREAM_TLS_CERT) is set but --upstream-tls-key (UPSTREAM_TLS_KEY) is not: give both or neither"
        );
        let upstream = UpstreamTlsArgs { upstream_tls_domain: Some("metadata".into()), ..Default::default() };
        assert_eq!(
            upstream.client_tls().unwrap_err().to_string(),
            "--upstream-tls-domain (UPSTREAM_TLS_DOMAIN) needs --upstream-tls-ca (UPSTREAM_TLS_CA)"
        );
    }

    #[test]
    fn an_unreadable_file_is_named_with_the_reason() {
        let missing = Path::new("/nonexistent/server.pem");
        let error = server(Some(missing), Some(missing), None).server_config().unwrap_err();
        assert!(matches!(error, TlsError::Read { .. }));
        assert_eq!(
            message(&error),
            "cannot read --tls-cert (TLS_CERT) file /nonexistent/server.pem: No such file or directory (os error 2)"
        );
    }

    #[test]
    fn files_of_the_wrong_kind_are_named_and_key_material_never_printed() {
        let secret = "c2VjcmV0LWtleS1tYXRlcmlhbA";
        let not_pem = file(&format!("{secret}\n"));
        let error = server(Some(not_pem.path()), Some(not_pem.path()), None).server_config().unwrap_err();
        assert_eq!(
            message(&error),
            format!(
                "--tls-cert (TLS_CERT) file {} holds no PEM certificate (-----BEGIN CERTIFICATE-----)",
                not_pem.path().display()
            )
        );

        // A key given where a CA belongs.
        let key = file(&format!("-----BEGIN PRIVATE KEY-----\n{secret}==\n-----END PRIVATE KEY-----\n"));
        let ca = UpstreamTlsArgs { upstream_tls_ca: Some(key.path().into()), ..Default::default() };
        let error = ca.client_tls().unwrap_err();
        assert_eq!(
            message(&error),
            format!(
                "--upstream-tls-ca (UPSTREAM_TLS_CA) file {} holds no PEM certificate (-----BEGIN CERTIFICATE-----)",
                key.path().display()
            )
        );

        let broken = file(&format!("-----BEGIN PRIVATE KEY-----\n{secret}!!\n-----END PRIVATE KEY-----\n"));
        let certificate = file("-----BEGIN CERTIFICATE-----\nMAA=\n-----END CERTIFICATE-----\n");
        let error = server(Some(certificate.path()), Some(broken.path()), None).server_config().unwrap_err();
        assert_eq!(
            message(&error),
            format!(
                "--tls-key (TLS_KEY) file {} is not valid PEM: a section is not valid base64",
                broken.path().display()
            )
        );

        let unterminated = file(&format!("-----BEGIN PRIVATE KEY-----\n{secret}\n"));
        let error = server(Some(certificate.path()), Some(unterminated.path()), None).server_config().unwrap_err();
        assert!(message(&error).ends_with("is not valid PEM: a section has no -----END line"), "{error}");

        // Well-formed PEM that is no key: rustls refuses it, without quoting it.
        let error = server(Some(certificate.path()), Some(key.path()), None).server_config().unwrap_err();
        assert!(matches!(error, TlsError::Unusable { .. }), "{error}");
        assert!(message(&error).starts_with("the TLS settings (certificate "), "{}", message(&error));
        for error in [message(&error), format!("{error:?}")] {
            assert!(!error.contains(secret), "key material in {error}");
        }
    }
}
