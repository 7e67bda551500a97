//! SQLite's online backup API (`sqlite3_backup_init/step/finish`), called
//! through `libsqlite3-sys`: the same bundled SQLite that diesel links, so
//! the copy is made by the very library that writes the node's files.
//!
//! This is the workspace's second `unsafe` exception (the first sets an
//! option of mimalloc in `main.rs`). It is kept to this module: a
//! connection handle that is opened, used on one thread and closed exactly
//! once, and a backup handle that never outlives the two connections it
//! copies between. Every call's result code is checked; nothing here panics.
//!
//! Why the backup API rather than `VACUUM INTO`: it copies pages as they
//! are (no rebuild of every table and index, so far less CPU on a node that
//! is serving), and it lets the source be opened read-only, so the backup
//! can never write to a live node's database. Both read the source in one
//! read transaction, which in WAL mode does not block the node's writer.

#![allow(unsafe_code)]

use libsqlite3_sys as ffi;
use std::ffi::{c_int, CStr, CString};
use std::path::Path;
use std::ptr::NonNull;
use std::time::Duration;

/// How long a connection waits for a lock another process holds (SQLite's
/// busy handler), per attempt.
const BUSY_TIMEOUT_MS: c_int = 5_000;
/// Attempts at a copy that keeps meeting a lock (each after the busy
/// handler gave up), and the pause between them.
const BUSY_ATTEMPTS_MAX: u32 = 10;
const BUSY_PAUSE: Duration = Duration::from_millis(200);

/// A failed SQLite call, with the file, what was being done and SQLite's
/// own message.
#[derive(Debug, thiserror::Error)]
#[error("{path}: {what}: {message} (SQLite code {code})")]
pub struct SqliteError {
    pub path: String,
    pub what: &'static str,
    pub code: c_int,
    pub message: String,
}

/// One database connection, closed when dropped.
struct Connection {
    db: NonNull<ffi::sqlite3>,
    path: String,
}

impl Connection {
    /// Opens `path` with `flags` (`SQLITE_OPEN_*`).
    fn open(path: &Path, flags: c_int) -> Result<Connection, SqliteError> {
        let shown = path.display().to_string();
        let fail = |code: c_int, message: String| SqliteError {
            path: shown.clone(),
            what: "open",
            code,
            message,
        };
        let c_path = path
            .to_str()
            .and_then(|s| CString::new(s).ok())
            .ok_or_else(|| {
                fail(
                    ffi::SQLITE_MISUSE,
                    "the path is not UTF-8 without NUL".into(),
                )
            })?;
        let mut db: *mut ffi::sqlite3 = std::ptr::null_mut();
        // SAFETY: `c_path` is a NUL-terminated string that outlives the
        // call; `db` is a valid place for SQLite to store the handle; the
        // VFS argument may be null (the default VFS).
        let rc = unsafe { ffi::sqlite3_open_v2(c_path.as_ptr(), &mut db, flags, std::ptr::null()) };
        let Some(db) = NonNull::new(db) else {
            // SQLite could not even allocate a handle.
            return Err(fail(rc, errstr(rc)));
        };
        // From here the handle is owned by `conn` and closed on every path.
        let conn = Connection { db, path: shown };
        if rc != ffi::SQLITE_OK {
            return Err(conn.error("open", rc));
        }
        // SAFETY: `conn.db` is an open connection handle.
        let rc = unsafe { ffi::sqlite3_busy_timeout(conn.db.as_ptr(), BUSY_TIMEOUT_MS) };
        if rc != ffi::SQLITE_OK {
            return Err(conn.error("busy timeout", rc));
        }
        Ok(conn)
    }

    /// Runs statements that return no rows.
    fn exec(&mut self, sql: &CStr, what: &'static str) -> Result<(), SqliteError> {
        // SAFETY: `self.db` is an open connection used by this thread only;
        // `sql` is NUL-terminated; no callback, so its argument and the
        // error-message pointer may be null (the message is read from the
        // connection instead).
        let rc = unsafe {
            ffi::sqlite3_exec(
                self.db.as_ptr(),
                sql.as_ptr(),
                None,
                std::ptr::null_mut(),
                std::ptr::null_mut(),
            )
        };
        if rc != ffi::SQLITE_OK {
            return Err(self.error(what, rc));
        }
        Ok(())
    }

    /// The connection's latest error message, as an error.
    fn error(&self, what: &'static str, code: c_int) -> SqliteError {
        // SAFETY: `self.db` is an open connection; `sqlite3_errmsg` returns
        // a NUL-terminated UTF-8 string owned by SQLite (never null for a
        // valid handle), valid until the next call on this connection, and
        // copied out at once.
        let message = unsafe {
            let m = ffi::sqlite3_errmsg(self.db.as_ptr());
            if m.is_null() {
                errstr(code)
            } else {
                CStr::from_ptr(m).to_string_lossy().into_owned()
            }
        };
        SqliteError {
            path: self.path.clone(),
            what,
            code,
            message,
        }
    }
}

impl Drop for Connection {
    fn drop(&mut self) {
        // SAFETY: the handle was opened by `sqlite3_open_v2` and is closed
        // exactly once, here. Nothing is left open on it that would make
        // `sqlite3_close` refuse (SQLITE_BUSY): `exec` finalizes its
        // statements and `backup_once` finishes its backup before
        // returning, and both borrow the connection, so they end before
        // the drop.
        let rc = unsafe { ffi::sqlite3_close(self.db.as_ptr()) };
        if rc != ffi::SQLITE_OK {
            tracing::warn!(path = %self.path, code = rc, "closing a SQLite connection failed");
        }
    }
}

/// SQLite's generic text for a result code.
fn errstr(code: c_int) -> String {
    // SAFETY: `sqlite3_errstr` accepts any integer and returns a static
    // NUL-terminated string (or null, handled).
    let m = unsafe { ffi::sqlite3_errstr(code) };
    if m.is_null() {
        return format!("SQLite error {code}");
    }
    // SAFETY: non-null, static and NUL-terminated (above).
    unsafe { CStr::from_ptr(m) }.to_string_lossy().into_owned()
}

/// Copies the database `src` (possibly in WAL mode and written by another
/// process right now) into the new file `dst`, as one consistent snapshot:
/// every page in a single `sqlite3_backup_step(-1)`, which holds one read
/// transaction on the source for the whole copy. (A copy in several steps
/// starts over whenever another process commits, so under a steady load it
/// would never finish.) The source is opened read-only; `dst` must not
/// exist. The copy is left in rollback-journal mode (`journal_mode=DELETE`),
/// a single self-contained file.
pub fn copy_online(src: &Path, dst: &Path) -> Result<(), SqliteError> {
    if dst.exists() {
        return Err(SqliteError {
            path: dst.display().to_string(),
            what: "create",
            code: ffi::SQLITE_CANTOPEN,
            message: "the file exists already".into(),
        });
    }
    // Read-only: nothing of the node's file can be changed. If the node
    // is stopped and its write-ahead log was removed, SQLite creates an
    // empty one (and its index) as any reader does.
    let source = Connection::open(src, ffi::SQLITE_OPEN_READONLY | ffi::SQLITE_OPEN_NOMUTEX)?;
    let mut dest = Connection::open(
        dst,
        ffi::SQLITE_OPEN_READWRITE | ffi::SQLITE_OPEN_CREATE | ffi::SQLITE_OPEN_NOMUTEX,
    )?;
    let mut attempt = 0;
    loop {
        attempt += 1;
        match backup_once(&source, &dest) {
            Ok(()) => break,
            Err(e)
                if attempt < BUSY_ATTEMPTS_MAX
                    && matches!(e.code & 0xff, ffi::SQLITE_BUSY | ffi::SQLITE_LOCKED) =>
            {
                tracing::debug!(error = %e, attempt, "the source is busy; copying again");
                std::thread::sleep(BUSY_PAUSE);
            }
            Err(e) => return Err(e),
        }
    }
    // The pages came with the source's header, which says WAL: make the
    // copy one file that needs no `-wal` next to it.
    dest.exec(c"PRAGMA journal_mode = DELETE;", "leave WAL mode")
}

/// One attempt at the whole copy.
fn backup_once(source: &Connection, dest: &Connection) -> Result<(), SqliteError> {
    // SAFETY: both handles are open connections owned by the caller, which
    // keeps them alive (and unused by anyone else) until this function has
    // called `sqlite3_backup_finish`; the schema names are NUL-terminated
    // static strings.
    let backup = unsafe {
        ffi::sqlite3_backup_init(
            dest.db.as_ptr(),
            c"main".as_ptr(),
            source.db.as_ptr(),
            c"main".as_ptr(),
        )
    };
    let Some(backup) = NonNull::new(backup) else {
        // The reason is stored on the destination connection.
        // SAFETY: `dest.db` is an open connection.
        let rc = unsafe { ffi::sqlite3_extended_errcode(dest.db.as_ptr()) };
        return Err(dest.error("start the backup", rc));
    };
    // SAFETY: `backup` is the live handle from `sqlite3_backup_init`; -1
    // copies every page in this one call.
    let step = unsafe { ffi::sqlite3_backup_step(backup.as_ptr(), -1) };
    // SAFETY: `backup` is finished exactly once, after its last use; this
    // releases it whatever `step` returned.
    let finish = unsafe { ffi::sqlite3_backup_finish(backup.as_ptr()) };
    if step != ffi::SQLITE_DONE {
        // A busy or locked source is reported by `step` and not stored on
        // the destination connection; other errors are.
        let e = dest.error("copy", step);
        return Err(
            if matches!(step & 0xff, ffi::SQLITE_BUSY | ffi::SQLITE_LOCKED) {
                SqliteError {
                    message: errstr(step),
                    ..e
                }
            } else {
                e
            },
        );
    }
    if finish != ffi::SQLITE_OK {
        return Err(dest.error("finish the backup", finish));
    }
    Ok(())
}

/// Sets a database file's journal mode to `DELETE` (rollback journal):
/// the write-ahead log, if any, is checkpointed into the file and removed,
/// so the file alone holds the whole database. Needs no other connection
/// on the file.
pub fn leave_wal_mode(path: &Path) -> Result<(), SqliteError> {
    let mut conn = Connection::open(path, ffi::SQLITE_OPEN_READWRITE | ffi::SQLITE_OPEN_NOMUTEX)?;
    conn.exec(c"PRAGMA journal_mode = DELETE;", "leave WAL mode")
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A WAL database with `rows` rows in table `t`, written through a
    /// connection that stays open (as a live node's does).
    fn source(path: &Path, rows: u32) -> Connection {
        let mut c = Connection::open(
            path,
            ffi::SQLITE_OPEN_READWRITE | ffi::SQLITE_OPEN_CREATE | ffi::SQLITE_OPEN_NOMUTEX,
        )
        .unwrap();
        c.exec(
            c"PRAGMA page_size = 16384; PRAGMA journal_mode = WAL; CREATE TABLE t (x INTEGER);",
            "setup",
        )
        .unwrap();
        for _ in 0..rows {
            c.exec(c"INSERT INTO t VALUES (1);", "insert").unwrap();
        }
        c
    }

    fn header_byte(path: &Path, at: usize) -> u8 {
        std::fs::read(path).unwrap()[at]
    }

    #[test]
    fn a_live_wal_database_is_copied_into_one_self_contained_file() {
        let dir = tempfile::tempdir().unwrap();
        let (src, dst) = (dir.path().join("src.db"), dir.path().join("dst.db"));
        let _writer = source(&src, 50);
        assert!(dir.path().join("src.db-wal").exists());
        copy_online(&src, &dst).unwrap();
        // Rollback-journal mode (file format bytes 18 and 19 are 1), no
        // `-wal` next to it, the source's page size.
        assert_eq!((header_byte(&dst, 18), header_byte(&dst, 19)), (1, 1));
        assert!(!dir.path().join("dst.db-wal").exists());
        assert_eq!(
            u16::from_be_bytes([header_byte(&dst, 16), header_byte(&dst, 17)]),
            16384
        );
        // Every row committed in the source's WAL is in the copy (the CHECK
        // constraint fails the insert otherwise).
        let mut copy = Connection::open(&dst, ffi::SQLITE_OPEN_READWRITE).unwrap();
        copy.exec(
            c"CREATE TABLE n (n INTEGER CHECK (n = 50)); INSERT INTO n SELECT count(*) FROM t;",
            "count",
        )
        .unwrap();
        let e = copy
            .exec(c"INSERT INTO n SELECT count(*) + 1 FROM t;", "count")
            .unwrap_err();
        assert!(e.message.contains("CHECK"), "{e}");
    }

    #[test]
    fn an_existing_destination_and_a_missing_source_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let (src, dst) = (dir.path().join("src.db"), dir.path().join("dst.db"));
        let e = copy_online(&src, &dst).unwrap_err();
        assert_eq!(e.what, "open", "{e}");
        assert!(e.to_string().contains("src.db"), "{e}");
        assert!(!dst.exists(), "nothing created for a missing source");
        let _writer = source(&src, 1);
        std::fs::write(&dst, b"x").unwrap();
        let e = copy_online(&src, &dst).unwrap_err();
        assert!(e.to_string().contains("exists already"), "{e}");
        assert_eq!(std::fs::read(&dst).unwrap(), b"x");
    }

    #[test]
    fn leaving_wal_mode_folds_the_log_into_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let src = dir.path().join("src.db");
        drop(source(&src, 10));
        leave_wal_mode(&src).unwrap();
        assert_eq!((header_byte(&src, 18), header_byte(&src, 19)), (1, 1));
        assert!(!dir.path().join("src.db-wal").exists());
    }
}
