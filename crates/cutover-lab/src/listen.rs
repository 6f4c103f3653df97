//! A host's services: one TCP listener per port the runbook checks open or sends HTTP to. Each
//! answers an HTTP request with 200 and a body naming the host, so that a check for a body
//! passes only at the right host; a connection that sends nothing (a port check) is simply
//! accepted and closed. Every read and write is bounded in time and size.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;
use tokio::task::{JoinHandle, JoinSet};

use crate::error::LabError;

/// Time a client has to send its request head, and to read the answer.
const CLIENT_TIMEOUT: Duration = Duration::from_secs(5);
/// The longest request head read.
const MAX_REQUEST_HEAD: usize = 16 * 1024;
/// Connections served at once per listener.
const MAX_CONNECTIONS: usize = 64;

/// The text a host's listeners answer with: `served by NAME.` first, so that a runbook's
/// `body "served by wiki."` does not match host `wiki-new`.
pub fn body_for(host: &str, site: Option<&str>, address: SocketAddr) -> String {
    let site = site.map(|s| format!(", site {s}")).unwrap_or_default();
    format!("served by {host}. (cutover lab: host {host}{site}, {address})\n")
}

/// Binds `address` and serves it until the returned task is aborted.
pub async fn start(
    host: &str,
    address: SocketAddr,
    body: String,
) -> Result<JoinHandle<()>, LabError> {
    let listener = bind(host, address).await?;
    Ok(tokio::spawn(accept_loop(listener, Arc::from(body))))
}

/// Binds host `host`'s `address`, the error naming both.
pub(crate) async fn bind(host: &str, address: SocketAddr) -> Result<TcpListener, LabError> {
    TcpListener::bind(address)
        .await
        .map_err(|source| LabError::Listen {
            host: host.to_string(),
            address,
            source,
        })
}

async fn accept_loop(listener: TcpListener, body: Arc<str>) {
    let permits = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    // Dropping the set (when this task is aborted) aborts every open connection.
    let mut connections = JoinSet::new();
    loop {
        let Ok(permit) = permits.clone().acquire_owned().await else {
            return;
        };
        while connections.try_join_next().is_some() {}
        let accepted = listener.accept().await;
        match accepted {
            Ok((stream, _)) => {
                let body = body.clone();
                connections.spawn(async move {
                    let _ = tokio::time::timeout(CLIENT_TIMEOUT * 2, answer(stream, &body)).await;
                    drop(permit);
                });
            }
            Err(_) => tokio::time::sleep(Duration::from_millis(50)).await,
        }
    }
}

/// Reads a request head (bounded) and answers it; a silent client gets nothing.
async fn answer(mut stream: TcpStream, body: &str) -> std::io::Result<()> {
    let mut head = Vec::with_capacity(1024);
    let mut chunk = [0u8; 2048];
    loop {
        let read = match tokio::time::timeout(CLIENT_TIMEOUT, stream.read(&mut chunk)).await {
            Ok(read) => read?,
            Err(_) => return Ok(()),
        };
        if read == 0 {
            break;
        }
        head.extend_from_slice(&chunk[..read]);
        if head.windows(4).any(|w| w == b"\r\n\r\n") || head.len() >= MAX_REQUEST_HEAD {
            break;
        }
    }
    let Some(request_line) = head.split(|&b| b == b'\n').next() else {
        return Ok(());
    };
    let request_line = String::from_utf8_lossy(request_line);
    let mut words = request_line.split_whitespace();
    let method = words.next().unwrap_or_default();
    let is_http = words
        .nth(1)
        .is_some_and(|version| version.starts_with("HTTP/1."));
    if !is_http {
        return Ok(());
    }
    let (status, text) = if head.len() >= MAX_REQUEST_HEAD {
        (
            "431 Request Header Fields Too Large",
            "request head too large\n",
        )
    } else {
        ("200 OK", body)
    };
    let mut response = format!(
        "HTTP/1.1 {status}\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        text.len()
    );
    if method != "HEAD" {
        response.push_str(text);
    }
    stream.write_all(response.as_bytes()).await?;
    stream.shutdown().await
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn exchange(address: SocketAddr, request: &[u8]) -> String {
        let mut stream = TcpStream::connect(address).await.unwrap();
        stream.write_all(request).await.unwrap();
        let mut out = String::new();
        tokio::time::timeout(Duration::from_secs(5), stream.read_to_string(&mut out))
            .await
            .unwrap()
            .unwrap();
        out
    }

    #[tokio::test]
    async fn http_requests_get_the_host_body_and_port_checks_get_nothing() {
        let probe = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let address = probe.local_addr().unwrap();
        drop(probe);
        let body = body_for("wiki-new", Some("new-dc"), address);
        let task = start("wiki-new", address, body.clone()).await.unwrap();

        let answer = exchange(address, b"GET / HTTP/1.1\r\nHost: wiki-new\r\n\r\n").await;
        assert!(answer.starts_with("HTTP/1.1 200 OK\r\n"), "{answer}");
        assert!(answer.ends_with(&body), "{answer}");
        assert!(answer.contains("served by wiki-new."));

        let head = exchange(address, b"HEAD / HTTP/1.0\r\n\r\n").await;
        assert!(
            head.starts_with("HTTP/1.1 200 OK") && !head.contains("served by"),
            "{head}"
        );

        let silent = TcpStream::connect(address).await.unwrap();
        drop(silent);
        let garbage = exchange(address, b"hello\r\n\r\n").await;
        assert_eq!(garbage, "");

        task.abort();
        let _ = task.await;
        assert!(
            TcpStream::connect(address).await.is_err(),
            "an aborted listener is closed"
        );
    }
}
