//! HTTPS in front of any simulator: a private CA made for one test, and a TLS front that forwards to a simulator's plain port.
//!
//! Behind feature `tls`. The CA is made with rcgen and never leaves the test: its PEM is
//! written where the test says, for `tls.ca_file`. The front terminates TLS on
//! `127.0.0.1:0` with a server certificate for `localhost` and `127.0.0.1` signed by the CA,
//! and copies bytes both ways to the simulator, so every route (the REST APIs and git's smart
//! HTTP) is served over HTTPS unchanged.

use std::net::SocketAddr;
use std::sync::Arc;

use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio_rustls::rustls;
use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use tokio_rustls::TlsAcceptor;

use crate::server::accept_until_stopped;

/// A certificate authority made for one test, and a server certificate it signed.
pub struct TestCa {
    ca_pem: String,
    server_chain: Vec<CertificateDer<'static>>,
    server_key: Vec<u8>,
}

impl TestCa {
    /// A fresh CA and a certificate for `localhost` and `127.0.0.1` signed by it.
    pub fn new() -> Result<TestCa, String> {
        let describe = |err: rcgen::Error| format!("rcgen: {err}");
        let ca_key = rcgen::KeyPair::generate().map_err(describe)?;
        let mut ca_params =
            rcgen::CertificateParams::new(Vec::<String>::new()).map_err(describe)?;
        ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        ca_params
            .distinguished_name
            .push(rcgen::DnType::CommonName, "orch test CA");
        ca_params.key_usages = vec![
            rcgen::KeyUsagePurpose::KeyCertSign,
            rcgen::KeyUsagePurpose::CrlSign,
        ];
        let ca_cert = ca_params.self_signed(&ca_key).map_err(describe)?;
        let issuer = rcgen::Issuer::new(ca_params, ca_key);

        let server_key = rcgen::KeyPair::generate().map_err(describe)?;
        let mut server_params =
            rcgen::CertificateParams::new(vec!["localhost".to_owned(), "127.0.0.1".to_owned()])
                .map_err(describe)?;
        server_params
            .distinguished_name
            .push(rcgen::DnType::CommonName, "localhost");
        let server_cert = server_params
            .signed_by(&server_key, &issuer)
            .map_err(describe)?;
        Ok(TestCa {
            ca_pem: ca_cert.pem(),
            server_chain: vec![server_cert.der().clone(), ca_cert.der().clone()],
            server_key: server_key.serialize_der(),
        })
    }

    /// The CA certificate, PEM-encoded: what `tls.ca_file` holds.
    pub fn ca_pem(&self) -> &str {
        &self.ca_pem
    }

    fn server_config(&self) -> Result<rustls::ServerConfig, String> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(self.server_key.clone()));
        rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|err| format!("rustls: {err}"))?
            .with_no_client_auth()
            .with_single_cert(self.server_chain.clone(), key)
            .map_err(|err| format!("rustls: {err}"))
    }
}

/// A TLS front for one simulator; stops when dropped.
pub struct TlsFront {
    addr: SocketAddr,
    stop: watch::Sender<bool>,
}

impl TlsFront {
    /// Binds `127.0.0.1:0`, terminates TLS with `ca`'s server certificate and forwards every
    /// connection to the simulator at `upstream`, its `http://127.0.0.1:PORT` base URL.
    pub async fn start(upstream: &str, ca: &TestCa) -> std::io::Result<TlsFront> {
        let upstream: SocketAddr = upstream
            .strip_prefix("http://")
            .and_then(|rest| rest.split('/').next())
            .and_then(|authority| authority.parse().ok())
            .ok_or_else(|| {
                std::io::Error::other(format!("not a simulator's base url: {upstream}"))
            })?;
        let config = ca.server_config().map_err(std::io::Error::other)?;
        let acceptor = TlsAcceptor::from(Arc::new(config));
        let listener = TcpListener::bind(("127.0.0.1", 0)).await?;
        let addr = listener.local_addr()?;
        let stop = accept_until_stopped(listener, move |stream| {
            let acceptor = acceptor.clone();
            async move {
                // A client that refuses the certificate ends the handshake: nothing to forward.
                let Ok(mut tls) = acceptor.accept(stream).await else {
                    return;
                };
                let Ok(mut plain) = TcpStream::connect(upstream).await else {
                    return;
                };
                let _ = tokio::io::copy_bidirectional(&mut tls, &mut plain).await;
            }
        });
        Ok(TlsFront { addr, stop })
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `https://localhost:PORT` with no trailing slash.
    pub fn base_url(&self) -> String {
        format!("https://localhost:{}", self.addr.port())
    }
}

impl Drop for TlsFront {
    fn drop(&mut self) {
        let _ = self.stop.send(true);
    }
}
