//! Mutual TLS for every QUIC connection: a cluster CA made per session, and a leaf
//! identity per process signed by it.
//!
//! Each process (driver or worker) is both a server and a client, so each leaf carries
//! both the server-auth and client-auth usages. A peer must present a certificate signed
//! by the session's CA, or the handshake fails before any frame is read (rule X2).

use std::sync::Arc;

use quinn::crypto::rustls::{QuicClientConfig, QuicServerConfig};
use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose,
};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use serde::{Deserialize, Serialize};

use super::TransportError;

/// The name every kt certificate is issued for and every connection checks.
pub const SERVER_NAME: &str = "kt.local";

/// The ALPN protocol id of kt's wire protocol.
pub const ALPN: &[u8] = b"kt/1";

/// A session's certificate authority.
pub struct ClusterCa {
    params: CertificateParams,
    key: KeyPair,
    cert_der: CertificateDer<'static>,
}

impl ClusterCa {
    /// A fresh CA for one session.
    pub fn generate() -> Result<Self, TransportError> {
        Self::generate_named(SESSION_CA)
    }

    /// A fresh CA whose certificate is issued to `common_name`.
    pub fn generate_named(common_name: &str) -> Result<Self, TransportError> {
        let params = ca_params(common_name)?;
        let key = KeyPair::generate().map_err(tls_error)?;
        let cert = params.self_signed(&key).map_err(tls_error)?;
        Ok(ClusterCa {
            params,
            key,
            cert_der: cert.der().clone(),
        })
    }

    /// The CA's certificate (DER) and private key (PEM), to keep on disk.
    pub fn to_files(&self) -> (Vec<u8>, String) {
        (self.cert_der.to_vec(), self.key.serialize_pem())
    }

    /// A CA kept on disk by [`ClusterCa::to_files`], issued to `common_name`.
    pub fn from_files(
        common_name: &str,
        cert_der: Vec<u8>,
        key_pem: &str,
    ) -> Result<Self, TransportError> {
        let cert_der = CertificateDer::from(cert_der);
        let key = KeyPair::from_pem(key_pem).map_err(tls_error)?;
        // Leaf certificates name their issuer by the CA's distinguished name and key:
        // rebuilding the same name over the kept key issues certificates the kept CA
        // certificate verifies.
        Ok(ClusterCa {
            params: ca_params(common_name)?,
            key,
            cert_der,
        })
    }

    /// The CA's certificate (DER).
    pub fn certificate_der(&self) -> &[u8] {
        &self.cert_der
    }

    /// A new leaf identity signed by this CA, for one process.
    pub fn issue(&self, common_name: &str) -> Result<Identity, TransportError> {
        let mut params =
            CertificateParams::new(vec![SERVER_NAME.to_string()]).map_err(tls_error)?;
        let mut name = DistinguishedName::new();
        name.push(DnType::CommonName, common_name);
        params.distinguished_name = name;
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.extended_key_usages = vec![
            ExtendedKeyUsagePurpose::ServerAuth,
            ExtendedKeyUsagePurpose::ClientAuth,
        ];
        let key = KeyPair::generate().map_err(tls_error)?;
        let issuer = Issuer::from_params(&self.params, &self.key);
        let cert = params.signed_by(&key, &issuer).map_err(tls_error)?;
        Ok(Identity {
            ca_der: self.cert_der.to_vec(),
            cert_der: cert.der().to_vec(),
            key_der: key.serialize_der(),
        })
    }
}

/// One process's TLS identity: the CA it trusts, its certificate and its private key.
/// Handed to a worker over its stdin pipe (never through the environment).
#[derive(Clone, Serialize, Deserialize)]
pub struct Identity {
    pub(crate) ca_der: Vec<u8>,
    cert_der: Vec<u8>,
    key_der: Vec<u8>,
}

impl std::fmt::Debug for Identity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Identity { .. }")
    }
}

impl Identity {
    /// The identity as PEM: the CA certificate, this process's certificate, and its
    /// PKCS#8 private key — the files a container backend mounts for a worker.
    pub fn to_pem(&self) -> (String, String, String) {
        let encode = |tag: &str, der: &[u8]| pem::encode(&pem::Pem::new(tag, der.to_vec()));
        (
            encode("CERTIFICATE", &self.ca_der),
            encode("CERTIFICATE", &self.cert_der),
            encode("PRIVATE KEY", &self.key_der),
        )
    }

    /// An identity from the PEM files [`Identity::to_pem`] wrote.
    pub fn from_pem(ca: &[u8], cert: &[u8], key: &[u8]) -> Result<Identity, TransportError> {
        use rustls::pki_types::pem::PemObject;
        let ca = CertificateDer::from_pem_slice(ca).map_err(tls_error)?;
        let cert = CertificateDer::from_pem_slice(cert).map_err(tls_error)?;
        let key = PrivatePkcs8KeyDer::from_pem_slice(key).map_err(tls_error)?;
        Ok(Identity {
            ca_der: ca.to_vec(),
            cert_der: cert.to_vec(),
            key_der: key.secret_pkcs8_der().to_vec(),
        })
    }

    pub(crate) fn roots(&self) -> Result<Arc<rustls::RootCertStore>, TransportError> {
        let mut roots = rustls::RootCertStore::empty();
        roots
            .add(CertificateDer::from(self.ca_der.clone()))
            .map_err(tls_error)?;
        Ok(Arc::new(roots))
    }

    pub(crate) fn chain(&self) -> Vec<CertificateDer<'static>> {
        vec![CertificateDer::from(self.cert_der.clone())]
    }

    pub(crate) fn key(&self) -> PrivateKeyDer<'static> {
        PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(self.key_der.clone()))
    }

    /// Server side: presents this identity and requires a client certificate from the CA.
    pub fn server_config(&self) -> Result<quinn::ServerConfig, TransportError> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(
            self.roots()?,
            provider.clone(),
        )
        .build()
        .map_err(tls_error)?;
        let mut config = rustls::ServerConfig::builder_with_provider(provider)
            .with_protocol_versions(&[&rustls::version::TLS13])
            .map_err(tls_error)?
            .with_client_cert_verifier(verifier)
            .with_single_cert(self.chain(), self.key())
            .map_err(tls_error)?;
        config.alpn_protocols = vec![ALPN.to_vec()];
        let crypto = QuicServerConfig::try_from(config).map_err(tls_error)?;
        let mut server = quinn::ServerConfig::with_crypto(Arc::new(crypto));
        server.transport_config(super::quic::transport_config());
        Ok(server)
    }

    /// Client side: presents this identity and accepts only servers signed by the CA.
    pub fn client_config(&self) -> Result<quinn::ClientConfig, TransportError> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut config = rustls::ClientConfig::builder_with_provider(provider)
            .with_protocol_versions(&[&rustls::version::TLS13])
            .map_err(tls_error)?
            .with_root_certificates(self.roots()?)
            .with_client_auth_cert(self.chain(), self.key())
            .map_err(tls_error)?;
        config.alpn_protocols = vec![ALPN.to_vec()];
        let crypto = QuicClientConfig::try_from(config).map_err(tls_error)?;
        let mut client = quinn::ClientConfig::new(Arc::new(crypto));
        client.transport_config(super::quic::transport_config());
        Ok(client)
    }
}

/// The common name of a per-session CA.
const SESSION_CA: &str = "kt session CA";

/// The certificate parameters of a CA issued to `common_name`.
fn ca_params(common_name: &str) -> Result<CertificateParams, TransportError> {
    let mut params = CertificateParams::new(Vec::<String>::new()).map_err(tls_error)?;
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    let mut name = DistinguishedName::new();
    name.push(DnType::CommonName, common_name);
    params.distinguished_name = name;
    Ok(params)
}

/// Fills `buf` from the system's secure random source (the TLS provider's), for tokens
/// and ids nobody may guess.
pub fn random_bytes(buf: &mut [u8]) -> Result<(), TransportError> {
    rustls::crypto::ring::default_provider()
        .secure_random
        .fill(buf)
        .map_err(|_| TransportError::Tls("no system randomness".into()))
}

fn tls_error(error: impl std::fmt::Display) -> TransportError {
    TransportError::Tls(error.to_string())
}
