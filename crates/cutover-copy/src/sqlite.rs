//! SQLite: a consistent online snapshot of a live database, and per-table
//! checksums that show two databases hold the same rows.
//!
//! The snapshot uses the backup API in small steps (other connections keep
//! writing meanwhile); when writers keep restarting it, `VACUUM INTO` takes
//! the copy in one read transaction instead. The snapshot is an ordinary file
//! that the image copy moves and swaps in atomically.

use std::fs;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use rusqlite::backup::{Backup, StepResult};
use rusqlite::types::ValueRef;
use rusqlite::{Connection, OpenFlags};

use crate::blocks::hex;
use crate::error::{CopyError, ErrorKind};

/// Pages copied per backup step.
const STEP_PAGES: i32 = 1024;
/// Backup restarts (caused by concurrent writers) tolerated before falling back.
const MAX_RESTARTS: u32 = 8;
/// Time the stepwise backup may take before falling back.
const BACKUP_BUDGET: Duration = Duration::from_secs(30);

/// Row count and content checksum of one table.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct TableChecksum {
    pub name: String,
    pub rows: u64,
    /// blake3 (hex) over the rows in primary-key (or rowid) order.
    pub checksum: String,
}

/// How a snapshot was taken.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SnapshotMethod {
    Backup,
    VacuumInto,
}

impl std::fmt::Display for SnapshotMethod {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            SnapshotMethod::Backup => "backup",
            SnapshotMethod::VacuumInto => "vacuum-into",
        })
    }
}

fn open_existing(db: &Path) -> Result<Connection, CopyError> {
    let meta = fs::metadata(db).map_err(|e| CopyError::io("opening database", db, e))?;
    if !meta.is_file() {
        return Err(CopyError::new(
            ErrorKind::InvalidInput,
            format!("database {} is not a regular file", db.display()),
        ));
    }
    let conn = Connection::open_with_flags(
        db,
        OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )
    .map_err(|e| CopyError::from(e).context(&format!("opening database {}", db.display())))?;
    conn.busy_timeout(Duration::from_secs(5))?;
    Ok(conn)
}

/// Takes a consistent snapshot of `db` (which may be in use) into `out`.
pub fn snapshot(db: &Path, out: &Path) -> Result<SnapshotMethod, CopyError> {
    let source = open_existing(db)?;
    let _ = fs::remove_file(out);
    let context =
        |e: rusqlite::Error| CopyError::from(e).context(&format!("snapshot of {}", db.display()));
    let completed = {
        let mut target = Connection::open(out).map_err(context)?;
        let backup = Backup::new(&source, &mut target).map_err(context)?;
        let started = Instant::now();
        let mut restarts = 0;
        let mut last_remaining = i32::MAX;
        loop {
            match backup.step(STEP_PAGES).map_err(context)? {
                StepResult::Done => break true,
                StepResult::More => {}
                _ => std::thread::sleep(Duration::from_millis(5)),
            }
            let remaining = backup.progress().remaining;
            if remaining > last_remaining {
                restarts += 1;
            }
            last_remaining = remaining;
            if restarts > MAX_RESTARTS || started.elapsed() > BACKUP_BUDGET {
                break false;
            }
        }
    };
    if completed {
        return Ok(SnapshotMethod::Backup);
    }
    fs::remove_file(out).map_err(|e| CopyError::io("removing", out, e))?;
    let target = out.to_str().ok_or_else(|| {
        CopyError::new(
            ErrorKind::InvalidInput,
            format!("{} is not UTF-8", out.display()),
        )
    })?;
    source
        .execute("VACUUM INTO ?1", [target])
        .map_err(context)?;
    Ok(SnapshotMethod::VacuumInto)
}

fn quote(identifier: &str) -> String {
    format!("\"{}\"", identifier.replace('"', "\"\""))
}

/// Row counts and content checksums of every table of `db`, by name.
pub fn table_checksums(db: &Path) -> Result<Vec<TableChecksum>, CopyError> {
    let conn = open_existing(db)?;
    let context =
        |e: rusqlite::Error| CopyError::from(e).context(&format!("checksums of {}", db.display()));
    let tx = conn.unchecked_transaction().map_err(context)?;
    let names: Vec<String> = {
        let mut stmt = tx
            .prepare("SELECT name FROM sqlite_schema WHERE type = 'table' AND name NOT LIKE 'sqlite_%' AND sql NOT LIKE 'CREATE VIRTUAL%' ORDER BY name")
            .map_err(context)?;
        stmt.query_map([], |row| row.get(0))
            .map_err(context)?
            .collect::<Result<_, _>>()
            .map_err(context)?
    };
    let mut tables = Vec::new();
    for name in names {
        let key_columns: Vec<String> = {
            let mut stmt = tx
                .prepare("SELECT name FROM pragma_table_info(?1) WHERE pk > 0 ORDER BY pk")
                .map_err(context)?;
            stmt.query_map([&name], |row| row.get(0))
                .map_err(context)?
                .collect::<Result<_, _>>()
                .map_err(context)?
        };
        let order = if key_columns.is_empty() {
            "rowid".to_string()
        } else {
            key_columns
                .iter()
                .map(|c| quote(c))
                .collect::<Vec<_>>()
                .join(", ")
        };
        let mut stmt = tx
            .prepare(&format!("SELECT * FROM {} ORDER BY {order}", quote(&name)))
            .map_err(context)?;
        let columns = stmt.column_count();
        let mut hasher = blake3::Hasher::new();
        hasher.update(name.as_bytes());
        hasher.update(&(columns as u64).to_le_bytes());
        let mut rows = 0u64;
        let mut cursor = stmt.query([]).map_err(context)?;
        while let Some(row) = cursor.next().map_err(context)? {
            rows += 1;
            for i in 0..columns {
                match row.get_ref(i).map_err(context)? {
                    ValueRef::Null => hasher.update(&[0]),
                    ValueRef::Integer(v) => hasher.update(&[1]).update(&v.to_le_bytes()),
                    ValueRef::Real(v) => hasher.update(&[2]).update(&v.to_bits().to_le_bytes()),
                    ValueRef::Text(v) => hasher
                        .update(&[3])
                        .update(&(v.len() as u64).to_le_bytes())
                        .update(v),
                    ValueRef::Blob(v) => hasher
                        .update(&[4])
                        .update(&(v.len() as u64).to_le_bytes())
                        .update(v),
                };
            }
        }
        tables.push(TableChecksum {
            name,
            rows,
            checksum: hex(hasher.finalize().as_bytes()),
        });
    }
    Ok(tables)
}

fn companion(db: &Path, suffix: &str) -> PathBuf {
    let mut name = db.as_os_str().to_owned();
    name.push(suffix);
    PathBuf::from(name)
}

/// Before a new file replaces database `db`: folds a leftover write-ahead
/// log or hot journal into the old file, so no stale log outlives the swap.
pub fn settle_destination(db: &Path) -> Result<(), CopyError> {
    let wal = companion(db, "-wal");
    let journal = companion(db, "-journal");
    if !db.exists() || (!wal.exists() && !journal.exists()) {
        return Ok(());
    }
    let context = |e: rusqlite::Error| {
        CopyError::from(e).context(&format!("settling destination database {}", db.display()))
    };
    let conn = Connection::open(db).map_err(context)?;
    conn.busy_timeout(Duration::from_secs(5)).map_err(context)?;
    // Reading rolls back a hot journal; the checkpoint empties the log.
    conn.query_row("SELECT count(*) FROM sqlite_schema", [], |_| Ok(()))
        .map_err(context)?;
    conn.query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |_| Ok(()))
        .map_err(context)?;
    Ok(())
}

/// After the swap: removes the old file's (now empty) log and shared-memory
/// index, which belong to the file that was replaced.
pub fn remove_stale_companions(db: &Path) -> Result<(), CopyError> {
    for suffix in ["-wal", "-shm"] {
        let path = companion(db, suffix);
        match fs::remove_file(&path) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(CopyError::io("removing", &path, e)),
        }
    }
    Ok(())
}
