//! The HTTP listener, plain or HTTPS (rustls), for `axum::serve`.
//!
//! With `http.tls_cert` and `http.tls_key`, passwords and session cookies
//! never cross the yard network in clear. TLS handshakes run in tasks of
//! their own with a deadline, at most [`HANDSHAKES`] at once, so a client
//! that opens a socket and says nothing holds up no one (the MQTT broker's
//! listener, which handshakes inline, has exactly that weakness). The
//! certificate files are read again when they change (checked at most
//! every [`RELOAD_CHECK`]), so a renewal (certbot, an internal CA) needs
//! no restart.

use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering::Relaxed;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use anyhow::Context as _;
use axum::extract::connect_info::Connected;
use axum::serve::{IncomingStream, Listener};
use rustls::pki_types::pem::PemObject as _;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Semaphore, mpsc};
use tokio_rustls::TlsAcceptor;
use tokio_rustls::server::TlsStream;
use tokio_util::either::Either;
use tokio_util::sync::CancellationToken;

use crate::metrics::Metrics;

/// TLS handshakes under way at once; more connections wait in the kernel's
/// accept queue.
pub const HANDSHAKES: usize = 64;
/// A handshake not finished by then is dropped.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// How often the certificate files are looked at for a change.
const RELOAD_CHECK: Duration = Duration::from_secs(30);

/// The client's address, as the connection info of every request.
#[derive(Debug, Clone, Copy)]
pub struct Peer(pub SocketAddr);

/// Where `axum::serve` takes connections from.
pub struct HttpListener {
    local: SocketAddr,
    kind: Kind,
}

enum Kind {
    Plain(TcpListener),
    Tls(mpsc::Receiver<(TlsStream<TcpStream>, SocketAddr)>),
}

impl HttpListener {
    pub fn plain(listener: TcpListener) -> anyhow::Result<Self> {
        Ok(Self {
            local: listener.local_addr()?,
            kind: Kind::Plain(listener),
        })
    }

    /// HTTPS with the certificate chain and key in these PEM files.
    pub fn tls(
        listener: TcpListener,
        cert: &Path,
        key: &Path,
        metrics: Arc<Metrics>,
        shutdown: CancellationToken,
    ) -> anyhow::Result<Self> {
        let local = listener.local_addr()?;
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let resolver = Arc::new(ReloadingCert::load(cert, key, provider.clone())?);
        let mut config = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .context("TLS protocol versions")?
            .with_no_client_auth()
            .with_cert_resolver(resolver);
        // HTTP/1.1 only: browsers open WebSockets over it, and the app's
        // few requests gain nothing from HTTP/2.
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        let acceptor = TlsAcceptor::from(Arc::new(config));
        let (tx, rx) = mpsc::channel(HANDSHAKES);
        tokio::spawn(accept_tls(listener, acceptor, tx, metrics, shutdown));
        Ok(Self {
            local,
            kind: Kind::Tls(rx),
        })
    }
}

async fn accept_tls(
    listener: TcpListener,
    acceptor: TlsAcceptor,
    ready: mpsc::Sender<(TlsStream<TcpStream>, SocketAddr)>,
    metrics: Arc<Metrics>,
    shutdown: CancellationToken,
) {
    let slots = Arc::new(Semaphore::new(HANDSHAKES));
    loop {
        let Ok(slot) = slots.clone().acquire_owned().await else {
            return;
        };
        let accepted = tokio::select! {
            () = shutdown.cancelled() => return,
            () = ready.closed() => return,
            accepted = listener.accept() => accepted,
        };
        let (stream, peer) = match accepted {
            Ok(accepted) => accepted,
            Err(err) => {
                // Out of file descriptors, most likely: wait rather than spin.
                tracing::warn!("HTTPS accept failed: {err}");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        nodelay(&stream);
        let (acceptor, ready, metrics) = (acceptor.clone(), ready.clone(), metrics.clone());
        tokio::spawn(async move {
            let _slot = slot;
            match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(stream)).await {
                Ok(Ok(tls)) => {
                    let _ = ready.send((tls, peer)).await;
                }
                Ok(Err(err)) => {
                    metrics.https_handshake_failures.fetch_add(1, Relaxed);
                    tracing::debug!(%peer, "TLS handshake failed: {err}");
                }
                Err(_) => {
                    metrics.https_handshake_failures.fetch_add(1, Relaxed);
                    tracing::debug!(%peer, "TLS handshake timed out");
                }
            }
        });
    }
}

/// Live frames are small writes that must leave at once; with Nagle's
/// algorithm a frame waits for the previous one's ACK, which a client's
/// delayed ACK holds back up to 40 ms.
fn nodelay(stream: &TcpStream) {
    if let Err(err) = stream.set_nodelay(true) {
        tracing::debug!("cannot set TCP_NODELAY on an HTTP connection: {err}");
    }
}

impl Listener for HttpListener {
    type Io = Either<TcpStream, TlsStream<TcpStream>>;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        match &mut self.kind {
            Kind::Plain(listener) => loop {
                match TcpListener::accept(listener).await {
                    Ok((stream, peer)) => {
                        nodelay(&stream);
                        return (Either::Left(stream), peer);
                    }
                    Err(err) => {
                        tracing::warn!("HTTP accept failed: {err}");
                        tokio::time::sleep(Duration::from_millis(100)).await;
                    }
                }
            },
            Kind::Tls(ready) => match ready.recv().await {
                Some((stream, peer)) => (Either::Right(stream), peer),
                // The acceptor stopped (shutdown): nothing more comes.
                None => std::future::pending().await,
            },
        }
    }

    fn local_addr(&self) -> std::io::Result<Self::Addr> {
        Ok(self.local)
    }
}

impl Connected<IncomingStream<'_, HttpListener>> for Peer {
    fn connect_info(stream: IncomingStream<'_, HttpListener>) -> Self {
        Peer(*stream.remote_addr())
    }
}

/// The server certificate, read again when its files change.
struct ReloadingCert {
    cert: PathBuf,
    key: PathBuf,
    provider: Arc<rustls::crypto::CryptoProvider>,
    state: Mutex<Loaded>,
}

struct Loaded {
    key: Arc<CertifiedKey>,
    modified: Option<SystemTime>,
    checked: Instant,
}

impl fmt::Debug for ReloadingCert {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ReloadingCert")
            .field("cert", &self.cert)
            .field("key", &self.key)
            .finish_non_exhaustive()
    }
}

fn modified(path: &Path) -> Option<SystemTime> {
    std::fs::metadata(path).and_then(|m| m.modified()).ok()
}

fn read_pair(
    cert: &Path,
    key: &Path,
    provider: &rustls::crypto::CryptoProvider,
) -> anyhow::Result<CertifiedKey> {
    let cert_pem =
        std::fs::read(cert).with_context(|| format!("reading http.tls_cert {}", cert.display()))?;
    let key_pem =
        std::fs::read(key).with_context(|| format!("reading http.tls_key {}", key.display()))?;
    let chain = CertificateDer::pem_slice_iter(&cert_pem)
        .collect::<Result<Vec<_>, _>>()
        .with_context(|| format!("{} is not a PEM certificate chain", cert.display()))?;
    anyhow::ensure!(!chain.is_empty(), "{} holds no certificate", cert.display());
    let key_der = PrivateKeyDer::from_pem_slice(&key_pem)
        .with_context(|| format!("{} is not a PEM private key", key.display()))?;
    CertifiedKey::from_der(chain, key_der, provider).with_context(|| {
        format!(
            "{} and {} do not make a usable certificate and key",
            cert.display(),
            key.display()
        )
    })
}

impl ReloadingCert {
    fn load(
        cert: &Path,
        key: &Path,
        provider: Arc<rustls::crypto::CryptoProvider>,
    ) -> anyhow::Result<Self> {
        let loaded = read_pair(cert, key, &provider)?;
        Ok(Self {
            cert: cert.to_path_buf(),
            key: key.to_path_buf(),
            state: Mutex::new(Loaded {
                key: Arc::new(loaded),
                modified: modified(cert).max(modified(key)),
                checked: Instant::now(),
            }),
            provider,
        })
    }
}

impl ResolvesServerCert for ReloadingCert {
    fn resolve(&self, _: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        if state.checked.elapsed() >= RELOAD_CHECK {
            state.checked = Instant::now();
            let now = modified(&self.cert).max(modified(&self.key));
            if now != state.modified {
                match read_pair(&self.cert, &self.key, &self.provider) {
                    Ok(key) => {
                        tracing::info!(cert = %self.cert.display(), "loaded the renewed HTTPS certificate");
                        state.key = Arc::new(key);
                        state.modified = now;
                    }
                    // Half-written during a renewal, most likely: keep the
                    // old one and look again later.
                    Err(err) => tracing::warn!("keeping the current HTTPS certificate: {err:#}"),
                }
            }
        }
        Some(state.key.clone())
    }
}
