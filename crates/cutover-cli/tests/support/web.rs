//! A plain HTTP server for checks to reach, which keeps the address of
//! every connection it accepted (to tell where a check connected from).

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// A plain HTTP server on `addr` answering every request with `body`,
/// keeping the address of each connection it accepted. Serves until
/// dropped, or for at most two minutes.
pub struct Web {
    pub addr: SocketAddr,
    peers: Arc<Mutex<Vec<SocketAddr>>>,
    stop: Arc<AtomicBool>,
}

impl Web {
    pub fn start(addr: &str, body: &'static str) -> Web {
        let listener = TcpListener::bind(addr).unwrap();
        listener.set_nonblocking(true).unwrap();
        let addr = listener.local_addr().unwrap();
        let peers = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let (seen, stopped) = (peers.clone(), stop.clone());
        std::thread::spawn(move || {
            let deadline = Instant::now() + Duration::from_secs(120);
            while !stopped.load(Ordering::SeqCst) && Instant::now() < deadline {
                let (mut conn, peer) = match listener.accept() {
                    Ok(accepted) => accepted,
                    Err(_) => {
                        std::thread::sleep(Duration::from_millis(10));
                        continue;
                    }
                };
                seen.lock().unwrap().push(peer);
                conn.set_nonblocking(false).unwrap();
                conn.set_read_timeout(Some(Duration::from_millis(500)))
                    .unwrap();
                // A port check sends nothing: answer only what asks.
                let mut request = Vec::new();
                let mut buffer = [0u8; 1024];
                while !request.windows(4).any(|w| w == b"\r\n\r\n") && request.len() < 65536 {
                    match conn.read(&mut buffer) {
                        Ok(0) | Err(_) => break,
                        Ok(n) => request.extend_from_slice(&buffer[..n]),
                    }
                }
                if request.starts_with(b"GET ") {
                    let _ = write!(
                        conn,
                        "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                        body.len()
                    );
                }
            }
        });
        Web { addr, peers, stop }
    }

    /// The peers accepted so far, once there are at least `n` (waiting at
    /// most 2 s: a connection may still wait in the listen queue).
    pub fn peers_at_least(&self, n: usize) -> Vec<SocketAddr> {
        let deadline = Instant::now() + Duration::from_secs(2);
        loop {
            let peers = self.peers.lock().unwrap().clone();
            if peers.len() >= n || Instant::now() >= deadline {
                return peers;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Web {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
    }
}
