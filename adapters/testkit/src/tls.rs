//! Certificates made at test time for the TLS servers, as a managed Redis has them:
//! a CA the clients are told to trust, a certificate it signs for 127.0.0.1 (each
//! server's, and in a cluster each node's client certificate toward the others), and a
//! second CA that signed nothing, which a client must refuse the servers with. Nothing
//! is committed: each test process makes its own, once.

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

/// The test PKI, in PEM.
pub struct Certificates {
    /// The CA that signed the servers' certificate.
    pub ca_pem: String,
    /// A CA that signed nothing here: trusting it alone, a client must refuse the servers.
    pub other_ca_pem: String,
    server_pem: String,
    server_key_pem: String,
}

/// The process's test PKI, made at the first call.
pub fn certificates() -> &'static Certificates {
    static CERTIFICATES: OnceLock<Certificates> = OnceLock::new();
    CERTIFICATES.get_or_init(Certificates::generate)
}

/// A CA: a self-signed certificate that may sign others.
fn certificate_authority(name: &str) -> (rcgen::CertifiedIssuer<'static, rcgen::KeyPair>, String) {
    let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).expect("CA params");
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, name);
    params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    params.key_usages = vec![
        rcgen::KeyUsagePurpose::KeyCertSign,
        rcgen::KeyUsagePurpose::CrlSign,
        rcgen::KeyUsagePurpose::DigitalSignature,
    ];
    let key = rcgen::KeyPair::generate().expect("a CA key");
    let issuer = rcgen::CertifiedIssuer::self_signed(params, key).expect("a CA certificate");
    let pem = issuer.pem();
    (issuer, pem)
}

impl Certificates {
    fn generate() -> Certificates {
        let (ca, ca_pem) = certificate_authority("resumable-stream test CA");
        let (_, other_ca_pem) = certificate_authority("resumable-stream untrusted CA");
        let mut params =
            rcgen::CertificateParams::new(vec!["127.0.0.1".to_owned(), "localhost".to_owned()])
                .expect("server params");
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, "127.0.0.1");
        // Servers present it to clients; cluster nodes also to each other, as clients.
        params.extended_key_usages = vec![
            rcgen::ExtendedKeyUsagePurpose::ServerAuth,
            rcgen::ExtendedKeyUsagePurpose::ClientAuth,
        ];
        let key = rcgen::KeyPair::generate().expect("a server key");
        let server = params.signed_by(&key, &ca).expect("a server certificate");
        Certificates {
            ca_pem,
            other_ca_pem,
            server_pem: server.pem(),
            server_key_pem: key.serialize_pem(),
        }
    }

    /// Writes the CA, the server certificate and its key into `dir`; returns the
    /// `redis-server` arguments that make it serve TLS only (`--port 0`) on `port` with
    /// them, the cluster bus and replication included.
    pub fn server_args(&self, dir: &Path, port: u16) -> Vec<String> {
        let write = |name: &str, pem: &str| -> PathBuf {
            let path = dir.join(name);
            std::fs::write(&path, pem).expect("write a test certificate");
            path
        };
        let ca = write("ca.crt", &self.ca_pem);
        let cert = write("redis.crt", &self.server_pem);
        let key = write("redis.key", &self.server_key_pem);
        let path = |p: PathBuf| p.to_str().expect("a UTF-8 temp path").to_owned();
        vec![
            "--port".into(),
            "0".into(),
            "--tls-port".into(),
            port.to_string(),
            "--tls-cert-file".into(),
            path(cert),
            "--tls-key-file".into(),
            path(key),
            "--tls-ca-cert-file".into(),
            path(ca),
            // Clients authenticate with a password, as on a managed Redis; the nodes of
            // a cluster authenticate each other with the certificate anyway.
            "--tls-auth-clients".into(),
            "no".into(),
            "--tls-replication".into(),
            "yes".into(),
        ]
    }

    /// Writes the CA alone into `path`, for a client (`--cacert`, `SSL_CERT_FILE`).
    pub fn write_ca(&self, path: &Path) {
        std::fs::write(path, &self.ca_pem).expect("write the test CA");
    }

    /// A synchronous redis-rs client for the `rediss://` `url` that trusts the test CA.
    pub fn client(&self, url: &str) -> redis::RedisResult<redis::Client> {
        // ring, as the drivers use it: rustls cannot choose when two are compiled in.
        let _ = rustls::crypto::ring::default_provider().install_default();
        redis::Client::build_with_tls(
            url,
            redis::TlsCertificates {
                client_tls: None,
                root_cert: Some(self.ca_pem.clone().into_bytes()),
            },
        )
    }
}
