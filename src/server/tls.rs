//! TLS for the public listener (rustls, ring provider). Owns loading the
//! `[tls]` files, the server configuration (TLS 1.3 unless 1.2 is allowed,
//! ALPN `h2` and `http/1.1`, client certificates verified against
//! `client_ca`), swapping in a new certificate when its files change, and
//! reading who a verified client is. Never handshakes on the accept loop
//! (the listener calls `accept` in each connection's task) and never puts
//! key material in a log line or an error.

use std::future::Future;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError, RwLock};
use std::time::{Duration, SystemTime};

use rustls::RootCertStore;
use rustls::crypto::CryptoProvider;
use rustls::server::danger::ClientCertVerifier;
use rustls::server::{ClientHello, ResolvesServerCert, ServerConfig, WebPkiClientVerifier};
use rustls::sign::CertifiedKey;
use rustls_pki_types::pem::{self, PemObject};
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio_rustls::TlsAcceptor;
use tokio_rustls::server::TlsStream;

use super::listener::ClientCert;
use crate::config::{TlsConfig, TlsVersion};

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("tls.cert and tls.key must be set together")]
    Incomplete,
    #[error("tls {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    /// What is wrong with a PEM file, in words that never quote it.
    #[error("tls {path}: {problem}")]
    Pem {
        path: PathBuf,
        problem: &'static str,
    },
    #[error("tls cert {cert} with key {key}: {source}")]
    Pair {
        cert: PathBuf,
        key: PathBuf,
        source: rustls::Error,
    },
    #[error("tls client_ca {path}: {message}")]
    ClientCa { path: PathBuf, message: String },
    #[error("tls: {0}")]
    Config(#[from] rustls::Error),
    #[error("tls: loading the files stopped: {0}")]
    Task(String),
    #[error("tls handshake not finished within {0:?}")]
    HandshakeTimeout(Duration),
    #[error("tls handshake: {0}")]
    Handshake(std::io::Error),
}

/// The application protocol a TLS client chose.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Alpn {
    Http2,
    Http1,
    /// The client offered no ALPN: the listener sniffs the protocol.
    None,
}

/// A finished handshake.
pub struct Accepted<IO> {
    pub stream: TlsStream<IO>,
    pub alpn: Alpn,
    pub client_cert: Option<ClientCert>,
}

/// The public listener's TLS: its acceptor and the certificate it serves.
pub struct Tls {
    acceptor: TlsAcceptor,
    certs: Arc<CertStore>,
    provider: Arc<CryptoProvider>,
    cert_path: PathBuf,
    key_path: PathBuf,
    /// The files as last read, so a check only reloads what changed.
    seen: Mutex<(Option<Stamp>, Option<Stamp>)>,
    handshake_timeout: Duration,
    reload_interval: Duration,
}

impl Tls {
    /// Loads `[tls]`; `None` when it names no certificate (plain HTTP). The
    /// files are read off the reactor.
    pub async fn load(config: &TlsConfig) -> Result<Option<Arc<Tls>>, Error> {
        if config.cert.is_none() && config.key.is_none() {
            return Ok(None);
        }
        let config = config.clone();
        let tls = tokio::task::spawn_blocking(move || Tls::load_blocking(&config))
            .await
            .map_err(|err| Error::Task(err.to_string()))??;
        Ok(Some(Arc::new(tls)))
    }

    fn load_blocking(config: &TlsConfig) -> Result<Tls, Error> {
        let (Some(cert_path), Some(key_path)) = (&config.cert, &config.key) else {
            return Err(Error::Incomplete);
        };
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let seen = (stamp(cert_path), stamp(key_path));
        let certs = Arc::new(CertStore {
            current: RwLock::new(load_pair(cert_path, key_path, &provider)?),
        });
        let server = server_config(config, certs.clone(), &provider)?;
        Ok(Tls {
            acceptor: TlsAcceptor::from(Arc::new(server)),
            certs,
            provider,
            cert_path: cert_path.clone(),
            key_path: key_path.clone(),
            seen: Mutex::new(seen),
            handshake_timeout: config.handshake_timeout,
            reload_interval: config.reload_interval,
        })
    }

    /// SHA-256 of the leaf certificate served now.
    pub fn fingerprint(&self) -> [u8; 32] {
        let current = self.certs.current();
        current
            .end_entity_cert()
            .map(|leaf| crate::crypto::sha256(leaf))
            .unwrap_or_default()
    }

    /// When the leaf certificate served now expires (Unix seconds).
    pub fn not_after(&self) -> Option<i64> {
        let current = self.certs.current();
        let leaf = current.end_entity_cert().ok()?;
        let (_, certificate) = x509_parser::parse_x509_certificate(leaf).ok()?;
        Some(certificate.validity().not_after.timestamp())
    }

    /// Runs the server side of a handshake, bounded by `handshake_timeout`.
    pub async fn accept<IO>(&self, io: IO) -> Result<Accepted<IO>, Error>
    where
        IO: AsyncRead + AsyncWrite + Unpin,
    {
        let stream = tokio::time::timeout(self.handshake_timeout, self.acceptor.accept(io))
            .await
            .map_err(|_| Error::HandshakeTimeout(self.handshake_timeout))?
            .map_err(Error::Handshake)?;
        let (_, session) = stream.get_ref();
        let alpn = match session.alpn_protocol() {
            Some(b"h2") => Alpn::Http2,
            Some(b"http/1.1") => Alpn::Http1,
            _ => Alpn::None,
        };
        // rustls only reports peer certificates it verified.
        let client_cert = session
            .peer_certificates()
            .and_then(|chain| chain.first())
            .map(|leaf| client_cert(leaf));
        Ok(Accepted {
            stream,
            alpn,
            client_cert,
        })
    }

    /// Re-reads the certificate and key every `reload_interval` when they
    /// changed, and on SIGHUP whether or not they did. The SIGHUP handler is
    /// installed before this returns, so once the listener accepts, a
    /// SIGHUP reloads instead of ending the process. The future runs until
    /// its owner (the listener) aborts it.
    pub fn watch(self: Arc<Self>) -> impl Future<Output = ()> + Send + 'static {
        use tokio::signal::unix::{SignalKind, signal};
        let mut hangups = match signal(SignalKind::hangup()) {
            Ok(hangups) => Some(hangups),
            Err(err) => {
                tracing::warn!(error = %err, "cannot listen for SIGHUP; tls certificates reload on their interval only");
                None
            }
        };
        async move {
            let mut ticks = tokio::time::interval(self.reload_interval);
            ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            // The first tick is immediate, and the files were just read.
            ticks.tick().await;
            loop {
                let forced = tokio::select! {
                    _ = ticks.tick() => false,
                    Some(()) = hangup(&mut hangups) => true,
                };
                let tls = self.clone();
                if let Err(err) = tokio::task::spawn_blocking(move || tls.reload(forced)).await {
                    tracing::warn!(error = %err, "tls certificate check stopped");
                }
            }
        }
    }

    /// Loads the files again if they changed (or `forced`) and swaps the new
    /// certificate in; a pair that does not load leaves the current one.
    fn reload(&self, forced: bool) -> Reloaded {
        let now = (stamp(&self.cert_path), stamp(&self.key_path));
        let mut seen = self.seen.lock().unwrap_or_else(PoisonError::into_inner);
        if !forced && *seen == now {
            return Reloaded::Unchanged;
        }
        // Remembered even when the load fails, so a bad file is reported
        // once, not at every check; writing it again retries.
        *seen = now;
        match load_pair(&self.cert_path, &self.key_path, &self.provider) {
            Ok(certified) => {
                self.certs.replace(certified);
                tracing::info!(
                    cert = %self.cert_path.display(),
                    sha256 = %hex::encode(self.fingerprint()),
                    "tls certificate reloaded"
                );
                Reloaded::Swapped
            }
            Err(err) => {
                tracing::warn!(error = %err, "tls certificate reload failed; keeping the current certificate");
                Reloaded::Kept
            }
        }
    }
}

#[derive(Debug, PartialEq, Eq)]
enum Reloaded {
    Unchanged,
    Swapped,
    Kept,
}

async fn hangup(hangups: &mut Option<tokio::signal::unix::Signal>) -> Option<()> {
    match hangups {
        Some(hangups) => hangups.recv().await,
        None => std::future::pending().await,
    }
}

/// The certificate handshakes get; replaced whole on reload, so a handshake
/// in progress keeps the one it started with.
#[derive(Debug)]
struct CertStore {
    current: RwLock<Arc<CertifiedKey>>,
}

impl CertStore {
    fn current(&self) -> Arc<CertifiedKey> {
        self.current
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    fn replace(&self, certified: Arc<CertifiedKey>) {
        *self.current.write().unwrap_or_else(PoisonError::into_inner) = certified;
    }
}

impl ResolvesServerCert for CertStore {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.current())
    }
}

/// What identifies one version of a file: a rewrite in place changes the
/// time or length, a rename over it the inode.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Stamp {
    modified: Option<SystemTime>,
    len: u64,
    inode: u64,
}

fn stamp(path: &Path) -> Option<Stamp> {
    use std::os::unix::fs::MetadataExt;
    let meta = std::fs::metadata(path).ok()?;
    Some(Stamp {
        modified: meta.modified().ok(),
        len: meta.len(),
        inode: meta.ino(),
    })
}

fn server_config(
    config: &TlsConfig,
    certs: Arc<CertStore>,
    provider: &Arc<CryptoProvider>,
) -> Result<ServerConfig, Error> {
    let versions: &[&'static rustls::SupportedProtocolVersion] = match config.min_version {
        TlsVersion::Tls13 => &[&rustls::version::TLS13],
        TlsVersion::Tls12 => &[&rustls::version::TLS13, &rustls::version::TLS12],
    };
    let builder =
        ServerConfig::builder_with_provider(provider.clone()).with_protocol_versions(versions)?;
    let builder = match client_verifier(config, provider)? {
        Some(verifier) => builder.with_client_cert_verifier(verifier),
        None => builder.with_no_client_auth(),
    };
    let mut server = builder.with_cert_resolver(certs);
    server.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(server)
}

fn client_verifier(
    config: &TlsConfig,
    provider: &Arc<CryptoProvider>,
) -> Result<Option<Arc<dyn ClientCertVerifier>>, Error> {
    let Some(path) = &config.client_ca else {
        return Ok(None);
    };
    let mut roots = RootCertStore::empty();
    let (added, ignored) = roots.add_parsable_certificates(read_certs(path)?);
    if added == 0 {
        return Err(Error::ClientCa {
            path: path.clone(),
            message: "no usable CA certificate".into(),
        });
    }
    if ignored > 0 {
        tracing::warn!(client_ca = %path.display(), ignored, "some client CA certificates could not be used");
    }
    let mut builder =
        WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider.clone());
    if !config.require_client_cert {
        builder = builder.allow_unauthenticated();
    }
    let verifier = builder.build().map_err(|err| Error::ClientCa {
        path: path.clone(),
        message: err.to_string(),
    })?;
    Ok(Some(verifier))
}

fn load_pair(
    cert: &Path,
    key: &Path,
    provider: &CryptoProvider,
) -> Result<Arc<CertifiedKey>, Error> {
    let chain = read_certs(cert)?;
    let private = read_key(key)?;
    // Parses the key and checks that it belongs to the leaf certificate.
    let certified =
        CertifiedKey::from_der(chain, private, provider).map_err(|source| Error::Pair {
            cert: cert.to_owned(),
            key: key.to_owned(),
            source,
        })?;
    Ok(Arc::new(certified))
}

fn read(path: &Path) -> Result<Vec<u8>, Error> {
    std::fs::read(path).map_err(|source| Error::Read {
        path: path.to_owned(),
        source,
    })
}

fn read_certs(path: &Path) -> Result<Vec<CertificateDer<'static>>, Error> {
    let text = read(path)?;
    let certs = CertificateDer::pem_slice_iter(&text)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|err| pem_error(path, &err))?;
    if certs.is_empty() {
        return Err(Error::Pem {
            path: path.to_owned(),
            problem: "no CERTIFICATE in the file",
        });
    }
    Ok(certs)
}

fn read_key(path: &Path) -> Result<PrivateKeyDer<'static>, Error> {
    let text = read(path)?;
    PrivateKeyDer::from_pem_slice(&text).map_err(|err| match err {
        pem::Error::NoItemsFound => Error::Pem {
            path: path.to_owned(),
            problem: "no PRIVATE KEY (PKCS#8, PKCS#1 or SEC1) in the file",
        },
        err => pem_error(path, &err),
    })
}

/// The PEM parser's errors quote the offending line; these words never do,
/// since the line may be part of a key.
fn pem_error(path: &Path, err: &pem::Error) -> Error {
    let problem = match err {
        pem::Error::MissingSectionEnd { .. } => "a PEM section has no END line",
        pem::Error::IllegalSectionStart { .. } => "a PEM BEGIN line is malformed",
        pem::Error::Base64Decode(_) => "a PEM section is not valid base64",
        pem::Error::NoItemsFound => "nothing of the expected kind in the file",
        pem::Error::SectionTooLarge => "a PEM section is too large",
        _ => "not a readable PEM file",
    };
    Error::Pem {
        path: path.to_owned(),
        problem,
    }
}

/// Who a verified client certificate names.
pub(super) fn client_cert(leaf: &[u8]) -> ClientCert {
    ClientCert {
        sha256: crate::crypto::sha256(leaf),
        common_name: der::common_name(leaf),
    }
}

/// Just enough DER to read a certificate's subject common name. The bytes
/// come from a certificate rustls has verified, but this still checks every
/// length and gives up on anything unexpected.
mod der {
    const SEQUENCE: u8 = 0x30;
    const SET: u8 = 0x31;
    const INTEGER: u8 = 0x02;
    const OID: u8 = 0x06;
    const VERSION: u8 = 0xa0;
    const UTF8_STRING: u8 = 0x0c;
    const PRINTABLE_STRING: u8 = 0x13;
    const IA5_STRING: u8 = 0x16;
    /// id-at-commonName, 2.5.4.3.
    const COMMON_NAME: &[u8] = &[0x55, 0x04, 0x03];

    pub fn common_name(cert: &[u8]) -> Option<String> {
        let (cert, _) = expect(cert, SEQUENCE)?;
        let (tbs, _) = expect(cert, SEQUENCE)?;
        let mut rest = tbs;
        if rest.first() == Some(&VERSION) {
            (_, rest) = expect(rest, VERSION)?;
        }
        (_, rest) = expect(rest, INTEGER)?; // serialNumber
        (_, rest) = expect(rest, SEQUENCE)?; // signature
        (_, rest) = expect(rest, SEQUENCE)?; // issuer
        (_, rest) = expect(rest, SEQUENCE)?; // validity
        let (mut names, _) = expect(rest, SEQUENCE)?; // subject
        while !names.is_empty() {
            let (set, next) = expect(names, SET)?;
            names = next;
            let mut attributes = set;
            while !attributes.is_empty() {
                let (attribute, next) = expect(attributes, SEQUENCE)?;
                attributes = next;
                let (oid, value) = expect(attribute, OID)?;
                if oid == COMMON_NAME {
                    return text(value);
                }
            }
        }
        None
    }

    /// A string value, if it is one of the plain kinds and printable (it
    /// ends up in log lines).
    fn text(value: &[u8]) -> Option<String> {
        let (tag, content, _) = element(value)?;
        if !matches!(tag, UTF8_STRING | PRINTABLE_STRING | IA5_STRING) {
            return None;
        }
        let text = std::str::from_utf8(content).ok()?;
        (!text.is_empty() && !text.chars().any(char::is_control)).then(|| text.to_owned())
    }

    /// The content of the element at the start of `input` if its tag is
    /// `tag`, and what follows it.
    fn expect(input: &[u8], tag: u8) -> Option<(&[u8], &[u8])> {
        let (found, content, rest) = element(input)?;
        (found == tag).then_some((content, rest))
    }

    /// One tag-length-value element: (tag, content, rest).
    fn element(input: &[u8]) -> Option<(u8, &[u8], &[u8])> {
        let (&tag, rest) = input.split_first()?;
        let (&first, mut rest) = rest.split_first()?;
        let len = if first < 0x80 {
            usize::from(first)
        } else {
            let count = usize::from(first & 0x7f);
            // A certificate never needs more than 4 length bytes.
            if count == 0 || count > 4 || rest.len() < count {
                return None;
            }
            let (bytes, after) = rest.split_at(count);
            rest = after;
            bytes
                .iter()
                .fold(0usize, |len, &byte| (len << 8) | usize::from(byte))
        };
        if rest.len() < len {
            return None;
        }
        let (content, rest) = rest.split_at(len);
        Some((tag, content, rest))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rcgen::{
        BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer,
        KeyPair, KeyUsagePurpose,
    };
    use rustls_pki_types::ServerName;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    struct Files {
        dir: tempfile::TempDir,
        server_der: Vec<u8>,
        client_der: Vec<u8>,
        client_chain: Vec<CertificateDer<'static>>,
        client_key: PrivateKeyDer<'static>,
    }

    /// A server certificate for localhost, and a client certificate for
    /// `alice` signed by a CA, written as PEM files.
    fn files() -> Files {
        let dir = tempfile::tempdir().unwrap();
        let server_key = KeyPair::generate().unwrap();
        let server = CertificateParams::new(vec!["localhost".to_owned()])
            .unwrap()
            .self_signed(&server_key)
            .unwrap();
        std::fs::write(dir.path().join("cert.pem"), server.pem()).unwrap();
        std::fs::write(dir.path().join("key.pem"), server_key.serialize_pem()).unwrap();

        let ca_key = KeyPair::generate().unwrap();
        let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
        ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca_params.key_usages = vec![KeyUsagePurpose::KeyCertSign];
        ca_params
            .distinguished_name
            .push(DnType::CommonName, "test client CA");
        let ca = ca_params.self_signed(&ca_key).unwrap();
        std::fs::write(dir.path().join("ca.pem"), ca.pem()).unwrap();
        let issuer = Issuer::new(ca_params, ca_key);

        let client_key = KeyPair::generate().unwrap();
        let mut client_params = CertificateParams::new(Vec::<String>::new()).unwrap();
        client_params
            .distinguished_name
            .push(DnType::CommonName, "alice");
        client_params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        let client = client_params.signed_by(&client_key, &issuer).unwrap();
        Files {
            server_der: server.der().to_vec(),
            client_der: client.der().to_vec(),
            client_chain: vec![client.der().clone()],
            client_key: PrivateKeyDer::try_from(client_key.serialize_der()).unwrap(),
            dir,
        }
    }

    fn config(files: &Files, client_ca: bool, required: bool) -> TlsConfig {
        TlsConfig {
            cert: Some(files.dir.path().join("cert.pem")),
            key: Some(files.dir.path().join("key.pem")),
            client_ca: client_ca.then(|| files.dir.path().join("ca.pem")),
            require_client_cert: required,
            ..TlsConfig::default()
        }
    }

    /// Handshakes a client (with the client certificate when `present`)
    /// against `tls` over an in-memory pipe; returns the server's view.
    async fn handshake(
        tls: &Tls,
        files: &Files,
        present: bool,
    ) -> Result<Accepted<tokio::io::DuplexStream>, Error> {
        let mut roots = RootCertStore::empty();
        roots
            .add(CertificateDer::from(files.server_der.clone()))
            .unwrap();
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let builder = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_root_certificates(roots);
        let mut client = if present {
            builder
                .with_client_auth_cert(files.client_chain.clone(), files.client_key.clone_key())
                .unwrap()
        } else {
            builder.with_no_client_auth()
        };
        client.alpn_protocols = vec![b"h2".to_vec()];
        let connector = tokio_rustls::TlsConnector::from(Arc::new(client));
        let (near, far) = tokio::io::duplex(64 << 10);
        let client = tokio::spawn(async move {
            let name = ServerName::try_from("localhost").unwrap();
            let mut stream = connector.connect(name, near).await?;
            // TLS 1.3 servers judge the client certificate after the
            // client finished: read once to learn the verdict.
            stream.write_all(b"ping").await?;
            let mut buf = [0u8; 4];
            stream.read_exact(&mut buf).await?;
            Ok::<_, std::io::Error>(())
        });
        let accepted = tls.accept(far).await;
        if let Ok(accepted) = accepted {
            let mut stream = accepted.stream;
            let mut buf = [0u8; 4];
            stream
                .read_exact(&mut buf)
                .await
                .map_err(Error::Handshake)?;
            stream.write_all(b"pong").await.map_err(Error::Handshake)?;
            stream.flush().await.map_err(Error::Handshake)?;
            client.await.unwrap().map_err(Error::Handshake)?;
            return Ok(Accepted {
                stream,
                alpn: accepted.alpn,
                client_cert: accepted.client_cert,
            });
        }
        client.abort();
        accepted
    }

    #[tokio::test]
    async fn a_verified_client_certificate_reaches_the_peer() {
        let files = files();
        let tls = Tls::load(&config(&files, true, true))
            .await
            .unwrap()
            .unwrap();
        let accepted = handshake(&tls, &files, true).await.unwrap();
        let cert = accepted.client_cert.expect("the client certificate");
        assert_eq!(cert.sha256, crate::crypto::sha256(&files.client_der));
        assert_eq!(cert.common_name.as_deref(), Some("alice"));
        assert_eq!(accepted.alpn, Alpn::Http2);
    }

    #[tokio::test]
    async fn a_required_client_certificate_refuses_clients_without_one() {
        let files = files();
        let tls = Tls::load(&config(&files, true, true))
            .await
            .unwrap()
            .unwrap();
        assert!(handshake(&tls, &files, false).await.is_err());
    }

    #[tokio::test]
    async fn an_optional_client_certificate_lets_both_in() {
        let files = files();
        let tls = Tls::load(&config(&files, true, false))
            .await
            .unwrap()
            .unwrap();
        let without = handshake(&tls, &files, false).await.unwrap();
        assert!(without.client_cert.is_none());
        let with = handshake(&tls, &files, true).await.unwrap();
        assert_eq!(
            with.client_cert.map(|cert| cert.sha256),
            Some(crate::crypto::sha256(&files.client_der))
        );
    }

    #[tokio::test]
    async fn without_client_ca_no_client_certificate_is_asked_for() {
        let files = files();
        let tls = Tls::load(&config(&files, false, false))
            .await
            .unwrap()
            .unwrap();
        let accepted = handshake(&tls, &files, true).await.unwrap();
        assert!(accepted.client_cert.is_none());
    }

    #[tokio::test]
    async fn errors_name_the_file_and_never_quote_it() {
        let files = files();
        let key = files.dir.path().join("key.pem");
        let secret = "c2VjcmV0LWtleS1tYXRlcmlhbA";
        std::fs::write(
            &key,
            format!("-----BEGIN PRIVATE KEY-----\n{secret}!!\n-----END PRIVATE KEY-----\n"),
        )
        .unwrap();
        let err = Tls::load(&config(&files, false, false))
            .await
            .err()
            .unwrap()
            .to_string();
        assert!(err.contains("key.pem"), "{err}");
        assert!(!err.contains(secret), "{err}");

        std::fs::write(&key, "garbage").unwrap();
        let err = Tls::load(&config(&files, false, false))
            .await
            .err()
            .unwrap()
            .to_string();
        assert!(
            err.contains("key.pem") && err.contains("no PRIVATE KEY"),
            "{err}"
        );

        // A key that is not the certificate's.
        std::fs::write(&key, KeyPair::generate().unwrap().serialize_pem()).unwrap();
        let err = Tls::load(&config(&files, false, false))
            .await
            .err()
            .unwrap()
            .to_string();
        assert!(err.contains("cert.pem") && err.contains("key.pem"), "{err}");
    }

    #[tokio::test]
    async fn a_reload_swaps_a_good_pair_and_keeps_the_old_one_on_garbage() {
        let files = files();
        let tls = Tls::load(&config(&files, false, false))
            .await
            .unwrap()
            .unwrap();
        let first = tls.fingerprint();
        assert_eq!(first, crate::crypto::sha256(&files.server_der));
        assert_eq!(tls.reload(false), Reloaded::Unchanged);

        let key = KeyPair::generate().unwrap();
        let cert = CertificateParams::new(vec!["localhost".to_owned()])
            .unwrap()
            .self_signed(&key)
            .unwrap();
        std::fs::write(files.dir.path().join("cert.pem"), cert.pem()).unwrap();
        std::fs::write(files.dir.path().join("key.pem"), key.serialize_pem()).unwrap();
        assert_eq!(tls.reload(false), Reloaded::Swapped);
        assert_eq!(tls.fingerprint(), crate::crypto::sha256(cert.der()));

        std::fs::write(files.dir.path().join("cert.pem"), "garbage").unwrap();
        assert_eq!(tls.reload(false), Reloaded::Kept);
        assert_eq!(tls.fingerprint(), crate::crypto::sha256(cert.der()));
        // Reported once, not at every check.
        assert_eq!(tls.reload(false), Reloaded::Unchanged);
    }

    #[test]
    fn the_common_name_is_read_from_the_subject_only() {
        let files = files();
        assert_eq!(
            der::common_name(&files.client_der).as_deref(),
            Some("alice")
        );
        // rcgen's default subject is "rcgen self signed cert".
        assert!(der::common_name(&files.server_der).is_some());
        assert_eq!(der::common_name(b"garbage"), None);
        assert_eq!(der::common_name(&files.client_der[..40]), None);
    }
}
