//! Opening a state file for writing: a new one is created atomically, an
//! existing one is refused when it is not a cutover state file or when a
//! bounded integrity check finds it damaged, and only then migrated.

use crate::{CURRENT_VERSION, Result, Store, StoreError, schema};
use rusqlite::{Connection, ErrorCode, OpenFlags};
use std::io::Read;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// How long a connection waits for another process's write lock.
pub(crate) const BUSY_TIMEOUT: Duration = Duration::from_secs(10);

/// The page cache of the engine's connection, in KiB (`PRAGMA cache_size`
/// takes a negative number for KiB): room for the whole state file of a
/// 10,000-step run.
const PAGE_CACHE_KIB: i64 = -65_536;

/// `PRAGMA quick_check` stops after reporting this many problems: a badly
/// damaged file is refused as fast as a slightly damaged one.
const QUICK_CHECK_LIMIT: u32 = 10;

/// The tables every cutover state file has, from schema version 1 on.
const TABLES: [&str; 6] = [
    "runs",
    "steps",
    "events",
    "evidence",
    "confirmations",
    "lock",
];

/// The first 16 bytes of every SQLite database file.
const SQLITE_MAGIC: &[u8; 16] = b"SQLite format 3\0";

/// Opens the state file at `path`, creating it when there is none.
pub(crate) fn open_or_create(path: &Path) -> Result<Store> {
    match std::fs::metadata(path) {
        Ok(_) => open_checked(path),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => create(path),
        Err(source) => Err(StoreError::Io {
            path: path.to_owned(),
            source,
        }),
    }
}

/// Opens an existing state file: refuses what is not a cutover state file
/// or is damaged, then migrates it forward.
pub(crate) fn open_checked(path: &Path) -> Result<Store> {
    check_header(path)?;
    open_and_check(path).map_err(|e| classify(path, e))
}

fn open_and_check(path: &Path) -> Result<Store> {
    // Never SQLITE_OPEN_CREATE: the file exists, and if it vanished
    // meanwhile, an empty one must not take its place.
    let conn = Connection::open_with_flags(
        path,
        OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )
    .map_err(|source| StoreError::Sqlite {
        path: path.to_owned(),
        source,
    })?;
    let store = Store {
        conn,
        path: path.to_owned(),
    };
    store.sql(|c| c.busy_timeout(BUSY_TIMEOUT))?;
    quick_check(&store)?;
    check_schema(&store)?;
    store.sql(|c| {
        c.pragma_update(None, "journal_mode", "WAL")?;
        c.pragma_update(None, "synchronous", "FULL")?;
        // The event log's step index takes inserts all over it; with
        // SQLite's default 2 MiB page cache a run of thousands of steps
        // rereads index pages from the OS on every commit.
        c.pragma_update(None, "cache_size", PAGE_CACHE_KIB)?;
        c.pragma_update(None, "foreign_keys", "ON")
    })?;
    schema::migrate(&store)?;
    Ok(store)
}

/// An empty file, or one that is not SQLite, is refused before SQLite
/// sees it.
fn check_header(path: &Path) -> Result<()> {
    let io = |source| StoreError::Io {
        path: path.to_owned(),
        source,
    };
    let mut file = std::fs::File::open(path).map_err(io)?;
    let len = file.metadata().map_err(io)?.len();
    if len == 0 {
        return Err(not_a_state_file(path, "the file is empty"));
    }
    let mut magic = [0u8; 16];
    match file.read_exact(&mut magic) {
        Ok(()) if &magic == SQLITE_MAGIC => Ok(()),
        Ok(()) => Err(not_a_state_file(path, "not an SQLite database")),
        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => {
            Err(not_a_state_file(path, "not an SQLite database"))
        }
        Err(e) => Err(io(e)),
    }
}

fn not_a_state_file(path: &Path, reason: impl Into<String>) -> StoreError {
    StoreError::NotAStateFile {
        path: path.to_owned(),
        reason: reason.into(),
    }
}

/// `PRAGMA quick_check`, bounded: the b-trees and pages of every table are
/// walked (not the agreement of indexes with their tables, which
/// `integrity_check` adds at a much higher price).
fn quick_check(store: &Store) -> Result<()> {
    // The problems come as rows; on a broken page SQLite may also end the
    // statement with SQLITE_CORRUPT after them: that is one more problem,
    // not a reason to lose the rows read so far.
    let mut problems: Vec<String> = Vec::new();
    let ended = store.sql(|c| {
        let mut statement = c.prepare(&format!("PRAGMA quick_check({QUICK_CHECK_LIMIT})"))?;
        let mut rows = statement.query([])?;
        loop {
            match rows.next() {
                Ok(Some(row)) => problems.push(row.get(0)?),
                Ok(None) => return Ok(None),
                Err(e) if e.sqlite_error_code() == Some(ErrorCode::DatabaseCorrupt) => {
                    return Ok(Some(e.to_string()));
                }
                Err(e) => return Err(e),
            }
        }
    })?;
    if let Some(ended) = ended {
        problems.push(ended);
    } else if problems.len() == 1 && problems[0] == "ok" {
        return Ok(());
    }
    // Rows may start with the name of the database checked.
    let problems = problems
        .into_iter()
        .map(|p| {
            p.strip_prefix("*** in database main ***")
                .map_or(p.as_str(), str::trim_start)
                .to_owned()
        })
        .filter(|p| !p.is_empty())
        .collect();
    Err(StoreError::Damaged {
        path: store.path.clone(),
        problems,
    })
}

/// A file whose schema is not cutover's is refused; a newer cutover's is
/// refused too (it cannot be migrated back).
fn check_schema(store: &Store) -> Result<()> {
    let (version, tables) = store.sql(|c| {
        let version: i64 = c.query_row("PRAGMA user_version", [], |r| r.get(0))?;
        let tables: Vec<String> = c
            .prepare("SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY name")?
            .query_map([], |r| r.get(0))?
            .collect::<rusqlite::Result<_>>()?;
        Ok((version, tables))
    })?;
    if version > CURRENT_VERSION {
        return Err(StoreError::TooNew {
            path: store.path.clone(),
            found: version,
            supported: CURRENT_VERSION,
        });
    }
    if version == 0 {
        return Err(not_a_state_file(
            &store.path,
            if tables.is_empty() {
                "an SQLite database with no tables and no schema version".to_owned()
            } else {
                format!(
                    "an SQLite database without cutover's schema: schema version 0, tables {}",
                    list(&tables)
                )
            },
        ));
    }
    let missing: Vec<String> = TABLES
        .iter()
        .filter(|t| !tables.iter().any(|have| have == *t))
        .map(|t| (*t).to_owned())
        .collect();
    if !missing.is_empty() {
        return Err(not_a_state_file(
            &store.path,
            format!(
                "schema version {version} but without the table(s) {}",
                list(&missing)
            ),
        ));
    }
    Ok(())
}

fn list(names: &[String]) -> String {
    let mut text = names
        .iter()
        .take(5)
        .map(|n| format!("`{n}`"))
        .collect::<Vec<_>>()
        .join(", ");
    if names.len() > 5 {
        text.push_str(&format!(" and {} more", names.len() - 5));
    }
    text
}

/// What SQLite says about a file that is not a database, or a corrupt
/// one, becomes the typed refusal.
fn classify(path: &Path, err: StoreError) -> StoreError {
    let StoreError::Sqlite { source, .. } = &err else {
        return err;
    };
    match source.sqlite_error_code() {
        Some(ErrorCode::NotADatabase) => not_a_state_file(path, "not an SQLite database"),
        Some(ErrorCode::DatabaseCorrupt) => StoreError::Damaged {
            path: path.to_owned(),
            problems: vec![source.to_string()],
        },
        _ => err,
    }
}

/// Creates a new state file at `path`: built and migrated under a
/// temporary name in the same folder, fsynced, then linked into place
/// (which fails rather than replace a file another process put there
/// meanwhile; that file is opened instead).
fn create(path: &Path) -> Result<Store> {
    let create_error = |source| StoreError::Create {
        path: path.to_owned(),
        source,
    };
    let temp = TempFile(temp_name(path)?);
    build(&temp.0)?;
    std::fs::File::open(&temp.0)
        .and_then(|f| f.sync_all())
        .map_err(create_error)?;
    match std::fs::hard_link(&temp.0, path) {
        Ok(()) => sync_folder(path),
        // Another process created it first: its file is complete (it was
        // moved into place only once migrated), so it is the one to open.
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
        Err(e) => return Err(create_error(e)),
    }
    drop(temp);
    open_checked(path)
}

/// A hidden name beside `path`, unique to this process and instant.
fn temp_name(path: &Path) -> Result<PathBuf> {
    let Some(name) = path.file_name() else {
        return Err(StoreError::Invalid(format!(
            "state file {} has no file name",
            path.display()
        )));
    };
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    let temp = format!(
        ".{}.creating-{}-{nanos}",
        name.to_string_lossy(),
        std::process::id()
    );
    Ok(path.with_file_name(temp))
}

/// A new, migrated, closed state file at `temp` (in WAL mode: the header
/// says so, so no later open has to switch it).
fn build(temp: &Path) -> Result<()> {
    // create_new: never reuse a file that happens to be there.
    std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(temp)
        .map_err(|source| StoreError::Create {
            path: temp.to_owned(),
            source,
        })?;
    let conn = Connection::open_with_flags(
        temp,
        OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )
    .map_err(|source| StoreError::Sqlite {
        path: temp.to_owned(),
        source,
    })?;
    let store = Store {
        conn,
        path: temp.to_owned(),
    };
    store.sql(|c| {
        c.busy_timeout(BUSY_TIMEOUT)?;
        c.pragma_update(None, "journal_mode", "WAL")?;
        c.pragma_update(None, "synchronous", "FULL")
    })?;
    schema::migrate(&store)?;
    // Closing the only connection checkpoints the WAL into the file and
    // removes it: the file alone holds the schema.
    let Store { conn, path } = store;
    conn.close()
        .map_err(|(_, source)| StoreError::Sqlite { path, source })
}

/// The folder's entry for the new file survives a crash (best effort: not
/// every file system can fsync a folder).
fn sync_folder(path: &Path) {
    let folder = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    if let Ok(dir) = std::fs::File::open(folder) {
        let _ = dir.sync_all();
    }
}

/// The temporary name of a file being created, removed (with any WAL and
/// shared-memory files SQLite left beside it) when dropped.
struct TempFile(PathBuf);

impl Drop for TempFile {
    fn drop(&mut self) {
        for suffix in ["", "-wal", "-shm", "-journal"] {
            let mut name = self.0.clone().into_os_string();
            name.push(suffix);
            let _ = std::fs::remove_file(PathBuf::from(name));
        }
    }
}
