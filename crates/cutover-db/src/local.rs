//! Throwaway database servers on this machine, from the system's packages
//! (Debian's `postgresql` and `mariadb-server`): a fresh data folder,
//! loopback unless the caller's settings name another address (the lab's
//! hosts), a port of the caller's choice, run as the package's
//! system user when this process is root (PostgreSQL refuses to run as
//! root; `mariadbd` is told `--user=mysql`). Stopped when dropped, with
//! bounded waits. Tests, benchmarks and the lab use them.

use crate::{Password, Server};
use std::io;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// How long a server may take to accept connections.
const START_TIMEOUT: Duration = Duration::from_secs(60);

/// The superuser every local PostgreSQL server is made with.
pub const SUPERUSER: &str = "postgres";

/// A port nothing listens on now (the kernel's choice on 127.0.0.1).
pub fn free_port() -> io::Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

/// The newest PostgreSQL's binaries (`/usr/lib/postgresql/N/bin`).
pub fn postgres_bin() -> Option<PathBuf> {
    let mut found: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .ok()?
        .filter_map(|e| e.ok())
        .filter_map(|e| {
            let version = e.file_name().to_str()?.parse::<u32>().ok()?;
            let bin = e.path().join("bin");
            bin.join("postgres").exists().then_some((version, bin))
        })
        .collect();
    found.sort();
    found.pop().map(|(_, bin)| bin)
}

/// The uid and gid to run a server as: the package's user when this
/// process is root, nobody else's otherwise.
fn run_as(user: &str) -> io::Result<Option<(u32, u32)>> {
    if std::fs::metadata("/proc/self")?.uid() != 0 {
        return Ok(None);
    }
    let passwd = std::fs::read_to_string("/etc/passwd")?;
    for line in passwd.lines() {
        let fields: Vec<&str> = line.split(':').collect();
        if fields.len() > 3
            && fields[0] == user
            && let (Ok(uid), Ok(gid)) = (fields[2].parse(), fields[3].parse())
        {
            return Ok(Some((uid, gid)));
        }
    }
    Err(io::Error::other(format!(
        "running as root, and there is no user `{user}` to run the server as (install the package that makes it)"
    )))
}

/// Waits up to `within` for a server asked to shut down to exit, then
/// kills it; either way it is waited for.
fn reap(child: &mut Child, within: Duration) {
    let deadline = Instant::now() + within;
    while Instant::now() < deadline {
        if let Ok(Some(_)) = child.try_wait() {
            return;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let _ = child.kill();
    let _ = child.wait();
}

/// Writes `sql` to a client's stdin, closes it and waits (bounded) for
/// the client to run it; its error output on failure.
fn finish_script(child: &mut Child, sql: &str, client: &str) -> io::Result<()> {
    use std::io::{Read, Write};
    if let Some(mut stdin) = child.stdin.take() {
        stdin.write_all(sql.as_bytes())?;
        stdin.write_all(b"\n")?;
    }
    let deadline = Instant::now() + START_TIMEOUT;
    let status = loop {
        if let Some(status) = child.try_wait()? {
            break status;
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            return Err(io::Error::other(format!(
                "{client} did not finish within {}s",
                START_TIMEOUT.as_secs()
            )));
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    if status.success() {
        return Ok(());
    }
    let mut err = String::new();
    if let Some(mut stderr) = child.stderr.take() {
        let _ = stderr.read_to_string(&mut err);
    }
    Err(io::Error::other(format!("{client}: {}", err.trim())))
}

fn command(program: &Path, user: Option<(u32, u32)>) -> Command {
    let mut command = Command::new(program);
    if let Some((uid, gid)) = user {
        command.uid(uid).gid(gid);
    }
    command
        .env_clear()
        .env("PATH", "/usr/bin:/bin")
        .env("LANG", "C.UTF-8");
    command
}

/// A PostgreSQL server in its own folder.
pub struct LocalPostgres {
    bin: PathBuf,
    data: PathBuf,
    port: u16,
    user: Option<(u32, u32)>,
    child: Option<Child>,
}

impl LocalPostgres {
    /// Makes a cluster in `dir/pgdata` with superuser [`SUPERUSER`] and
    /// `password` (password login over TCP, scram-sha-256) and starts it
    /// on 127.0.0.1:`port` with replication settings (`wal_level =
    /// logical`, slots and senders) and then `settings`, which win.
    pub fn start(
        dir: &Path,
        port: u16,
        password: &str,
        settings: &[(&str, &str)],
    ) -> io::Result<LocalPostgres> {
        let bin = postgres_bin().ok_or_else(|| {
            io::Error::other("PostgreSQL is not installed (no /usr/lib/postgresql/N/bin/postgres)")
        })?;
        let user = run_as("postgres")?;
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o755))?;
        let data = dir.join("pgdata");
        std::fs::create_dir_all(&data)?;
        let pwfile = dir.join("pgpass.init");
        std::fs::write(&pwfile, format!("{password}\n"))?;
        if let Some((uid, gid)) = user {
            std::os::unix::fs::chown(&data, Some(uid), Some(gid))?;
            std::os::unix::fs::chown(&pwfile, Some(uid), Some(gid))?;
        }
        std::fs::set_permissions(&data, std::fs::Permissions::from_mode(0o700))?;
        let init = command(&bin.join("initdb"), user)
            .arg("-D")
            .arg(&data)
            .args([
                "-U",
                SUPERUSER,
                "--auth-local=trust",
                "--auth-host=scram-sha-256",
                "-E",
                "UTF8",
                "--locale=C.UTF-8",
            ])
            .arg(format!("--pwfile={}", pwfile.display()))
            .stdin(Stdio::null())
            .output();
        let _ = std::fs::remove_file(&pwfile);
        let init = init?;
        if !init.status.success() {
            return Err(io::Error::other(format!(
                "initdb failed: {}",
                String::from_utf8_lossy(&init.stderr).trim()
            )));
        }
        let log = std::fs::File::create(dir.join("postgres.log"))?;
        if let Some((uid, gid)) = user {
            std::os::unix::fs::chown(dir.join("postgres.log"), Some(uid), Some(gid))?;
        }
        let mut all: Vec<(String, String)> = [
            ("listen_addresses", "127.0.0.1"),
            ("wal_level", "logical"),
            ("max_wal_senders", "10"),
            ("max_replication_slots", "10"),
            ("max_logical_replication_workers", "6"),
            ("fsync", "off"),
        ]
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
        all.push(("port".into(), port.to_string()));
        all.push(("unix_socket_directories".into(), data.display().to_string()));
        all.extend(settings.iter().map(|(k, v)| (k.to_string(), v.to_string())));
        let mut postgres = command(&bin.join("postgres"), user);
        postgres.arg("-D").arg(&data);
        for (key, value) in &all {
            postgres.arg("-c").arg(format!("{key}={value}"));
        }
        let child = postgres
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()?;
        let mut server = LocalPostgres {
            bin,
            data,
            port,
            user,
            child: Some(child),
        };
        server.wait_ready(dir)?;
        Ok(server)
    }

    fn wait_ready(&mut self, dir: &Path) -> io::Result<()> {
        let deadline = Instant::now() + START_TIMEOUT;
        while Instant::now() < deadline {
            if let Some(child) = self.child.as_mut()
                && let Some(status) = child.try_wait()?
            {
                let log = std::fs::read_to_string(dir.join("postgres.log")).unwrap_or_default();
                return Err(io::Error::other(format!(
                    "postgres exited ({status}): {}",
                    log.trim()
                )));
            }
            // Over the server's socket: the TCP address may be one of
            // another network namespace's (a lab host's).
            let ready = command(&self.bin.join("pg_isready"), None)
                .arg("-q")
                .arg("-h")
                .arg(&self.data)
                .args(["-p", &self.port.to_string()])
                .status()?;
            if ready.success() {
                return Ok(());
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        Err(io::Error::other(format!(
            "postgres on port {} did not accept connections within {}s",
            self.port,
            START_TIMEOUT.as_secs()
        )))
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// Database `database` on this server as `user` with `password`.
    pub fn server(&self, database: &str, user: &str, password: Option<&str>) -> Server {
        Server {
            host: "127.0.0.1".into(),
            port: self.port,
            database: database.into(),
            user: user.into(),
            password: password.map(Password::new),
        }
    }

    /// Runs `sql` with `psql` as the superuser over the server's own socket
    /// (local logins are trusted, so no password is handed to it); the
    /// output, unaligned and without headers.
    pub fn psql(&self, database: &str, sql: &str) -> io::Result<String> {
        let out = self
            .psql_command(database)
            .args(["-At", "-c", sql])
            .stdin(Stdio::null())
            .output()?;
        if !out.status.success() {
            return Err(io::Error::other(format!(
                "psql: {}",
                String::from_utf8_lossy(&out.stderr).trim()
            )));
        }
        Ok(String::from_utf8_lossy(&out.stdout).trim().to_owned())
    }

    /// Runs `sql` like [`LocalPostgres::psql`], the statements given on
    /// psql's stdin rather than its command line (where any process could
    /// read them): for statements that hold a password.
    pub fn psql_script(&self, database: &str, sql: &str) -> io::Result<()> {
        let mut child = self
            .psql_command(database)
            .arg("-q")
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()?;
        finish_script(&mut child, sql, "psql")
    }

    /// Lets every address log in over TCP (with a password, as from
    /// 127.0.0.1): for a server listening on an address of its own, whose
    /// clients come from other addresses (a lab's hosts).
    pub fn allow_any_address(&self) -> io::Result<()> {
        use std::io::Write;
        let hba = self.data.join("pg_hba.conf");
        let mut file = std::fs::OpenOptions::new().append(true).open(&hba)?;
        file.write_all(
            b"host all all 0.0.0.0/0 scram-sha-256\nhost replication all 0.0.0.0/0 scram-sha-256\n",
        )?;
        self.psql("postgres", "SELECT pg_reload_conf()").map(|_| ())
    }

    /// `psql` on `database` reading statements from its stdin (piped): one
    /// connection for a stream of statements, e.g. a writer.
    pub fn psql_session(&self, database: &str) -> io::Result<Child> {
        self.psql_command(database)
            .arg("-q")
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
    }

    fn psql_command(&self, database: &str) -> Command {
        let mut command = command(&self.bin.join("psql"), self.user);
        command
            .args(["-X", "-v", "ON_ERROR_STOP=1", "-h"])
            .arg(&self.data)
            .args([
                "-p",
                &self.port.to_string(),
                "-U",
                SUPERUSER,
                "-d",
                database,
            ]);
        command
    }

    /// The folder the server's socket is in (for `pg_dump -h`).
    pub fn socket_dir(&self) -> &Path {
        &self.data
    }

    /// The server's binaries (`pg_dump`, `pg_restore`, `psql`).
    pub fn bin(&self) -> &Path {
        &self.bin
    }

    /// A command running as the server's user (clean environment).
    pub fn command(&self, program: &str) -> Command {
        command(&self.bin.join(program), self.user)
    }

    /// Stops the server now and waits for it (also done on drop).
    pub fn stop(&mut self) {
        let Some(mut child) = self.child.take() else {
            return;
        };
        let _ = command(&self.bin.join("pg_ctl"), self.user)
            .arg("-D")
            .arg(&self.data)
            .args(["-m", "fast", "-w", "-t", "20", "stop"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
        reap(&mut child, Duration::from_secs(5));
    }
}

impl Drop for LocalPostgres {
    fn drop(&mut self) {
        self.stop();
    }
}

/// The superuser every local MariaDB server is made with (over TCP from
/// 127.0.0.1, with the given password).
pub const MARIADB_SUPERUSER: &str = "root";

/// A MariaDB server in its own folder, writing a row-based binary log with
/// GTIDs under the given `server_id`.
pub struct LocalMariadb {
    dir: PathBuf,
    port: u16,
    child: Option<Child>,
}

impl LocalMariadb {
    /// Makes a data folder in `dir/data` and starts `mariadbd` on
    /// 127.0.0.1:`port` with `log_bin`, `binlog_format = ROW` and
    /// `server_id`, then `settings` (`--NAME=VALUE`, which win); the
    /// superuser [`MARIADB_SUPERUSER`] may log in from 127.0.0.1 with
    /// `password`.
    pub fn start(
        dir: &Path,
        port: u16,
        server_id: u32,
        password: &str,
        settings: &[(&str, &str)],
    ) -> io::Result<LocalMariadb> {
        let user = run_as("mysql")?;
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o755))?;
        if let Some((uid, gid)) = user {
            std::os::unix::fs::chown(dir, Some(uid), Some(gid))?;
        }
        let data = dir.join("data");
        // A folder of its own for temporary tables: a server that starts
        // removes the `#sql` files it finds in its tmpdir, which in a shared
        // /tmp are another server's, still in use.
        let tmp = dir.join("tmp");
        std::fs::create_dir_all(&tmp)?;
        if let Some((uid, gid)) = user {
            std::os::unix::fs::chown(&tmp, Some(uid), Some(gid))?;
        }
        let mut install = command(Path::new("/usr/bin/mariadb-install-db"), None);
        install
            .arg("--no-defaults")
            .arg(format!("--datadir={}", data.display()))
            .arg(format!("--tmpdir={}", tmp.display()))
            .args(["--auth-root-authentication-method=socket", "--skip-test-db"]);
        if user.is_some() {
            install.arg("--user=mysql");
        }
        let installed = install.stdin(Stdio::null()).output()?;
        if !installed.status.success() {
            return Err(io::Error::other(format!(
                "mariadb-install-db failed: {}",
                String::from_utf8_lossy(&installed.stderr).trim()
            )));
        }
        let log = std::fs::File::create(dir.join("mariadbd.log"))?;
        let mut server = command(Path::new("/usr/sbin/mariadbd"), None);
        server
            .arg("--no-defaults")
            .arg(format!("--datadir={}", data.display()))
            .arg(format!("--tmpdir={}", tmp.display()))
            .arg(format!("--socket={}", dir.join("mysql.sock").display()))
            .arg(format!("--pid-file={}", dir.join("mariadbd.pid").display()))
            .arg(format!("--port={port}"))
            .arg("--bind-address=127.0.0.1")
            // Logins from 127.0.0.1 are that host, not `localhost`.
            .arg("--skip-name-resolve")
            .arg("--log-bin=binlog")
            .arg("--binlog-format=ROW")
            .arg(format!("--server-id={server_id}"));
        if user.is_some() {
            server.arg("--user=mysql");
        }
        for (key, value) in settings {
            server.arg(format!("--{key}={value}"));
        }
        let child = server
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()?;
        let mut server = LocalMariadb {
            dir: dir.to_owned(),
            port,
            child: Some(child),
        };
        let deadline = Instant::now() + START_TIMEOUT;
        loop {
            if let Some(child) = server.child.as_mut()
                && let Some(status) = child.try_wait()?
            {
                let log = std::fs::read_to_string(dir.join("mariadbd.log")).unwrap_or_default();
                return Err(io::Error::other(format!(
                    "mariadbd exited ({status}): {}",
                    log.trim()
                )));
            }
            if server.sql("SELECT 1").is_ok() {
                break;
            }
            if Instant::now() >= deadline {
                return Err(io::Error::other(format!(
                    "mariadbd on port {port} did not accept connections within {}s",
                    START_TIMEOUT.as_secs()
                )));
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        let quoted = password.replace('\\', "\\\\").replace('\'', "\\'");
        server.sql_script(&format!(
            "CREATE USER '{MARIADB_SUPERUSER}'@'127.0.0.1' IDENTIFIED BY '{quoted}'; \
             GRANT ALL ON *.* TO '{MARIADB_SUPERUSER}'@'127.0.0.1' WITH GRANT OPTION"
        ))?;
        Ok(server)
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// Database `database` on this server as `user` with `password`.
    pub fn server(&self, database: &str, user: &str, password: Option<&str>) -> Server {
        Server {
            host: "127.0.0.1".into(),
            port: self.port,
            database: database.into(),
            user: user.into(),
            password: password.map(Password::new),
        }
    }

    /// Runs `sql` with the `mariadb` client as root over the server's own
    /// socket (root logs in by its Unix identity there, so no password is
    /// handed to it); the output, tab-separated and without headers.
    pub fn sql(&self, sql: &str) -> io::Result<String> {
        let out = self
            .client()
            .args(["-u", "root", "-N", "-B", "-e", sql])
            .stdin(Stdio::null())
            .output()?;
        if !out.status.success() {
            return Err(io::Error::other(format!(
                "mariadb: {}",
                String::from_utf8_lossy(&out.stderr).trim()
            )));
        }
        Ok(String::from_utf8_lossy(&out.stdout).trim().to_owned())
    }

    /// Runs `sql` like [`LocalMariadb::sql`], the statements given on the
    /// client's stdin rather than its command line (where any process
    /// could read them): for statements that hold a password.
    pub fn sql_script(&self, sql: &str) -> io::Result<()> {
        let mut child = self
            .client()
            .args(["-u", "root"])
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()?;
        finish_script(&mut child, sql, "mariadb")
    }

    /// The `mariadb` client on `database` reading statements from its
    /// stdin (piped): one connection for a stream of statements, e.g. a
    /// writer.
    pub fn session(&self, database: &str) -> io::Result<Child> {
        self.client()
            .args(["-u", "root", "-D", database])
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
    }

    /// A `mariadb` client command on the server's socket (no options yet
    /// but where to connect).
    pub fn client(&self) -> Command {
        let mut client = command(Path::new("/usr/bin/mariadb"), None);
        client.arg("--no-defaults").arg(format!(
            "--socket={}",
            self.dir.join("mysql.sock").display()
        ));
        client
    }

    /// A command of the server's package (`mariadb-dump`), on the server's
    /// socket as root.
    pub fn tool(&self, program: &str) -> Command {
        let mut tool = command(&Path::new("/usr/bin").join(program), None);
        tool.arg("--no-defaults")
            .arg(format!(
                "--socket={}",
                self.dir.join("mysql.sock").display()
            ))
            .args(["-u", "root"]);
        tool
    }

    /// Stops the server now and waits for it (also done on drop).
    pub fn stop(&mut self) {
        let Some(mut child) = self.child.take() else {
            return;
        };
        let _ = self
            .tool("mariadb-admin")
            .arg("shutdown")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
        reap(&mut child, Duration::from_secs(20));
    }
}

impl Drop for LocalMariadb {
    fn drop(&mut self) {
        self.stop();
    }
}
