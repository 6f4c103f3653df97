//! SQLite: a consistent online snapshot of a live database, and per-table
//! checksums that show two databases hold the same rows.
//!
//! The snapshot uses the backup API in small steps (other connections keep
//! writing meanwhile); when writers keep restarting it, `VACUUM INTO` takes
//! the copy in one read transaction instead. The snapshot is an ordinary file
//! that the image copy moves and swaps in atomically.
//!
//! SQLite opens a database, and the log, index and journal beside it, by
//! path. Beneath a root that path must not lead elsewhere once checked, so
//! SQLite is given the database's folder held open ([`Folder::held_path`],
//! `/proc/self/fd/N/NAME`) and opens through a VFS of its own: the default
//! one, except that it takes such a path as it is. The default one resolves
//! links in a path itself and opens what they named then, by its path.

use std::ffi::{CStr, OsStr, OsString, c_char, c_int};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use rusqlite::backup::{Backup, StepResult};
use rusqlite::types::ValueRef;
use rusqlite::{Connection, OpenFlags, ffi};

use crate::beneath::{Folder, Kind};
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

/// The name SQLite knows the VFS that opens held paths by.
const HELD_VFS: &CStr = c"cutover-held";

/// Registers the VFS [`HELD_VFS`] once: the default VFS with
/// `xFullPathname` replaced by [`held_full_pathname`].
fn held_vfs() -> Result<&'static CStr, CopyError> {
    static REGISTERED: OnceLock<c_int> = OnceLock::new();
    let rc = *REGISTERED.get_or_init(|| {
        // SAFETY: sqlite3_vfs_find initializes SQLite and returns the
        // default VFS, which lives as long as the process, or null. The copy
        // is leaked so that it lives as long too, as sqlite3_vfs_register
        // requires; its methods are the default VFS's (which take their
        // state from pAppData, copied along) but for xFullPathname.
        unsafe {
            let default = ffi::sqlite3_vfs_find(std::ptr::null());
            if default.is_null() {
                return ffi::SQLITE_ERROR;
            }
            let mut vfs = *default;
            vfs.pNext = std::ptr::null_mut();
            vfs.zName = HELD_VFS.as_ptr();
            vfs.xFullPathname = Some(held_full_pathname);
            ffi::sqlite3_vfs_register(Box::leak(Box::new(vfs)), 0)
        }
    });
    match rc {
        ffi::SQLITE_OK => Ok(HELD_VFS),
        rc => Err(CopyError::new(
            ErrorKind::Sqlite,
            format!("registering the SQLite file system of held folders: error {rc}"),
        )),
    }
}

/// `xFullPathname` of [`HELD_VFS`]: an absolute path as it is, its links
/// left to the kernel when the file is opened. Only held paths, absolute
/// and without `.` or `..`, are opened through this VFS.
///
/// # Safety
/// SQLite calls it with a NUL-terminated `path` and `out` of `size` bytes.
unsafe extern "C" fn held_full_pathname(
    _vfs: *mut ffi::sqlite3_vfs,
    path: *const c_char,
    size: c_int,
    out: *mut c_char,
) -> c_int {
    // SAFETY: as SQLite promises for xFullPathname (above); at most `size`
    // bytes are written to `out`, and the two buffers are SQLite's own,
    // distinct.
    unsafe {
        let path = CStr::from_ptr(path).to_bytes_with_nul();
        if path.first() != Some(&b'/') || path.len() > usize::try_from(size).unwrap_or(0) {
            return ffi::SQLITE_CANTOPEN;
        }
        std::ptr::copy_nonoverlapping(path.as_ptr().cast(), out, path.len());
    }
    ffi::SQLITE_OK
}

/// Opens database `name` in `folder` with `flags` through the folder held,
/// for `what`. SQLite opens the file itself with `O_NOFOLLOW`, so it is
/// never a link.
fn open_held(
    folder: &Folder,
    name: &OsStr,
    flags: OpenFlags,
    what: &str,
) -> Result<Connection, CopyError> {
    let conn = Connection::open_with_flags_and_vfs(
        folder.held_path(name),
        flags | OpenFlags::SQLITE_OPEN_NO_MUTEX,
        held_vfs()?,
    )
    .map_err(|e| {
        CopyError::from(e).context(&format!("{what} {}", folder.path_of(name).display()))
    })?;
    conn.busy_timeout(Duration::from_secs(5))?;
    Ok(conn)
}

fn open_existing(folder: &Folder, name: &OsStr) -> Result<Connection, CopyError> {
    let path = folder.path_of(name);
    match folder
        .kind(name)
        .map_err(|e| CopyError::io("opening database", &path, e))?
    {
        Kind::File => {}
        Kind::Missing => {
            return Err(CopyError::io(
                "opening database",
                &path,
                std::io::ErrorKind::NotFound.into(),
            ));
        }
        Kind::Other => {
            return Err(CopyError::new(
                ErrorKind::InvalidInput,
                format!("database {} is not a regular file", path.display()),
            ));
        }
    }
    open_held(
        folder,
        name,
        OpenFlags::SQLITE_OPEN_READ_ONLY,
        "opening database",
    )
}

/// Takes a consistent snapshot of database `name` in `folder` (which may
/// be in use) into `out` beside it.
pub(crate) fn snapshot(
    folder: &Folder,
    name: &OsStr,
    out: &OsStr,
) -> Result<SnapshotMethod, CopyError> {
    let source = open_existing(folder, name)?;
    let db = folder.path_of(name);
    let out_path = folder.path_of(out);
    let removing = |e| CopyError::io("removing", &out_path, e);
    folder.remove(out).map_err(removing)?;
    let context =
        |e: rusqlite::Error| CopyError::from(e).context(&format!("snapshot of {}", db.display()));
    let completed = {
        let mut target = open_held(
            folder,
            out,
            OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_CREATE,
            "creating snapshot",
        )?;
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
    folder.remove(out).map_err(removing)?;
    // The snapshot is attached by the source's VFS, through the same folder.
    let target = folder.held_path(out);
    let target = target.to_str().ok_or_else(|| {
        CopyError::new(
            ErrorKind::InvalidInput,
            format!("{} is not UTF-8", out_path.display()),
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

/// Row counts and content checksums of every table of database `name` in
/// `folder`, by name.
pub(crate) fn table_checksums(
    folder: &Folder,
    name: &OsStr,
) -> Result<Vec<TableChecksum>, CopyError> {
    let conn = open_existing(folder, name)?;
    let db = folder.path_of(name);
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
    for table in names {
        let key_columns: Vec<String> = {
            let mut stmt = tx
                .prepare("SELECT name FROM pragma_table_info(?1) WHERE pk > 0 ORDER BY pk")
                .map_err(context)?;
            stmt.query_map([&table], |row| row.get(0))
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
            .prepare(&format!("SELECT * FROM {} ORDER BY {order}", quote(&table)))
            .map_err(context)?;
        let columns = stmt.column_count();
        let mut hasher = blake3::Hasher::new();
        hasher.update(table.as_bytes());
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
            name: table,
            rows,
            checksum: hex(hasher.finalize().as_bytes()),
        });
    }
    Ok(tables)
}

/// `NAME` and `suffix`: a companion file SQLite keeps beside database
/// `NAME`.
fn companion(name: &OsStr, suffix: &str) -> OsString {
    let mut companion = name.to_owned();
    companion.push(suffix);
    companion
}

/// Before a new file replaces database `name` in `folder`: folds a
/// leftover write-ahead log or hot journal into the old file, so no stale
/// log outlives the swap.
pub(crate) fn settle_destination(folder: &Folder, name: &OsStr) -> Result<(), CopyError> {
    let exists = |name: &OsStr| -> Result<bool, CopyError> {
        let kind = folder.kind(name).map_err(|e| {
            CopyError::io("settling destination database", &folder.path_of(name), e)
        })?;
        Ok(kind != Kind::Missing)
    };
    if !exists(name)?
        || (!exists(&companion(name, "-wal"))? && !exists(&companion(name, "-journal"))?)
    {
        return Ok(());
    }
    let context = |e: rusqlite::Error| {
        CopyError::from(e).context(&format!(
            "settling destination database {}",
            folder.path_of(name).display()
        ))
    };
    let conn = open_held(
        folder,
        name,
        OpenFlags::SQLITE_OPEN_READ_WRITE,
        "settling destination database",
    )?;
    // Reading rolls back a hot journal; the checkpoint empties the log.
    conn.query_row("SELECT count(*) FROM sqlite_schema", [], |_| Ok(()))
        .map_err(context)?;
    conn.query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |_| Ok(()))
        .map_err(context)?;
    Ok(())
}

/// After the swap: removes the old file's (now empty) log and shared-memory
/// index, which belong to the file that was replaced.
pub(crate) fn remove_stale_companions(folder: &Folder, name: &OsStr) -> Result<(), CopyError> {
    for suffix in ["-wal", "-shm"] {
        let companion = companion(name, suffix);
        folder
            .remove(&companion)
            .map_err(|e| CopyError::io("removing", &folder.path_of(&companion), e))?;
    }
    Ok(())
}
