//! The lab's database servers: for each PostgreSQL or MariaDB server a runbook's `db.sync`
//! names, a real one from the system's packages (`cutover_db::local`: its own data folder in
//! the lab, run as the package's user when the lab runs as root), listening at the host's
//! lab address and the runbook's port, inside the host's network namespace when the lab has
//! them. Each login the runbook names is made with the password its reference points to
//! (a `file:` that does not exist yet gets a fresh random one, mode 0600; an `env:` must be
//! set in the lab's environment); the password goes to the server on the client's stdin,
//! never on a command line, and is never printed. A source database is filled with rows, and
//! a writer stands for its application: it keeps writing until the runbook's freeze step is
//! done (or skipped) in the lab's run, read from the run's state file, as the application
//! would go read-only at that gate. Stopping the lab stops the servers and removes their
//! data; a lab killed before that leaves folders `remove_leftovers` cleans up.

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::process::Child;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use cutover_db::local::{LocalMariadb, LocalPostgres};
use cutover_lang::{SecretRef, ServerEngine};
use serde::{Deserialize, Serialize};

use crate::blueprint::{DbServerBlueprint, SeedBlueprint};
use crate::error::LabError;

/// The folder, inside the lab's internal folder, of the servers' data.
pub const DATABASES_DIR: &str = "databases";
/// How many statements a second a writer sends (each an insert and an update).
pub const WRITES_PER_SECOND: u64 = 20;
/// About how many bytes of table data one generated row holds.
const ROW_BYTES: u64 = 320;
/// How often a writer reads whether its freeze step is done.
const FREEZE_POLL: Duration = Duration::from_millis(250);

/// A lab database server, for the manifest.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DbServerInfo {
    /// `postgres` or `mysql` (MariaDB).
    pub engine: String,
    pub host: String,
    pub addr: IpAddr,
    pub port: u16,
    pub databases: Vec<String>,
    /// The users made, by name (their passwords are where the runbook points).
    pub users: Vec<String>,
    /// Databases filled with rows: `name (N rows)`.
    pub seeded: Vec<String>,
    /// The freeze steps that stop this server's writers.
    pub writers_until: Vec<String>,
    /// The server's data folder (removed when the lab stops).
    pub data: PathBuf,
}

/// One running server.
enum Local {
    Postgres(LocalPostgres),
    Mariadb(LocalMariadb),
}

/// The lab's running servers and their writers; stops them when dropped.
pub(crate) struct Servers {
    servers: Vec<(Local, PathBuf)>,
    writers: Vec<Writer>,
}

impl Drop for Servers {
    fn drop(&mut self) {
        for writer in &mut self.writers {
            writer.stop();
        }
        for (server, folder) in self.servers.drain(..) {
            drop(server);
            let _ = std::fs::remove_dir_all(&folder);
        }
    }
}

/// What a writer needs to know whether the run has passed its freeze step.
#[derive(Clone)]
pub(crate) struct FreezeWatch {
    /// The run's state file.
    pub state: PathBuf,
    /// Runs that began before this are an earlier lab's.
    pub since: DateTime<Utc>,
}

impl FreezeWatch {
    /// Whether one of `steps` is done or skipped in the latest run begun since the lab.
    fn frozen(&self, steps: &[String]) -> bool {
        let Ok(store) = cutover_store::Store::open_read_only(&self.state) else {
            return false;
        };
        store
            .read(|tx| {
                let Some(run) = tx.latest_run()? else {
                    return Ok::<bool, cutover_store::StoreError>(false);
                };
                if run.started_at < self.since {
                    return Ok(false);
                }
                for step in steps {
                    if let Some(record) = tx.step(run.id, step)?
                        && matches!(
                            record.status,
                            cutover_store::StepStatus::Done | cutover_store::StepStatus::Skipped
                        )
                    {
                        return Ok(true);
                    }
                }
                Ok(false)
            })
            .unwrap_or(false)
    }
}

/// Starts every server of `blueprints` (in `namespace_of`'s namespace for its address, where
/// there is one), makes its logins and databases, seeds the sources and starts their writers.
/// Servers an earlier lab left are removed first.
pub(crate) fn start(
    blueprints: &[DbServerBlueprint],
    internal: &Path,
    watch: &FreezeWatch,
    namespaces: &BTreeMap<IpAddr, String>,
) -> Result<(Servers, Vec<DbServerInfo>), LabError> {
    let mut servers = Servers {
        servers: Vec::new(),
        writers: Vec::new(),
    };
    let mut infos = Vec::new();
    if blueprints.is_empty() {
        return Ok((servers, infos));
    }
    remove_leftovers(internal)?;
    let root = internal.join(DATABASES_DIR);
    std::fs::create_dir_all(&root).map_err(|err| LabError::io("cannot create", &root, err))?;
    // The servers' users must reach their folders.
    set_mode(&root, 0o755)?;
    // Started side by side: each takes seconds to initialise.
    let started: Vec<_> = blueprints
        .iter()
        .enumerate()
        .map(|(index, blueprint)| {
            let folder = root.join(format!("{}-{}", blueprint.host, blueprint.port));
            let blueprint = blueprint.clone();
            let namespace = namespaces.get(&blueprint.addr).cloned();
            let server_id = u32::try_from(index + 1).unwrap_or(u32::MAX);
            std::thread::Builder::new()
                .name(format!("lab db {}", blueprint.host))
                .spawn(move || {
                    if let Some(namespace) = &namespace {
                        enter_namespace(namespace)?;
                    }
                    start_one(&blueprint, &folder, server_id)
                        .map(|(local, seeded)| (local, folder, seeded))
                })
                .map_err(|err| LabError::Process(format!("cannot start a thread: {err}")))
        })
        .collect();
    let mut first_error = None;
    let mut results = Vec::new();
    for (thread, blueprint) in started.into_iter().zip(blueprints) {
        let result = thread.and_then(|thread| {
            thread.join().map_err(|_| {
                LabError::Process(format!(
                    "starting {}'s database server failed",
                    blueprint.host
                ))
            })?
        });
        match result {
            Ok(started) => results.push((started, blueprint)),
            Err(err) => {
                first_error.get_or_insert(err);
            }
        }
    }
    for ((local, folder, seeded), blueprint) in results {
        for seed in &blueprint.seeded {
            if !seed.freeze.is_empty() {
                servers
                    .writers
                    .push(Writer::start(&local, blueprint, seed, watch.clone())?);
            }
        }
        infos.push(DbServerInfo {
            engine: blueprint.engine.as_str().to_string(),
            host: blueprint.host.clone(),
            addr: blueprint.addr,
            port: blueprint.port,
            databases: blueprint.databases.iter().cloned().collect(),
            users: blueprint.logins.iter().map(|(u, _)| u.clone()).collect(),
            seeded,
            writers_until: blueprint
                .seeded
                .iter()
                .flat_map(|s| s.freeze.iter().cloned())
                .collect(),
            data: folder.clone(),
        });
        servers.servers.push((local, folder));
    }
    match first_error {
        Some(err) => Err(err),
        None => Ok((servers, infos)),
    }
}

/// Moves this thread into network namespace `namespace` (a name under `/run/netns`): the
/// servers it starts then live there.
fn enter_namespace(namespace: &str) -> Result<(), LabError> {
    use std::os::fd::AsFd;
    let path = Path::new("/run/netns").join(namespace);
    let file = std::fs::File::open(&path).map_err(|err| LabError::io("cannot open", &path, err))?;
    rustix::thread::move_into_link_name_space(
        file.as_fd(),
        Some(rustix::thread::LinkNameSpaceType::Network),
    )
    .map_err(|err| {
        LabError::Process(format!(
            "cannot enter namespace {namespace}: {}",
            std::io::Error::from(err)
        ))
    })
}

fn set_mode(path: &Path, mode: u32) -> Result<(), LabError> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))
        .map_err(|err| LabError::io("cannot set the mode of", path, err))
}

/// A password as the runbook points to it; a `file:` that does not exist gets a fresh one.
fn password(host: &str, user: &str, secret: &SecretRef) -> Result<String, LabError> {
    match secret {
        SecretRef::Env(var) => std::env::var(var).map_err(|_| {
            LabError::Unsupported(format!(
                "{host}: the password of user `{user}` is read from ${var}, which is not set in the lab's environment; set it before `cutover lab up` (and for `cutover run`)"
            ))
        }),
        SecretRef::File(path) => {
            if !path.exists() {
                write_new_password(path)?;
            }
            let text = std::fs::read_to_string(path)
                .map_err(|err| LabError::io("cannot read password file", path, err))?;
            let text = text.trim_end_matches(['\n', '\r']).to_string();
            if text.is_empty() {
                return Err(LabError::Unsupported(format!(
                    "{}: the password file is empty",
                    path.display()
                )));
            }
            Ok(text)
        }
    }
}

fn random_hex(bytes: usize) -> Result<String, LabError> {
    let mut random = vec![0u8; bytes];
    std::fs::File::open("/dev/urandom")
        .and_then(|mut source| source.read_exact(&mut random))
        .map_err(|err| LabError::io("cannot read random bytes from", "/dev/urandom", err))?;
    Ok(data_encoding::HEXLOWER.encode(&random))
}

/// A fresh random password in `file`, readable by its owner only.
fn write_new_password(file: &Path) -> Result<(), LabError> {
    let secret = random_hex(16)?;
    if let Some(parent) = file.parent() {
        std::fs::create_dir_all(parent)
            .map_err(|err| LabError::io("cannot create", parent, err))?;
    }
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let mut out = options
        .open(file)
        .map_err(|err| LabError::io("cannot create password file", file, err))?;
    out.write_all(format!("{secret}\n").as_bytes())
        .map_err(|err| LabError::io("cannot write password file", file, err))
}

/// `text` as an SQL string literal of `engine` (MariaDB reads backslashes as escapes,
/// PostgreSQL does not).
fn literal(engine: ServerEngine, text: &str) -> String {
    let text = match engine {
        ServerEngine::Postgres => text.to_string(),
        ServerEngine::Mysql => text.replace('\\', "\\\\"),
    };
    format!("'{}'", text.replace('\'', "''"))
}

fn db_err(server: &DbServerBlueprint, what: &str) -> impl Fn(std::io::Error) -> LabError {
    let label = format!(
        "{} server of host {} ({}:{})",
        server.engine.as_str(),
        server.host,
        server.addr,
        server.port
    );
    let what = what.to_string();
    move |err| LabError::Process(format!("{label}: {what}: {err}"))
}

/// Rows to generate for about `size` bytes of table data.
fn rows_for(size: u64) -> u64 {
    (size / ROW_BYTES).max(100)
}

/// Starts one server in `folder` (made afresh) and makes its logins, databases and seeds;
/// returns it and what was seeded.
fn start_one(
    blueprint: &DbServerBlueprint,
    folder: &Path,
    server_id: u32,
) -> Result<(Local, Vec<String>), LabError> {
    match std::fs::remove_dir_all(folder) {
        Ok(()) => {}
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => {}
        Err(err) => return Err(LabError::io("cannot clear", folder, err)),
    }
    std::fs::create_dir_all(folder).map_err(|err| LabError::io("cannot create", folder, err))?;
    let address = blueprint.addr.to_string();
    // The superuser's own password: the lab reaches the server over its socket and never
    // uses it; the runbook's logins get theirs below.
    let internal = random_hex(16)?;
    let mut seeded = Vec::new();
    match blueprint.engine {
        ServerEngine::Postgres => {
            let server = LocalPostgres::start(
                folder,
                blueprint.port,
                &internal,
                &[("listen_addresses", address.as_str())],
            )
            .map_err(db_err(blueprint, "cannot start"))?;
            server
                .allow_any_address()
                .map_err(db_err(blueprint, "cannot allow logins"))?;
            for (user, secret) in &blueprint.logins {
                let password = password(&blueprint.host, user, secret)?;
                let statement = if user == cutover_db::local::SUPERUSER {
                    format!(
                        "ALTER ROLE \"{user}\" PASSWORD {}",
                        literal(ServerEngine::Postgres, &password)
                    )
                } else {
                    format!(
                        "CREATE ROLE \"{user}\" LOGIN SUPERUSER PASSWORD {}",
                        literal(ServerEngine::Postgres, &password)
                    )
                };
                server
                    .psql_script("postgres", &statement)
                    .map_err(db_err(blueprint, &format!("cannot make user `{user}`")))?;
            }
            for database in &blueprint.databases {
                if database != "postgres" {
                    server
                        .psql("postgres", &format!("CREATE DATABASE \"{database}\""))
                        .map_err(db_err(
                            blueprint,
                            &format!("cannot make database {database}"),
                        ))?;
                }
            }
            for seed in &blueprint.seeded {
                let rows = rows_for(seed.size);
                server
                    .psql(&seed.database, &postgres_seed(rows))
                    .map_err(db_err(blueprint, &format!("cannot fill {}", seed.database)))?;
                seeded.push(format!("{} ({rows} rows)", seed.database));
            }
            Ok((Local::Postgres(server), seeded))
        }
        ServerEngine::Mysql => {
            let server = LocalMariadb::start(
                folder,
                blueprint.port,
                server_id,
                &internal,
                &[("bind-address", address.as_str())],
            )
            .map_err(db_err(blueprint, "cannot start"))?;
            for (user, secret) in &blueprint.logins {
                let password = literal(
                    ServerEngine::Mysql,
                    &password(&blueprint.host, user, secret)?,
                );
                server
                    .sql_script(&format!(
                        "CREATE USER IF NOT EXISTS '{user}'@'%' IDENTIFIED BY {password}; \
                         ALTER USER '{user}'@'%' IDENTIFIED BY {password}; \
                         GRANT ALL ON *.* TO '{user}'@'%' WITH GRANT OPTION;"
                    ))
                    .map_err(db_err(blueprint, &format!("cannot make user `{user}`")))?;
            }
            for database in &blueprint.databases {
                server
                    .sql(&format!("CREATE DATABASE IF NOT EXISTS `{database}`"))
                    .map_err(db_err(
                        blueprint,
                        &format!("cannot make database {database}"),
                    ))?;
            }
            for seed in &blueprint.seeded {
                let rows = rows_for(seed.size);
                server
                    .sql(&format!("USE `{}`; {}", seed.database, mariadb_seed(rows)))
                    .map_err(db_err(blueprint, &format!("cannot fill {}", seed.database)))?;
                seeded.push(format!("{} ({rows} rows)", seed.database));
            }
            Ok((Local::Mariadb(server), seeded))
        }
    }
}

/// A wiki's tables: pages (about [`ROW_BYTES`] each) and the edits the writer logs.
fn postgres_seed(rows: u64) -> String {
    format!(
        "CREATE TABLE pages (id bigserial PRIMARY KEY, title text NOT NULL, body text NOT NULL, \
           edits integer NOT NULL DEFAULT 0, touched timestamptz NOT NULL DEFAULT now()); \
         CREATE TABLE edits (id bigserial PRIMARY KEY, page bigint NOT NULL, note text NOT NULL, \
           at timestamptz NOT NULL DEFAULT now()); \
         CREATE INDEX edits_page ON edits (page); \
         INSERT INTO pages (title, body) SELECT 'Page ' || n, repeat(md5(n::text), 8) \
           FROM generate_series(1, {rows}) AS n;"
    )
}

fn mariadb_seed(rows: u64) -> String {
    format!(
        "CREATE TABLE pages (id bigint AUTO_INCREMENT PRIMARY KEY, title varchar(255) NOT NULL, \
           body text NOT NULL, edits int NOT NULL DEFAULT 0, \
           touched timestamp(6) NOT NULL DEFAULT CURRENT_TIMESTAMP(6)) ENGINE=InnoDB; \
         CREATE TABLE edits (id bigint AUTO_INCREMENT PRIMARY KEY, page bigint NOT NULL, \
           note varchar(255) NOT NULL, at timestamp(6) NOT NULL DEFAULT CURRENT_TIMESTAMP(6), \
           KEY edits_page (page)) ENGINE=InnoDB; \
         SET SESSION max_recursive_iterations = {limit}; \
         INSERT INTO pages (title, body) WITH RECURSIVE s(n) AS \
           (SELECT 1 UNION ALL SELECT n + 1 FROM s WHERE n < {rows}) \
           SELECT CONCAT('Page ', n), REPEAT(MD5(n), 8) FROM s;",
        limit = rows + 10
    )
}

/// The application of a source database: an insert and an update at [`WRITES_PER_SECOND`]
/// through one client session, until the freeze step is done.
struct Writer {
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Writer {
    fn start(
        local: &Local,
        blueprint: &DbServerBlueprint,
        seed: &SeedBlueprint,
        watch: FreezeWatch,
    ) -> Result<Writer, LabError> {
        let rows = rows_for(seed.size);
        let session: Child = match local {
            Local::Postgres(server) => server.psql_session(&seed.database),
            Local::Mariadb(server) => server.session(&seed.database),
        }
        .map_err(db_err(blueprint, "cannot start the writer"))?;
        let stop = Arc::new(AtomicBool::new(false));
        let label = format!("{}/{}", blueprint.host, seed.database);
        let freeze = seed.freeze.clone();
        let stopping = stop.clone();
        let thread = std::thread::Builder::new()
            .name(format!("lab writer {label}"))
            .spawn(move || write_until_frozen(session, rows, &label, &freeze, &watch, &stopping))
            .map_err(|err| LabError::Process(format!("cannot start a thread: {err}")))?;
        Ok(Writer {
            stop,
            thread: Some(thread),
        })
    }

    fn stop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

fn write_until_frozen(
    mut session: Child,
    rows: u64,
    label: &str,
    freeze: &[String],
    watch: &FreezeWatch,
    stop: &AtomicBool,
) {
    let written = AtomicU64::new(0);
    let Some(mut stdin) = session.stdin.take() else {
        return;
    };
    let started = Instant::now();
    let mut checked = Instant::now();
    let mut why = "the lab stopped";
    while !stop.load(Ordering::SeqCst) {
        if checked.elapsed() >= FREEZE_POLL {
            checked = Instant::now();
            if watch.frozen(freeze) {
                why = "its freeze step is done";
                break;
            }
        }
        let n = written.load(Ordering::SeqCst);
        let page = n % rows + 1;
        let statement = format!(
            "INSERT INTO edits (page, note) VALUES ({page}, 'edit {n}'); \
             UPDATE pages SET edits = edits + 1, body = CONCAT('edited ', {n}, ' ', title) WHERE id = {page};\n"
        );
        if stdin.write_all(statement.as_bytes()).is_err() {
            why = "its session ended";
            break;
        }
        let n = written.fetch_add(1, Ordering::SeqCst) + 1;
        let due = started + Duration::from_micros(n * 1_000_000 / WRITES_PER_SECOND);
        if let Some(wait) = due.checked_duration_since(Instant::now()) {
            std::thread::sleep(wait.min(FREEZE_POLL));
        }
    }
    drop(stdin);
    // The client runs what it was sent, then exits.
    let deadline = Instant::now() + Duration::from_secs(30);
    while Instant::now() < deadline {
        if let Ok(Some(_)) = session.try_wait() {
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    if !matches!(session.try_wait(), Ok(Some(_))) {
        let _ = session.kill();
        let _ = session.wait();
    }
    eprintln!(
        "lab writer {label}: stopped after {} writes: {why}",
        written.load(Ordering::SeqCst)
    );
}

/// Stops the servers a lab killed before its end left in `internal`, and removes their data.
pub fn remove_leftovers(internal: &Path) -> Result<(), LabError> {
    let root = internal.join(DATABASES_DIR);
    let entries = match std::fs::read_dir(&root) {
        Ok(entries) => entries,
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(err) => return Err(LabError::io("cannot read", &root, err)),
    };
    for entry in entries.flatten() {
        let folder = entry.path();
        for pid_file in [
            folder.join("pgdata/postmaster.pid"),
            folder.join("mariadbd.pid"),
        ] {
            let Ok(text) = std::fs::read_to_string(&pid_file) else {
                continue;
            };
            let pid = text
                .lines()
                .next()
                .and_then(|l| l.trim().parse::<i32>().ok());
            // Only a database server: the number may be another process's by now.
            let is_server = pid.is_some_and(|pid| {
                std::fs::read(format!("/proc/{pid}/cmdline")).is_ok_and(|cmdline| {
                    let cmdline = String::from_utf8_lossy(&cmdline);
                    cmdline.contains("postgres") || cmdline.contains("mariadbd")
                })
            });
            if let Some(pid) = pid
                .filter(|_| is_server)
                .and_then(rustix::process::Pid::from_raw)
            {
                let _ = rustix::process::kill_process(pid, rustix::process::Signal::KILL);
                let deadline = Instant::now() + Duration::from_secs(5);
                while Path::new(&format!("/proc/{}", pid.as_raw_nonzero())).exists()
                    && Instant::now() < deadline
                {
                    std::thread::sleep(Duration::from_millis(50));
                }
            }
        }
        std::fs::remove_dir_all(&folder)
            .map_err(|err| LabError::io("cannot remove", &folder, err))?;
    }
    let _ = std::fs::remove_dir(&root);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_missing_password_file_is_made_private_and_read_back() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("secrets/db.pw");
        let secret = SecretRef::File(file.clone());
        let first = password("db", "wiki", &secret).unwrap();
        assert_eq!(first.len(), 32);
        let mode = std::os::unix::fs::PermissionsExt::mode(
            &std::fs::metadata(&file).unwrap().permissions(),
        );
        assert_eq!(mode & 0o077, 0, "the password file is private");
        assert_eq!(password("db", "wiki", &secret).unwrap(), first);
        let err = password(
            "db",
            "wiki",
            &SecretRef::Env("CUTOVER_LAB_TEST_UNSET_PW".into()),
        )
        .unwrap_err();
        assert!(
            err.to_string().contains("$CUTOVER_LAB_TEST_UNSET_PW"),
            "{err}"
        );
    }

    #[test]
    fn literals_cannot_end_early() {
        assert_eq!(literal(ServerEngine::Postgres, "it's"), "'it''s'");
        assert_eq!(literal(ServerEngine::Postgres, "a\\b"), "'a\\b'");
        assert_eq!(literal(ServerEngine::Mysql, "a\\'b"), "'a\\\\''b'");
    }

    #[test]
    fn a_killed_lab_s_server_folders_are_removed() {
        let dir = tempfile::tempdir().unwrap();
        let folder = dir.path().join(DATABASES_DIR).join("db-3306");
        std::fs::create_dir_all(folder.join("data")).unwrap();
        std::fs::write(folder.join("mariadbd.pid"), "999999999\n").unwrap();
        remove_leftovers(dir.path()).unwrap();
        assert!(!dir.path().join(DATABASES_DIR).exists());
    }
}
