//! A real OpenSSH server for interop tests: on a free loopback port, with
//! generated host and user keys, logging to a file, killed on drop. Its
//! sessions find `cutover` (this build) on their `PATH`; a client config
//! and an `ssh` wrapper that uses it let `cutover run` reach it as a
//! runbook's `via ssh USER@127.0.0.1:PORT` host with plain `ssh`.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub struct Sshd {
    pub port: u16,
    /// The user the keys log in as (the one running the tests).
    pub user: String,
    /// Holds the keys, the configs, the log and `bin/` (`cutover`, `ssh`).
    pub base: PathBuf,
    child: Child,
}

impl Sshd {
    /// Starts `sshd` under `base` (which must exist) and waits, at most
    /// 10 s, until it takes connections.
    pub fn start(base: &Path) -> Sshd {
        for key in ["host_key", "user_key"] {
            let status = Command::new("ssh-keygen")
                .args(["-q", "-t", "ed25519", "-N", "", "-f"])
                .arg(base.join(key))
                .status()
                .unwrap();
            assert!(status.success());
        }
        fs::copy(base.join("user_key.pub"), base.join("authorized_keys")).unwrap();
        let user = String::from_utf8(Command::new("id").arg("-un").output().unwrap().stdout)
            .unwrap()
            .trim()
            .to_string();
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let bin = base.join("bin");
        fs::create_dir_all(&bin).unwrap();
        std::os::unix::fs::symlink(env!("CARGO_BIN_EXE_cutover"), bin.join("cutover")).unwrap();
        let config = format!(
            "ListenAddress 127.0.0.1\nHostKey {}\nAuthorizedKeysFile {}\nPidFile {}\nStrictModes no\nUsePAM no\n\
             PasswordAuthentication no\nKbdInteractiveAuthentication no\nPermitRootLogin prohibit-password\n\
             LogLevel INFO\nSetEnv PATH={}:/usr/local/bin:/usr/bin:/bin:/usr/sbin:/sbin\n",
            base.join("host_key").display(),
            base.join("authorized_keys").display(),
            base.join("sshd.pid").display(),
            bin.display()
        );
        fs::write(base.join("sshd_config"), config).unwrap();
        // The client side: this key, any host key (the server is ours).
        fs::write(
            base.join("ssh_config"),
            format!(
                "Host *\n  IdentityFile {}\n  IdentitiesOnly yes\n  StrictHostKeyChecking no\n  UserKnownHostsFile /dev/null\n  LogLevel ERROR\n",
                base.join("user_key").display()
            ),
        )
        .unwrap();
        let wrapper = bin.join("ssh");
        fs::write(
            &wrapper,
            format!(
                "#!/bin/sh\nexec /usr/bin/ssh -F {} \"$@\"\n",
                base.join("ssh_config").display()
            ),
        )
        .unwrap();
        fs::set_permissions(&wrapper, fs::Permissions::from_mode(0o755)).unwrap();
        fs::create_dir_all("/run/sshd").unwrap();
        let child = Command::new("/usr/sbin/sshd")
            .args(["-D", "-f"])
            .arg(base.join("sshd_config"))
            .args(["-p", &port.to_string(), "-E"])
            .arg(base.join("sshd.log"))
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let sshd = Sshd {
            port,
            user,
            base: base.to_path_buf(),
            child,
        };
        let deadline = Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < deadline, "sshd did not start");
            std::thread::sleep(Duration::from_millis(50));
        }
        sshd
    }

    /// `ssh` options that reach this server with its user key.
    pub fn ssh_args(&self) -> Vec<String> {
        vec![
            "-F".into(),
            self.base.join("ssh_config").display().to_string(),
            "-p".into(),
            self.port.to_string(),
        ]
    }

    /// A `PATH` whose `ssh` is the wrapper using this server's client config.
    pub fn path_with_wrapper(&self) -> String {
        format!(
            "{}:{}",
            self.base.join("bin").display(),
            std::env::var("PATH").unwrap_or_default()
        )
    }

    /// What sshd logged so far.
    pub fn log(&self) -> String {
        fs::read_to_string(self.base.join("sshd.log")).unwrap_or_default()
    }
}

impl Drop for Sshd {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
