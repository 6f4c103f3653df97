//! Whether a process is alive, as `/proc` tells: a lab's background process
//! and a loopback lab's address claim are both judged by it.

use std::path::Path;

/// Whether process `pid` is alive (and not a zombie).
pub(crate) fn process_alive(pid: u32) -> bool {
    Path::new(&format!("/proc/{pid}")).exists() && !is_zombie(pid)
}

/// Whether process `pid` is a zombie, or `/proc` cannot tell.
pub(crate) fn is_zombie(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|stat| {
            stat.rsplit_once(") ")
                .map(|(_, rest)| rest.starts_with('Z'))
        })
        .unwrap_or(true)
}
