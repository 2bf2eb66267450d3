//! Trackside's own certificate authority for the MQTT TLS listener.
//!
//! A gateway on the TLS listener proves who it is with a certificate whose
//! Organization is its gateway id; the MQTT front (`ingest::front`)
//! requires the CONNECT's client id to be that gateway and keeps it to its
//! own topics. The CA lives in the data directory and signs the server
//! certificate and, through `trackside gateway cert`, each gateway's.
//!
//! An operator may bring their own PKI instead: `ca.crt`, `server.crt` and
//! `server.key` in the directory, without `ca.key`. Trackside then uses them
//! as they are and issues nothing.

use std::fs;
use std::io::Write as _;
use std::os::unix::fs::OpenOptionsExt as _;
use std::path::{Path, PathBuf};

use anyhow::{Context as _, bail};
use chrono::{Datelike as _, Days, NaiveDate, Utc};
use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose,
};

const CA_CERT: &str = "ca.crt";
const CA_KEY: &str = "ca.key";
const SERVER_CERT: &str = "server.crt";
const SERVER_KEY: &str = "server.key";

/// The files the MQTT front's TLS listener reads (again whenever they
/// change, so a replaced certificate takes effect without a restart).
#[derive(Debug, Clone)]
pub struct ListenerFiles {
    pub ca_cert: PathBuf,
    pub server_cert: PathBuf,
    pub server_key: PathBuf,
}

/// A gateway's key and certificate, with the CA certificate it must trust
/// to verify the server.
pub struct GatewayCertificate {
    pub cert_pem: String,
    pub key_pem: String,
    pub ca_pem: String,
}

/// Makes the CA on first use, and a server certificate for `server_names`
/// (host names or IP addresses gateways connect to) at every start while
/// Trackside holds the CA key, so the names always match the configuration.
pub fn prepare(dir: &Path, server_names: &[String]) -> anyhow::Result<ListenerFiles> {
    let files = ListenerFiles {
        ca_cert: dir.join(CA_CERT),
        server_cert: dir.join(SERVER_CERT),
        server_key: dir.join(SERVER_KEY),
    };
    let ca_key_path = dir.join(CA_KEY);
    if files.ca_cert.exists() && !ca_key_path.exists() {
        // The operator's own PKI.
        for path in [&files.server_cert, &files.server_key] {
            anyhow::ensure!(
                path.exists(),
                "{} is missing: with your own CA in {}, put the server certificate and key beside it",
                path.display(),
                dir.display()
            );
        }
        return Ok(files);
    }
    fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    if !files.ca_cert.exists() {
        let key = KeyPair::generate().context("generating the CA key")?;
        let cert = ca_params()?
            .self_signed(&key)
            .context("signing the CA certificate")?;
        write_private(&ca_key_path, &key.serialize_pem())?;
        write_public(&files.ca_cert, &cert.pem())?;
        tracing::info!(path = %files.ca_cert.display(), "created the gateway certificate authority");
    }
    let issuer = load_issuer(dir)?;
    let key = KeyPair::generate().context("generating the server key")?;
    let mut params = CertificateParams::new(server_names.to_vec())
        .context("server names for the MQTT TLS certificate")?;
    params
        .distinguished_name
        .push(DnType::CommonName, "Trackside MQTT");
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    set_validity(&mut params, 825)?;
    let cert = params
        .signed_by(&key, &issuer)
        .context("signing the server certificate")?;
    write_private(&files.server_key, &key.serialize_pem())?;
    write_public(&files.server_cert, &cert.pem())?;
    Ok(files)
}

/// Issues a certificate that identifies `gateway` on the TLS listener.
pub fn issue_gateway(dir: &Path, gateway: &str, days: u32) -> anyhow::Result<GatewayCertificate> {
    check_tenant_id(gateway)?;
    anyhow::ensure!(
        (1..=3650).contains(&days),
        "validity must be 1 to 3650 days"
    );
    let issuer = load_issuer(dir)?;
    let key = KeyPair::generate().context("generating the gateway key")?;
    let mut params = CertificateParams::default();
    params
        .distinguished_name
        .push(DnType::OrganizationName, gateway);
    params.distinguished_name.push(DnType::CommonName, gateway);
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    set_validity(&mut params, days)?;
    let cert = params
        .signed_by(&key, &issuer)
        .context("signing the gateway certificate")?;
    Ok(GatewayCertificate {
        cert_pem: cert.pem(),
        key_pem: key.serialize_pem(),
        ca_pem: fs::read_to_string(dir.join(CA_CERT))?,
    })
}

/// rumqttd refuses a certificate whose Organization has anything but
/// letters and digits, so such gateways can only use passwords.
pub fn check_tenant_id(gateway: &str) -> anyhow::Result<()> {
    if gateway.is_empty()
        || gateway.len() > 64
        || !gateway.bytes().all(|b| b.is_ascii_alphanumeric())
    {
        bail!(
            "`{gateway}` cannot be a certificate identity: the MQTT broker accepts only letters and \
             digits there (no `_`, `-` or `.`); give the gateway such an id, or connect it with a password"
        );
    }
    Ok(())
}

fn ca_params() -> anyhow::Result<CertificateParams> {
    let mut params = CertificateParams::default();
    let mut name = DistinguishedName::new();
    name.push(DnType::CommonName, "Trackside gateway CA");
    params.distinguished_name = name;
    params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    set_validity(&mut params, 20 * 365)?;
    Ok(params)
}

fn load_issuer(dir: &Path) -> anyhow::Result<Issuer<'static, KeyPair>> {
    let key_path = dir.join(CA_KEY);
    let key_pem = fs::read_to_string(&key_path).with_context(|| {
        format!(
            "reading {}: Trackside issues certificates only with the CA it created; \
             with your own CA, issue gateway certificates there (Organization = gateway id)",
            key_path.display()
        )
    })?;
    let key = KeyPair::from_pem(&key_pem).context("reading the CA key")?;
    let cert_pem = fs::read_to_string(dir.join(CA_CERT)).context("reading the CA certificate")?;
    Issuer::from_ca_cert_pem(&cert_pem, key).context("reading the CA certificate")
}

/// From yesterday (a gateway's clock may lag) for `days` days.
fn set_validity(params: &mut CertificateParams, days: u32) -> anyhow::Result<()> {
    let today = Utc::now().date_naive();
    let ymd =
        |date: NaiveDate| rcgen::date_time_ymd(date.year(), date.month() as u8, date.day() as u8);
    let start = today
        .checked_sub_days(Days::new(1))
        .context("date out of range")?;
    let end = today
        .checked_add_days(Days::new(days.into()))
        .context("date out of range")?;
    params.not_before = ymd(start);
    params.not_after = ymd(end);
    Ok(())
}

/// Writes a key readable by its owner only (a new file, then a rename).
pub fn write_private(path: &Path, pem: &str) -> anyhow::Result<()> {
    let temp = path.with_extension("tmp");
    let mut file = fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&temp)
        .with_context(|| format!("writing {}", temp.display()))?;
    file.write_all(pem.as_bytes())?;
    file.sync_all()?;
    fs::rename(&temp, path).with_context(|| format!("writing {}", path.display()))
}

pub fn write_public(path: &Path, pem: &str) -> anyhow::Result<()> {
    let temp = path.with_extension("tmp");
    fs::write(&temp, pem).with_context(|| format!("writing {}", temp.display()))?;
    fs::rename(&temp, path).with_context(|| format!("writing {}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refuses_ids_the_broker_cannot_take_as_tenants() {
        assert!(check_tenant_id("gw1").is_ok());
        for bad in ["", "gw-1", "gw_1", "gw.1", "gw 1", &"g".repeat(65)] {
            let err = check_tenant_id(bad).unwrap_err().to_string();
            assert!(err.contains("letters and digits"), "{bad}: {err}");
        }
    }

    #[test]
    fn issues_gateway_certificates_signed_by_its_ca() {
        let dir = tempfile::tempdir().unwrap();
        let files = prepare(dir.path(), &["localhost".into(), "127.0.0.1".into()]).unwrap();
        let gateway = issue_gateway(dir.path(), "gw7", 30).unwrap();
        assert_eq!(gateway.ca_pem, fs::read_to_string(&files.ca_cert).unwrap());

        let ca = rustls::pki_types::CertificateDer::from(pem_der(&gateway.ca_pem));
        let mut roots = rustls::RootCertStore::empty();
        roots.add(ca).unwrap();
        let provider = std::sync::Arc::new(rustls::crypto::ring::default_provider());
        let verifier =
            rustls::server::WebPkiClientVerifier::builder_with_provider(roots.into(), provider)
                .build()
                .unwrap();
        let leaf = rustls::pki_types::CertificateDer::from(pem_der(&gateway.cert_pem));
        verifier
            .verify_client_cert(&leaf, &[], rustls::pki_types::UnixTime::now())
            .expect("the gateway certificate verifies against the CA");

        let key_mode = fs::metadata(dir.path().join(CA_KEY)).unwrap();
        assert_eq!(
            std::os::unix::fs::PermissionsExt::mode(&key_mode.permissions()) & 0o077,
            0
        );
    }

    #[test]
    fn uses_an_operators_own_pki_as_it_is() {
        let dir = tempfile::tempdir().unwrap();
        prepare(dir.path(), &["localhost".into()]).unwrap();
        fs::remove_file(dir.path().join(CA_KEY)).unwrap();
        let server_cert = fs::read(dir.path().join(SERVER_CERT)).unwrap();
        prepare(dir.path(), &["other.example".into()]).unwrap();
        assert_eq!(fs::read(dir.path().join(SERVER_CERT)).unwrap(), server_cert);
        let err = issue_gateway(dir.path(), "gw1", 30)
            .err()
            .unwrap()
            .to_string();
        assert!(err.contains("only with the CA it created"), "{err}");
    }

    fn pem_der(pem: &str) -> Vec<u8> {
        use rustls::pki_types::pem::PemObject as _;
        rustls::pki_types::CertificateDer::from_pem_slice(pem.as_bytes())
            .unwrap()
            .to_vec()
    }
}
