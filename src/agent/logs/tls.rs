//! The logs endpoint over TLS, both ends: the agent's listener (`--logs-tls-cert`,
//! `--logs-tls-key`, and with `--logs-client-ca` mutual TLS: a client must present
//! a certificate that CA signed) and `rune logs`' client configuration
//! (`--logs-tls-ca` to verify the agent, `--logs-tls-cert`/`--logs-tls-key` to
//! present).
//!
//! rustls with ring, the same build etcd-client's tonic already brings; the
//! provider is passed explicitly, never the process default. Handshakes happen off
//! the accept loop, one task each and bounded in time, so a slow or hostile client
//! holds up nobody else; a client the verifier refuses never reaches the HTTP
//! routes. The routes are served by axum through [`TlsListener`].

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio_rustls::rustls::crypto::{CryptoProvider, ring};
use tokio_rustls::rustls::server::WebPkiClientVerifier;
use tokio_rustls::rustls::{ClientConfig, RootCertStore, ServerConfig};
use tokio_rustls::{TlsAcceptor, TlsConnector};

/// How long a client has to finish its handshake.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

fn provider() -> Arc<CryptoProvider> {
    Arc::new(ring::default_provider())
}

/// Every certificate in the PEM file `path`; `flag` names it in errors.
pub fn certificates(flag: &str, path: &Path) -> Result<Vec<CertificateDer<'static>>, String> {
    let at = || format!("{flag} {}", path.display());
    let certs = CertificateDer::pem_file_iter(path)
        .map_err(|e| format!("{}: {e}", at()))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| format!("{}: {e}", at()))?;
    if certs.is_empty() {
        return Err(format!("{}: no PEM certificate in it", at()));
    }
    Ok(certs)
}

/// The private key in the PEM file `path` (PKCS#8, PKCS#1 or SEC1).
pub fn private_key(flag: &str, path: &Path) -> Result<PrivateKeyDer<'static>, String> {
    PrivateKeyDer::from_pem_file(path).map_err(|e| format!("{flag} {}: {e}", path.display()))
}

fn roots(flag: &str, path: &Path) -> Result<Arc<RootCertStore>, String> {
    let mut roots = RootCertStore::empty();
    for cert in certificates(flag, path)? {
        roots
            .add(cert)
            .map_err(|e| format!("{flag} {}: {e}", path.display()))?;
    }
    Ok(Arc::new(roots))
}

/// The agent's TLS settings for the logs endpoint.
#[derive(Debug, Clone)]
pub struct ServerFiles<'a> {
    pub cert: &'a Path,
    pub key: &'a Path,
    /// Clients must present a certificate this CA signed (mutual TLS).
    pub client_ca: Option<&'a Path>,
}

/// The agent's rustls configuration: its certificate, and with a client CA, the
/// verification of every client's certificate (no certificate: refused).
pub fn server_config(files: &ServerFiles) -> Result<Arc<ServerConfig>, String> {
    let builder = ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?;
    let builder = match files.client_ca {
        Some(ca) => {
            let verifier = WebPkiClientVerifier::builder_with_provider(
                roots("--logs-client-ca", ca)?,
                provider(),
            )
            .build()
            .map_err(|e| format!("--logs-client-ca {}: {e}", ca.display()))?;
            builder.with_client_cert_verifier(verifier)
        }
        None => builder.with_no_client_auth(),
    };
    let mut config = builder
        .with_single_cert(
            certificates("--logs-tls-cert", files.cert)?,
            private_key("--logs-tls-key", files.key)?,
        )
        .map_err(|e| {
            format!(
                "--logs-tls-cert {} and --logs-tls-key {}: {e}",
                files.cert.display(),
                files.key.display()
            )
        })?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

/// `rune logs`' rustls configuration: the agents' certificates verified against
/// `ca` (the logs CA: no public roots, agents are an operator's own PKI), and the
/// client's certificate and key when given.
pub fn client_config(
    ca: &Path,
    identity: Option<(&Path, &Path)>,
) -> Result<Arc<ClientConfig>, String> {
    let builder = ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .with_root_certificates(roots("--logs-tls-ca", ca)?);
    let mut config = match identity {
        Some((cert, key)) => builder
            .with_client_auth_cert(
                certificates("--logs-tls-cert", cert)?,
                private_key("--logs-tls-key", key)?,
            )
            .map_err(|e| {
                format!(
                    "--logs-tls-cert {} and --logs-tls-key {}: {e}",
                    cert.display(),
                    key.display()
                )
            })?,
        None => builder.with_no_client_auth(),
    };
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

/// Connects to `address` (HOST:PORT) over TLS, verifying the agent's certificate
/// for HOST (a name or an IP address in its subjectAltName).
pub async fn connect(
    config: Arc<ClientConfig>,
    address: &str,
    tcp: TcpStream,
) -> std::io::Result<tokio_rustls::client::TlsStream<TcpStream>> {
    let host = host_of(address);
    let name = ServerName::try_from(host.to_string()).map_err(|e| {
        std::io::Error::new(
            std::io::ErrorKind::InvalidInput,
            format!("{host:?} is no server name: {e}"),
        )
    })?;
    TlsConnector::from(config).connect(name, tcp).await
}

/// HOST of HOST:PORT, without an IPv6 address's brackets.
fn host_of(address: &str) -> &str {
    let host = address.rsplit_once(':').map_or(address, |(h, _)| h);
    host.trim_start_matches('[').trim_end_matches(']')
}

/// Connections that finished their TLS handshake, for `axum::serve`.
pub struct TlsListener {
    done: mpsc::Receiver<(tokio_rustls::server::TlsStream<TcpStream>, SocketAddr)>,
    local: SocketAddr,
}

impl TlsListener {
    /// Accepts on `listener` in the background, each handshake in a task of its
    /// own; a refused or failed handshake is logged and dropped.
    pub fn new(listener: TcpListener, config: Arc<ServerConfig>) -> std::io::Result<TlsListener> {
        let local = listener.local_addr()?;
        let (tx, done) = mpsc::channel(64);
        let acceptor = TlsAcceptor::from(config);
        tokio::spawn(async move {
            loop {
                let (tcp, peer) = match listener.accept().await {
                    Ok(c) => c,
                    Err(e) => {
                        // Out of descriptors, say: wait instead of spinning.
                        tracing::warn!(error = %e, "logs endpoint: accept failed");
                        tokio::time::sleep(Duration::from_millis(100)).await;
                        continue;
                    }
                };
                if tx.is_closed() {
                    return;
                }
                let (acceptor, tx) = (acceptor.clone(), tx.clone());
                tokio::spawn(async move {
                    match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(tcp)).await {
                        Ok(Ok(tls)) => {
                            let _ = tx.send((tls, peer)).await;
                        }
                        Ok(Err(e)) => {
                            tracing::info!(%peer, error = %e, "logs endpoint: TLS handshake refused")
                        }
                        Err(_) => tracing::info!(%peer, "logs endpoint: TLS handshake timed out"),
                    }
                });
            }
        });
        Ok(TlsListener { done, local })
    }
}

impl axum::serve::Listener for TlsListener {
    type Io = tokio_rustls::server::TlsStream<TcpStream>;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        match self.done.recv().await {
            Some(c) => c,
            // The accept task ends only when this listener is gone.
            None => std::future::pending().await,
        }
    }

    fn local_addr(&self) -> std::io::Result<SocketAddr> {
        Ok(self.local)
    }
}

/// Binds `addr` and serves `routes` there, over TLS when `tls` is given, in the
/// background. The bound address.
pub async fn serve(
    addr: SocketAddr,
    routes: Router,
    tls: Option<Arc<ServerConfig>>,
) -> anyhow::Result<SocketAddr> {
    let listener = TcpListener::bind(addr)
        .await
        .map_err(|e| anyhow::anyhow!("cannot listen on {addr} (--logs-listen): {e}"))?;
    let bound = listener.local_addr()?;
    match tls {
        Some(config) => {
            let listener = TlsListener::new(listener, config)?;
            tokio::spawn(async move {
                if let Err(e) = axum::serve(listener, routes).await {
                    tracing::error!(error = %e, "logs endpoint stopped");
                }
            });
        }
        None => {
            tokio::spawn(async move {
                if let Err(e) = axum::serve(listener, routes).await {
                    tracing::error!(error = %e, "logs endpoint stopped");
                }
            });
        }
    }
    Ok(bound)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hosts_are_taken_from_addresses() {
        assert_eq!(host_of("127.0.0.1:9466"), "127.0.0.1");
        assert_eq!(host_of("node-1.example:9466"), "node-1.example");
        assert_eq!(host_of("[::1]:9466"), "::1");
    }

    #[test]
    fn missing_and_empty_files_are_named() {
        let dir = std::env::temp_dir().join(format!("rune-tls-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let empty = dir.join("empty.pem");
        std::fs::write(&empty, "").unwrap();
        let e = certificates("--logs-tls-cert", &empty).unwrap_err();
        assert!(
            e.contains("--logs-tls-cert") && e.contains("no PEM certificate"),
            "{e}"
        );
        let e = private_key("--logs-tls-key", &dir.join("missing.pem")).unwrap_err();
        assert!(e.starts_with("--logs-tls-key "), "{e}");
        let e = server_config(&ServerFiles {
            cert: &dir.join("missing.crt"),
            key: &empty,
            client_ca: None,
        })
        .unwrap_err();
        assert!(e.contains("missing.crt"), "{e}");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn the_agents_tls_flags_go_together() {
        use clap::Parser;
        let parse = |args: &[&str]| {
            crate::agent::Args::try_parse_from([&["rune-agent"][..], args].concat())
                .map_err(|e| e.to_string())
        };
        let e = parse(&["--logs-tls-cert", "c", "--logs-tls-key", "k"]).unwrap_err();
        assert!(e.contains("--logs-listen"), "{e}");
        let e = parse(&["--logs-listen", "127.0.0.1:0", "--logs-tls-cert", "c"]).unwrap_err();
        assert!(e.contains("--logs-tls-key"), "{e}");
        let e = parse(&["--logs-client-ca", "ca"]).unwrap_err();
        assert!(e.contains("--logs-tls-cert"), "{e}");
        let ok = parse(&[
            "--logs-listen",
            "127.0.0.1:0",
            "--logs-tls-cert",
            "c",
            "--logs-tls-key",
            "k",
            "--logs-client-ca",
            "ca",
        ])
        .unwrap();
        assert_eq!(ok.logs_client_ca.as_deref(), Some(Path::new("ca")));
        assert!(
            parse(&["--logs-listen", "127.0.0.1:0"]).is_ok(),
            "plain, on its own listener"
        );
    }
}
