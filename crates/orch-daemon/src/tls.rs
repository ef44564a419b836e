//! The certificates orch trusts on HTTPS: the system's store plus `tls.ca_file`, for every outside HTTP client.

use ureq::tls::{Certificate, RootCerts, TlsConfig as UreqTls};

use crate::config::TlsConfig;

/// Where the roots of `client_tls` came from, for `orch check` and the start-up log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TrustSummary {
    /// Certificates found in the system's store.
    pub system: usize,
    /// Certificates of `tls.ca_file`.
    pub ca_file: usize,
    /// The system's store held nothing and no `ca_file` was given: the webpki roots built in.
    pub built_in: bool,
}

/// The TLS settings every outside HTTP client (Plane, Gitea, Telegram) is built with: the
/// system's certificate store plus the certificates of `tls.ca_file`. When the system's store
/// holds nothing and no `ca_file` is given, the Mozilla roots built into orch (webpki-roots).
pub fn client_tls(config: &TlsConfig) -> (UreqTls, TrustSummary) {
    let native = rustls_native_certs::load_native_certs();
    for err in &native.errors {
        tracing::debug!(error = %err, "a certificate of the system store could not be read");
    }
    let mut roots: Vec<Certificate<'static>> = native
        .certs
        .iter()
        .map(|der| Certificate::from_der(der.as_ref()).to_owned())
        .collect();
    let system = roots.len();
    let ca_file = config.ca_file.as_ref().map_or(0, |ca_file| {
        roots.extend(
            ca_file
                .certs
                .iter()
                .map(|der| Certificate::from_der(der).to_owned()),
        );
        ca_file.certs.len()
    });
    let built_in = roots.is_empty();
    let root_certs = if built_in {
        RootCerts::WebPki
    } else {
        RootCerts::new_with_certs(&roots)
    };
    let tls = UreqTls::builder().root_certs(root_certs).build();
    (
        tls,
        TrustSummary {
            system,
            ca_file,
            built_in,
        },
    )
}
