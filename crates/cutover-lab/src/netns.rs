//! Serving inside the lab's network namespaces from this process: one thread per namespace
//! enters it (`setns`) and runs a small tokio runtime, so every socket its tasks make (the DNS
//! servers, the listeners, the agents) lives in that namespace. Hosts' agents serve the agent
//! protocol over TCP there, each connection on a thread that sees only the host's folder as
//! `/` (its own file-system root, as a host of its own would), so the runbook's paths mean
//! the same as on a `via local` host.

use std::net::SocketAddr;
use std::os::fd::AsFd;
use std::path::{Path, PathBuf};

use rustix::thread::{LinkNameSpaceType, move_into_link_name_space};
use tokio::runtime::Handle;
use tokio::sync::oneshot;

use crate::error::LabError;

/// A thread inside a namespace, running a runtime for the tasks given to [`NsRuntime::run`].
pub(crate) struct NsRuntime {
    pub namespace: String,
    handle: Handle,
    stop: Option<oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl NsRuntime {
    /// Starts the thread and enters `namespace` (a name under `/run/netns`).
    pub fn start(namespace: &str) -> Result<NsRuntime, LabError> {
        let path = Path::new("/run/netns").join(namespace);
        let file =
            std::fs::File::open(&path).map_err(|err| LabError::io("cannot open", &path, err))?;
        let (ready_tx, ready_rx) = std::sync::mpsc::channel::<Result<Handle, String>>();
        let (stop_tx, stop_rx) = oneshot::channel::<()>();
        let name = namespace.to_string();
        let thread = std::thread::Builder::new()
            .name(format!("lab {namespace}"))
            .spawn(move || {
                // setns changes only this thread's network namespace.
                if let Err(err) =
                    move_into_link_name_space(file.as_fd(), Some(LinkNameSpaceType::Network))
                {
                    let err = std::io::Error::from(err);
                    let _ = ready_tx.send(Err(format!("cannot enter namespace {name}: {err}")));
                    return;
                }
                drop(file);
                let runtime = match tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                {
                    Ok(runtime) => runtime,
                    Err(err) => {
                        let _ = ready_tx.send(Err(format!("cannot start a runtime: {err}")));
                        return;
                    }
                };
                let _ = ready_tx.send(Ok(runtime.handle().clone()));
                runtime.block_on(async {
                    let _ = stop_rx.await;
                });
            })
            .map_err(|err| LabError::Process(format!("cannot start a thread: {err}")))?;
        let handle = ready_rx
            .recv()
            .map_err(|_| LabError::Process(format!("the thread for {namespace} stopped")))?
            .map_err(LabError::Process)?;
        Ok(NsRuntime {
            namespace: namespace.to_string(),
            handle,
            stop: Some(stop_tx),
            thread: Some(thread),
        })
    }

    /// Runs `future` in the namespace and waits for its result.
    pub async fn run<T: Send + 'static>(
        &self,
        future: impl std::future::Future<Output = T> + Send + 'static,
    ) -> Result<T, LabError> {
        self.handle.spawn(future).await.map_err(|err| {
            LabError::Process(format!(
                "a task in namespace {} failed: {err}",
                self.namespace
            ))
        })
    }
}

impl Drop for NsRuntime {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// Serves the agent protocol for `root` on `address`, each connection on its own thread
/// rooted at `root`, until the returned task is aborted. Call inside the namespace.
pub(crate) async fn start_agent(
    host: &str,
    address: SocketAddr,
    root: PathBuf,
) -> Result<tokio::task::JoinHandle<()>, LabError> {
    let listener = crate::listen::bind(host, address).await?;
    let host = host.to_string();
    Ok(tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                continue;
            };
            let Ok(stream) = stream.into_std() else {
                continue;
            };
            let root = root.clone();
            let host = host.clone();
            let _ = std::thread::Builder::new()
                .name(format!("agent {host}"))
                .spawn(move || serve_connection(&host, stream, &root));
        }
    }))
}

/// One agent connection: this thread takes `root` as its `/`, then speaks the protocol.
fn serve_connection(host: &str, stream: std::net::TcpStream, root: &Path) {
    if let Err(err) = enter_root(root) {
        eprintln!("agent for {host}: {err}");
        return;
    }
    let _ = stream.set_nonblocking(false);
    let _ = stream.set_nodelay(true);
    let Ok(reader) = stream.try_clone() else {
        return;
    };
    if let Err(err) = cutover_copy::agent::serve(Path::new("/"), reader, stream) {
        eprintln!("agent for {host}: {err}");
    }
}

/// Gives this thread a file-system root of its own, `root`.
fn enter_root(root: &Path) -> Result<(), String> {
    // SAFETY: rustix marks unshare unsafe because some flags (CLONE_FILES,
    // CLONE_SYSVSEM) take resources away that other code of the process
    // may rely on. CLONE_FS only gives this thread its own copy of the
    // root, working folder and umask, with the same values; nothing is
    // closed or freed. chroot and chdir below then change only this
    // thread's copy, and no other thread reads it.
    unsafe { rustix::thread::unshare_unsafe(rustix::thread::UnshareFlags::FS) }
        .map_err(|e| format!("cannot detach the file-system root: {e}"))?;
    rustix::process::chroot(root)
        .map_err(|e| format!("cannot take {} as the root: {e}", root.display()))?;
    rustix::process::chdir("/").map_err(|e| format!("cannot enter the root: {e}"))?;
    Ok(())
}
