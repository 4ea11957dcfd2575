//! TLS configurations: downstream (several certificates chosen by SNI, ALPN h2) and upstream.

use anyhow::{anyhow, Context};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use std::path::Path;
use std::sync::Arc;
use velox_config::{CertificateConfig, TlsListenerConfig};

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// Picks the first certificate valid for the SNI name; without a match, the first one.
#[derive(Debug)]
struct SniResolver {
    certificates: Vec<Arc<CertifiedKey>>,
}

impl SniResolver {
    fn covers(certified: &CertifiedKey, name: &str) -> bool {
        let Some(leaf) = certified.cert.first() else {
            return false;
        };
        let Ok(name) = ServerName::try_from(name) else {
            return false;
        };
        webpki::EndEntityCert::try_from(leaf)
            .is_ok_and(|cert| cert.verify_is_valid_for_subject_name(&name).is_ok())
    }
}

impl ResolvesServerCert for SniResolver {
    fn resolve(&self, hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        hello
            .server_name()
            .and_then(|name| self.certificates.iter().find(|c| Self::covers(c, name)))
            .or_else(|| self.certificates.first())
            .cloned()
    }
}

fn load_certified_key(
    entry: &CertificateConfig,
    provider: &rustls::crypto::CryptoProvider,
) -> anyhow::Result<CertifiedKey> {
    let chain = load_certs(&entry.cert)?;
    let key = PrivateKeyDer::from_pem_file(&entry.key)
        .with_context(|| format!("reading private key {}", entry.key.display()))?;
    let certified = CertifiedKey::from_der(chain, key, provider).with_context(|| {
        format!(
            "certificate {} and key {} do not match",
            entry.cert.display(),
            entry.key.display()
        )
    })?;
    Ok(certified)
}

fn load_certs(path: &Path) -> anyhow::Result<Vec<CertificateDer<'static>>> {
    let certs = CertificateDer::pem_file_iter(path)
        .and_then(|iter| iter.collect::<Result<Vec<_>, _>>())
        .with_context(|| format!("reading certificates {}", path.display()))?;
    if certs.is_empty() {
        return Err(anyhow!("no certificate in {}", path.display()));
    }
    Ok(certs)
}

pub fn server_config(listener: &TlsListenerConfig) -> anyhow::Result<Arc<rustls::ServerConfig>> {
    let provider = provider();
    let certificates = listener
        .certificates
        .iter()
        .map(|entry| load_certified_key(entry, &provider).map(Arc::new))
        .collect::<anyhow::Result<Vec<_>>>()?;
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_no_client_auth()
        .with_cert_resolver(Arc::new(SniResolver { certificates }));
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

/// Trusts the system roots plus, optionally, the CAs in `ca_file`.
pub fn client_config(ca_file: Option<&Path>) -> anyhow::Result<rustls::ClientConfig> {
    let mut roots = rustls::RootCertStore::empty();
    let native = rustls_native_certs::load_native_certs();
    roots.add_parsable_certificates(native.certs);
    if let Some(path) = ca_file {
        for cert in load_certs(path)? {
            roots
                .add(cert)
                .with_context(|| format!("adding CA from {}", path.display()))?;
        }
    }
    Ok(rustls::ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()?
        .with_root_certificates(roots)
        .with_no_client_auth())
}
