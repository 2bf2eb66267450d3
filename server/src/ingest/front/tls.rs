//! The TLS listener's rustls configuration: the server certificate, and
//! client certificates required and verified against Trackside's CA (or
//! the operator's). The files are read again when they change, so a
//! replaced certificate takes effect without a restart.

use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

use anyhow::Context as _;
use rustls::RootCertStore;
use rustls::pki_types::pem::PemObject as _;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::WebPkiClientVerifier;
use tokio_rustls::TlsAcceptor;

use super::super::decode::valid_gateway_id;
use super::super::pki::ListenerFiles;

pub struct Acceptor {
    files: ListenerFiles,
    loaded: Mutex<(Vec<Option<SystemTime>>, TlsAcceptor)>,
}

impl Acceptor {
    pub fn new(files: ListenerFiles) -> anyhow::Result<Self> {
        let stamps = stamps(&files);
        let acceptor = load(&files)?;
        Ok(Self {
            files,
            loaded: Mutex::new((stamps, acceptor)),
        })
    }

    /// The acceptor for the files as they are now.
    pub fn acceptor(&self) -> anyhow::Result<TlsAcceptor> {
        let now = stamps(&self.files);
        let mut loaded = self.loaded.lock().unwrap_or_else(|e| e.into_inner());
        if loaded.0 != now {
            loaded.1 = load(&self.files)?;
            loaded.0 = now;
            tracing::info!("MQTT TLS certificates reloaded");
        }
        Ok(loaded.1.clone())
    }
}

fn stamps(files: &ListenerFiles) -> Vec<Option<SystemTime>> {
    [&files.ca_cert, &files.server_cert, &files.server_key]
        .into_iter()
        .map(|path| std::fs::metadata(path).and_then(|m| m.modified()).ok())
        .collect()
}

fn load(files: &ListenerFiles) -> anyhow::Result<TlsAcceptor> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut roots = RootCertStore::empty();
    for cert in certificates(&files.ca_cert)? {
        roots
            .add(cert)
            .with_context(|| format!("{} is not a usable CA", files.ca_cert.display()))?;
    }
    let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider.clone())
        .build()
        .context("the client certificate verifier")?;
    let key = PrivateKeyDer::from_pem_file(&files.server_key)
        .with_context(|| format!("{} is not a PEM private key", files.server_key.display()))?;
    let config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .context("TLS protocol versions")?
        .with_client_cert_verifier(verifier)
        .with_single_cert(certificates(&files.server_cert)?, key)
        .context("the MQTT server certificate and key")?;
    Ok(TlsAcceptor::from(Arc::new(config)))
}

fn certificates(path: &Path) -> anyhow::Result<Vec<CertificateDer<'static>>> {
    let chain = CertificateDer::pem_file_iter(path)
        .and_then(|certs| certs.collect::<Result<Vec<_>, _>>())
        .with_context(|| format!("{} is not a PEM certificate file", path.display()))?;
    anyhow::ensure!(!chain.is_empty(), "{} holds no certificate", path.display());
    Ok(chain)
}

/// The gateway a (verified) client certificate names: its Organization.
pub fn gateway_of(der: &[u8]) -> Option<String> {
    let (_, cert) = x509_parser::parse_x509_certificate(der).ok()?;
    let organization = cert.subject().iter_organization().next()?.as_str().ok()?;
    valid_gateway_id(organization).then(|| organization.to_owned())
}
