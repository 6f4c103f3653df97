//! A lab CA and a TLS web server on 127.0.0.1 for the HTTPS tests (also
//! used by `cutover-cli/tests/https_check.rs`): certificates made by
//! `rcgen`, served by `tokio-rustls` on a free port. The server answers
//! every request `200` with the body `new wiki`, and keeps the SNI name and
//! `Host` header of each request it answered.

#![allow(dead_code)]

use chrono::{Datelike, Utc};
use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair, date_time_ymd};
use std::net::SocketAddr;
use std::path::Path;
use std::sync::{Arc, Mutex};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// The lab's certificate authority.
pub struct LabCa {
    pub pem: String,
    issuer: Issuer<'static, KeyPair>,
}

/// A server certificate and its key, in DER.
pub struct Leaf {
    pub der: Vec<u8>,
    pub key: Vec<u8>,
}

/// Valid from `from` days to `until` days from today (negative: ago).
fn dated(params: &mut CertificateParams, from: i64, until: i64) {
    let ymd = |days: i64| {
        let d = (Utc::now() + chrono::Duration::days(days)).date_naive();
        (d.year(), d.month() as u8, d.day() as u8)
    };
    let (y, m, d) = ymd(from);
    params.not_before = date_time_ymd(y, m, d);
    let (y, m, d) = ymd(until);
    params.not_after = date_time_ymd(y, m, d);
}

impl LabCa {
    pub fn new() -> LabCa {
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params
            .distinguished_name
            .push(DnType::CommonName, "cutover lab CA");
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        dated(&mut params, -30, 3650);
        let key = KeyPair::generate().unwrap();
        let cert = params.self_signed(&key).unwrap();
        LabCa {
            pem: cert.pem(),
            issuer: Issuer::new(params, key),
        }
    }

    /// A certificate for `names`, valid from `from` days to `until` days
    /// from today.
    pub fn leaf(&self, names: &[&str], from: i64, until: i64) -> Leaf {
        let mut params =
            CertificateParams::new(names.iter().map(|n| n.to_string()).collect::<Vec<_>>())
                .unwrap();
        params
            .distinguished_name
            .push(DnType::CommonName, names.first().copied().unwrap_or("lab"));
        dated(&mut params, from, until);
        let key = KeyPair::generate().unwrap();
        let cert = params.signed_by(&key, &self.issuer).unwrap();
        Leaf {
            der: cert.der().to_vec(),
            key: key.serialize_der(),
        }
    }

    pub fn write_pem(&self, path: &Path) {
        std::fs::write(path, &self.pem).unwrap();
    }
}

/// What the server saw of one answered request: the SNI name and the
/// `Host` header.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Seen {
    pub sni: Option<String>,
    pub host: Option<String>,
}

/// A TLS web server on 127.0.0.1, serving `leaf`; ends with its runtime.
pub struct Server {
    pub addr: SocketAddr,
    pub seen: Arc<Mutex<Vec<Seen>>>,
}

impl Server {
    /// Starts serving on a free port of 127.0.0.1 (call inside a tokio
    /// runtime; the server task ends with it).
    pub async fn start(leaf: &Leaf) -> Server {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let config = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_no_client_auth()
            .with_single_cert(
                vec![rustls::pki_types::CertificateDer::from(leaf.der.clone())],
                rustls::pki_types::PrivateKeyDer::Pkcs8(leaf.key.clone().into()),
            )
            .unwrap();
        let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let seen = Arc::new(Mutex::new(Vec::new()));
        let record = seen.clone();
        tokio::spawn(async move {
            while let Ok((tcp, _)) = listener.accept().await {
                let acceptor = acceptor.clone();
                let record = record.clone();
                tokio::spawn(async move {
                    let answer = async {
                        let mut tls = acceptor.accept(tcp).await?;
                        let sni = tls.get_ref().1.server_name().map(str::to_string);
                        let mut request = Vec::new();
                        let mut buf = [0u8; 1024];
                        while !request.windows(4).any(|w| w == b"\r\n\r\n")
                            && request.len() < 16 * 1024
                        {
                            let n = tls.read(&mut buf).await?;
                            if n == 0 {
                                break;
                            }
                            request.extend_from_slice(&buf[..n]);
                        }
                        let text = String::from_utf8_lossy(&request);
                        let host = text.lines().find_map(|l| {
                            let (name, value) = l.split_once(':')?;
                            name.eq_ignore_ascii_case("host")
                                .then(|| value.trim().to_string())
                        });
                        record.lock().unwrap().push(Seen { sni, host });
                        let body = "<h1>new wiki</h1>";
                        let reply = format!(
                            "HTTP/1.1 200 OK\r\ncontent-type: text/html\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                            body.len()
                        );
                        tls.write_all(reply.as_bytes()).await?;
                        tls.shutdown().await?;
                        std::io::Result::Ok(())
                    };
                    let _ = tokio::time::timeout(std::time::Duration::from_secs(10), answer).await;
                });
            }
        });
        Server { addr, seen }
    }

    pub fn port(&self) -> u16 {
        self.addr.port()
    }

    pub fn seen(&self) -> Vec<Seen> {
        self.seen.lock().unwrap().clone()
    }
}
