//! `http.check URL [at HOST] [from HOST] [status N] [body "TEXT"] [ca FILE] [cert-days N]`:
//! the URL answers the expected status (and contains the text).
//!
//! Where the request goes: with `at HOST`, to that runbook host's address;
//! without it, to the address of the runbook host the URL's host names, if
//! it names one; else wherever DNS says. The URL's host name is kept for
//! SNI and the `Host` header either way (what `curl --resolve` does).
//!
//! Where it comes from: this machine, or with `from HOST` that host
//! ([`Vantage`]). From a host behind an agent (`via agent`, `via ssh`) the
//! agent makes the TCP connection and relays it; TLS and HTTP/1.1 still run
//! here, end to end through it (hyper over the tunnel, one request, no
//! redirects followed), so the evidence is the same as from here plus the
//! host and the connection's address there.
//!
//! HTTPS goes through rustls, trusting the system's roots and the runbook's
//! `ca FILE` (relative to the runbook's folder). The evidence of a TLS check
//! carries the server certificate's names, issuer and expiry: from the
//! answered connection (`tls_info`), or, when the handshake failed, from one
//! more handshake that only reads the certificate and is then broken off.
//! A certificate that expires within 14 days passes with a warning; with
//! `cert-days N` one that expires within N days fails.
//!
//! Clients are kept per distinct setting (CA file, where the name goes) for
//! the life of the process; every poll still opens a new connection (no
//! idle pool), so it sees the certificate the server has now.

use crate::vantage::{Stream, Vantage};
use crate::wrong_action;
use chrono::{DateTime, Utc};
use cutover_engine::{
    BoxFuture, Check, Evidence, Interrupted, StepContext, StepError, StepKind, StepResult, bounded,
};
use cutover_lang::ActionKind;
use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

pub struct HttpCheck;

const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);
/// The bound on the extra handshake that reads a refused certificate.
const CERT_READ_TIMEOUT: Duration = Duration::from_secs(5);
/// Body text kept in evidence.
const EVIDENCE_BODY: usize = 256;
/// Without `cert-days`, a certificate expiring within this many days passes
/// with a warning.
const WARN_DAYS: i64 = 14;

/// What a client is built from: one client per distinct value.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct ClientKey {
    /// The `ca FILE`, joined to the runbook's folder.
    ca: Option<PathBuf>,
    /// The URL's host name and the address it is sent to.
    resolve: Option<(String, SocketAddr)>,
}

fn clients() -> &'static Mutex<HashMap<ClientKey, reqwest::Client>> {
    static CLIENTS: OnceLock<Mutex<HashMap<ClientKey, reqwest::Client>>> = OnceLock::new();
    CLIENTS.get_or_init(Mutex::default)
}

/// The client for `key`, built on first use. A CA file that cannot be read
/// or holds no certificate is fatal: no poll can mend it.
fn client_for(key: &ClientKey) -> StepResult<reqwest::Client> {
    if let Some(client) = clients().lock().unwrap_or_else(|e| e.into_inner()).get(key) {
        return Ok(client.clone());
    }
    let mut builder = reqwest::Client::builder()
        .use_rustls_tls()
        .tls_info(true)
        .no_proxy()
        .pool_max_idle_per_host(0)
        .timeout(REQUEST_TIMEOUT);
    if let Some(path) = &key.ca {
        let pem = std::fs::read(path).map_err(|e| {
            StepError::fatal(anyhow::anyhow!(
                "cannot read the CA file {}: {e}",
                path.display()
            ))
        })?;
        let certs = reqwest::Certificate::from_pem_bundle(&pem)
            .ok()
            .filter(|c| !c.is_empty())
            .ok_or_else(|| {
                StepError::fatal(anyhow::anyhow!(
                    "the CA file {} holds no PEM certificate",
                    path.display()
                ))
            })?;
        for cert in certs {
            builder = builder.add_root_certificate(cert);
        }
    }
    if let Some((name, addr)) = &key.resolve {
        builder = builder.resolve(name, *addr);
    }
    let client = builder
        .build()
        .map_err(|e| StepError::fatal(anyhow::Error::new(e).context("cannot set up HTTP")))?;
    clients()
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .insert(key.clone(), client.clone());
    Ok(client)
}

/// What a server certificate says about itself.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertFacts {
    /// Subject alternative names: DNS names, and IP addresses as text.
    pub names: Vec<String>,
    pub subject: String,
    pub issuer: String,
    pub not_before: DateTime<Utc>,
    pub not_after: DateTime<Utc>,
}

impl CertFacts {
    /// Reads a DER certificate.
    pub fn parse(der: &[u8]) -> anyhow::Result<CertFacts> {
        use x509_parser::extensions::GeneralName;
        let (_, cert) = x509_parser::parse_x509_certificate(der)
            .map_err(|e| anyhow::anyhow!("unreadable certificate: {e}"))?;
        let mut names = Vec::new();
        if let Ok(Some(san)) = cert.subject_alternative_name() {
            for name in &san.value.general_names {
                match name {
                    GeneralName::DNSName(n) => names.push((*n).to_string()),
                    GeneralName::IPAddress(bytes) => {
                        if let Ok(a) = <[u8; 4]>::try_from(*bytes) {
                            names.push(IpAddr::from(a).to_string());
                        } else if let Ok(a) = <[u8; 16]>::try_from(*bytes) {
                            names.push(IpAddr::from(a).to_string());
                        }
                    }
                    _ => {}
                }
            }
        }
        let time = |t: &x509_parser::time::ASN1Time| {
            DateTime::<Utc>::from_timestamp(t.timestamp(), 0).unwrap_or_default()
        };
        Ok(CertFacts {
            names,
            subject: cert.subject().to_string(),
            issuer: cert.issuer().to_string(),
            not_before: time(&cert.validity().not_before),
            not_after: time(&cert.validity().not_after),
        })
    }

    /// Whether the certificate's names cover `host` (a `*.` name covers
    /// one label).
    pub fn covers(&self, host: &str) -> bool {
        let host = host.trim_end_matches('.').to_ascii_lowercase();
        self.names.iter().any(|name| {
            let name = name.trim_end_matches('.').to_ascii_lowercase();
            match name.strip_prefix("*.") {
                Some(suffix) => host
                    .split_once('.')
                    .is_some_and(|(label, rest)| !label.is_empty() && rest == suffix),
                None => name == host,
            }
        })
    }

    /// Whole days from `now` to the expiry (negative once expired).
    pub fn days_left(&self, now: DateTime<Utc>) -> i64 {
        (self.not_after - now).num_days()
    }

    fn json(&self, now: DateTime<Utc>) -> serde_json::Value {
        serde_json::json!({
            "names": self.names,
            "subject": self.subject,
            "issuer": self.issuer,
            "not_before": self.not_before.to_rfc3339(),
            "not_after": self.not_after.to_rfc3339(),
            "days_left": self.days_left(now),
        })
    }

    /// `certificate for a, b (issuer CN=x), valid until 2030-01-01 00:00 UTC`
    /// and what is wrong with it for `host` at `now`.
    fn describe(&self, host: &str, now: DateTime<Utc>) -> String {
        let names = if self.names.is_empty() {
            "no names".to_string()
        } else {
            self.names.join(", ")
        };
        let mut text = format!(
            "certificate for {names} (issuer {}), valid {} to {}",
            self.issuer,
            stamp(self.not_before),
            stamp(self.not_after)
        );
        if self.not_after < now {
            text.push_str(&format!(
                "; expired {} days ago",
                (now - self.not_after).num_days()
            ));
        } else if self.not_before > now {
            text.push_str("; not yet valid");
        }
        if !self.covers(host) {
            text.push_str(&format!("; does not cover {host}"));
        }
        text
    }
}

fn stamp(t: DateTime<Utc>) -> String {
    t.format("%Y-%m-%d %H:%M UTC").to_string()
}

/// A verifier that keeps the server's certificate and refuses it: the
/// handshake stops right after the certificate arrives.
#[derive(Debug)]
struct Recorder {
    seen: Mutex<Option<Vec<u8>>>,
    schemes: Vec<rustls::SignatureScheme>,
}

impl rustls::client::danger::ServerCertVerifier for Recorder {
    fn verify_server_cert(
        &self,
        end_entity: &rustls::pki_types::CertificateDer<'_>,
        _intermediates: &[rustls::pki_types::CertificateDer<'_>],
        _server_name: &rustls::pki_types::ServerName<'_>,
        _ocsp_response: &[u8],
        _now: rustls::pki_types::UnixTime,
    ) -> Result<rustls::client::danger::ServerCertVerified, rustls::Error> {
        *self.seen.lock().unwrap_or_else(|e| e.into_inner()) = Some(end_entity.to_vec());
        Err(rustls::Error::General(
            "certificate read, not trusted".into(),
        ))
    }

    fn verify_tls12_signature(
        &self,
        _message: &[u8],
        _cert: &rustls::pki_types::CertificateDer<'_>,
        _dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        Err(rustls::Error::General("not trusted".into()))
    }

    fn verify_tls13_signature(
        &self,
        _message: &[u8],
        _cert: &rustls::pki_types::CertificateDer<'_>,
        _dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        Err(rustls::Error::General("not trusted".into()))
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.schemes.clone()
    }
}

/// Reads the certificate `name` presents on the connection `connect`
/// makes, without trusting it, for the evidence of a failed handshake.
async fn read_certificate<S: Stream>(
    name: &str,
    connect: impl Future<Output = anyhow::Result<S>>,
) -> anyhow::Result<CertFacts> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let recorder = Arc::new(Recorder {
        seen: Mutex::new(None),
        schemes: provider
            .signature_verification_algorithms
            .supported_schemes(),
    });
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .dangerous()
        .with_custom_certificate_verifier(recorder.clone())
        .with_no_client_auth();
    let server_name = rustls::pki_types::ServerName::try_from(name.to_string())?;
    let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
    let handshake = async {
        let stream = connect.await?;
        // The recorder refuses the certificate, so this ends in an error.
        let _ = connector.connect(server_name, stream).await;
        anyhow::Ok(())
    };
    tokio::time::timeout(CERT_READ_TIMEOUT, handshake)
        .await
        .map_err(|_| anyhow::anyhow!("no TLS handshake within {CERT_READ_TIMEOUT:?}"))??;
    let der = recorder
        .seen
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .take()
        .ok_or_else(|| anyhow::anyhow!("the server sent no certificate"))?;
    CertFacts::parse(&der)
}

/// What a request got: the status, the server certificate (HTTPS), the body.
struct Answer {
    code: u16,
    cert: Option<anyhow::Result<CertFacts>>,
    text: String,
}

/// The request through this machine's client for `key`.
async fn fetch_here(key: &ClientKey, url: &reqwest::Url) -> StepResult<Result<Answer, String>> {
    let client = client_for(key)?;
    let request = async {
        let response = client.get(url.clone()).send().await?;
        let code = response.status().as_u16();
        let cert = response
            .extensions()
            .get::<reqwest::tls::TlsInfo>()
            .and_then(|info| info.peer_certificate())
            .map(CertFacts::parse);
        let text = response.text().await?;
        Ok::<_, reqwest::Error>(Answer { code, cert, text })
    };
    Ok(request
        .await
        .map_err(|e| format!("{:#}", anyhow::Error::new(e))))
}

/// The request over a connection `vantage` makes to `target:port`: TLS
/// (rustls, the same roots as here) and HTTP/1.1 run here, end to end
/// through the host's agent. Redirects are not followed.
async fn fetch_from(
    vantage: &Vantage,
    url: &reqwest::Url,
    target: &str,
    port: u16,
    tls_name: &str,
    ca: Option<&Path>,
) -> StepResult<(Result<Answer, String>, Option<String>)> {
    let config = match url.scheme() {
        "https" => Some(tls_config(ca)?),
        _ => None,
    };
    let opened = match vantage.open(target, port, REQUEST_TIMEOUT).await {
        Ok(opened) => opened,
        Err(e) => return Ok((Err(e), None)),
    };
    let local = opened.local;
    let exchange = async {
        match config {
            Some(config) => {
                let name = rustls::pki_types::ServerName::try_from(tls_name.to_string())
                    .map_err(|e| format!("{tls_name} is not a TLS server name: {e}"))?;
                let tls = tokio_rustls::TlsConnector::from(config)
                    .connect(name, opened.stream)
                    .await
                    .map_err(|e| format!("TLS handshake with {tls_name}: {e}"))?;
                let cert = tls
                    .get_ref()
                    .1
                    .peer_certificates()
                    .and_then(|chain| chain.first())
                    .map(|der| CertFacts::parse(der));
                let (code, text) = get(tls, url).await?;
                Ok(Answer { code, cert, text })
            }
            None => {
                let (code, text) = get(opened.stream, url).await?;
                Ok(Answer {
                    code,
                    cert: None,
                    text,
                })
            }
        }
    };
    let answer = tokio::time::timeout(REQUEST_TIMEOUT, exchange)
        .await
        .unwrap_or_else(|_| Err(format!("no answer within {}s", REQUEST_TIMEOUT.as_secs())));
    Ok((answer, local))
}

/// Body bytes a check reads (the rest is not waited for).
const BODY_LIMIT: usize = 4 << 20;

/// One `GET` of `url` over `io` (HTTP/1.1, `Host` from the URL): the
/// status and the body.
async fn get(io: impl Stream + 'static, url: &reqwest::Url) -> Result<(u16, String), String> {
    use http_body_util::BodyExt;
    let chain = |e: hyper::Error| format!("{:#}", anyhow::Error::new(e));
    let (mut sender, connection) =
        hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(io))
            .await
            .map_err(chain)?;
    // Ends once the sender is dropped and the answer is read.
    tokio::spawn(connection);
    let authority = match url.port() {
        Some(port) => format!("{}:{port}", url.host_str().unwrap_or_default()),
        None => url.host_str().unwrap_or_default().to_string(),
    };
    let mut target = url.path().to_string();
    if let Some(query) = url.query() {
        target.push('?');
        target.push_str(query);
    }
    let request = hyper::Request::get(target)
        .header(hyper::header::HOST, authority)
        .header(
            hyper::header::USER_AGENT,
            concat!("cutover/", env!("CARGO_PKG_VERSION")),
        )
        .body(http_body_util::Empty::<hyper::body::Bytes>::new())
        .map_err(|e| format!("bad request for {url}: {e}"))?;
    let response = sender.send_request(request).await.map_err(chain)?;
    let code = response.status().as_u16();
    let body = http_body_util::Limited::new(response.into_body(), BODY_LIMIT)
        .collect()
        .await
        .map_err(|e| format!("reading the body: {e}"))?
        .to_bytes();
    Ok((code, String::from_utf8_lossy(&body).into_owned()))
}

fn tls_configs() -> &'static Mutex<HashMap<Option<PathBuf>, Arc<rustls::ClientConfig>>> {
    static CONFIGS: OnceLock<Mutex<HashMap<Option<PathBuf>, Arc<rustls::ClientConfig>>>> =
        OnceLock::new();
    CONFIGS.get_or_init(Mutex::default)
}

/// The rustls settings of a request made through a host: the system's
/// roots and the `ca FILE`, as the client here trusts. Built once per CA
/// file; a CA file that cannot be read or holds no certificate is fatal.
fn tls_config(ca: Option<&Path>) -> StepResult<Arc<rustls::ClientConfig>> {
    use rustls::pki_types::pem::PemObject;
    let key = ca.map(Path::to_path_buf);
    if let Some(config) = tls_configs()
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .get(&key)
    {
        return Ok(config.clone());
    }
    let mut roots = rustls::RootCertStore::empty();
    roots.add_parsable_certificates(rustls_native_certs::load_native_certs().certs);
    if let Some(path) = ca {
        let pem = std::fs::read(path).map_err(|e| {
            StepError::fatal(anyhow::anyhow!(
                "cannot read the CA file {}: {e}",
                path.display()
            ))
        })?;
        let certs: Vec<_> = rustls::pki_types::CertificateDer::pem_slice_iter(&pem)
            .filter_map(Result::ok)
            .collect();
        let (added, _) = roots.add_parsable_certificates(certs);
        if added == 0 {
            return Err(StepError::fatal(anyhow::anyhow!(
                "the CA file {} holds no PEM certificate",
                path.display()
            )));
        }
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| StepError::fatal(anyhow::anyhow!("cannot set up TLS: {e}")))?
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    let config = Arc::new(config);
    tls_configs()
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .insert(key, config.clone());
    Ok(config)
}

async fn observe(ctx: &StepContext<'_>) -> StepResult<Check> {
    let ActionKind::HttpCheck {
        url,
        host,
        status,
        body,
        ca,
        cert_days,
        from,
        ..
    } = &ctx.action.kind
    else {
        return Err(StepError::fatal(wrong_action(
            "http.check",
            &ctx.action.kind,
        )));
    };
    let parsed = reqwest::Url::parse(url)
        .map_err(|e| StepError::fatal(anyhow::anyhow!("bad URL {url}: {e}")))?;
    let https = parsed.scheme() == "https";
    let port = parsed
        .port_or_known_default()
        .unwrap_or(if https { 443 } else { 80 });
    // The URL's host: a name (sent where `host` says) or a literal address.
    let name = parsed.domain().map(str::to_string);
    let resolve = match (host, &name) {
        (Some(id), Some(name)) => Some((
            name.clone(),
            SocketAddr::new(ctx.runbook.host(*id).addr, port),
        )),
        _ => None,
    };
    let ca_path = ca.as_ref().map(|c| ctx.runbook_dir().join(c));
    let tls_name = parsed
        .host_str()
        .unwrap_or_default()
        .trim_matches(['[', ']']);
    let vantage = Vantage::of(ctx, *from);
    // Where the connection goes: the runbook host's address, or the URL's
    // host (resolved where the connection is made).
    let target = resolve
        .as_ref()
        .map_or_else(|| tls_name.to_string(), |(_, addr)| addr.ip().to_string());
    let fetch = async {
        match &vantage {
            Vantage::Agent { .. } => {
                fetch_from(
                    &vantage,
                    &parsed,
                    &target,
                    port,
                    tls_name,
                    ca_path.as_deref(),
                )
                .await
            }
            Vantage::Here { .. } => {
                let key = ClientKey {
                    ca: ca_path.clone(),
                    resolve: resolve.clone(),
                };
                Ok((fetch_here(&key, &parsed).await?, None))
            }
        }
    };
    let (outcome, local) = tokio::select! {
        r = fetch => r?,
        () = ctx.cancel.cancelled() => return Err(Interrupted.into()),
    };
    let now = Utc::now();
    let place = vantage
        .place()
        .map_or_else(String::new, |from| format!(" {from}"));
    let Answer { code, cert, text } = match outcome {
        Ok(answer) => answer,
        Err(error) => {
            let mut summary = format!("{url}{place}: {error}");
            let mut data = serde_json::json!({ "url": url, "error": error });
            if let Some((_, addr)) = &resolve {
                data["addr"] = addr.to_string().into();
            }
            if from.is_some() {
                data["from"] = vantage.json();
            }
            if https {
                // One more connection, made where the request's was.
                let read = read_certificate(tls_name, async {
                    vantage
                        .open(&target, port, CERT_READ_TIMEOUT)
                        .await
                        .map(|opened| opened.stream)
                        .map_err(anyhow::Error::msg)
                });
                let read = tokio::select! {
                    r = read => r,
                    () = ctx.cancel.cancelled() => return Err(Interrupted.into()),
                };
                match read {
                    Ok(facts) => {
                        summary.push_str(&format!(" — {}", facts.describe(tls_name, now)));
                        data["certificate"] = facts.json(now);
                    }
                    Err(e) => data["certificate_error"] = format!("{e:#}").into(),
                }
            }
            return Ok(Check::NotYet(Evidence::new(summary, data)));
        }
    };
    let mut data = serde_json::json!({
        "url": url,
        "status": code,
        "body": bounded(&text, EVIDENCE_BODY),
    });
    if let Some((_, addr)) = &resolve {
        data["addr"] = addr.to_string().into();
    }
    if from.is_some() {
        data["from"] = vantage.json();
    }
    if let Some(local) = local {
        data["local"] = local.into();
    }
    let facts = match cert {
        Some(Ok(facts)) => {
            data["certificate"] = facts.json(now);
            Some(facts)
        }
        Some(Err(e)) => {
            data["certificate_error"] = format!("{e:#}").into();
            None
        }
        None => None,
    };
    if code != *status {
        return Ok(Check::NotYet(Evidence::new(
            format!("{url}{place} answered {code}, expected {status}"),
            data,
        )));
    }
    if let Some(wanted) = body
        && !text.contains(wanted.as_str())
    {
        return Ok(Check::NotYet(Evidence::new(
            format!("{url}{place} answered {code} without \"{wanted}\""),
            data,
        )));
    }
    let mut summary = match body {
        Some(wanted) => format!("{url}{place} answered {code} with \"{wanted}\""),
        None => format!("{url}{place} answered {code}"),
    };
    if let Some(facts) = &facts {
        let days = facts.days_left(now);
        let expires = format!(
            "the certificate for {} expires {} (in {days} days)",
            facts.names.join(", "),
            stamp(facts.not_after)
        );
        match cert_days {
            Some(limit) if days < i64::from(*limit) => {
                data["warning"] = format!("{expires}, within cert-days {limit}").into();
                return Ok(Check::NotYet(Evidence::new(
                    format!("{summary}, but {expires}: within cert-days {limit}"),
                    data,
                )));
            }
            None if days < WARN_DAYS => {
                let warning = format!("warning: {expires}");
                summary.push_str(&format!("; {warning}"));
                data["warning"] = warning.into();
            }
            _ => summary.push_str(&format!(
                "; certificate valid until {}",
                stamp(facts.not_after)
            )),
        }
    }
    Ok(Check::Satisfied(Evidence::new(summary, data)))
}

impl StepKind for HttpCheck {
    fn check<'a>(&'a self, ctx: &'a StepContext<'a>) -> BoxFuture<'a, StepResult<Check>> {
        Box::pin(observe(ctx))
    }

    fn act<'a>(&'a self, _ctx: &'a StepContext<'a>) -> BoxFuture<'a, StepResult<Evidence>> {
        Box::pin(async {
            Ok(Evidence::new(
                "nothing to do (a check)",
                serde_json::Value::Null,
            ))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::CertFacts;
    use chrono::Utc;

    fn facts(names: &[&str]) -> CertFacts {
        CertFacts {
            names: names.iter().map(|n| n.to_string()).collect(),
            subject: String::new(),
            issuer: String::new(),
            not_before: Utc::now(),
            not_after: Utc::now(),
        }
    }

    #[test]
    fn names_cover_hosts() {
        let f = facts(&["wiki.lab.test", "*.lab.test", "127.0.0.1"]);
        assert!(f.covers("wiki.lab.test"));
        assert!(f.covers("WIKI.lab.test."));
        assert!(f.covers("talk.lab.test"));
        assert!(f.covers("127.0.0.1"));
        assert!(!f.covers("a.b.lab.test"));
        assert!(!f.covers("lab.test"));
        assert!(!facts(&["other.test"]).covers("wiki.lab.test"));
    }
}
