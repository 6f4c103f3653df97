//! The files on the lab's hosts: disk images and SQLite databases for the copy and sync steps
//! to read. Images are sparse, like a VM's disk: one MiB of data every four, the rest holes.
//! Contents are pseudo-random but fixed by the host and path, so two labs built from the same
//! runbook hold the same bytes.

use std::io::{Seek, SeekFrom, Write};
use std::path::Path;

use rusqlite::{Connection, params};

use crate::blueprint::FileBlueprint;
use crate::error::LabError;

/// Data written at the start of every stride of an image.
const DATA_RUN: u64 = 1 << 20;
/// An image holds one data run per stride; the rest of the stride is a hole.
const STRIDE: u64 = 4 << 20;
/// Bytes of a page body in a lab database.
const PAGE_BODY: usize = 3 * 1024;
/// Row bounds for lab databases, whatever size the runbook states.
const MIN_PAGES: u64 = 16;
const MAX_PAGES: u64 = 100_000;

fn seeded(host: &str, path: &str) -> blake3::OutputReader {
    let mut hasher = blake3::Hasher::new_derive_key("cutover lab file contents");
    hasher.update(host.as_bytes());
    hasher.update(&[0]);
    hasher.update(path.as_bytes());
    hasher.finalize_xof()
}

fn create_parent(file: &Path) -> Result<(), LabError> {
    if let Some(parent) = file.parent() {
        std::fs::create_dir_all(parent)
            .map_err(|err| LabError::io("cannot create", parent, err))?;
    }
    Ok(())
}

/// Writes a sparse image of the blueprint's size, replacing any file there.
pub fn write_image(host: &str, image: &FileBlueprint) -> Result<(), LabError> {
    create_parent(&image.file)?;
    let io = |err| LabError::io("cannot write image", &image.file, err);
    let mut file = std::fs::File::create(&image.file).map_err(io)?;
    file.set_len(image.size).map_err(io)?;
    let mut reader = seeded(host, &image.path);
    let mut buffer = vec![0u8; DATA_RUN as usize];
    let mut offset = 0;
    while offset < image.size {
        let length = DATA_RUN.min(image.size - offset) as usize;
        reader.set_position(offset);
        reader.fill(&mut buffer[..length]);
        file.seek(SeekFrom::Start(offset)).map_err(io)?;
        file.write_all(&buffer[..length]).map_err(io)?;
        offset += STRIDE;
    }
    file.sync_all().map_err(io)
}

/// Writes a SQLite database of about the blueprint's size: accounts, pages and their revisions.
/// Returns the number of rows per table.
pub fn write_database(
    host: &str,
    database: &FileBlueprint,
) -> Result<Vec<(String, u64)>, LabError> {
    create_parent(&database.file)?;
    for suffix in ["", "-wal", "-shm", "-journal"] {
        let mut name = database.file.clone().into_os_string();
        name.push(suffix);
        match std::fs::remove_file(&name) {
            Ok(()) => {}
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => {}
            Err(err) => {
                return Err(LabError::io(
                    "cannot replace database",
                    database.file.clone(),
                    err,
                ));
            }
        }
    }
    let db_error = |source| LabError::Database {
        path: database.file.clone(),
        source,
    };
    // Row counts are bounded well inside i64, SQLite's integer.
    let pages = (database.size / (PAGE_BODY as u64 + 512)).clamp(MIN_PAGES, MAX_PAGES) as i64;
    let accounts = (pages / 4).max(4);
    let revisions = pages * 2;
    let mut connection = Connection::open(&database.file).map_err(db_error)?;
    connection
        .execute_batch(
            "PRAGMA journal_mode = WAL;
             CREATE TABLE accounts (id INTEGER PRIMARY KEY, name TEXT NOT NULL, email TEXT NOT NULL);
             CREATE TABLE pages (id INTEGER PRIMARY KEY, title TEXT NOT NULL, author INTEGER NOT NULL REFERENCES accounts(id), body BLOB NOT NULL);
             CREATE TABLE revisions (id INTEGER PRIMARY KEY, page INTEGER NOT NULL REFERENCES pages(id), at TEXT NOT NULL, note TEXT NOT NULL);",
        )
        .map_err(db_error)?;
    let mut reader = seeded(host, &database.path);
    let transaction = connection.transaction().map_err(db_error)?;
    {
        let mut insert = transaction
            .prepare("INSERT INTO accounts (id, name, email) VALUES (?1, ?2, ?3)")
            .map_err(db_error)?;
        for id in 1..=accounts {
            insert
                .execute(params![
                    id,
                    format!("user{id}"),
                    format!("user{id}@{host}.lab")
                ])
                .map_err(db_error)?;
        }
        let mut insert = transaction
            .prepare("INSERT INTO pages (id, title, author, body) VALUES (?1, ?2, ?3, ?4)")
            .map_err(db_error)?;
        let mut body = vec![0u8; PAGE_BODY];
        for id in 1..=pages {
            reader.fill(&mut body);
            insert
                .execute(params![id, format!("Page {id}"), 1 + id % accounts, body])
                .map_err(db_error)?;
        }
        let mut insert = transaction
            .prepare("INSERT INTO revisions (id, page, at, note) VALUES (?1, ?2, ?3, ?4)")
            .map_err(db_error)?;
        for id in 1..=revisions {
            let at = format!(
                "2013-03-{:02} {:02}:{:02}:00",
                1 + id % 14,
                id % 24,
                id % 60
            );
            insert
                .execute(params![id, 1 + id % pages, at, format!("edit {id}")])
                .map_err(db_error)?;
        }
    }
    transaction.commit().map_err(db_error)?;
    connection
        .execute_batch("PRAGMA wal_checkpoint(TRUNCATE);")
        .map_err(db_error)?;
    Ok(vec![
        ("accounts".to_string(), accounts.unsigned_abs()),
        ("pages".to_string(), pages.unsigned_abs()),
        ("revisions".to_string(), revisions.unsigned_abs()),
    ])
}

/// Removes a file the run writes, so a fresh lab starts without it.
pub fn remove_output(output: &FileBlueprint) -> Result<(), LabError> {
    match std::fs::remove_file(&output.file) {
        Ok(()) => Ok(()),
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(err) => Err(LabError::io("cannot remove", output.file.clone(), err)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::MetadataExt;

    fn blueprint(dir: &Path, name: &str, size: u64) -> FileBlueprint {
        FileBlueprint {
            path: format!("/srv/{name}"),
            file: dir.join("srv").join(name),
            size,
        }
    }

    #[test]
    fn images_are_sparse_deterministic_and_exactly_sized() {
        let dir = tempfile::tempdir().unwrap();
        let image = blueprint(dir.path(), "a.img", 10 << 20);
        write_image("wiki", &image).unwrap();
        let meta = std::fs::metadata(&image.file).unwrap();
        assert_eq!(meta.len(), 10 << 20);
        assert!(
            meta.blocks() * 512 < 5 << 20,
            "holes stay holes: {} bytes allocated",
            meta.blocks() * 512
        );
        let first = std::fs::read(&image.file).unwrap();
        assert!(
            first[..1024].iter().any(|&b| b != 0),
            "the image starts with data"
        );
        assert!(
            first[2 << 20..3 << 20].iter().all(|&b| b == 0),
            "a hole reads as zeros"
        );
        write_image("wiki", &image).unwrap();
        assert_eq!(std::fs::read(&image.file).unwrap(), first);
        write_image("other", &image).unwrap();
        assert_ne!(
            std::fs::read(&image.file).unwrap(),
            first,
            "another host gets other bytes"
        );
    }

    #[test]
    fn databases_hold_rows_in_every_table() {
        let dir = tempfile::tempdir().unwrap();
        let database = blueprint(dir.path(), "wiki.sqlite", 1 << 20);
        let counts = write_database("wiki", &database).unwrap();
        let connection = Connection::open(&database.file).unwrap();
        for (table, rows) in counts {
            let stored: i64 = connection
                .query_row(&format!("SELECT count(*) FROM {table}"), [], |row| {
                    row.get(0)
                })
                .unwrap();
            assert_eq!(stored.unsigned_abs(), rows, "{table}");
            assert!(rows >= 4);
        }
        drop(connection);
        write_database("wiki", &database).expect("an existing database is replaced");
    }
}
