//! `cutover lab relay ADDRESS`: the command a lab host's `via agent` line runs. It connects to
//! the host's agent in its namespace and relays this process's stdin and stdout over that
//! connection, so the copy's bytes cross the lab's shaped links.

use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::time::Duration;

/// How long the agent has to accept the connection.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// Relays stdin to the agent at `address` and its answers to stdout until both ends close.
pub fn relay(address: SocketAddr) -> std::io::Result<()> {
    let stream = TcpStream::connect_timeout(&address, CONNECT_TIMEOUT).map_err(|err| {
        std::io::Error::new(
            err.kind(),
            format!("cannot reach the lab agent at {address}: {err}"),
        )
    })?;
    stream.set_nodelay(true)?;
    let mut upstream = stream.try_clone()?;
    let sender = std::thread::spawn(move || {
        let copied = copy(&mut std::io::stdin().lock(), &mut upstream);
        let _ = upstream.shutdown(Shutdown::Write);
        copied
    });
    let mut downstream = stream;
    let received = copy(&mut downstream, &mut std::io::stdout().lock());
    let sent = sender
        .join()
        .unwrap_or_else(|_| Err(std::io::Error::other("the relay's sender stopped")));
    received.and(sent)
}

/// Copies until end of input, flushing after every read (the protocol waits for answers).
fn copy(from: &mut impl Read, to: &mut impl Write) -> std::io::Result<()> {
    let mut buffer = vec![0u8; 256 << 10];
    loop {
        let read = match from.read(&mut buffer) {
            Ok(0) => return to.flush(),
            Ok(read) => read,
            Err(err) if err.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(err) => return Err(err),
        };
        to.write_all(&buffer[..read])?;
        to.flush()?;
    }
}
