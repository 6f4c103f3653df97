//! Serving inside the lab's network namespaces from this process: one thread per namespace
//! enters it (`setns`) and runs a small tokio runtime, so every socket its tasks make (the DNS
//! servers, the listeners, the agents) lives in that namespace. Hosts' agents serve the agent
//! protocol over TCP there, each connection on a thread that sees only the host's folder as
//! `/` (its own file-system root, as a host of its own would), so the runbook's paths mean
//! the same as on a `via local` host.

use std::net::SocketAddr;
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};

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
                // SAFETY: setns on a descriptor owned by `file`; it changes only this thread.
                if unsafe { libc::setns(file.as_raw_fd(), libc::CLONE_NEWNET) } == -1 {
                    let err = std::io::Error::last_os_error();
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
    use std::os::unix::ffi::OsStrExt;
    let path = std::ffi::CString::new(root.as_os_str().as_bytes())
        .map_err(|_| format!("{} has a NUL byte", root.display()))?;
    // SAFETY: unshare(CLONE_FS) detaches this thread's root and working folder from the
    // process's; chroot and chdir then change only this thread's.
    unsafe {
        if libc::unshare(libc::CLONE_FS) == -1 {
            return Err(format!(
                "cannot detach the file-system root: {}",
                std::io::Error::last_os_error()
            ));
        }
        if libc::chroot(path.as_ptr()) == -1 {
            return Err(format!(
                "cannot take {} as the root: {}",
                root.display(),
                std::io::Error::last_os_error()
            ));
        }
        if libc::chdir(c"/".as_ptr()) == -1 {
            return Err(format!(
                "cannot enter the root: {}",
                std::io::Error::last_os_error()
            ));
        }
    }
    Ok(())
}
