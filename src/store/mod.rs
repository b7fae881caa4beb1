//! The on-disk store: one sled database in a directory that conclave owns.
//!
//! The directory holds a marker file, `CONCLAVE-STORE` (JSON: the format version), and the
//! sled files under `sled/`. Opening refuses, without writing anything, a directory that is
//! not a conclave store, a store written by a newer format, and a store another process
//! holds open. Only [`crate::trust`] and [`crate::audit`] read and write its trees, behind
//! their traits.

pub(crate) mod audit;
pub(crate) mod trust;

use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

/// The format this build writes and reads.
pub const FORMAT: u32 = 1;

/// Name of the marker file.
pub const MARKER: &str = "CONCLAVE-STORE";

/// The default store directory, relative to the working directory.
pub const DEFAULT_DIR: &str = ".conclave";

/// The environment variable that overrides the default directory.
pub const ENV_VAR: &str = "CONCLAVE_STORE";

/// Why the store cannot be used. Every message names the directory.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// The directory exists, is not empty, and has no marker file.
    #[error(
        "{0} is not a conclave store (no {MARKER} file, and it is not empty); refusing to write into it"
    )]
    Foreign(PathBuf),
    /// The marker names a newer format.
    #[error(
        "{path} was written by a newer conclave (store format {found}; this build reads {FORMAT})"
    )]
    NewerFormat {
        /// The store.
        path: PathBuf,
        /// The format found.
        found: u32,
    },
    /// Another process has the store open.
    #[error(
        "{0} is in use by another conclave process (its lock is held); try again when it is done"
    )]
    Locked(PathBuf),
    /// `conclave serve` has the store open: its address says where to read it meanwhile.
    #[error(
        "{path} is in use by `conclave serve` at {addr} (pid {pid}): read through it while it runs (GET {addr}/v1/trust, /v1/decisions/ID, /v1/policies, /metrics), or stop it to use this command (several processes share one store only on PostgreSQL: serve --database)"
    )]
    Served {
        /// The store.
        path: PathBuf,
        /// The server's base URL.
        addr: String,
        /// The server's process id.
        pid: u32,
    },
    /// The marker or the database is damaged.
    #[error("{path} is damaged: {detail}")]
    Corrupt {
        /// The store.
        path: PathBuf,
        /// What was found.
        detail: String,
    },
    /// A file-system error.
    #[error("{path}: {source}")]
    Io {
        /// The store.
        path: PathBuf,
        /// The error.
        source: io::Error,
    },
    /// A record in the store could not be decoded.
    #[error("{path}: record {key} in {tree} cannot be read: {detail}")]
    Record {
        /// The store.
        path: PathBuf,
        /// The tree.
        tree: &'static str,
        /// The record's key, printable.
        key: String,
        /// What is wrong.
        detail: String,
    },
}

/// What the store is known to hold: written after every durable batch or append, so that a
/// database that recovers to less (damaged files, which sled's recovery silently truncates)
/// is refused instead of being read as empty.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
struct Committed {
    trust_version: u64,
    audit_seq: u64,
}

const COMMITTED: &str = "COMMITTED";

#[derive(Debug, Serialize, Deserialize)]
struct Marker {
    format: u32,
    created_by: String,
}

/// An open store.
#[derive(Debug, Clone)]
pub struct Store {
    path: PathBuf,
    db: sled::Db,
    /// Our exclusive lock on the marker file, held while any handle is alive.
    _lock: std::sync::Arc<fs::File>,
    /// Serialises [`Store::commit`] between the handles of this process (one temporary file,
    /// renamed over the record; two writers at once would rename each other's away).
    committing: std::sync::Arc<std::sync::Mutex<()>>,
    /// Group commit: writers that ask for durability while a flush runs share the next one.
    flushes: std::sync::Arc<(std::sync::Mutex<Flushes>, std::sync::Condvar)>,
}

/// The state of the group commit: writes ask for durability in order (`asked`); a flush
/// started after write `n` asked makes every write up to `n` durable.
#[derive(Debug, Default)]
struct Flushes {
    /// Requests so far (each caller's number is its place).
    asked: u64,
    /// Every request up to this one is durable (or failed, see `failed`).
    done: u64,
    /// A flush is running.
    running: bool,
    /// The requests `(after, upto]` whose flush failed (or may have), and the last error.
    failed: Option<(u64, u64, String)>,
}

/// The store directory to use: `explicit` if given, else `$CONCLAVE_STORE`, else `.conclave`.
pub fn resolve_dir(explicit: Option<&Path>) -> PathBuf {
    if let Some(p) = explicit {
        return p.to_path_buf();
    }
    match std::env::var_os(ENV_VAR) {
        Some(v) if !v.is_empty() => PathBuf::from(v),
        _ => PathBuf::from(DEFAULT_DIR),
    }
}

impl Store {
    /// Opens the store in `dir`, creating it if the directory is missing or empty.
    ///
    /// # Errors
    /// A foreign or damaged directory, a newer format, a store held by another process, or
    /// a file-system error. Nothing is written in any of these cases.
    pub fn open(dir: &Path) -> Result<Self, StoreError> {
        let io_err = |source| StoreError::Io {
            path: dir.to_path_buf(),
            source,
        };
        let marker = dir.join(MARKER);
        let fresh = !dir.exists() || is_empty_dir(dir).map_err(io_err)?;
        if fresh {
            fs::create_dir_all(dir).map_err(io_err)?;
            let m = Marker {
                format: FORMAT,
                created_by: format!("conclave {}", env!("CARGO_PKG_VERSION")),
            };
            let text = serde_json::to_vec_pretty(&m).map_err(|e| io_err(io::Error::other(e)))?;
            fs::write(&marker, text).map_err(io_err)?;
        }
        Self::check_marker(dir)?;
        Self::open_db(dir, fresh)
    }

    /// Opens the store in `dir` if there is one; `Ok(None)` if the directory does not exist
    /// (read-only commands then report an empty store without creating anything).
    ///
    /// # Errors
    /// As [`Store::open`], for a directory that exists.
    pub fn open_existing(dir: &Path) -> Result<Option<Self>, StoreError> {
        if !dir.exists() {
            return Ok(None);
        }
        if is_empty_dir(dir).map_err(|source| StoreError::Io {
            path: dir.to_path_buf(),
            source,
        })? {
            return Ok(None);
        }
        Self::check_marker(dir)?;
        Self::open_db(dir, false).map(Some)
    }

    fn check_marker(dir: &Path) -> Result<(), StoreError> {
        let marker = dir.join(MARKER);
        let text = match fs::read(&marker) {
            Ok(t) => t,
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                return Err(StoreError::Foreign(dir.to_path_buf()));
            }
            Err(source) => {
                return Err(StoreError::Io {
                    path: dir.to_path_buf(),
                    source,
                });
            }
        };
        let m: Marker = serde_json::from_slice(&text).map_err(|e| StoreError::Corrupt {
            path: dir.to_path_buf(),
            detail: format!("{MARKER} is not valid: {e}"),
        })?;
        if m.format > FORMAT {
            return Err(StoreError::NewerFormat {
                path: dir.to_path_buf(),
                found: m.format,
            });
        }
        Ok(())
    }

    /// Opens the database of the store in `dir` (`fresh`: just created by this call).
    fn open_db(dir: &Path, fresh: bool) -> Result<Self, StoreError> {
        let io_err = |source| StoreError::Io {
            path: dir.to_path_buf(),
            source,
        };
        // Our own lock first, so that nothing writes while the store is checked.
        let lock = fs::File::open(dir.join(MARKER)).map_err(io_err)?;
        // A child this process is starting holds a copy of the lock's descriptor from its
        // fork until its exec closes it: a lock held that briefly is waited for (up to 2 s)
        // before the store is reported in use.
        let mut tries = 0;
        loop {
            match lock.try_lock() {
                Ok(()) => break,
                Err(fs::TryLockError::WouldBlock) if tries < 100 => {
                    tries += 1;
                    std::thread::sleep(std::time::Duration::from_millis(20));
                }
                Err(fs::TryLockError::WouldBlock) => {
                    return Err(match read_serving(dir) {
                        Some((addr, pid)) => StoreError::Served {
                            path: dir.to_path_buf(),
                            addr,
                            pid,
                        },
                        None => StoreError::Locked(dir.to_path_buf()),
                    });
                }
                Err(fs::TryLockError::Error(e)) => return Err(io_err(e)),
            }
        }
        // Under our lock nobody else uses the store: what a killed process left is cleared.
        // An incomplete snapshot (sled writes `snap.*.generating`, then renames it) would make
        // every later open fail its checksums; a scratch copy of a killed check is dead weight.
        let sled_dir = dir.join("sled");
        clear_leftovers(dir, &sled_dir).map_err(io_err)?;
        // A store whose database is gone is not an empty store.
        if !fresh && !sled_dir.is_dir() {
            return Err(StoreError::Corrupt {
                path: dir.to_path_buf(),
                detail: "its database (sled/) is missing; conclave will not start it again empty: restore a backup, or `trust import` an export into a new store".to_owned(),
            });
        }
        // sled's recovery rewrites a damaged log on open; try it on a copy first, so that a
        // damaged store is refused before its files are touched.
        let manifest = dir.join(COMMITTED).exists();
        let committed = read_committed(dir)?;
        if !fresh && (committed != Committed::default() || !manifest) {
            let have = verify_on_copy(dir, committed)?;
            if !manifest && have.is_some_and(|h| h != Committed::default()) {
                tracing::warn!(store = %dir.display(), "the store's manifest ({COMMITTED}) was missing; recreated from its database");
            }
        }
        let db = open_sled_patiently(dir, &sled_dir)?;
        let store = Self {
            path: dir.to_path_buf(),
            db,
            _lock: std::sync::Arc::new(lock),
            committing: std::sync::Arc::default(),
            flushes: std::sync::Arc::default(),
        };
        store.check_committed()?;
        if fresh || !manifest {
            store.commit()?;
        }
        Ok(store)
    }

    fn committed(&self) -> Result<Committed, StoreError> {
        read_committed(&self.path)
    }

    /// What the database holds now: the trust version and the audit head.
    fn holds(&self) -> Result<Committed, StoreError> {
        holds(&self.db).map_err(|e| self.sled_err(e))
    }

    fn check_committed(&self) -> Result<(), StoreError> {
        let want = self.committed()?;
        let have = self.holds()?;
        if have.trust_version < want.trust_version || have.audit_seq < want.audit_seq {
            return Err(StoreError::Corrupt {
                path: self.path.clone(),
                detail: format!(
                    "it should hold trust version {} and {} audit records, but only version {} and {} records can be read (damaged or truncated database files); conclave will not use it: restore a backup, or `trust import` an export into a new store",
                    want.trust_version, want.audit_seq, have.trust_version, have.audit_seq
                ),
            });
        }
        Ok(())
    }

    /// Records, after a durable write, what the store holds now (atomically: a temporary
    /// file renamed over the old one).
    pub(crate) fn commit(&self) -> Result<(), StoreError> {
        // A poisoned lock only means another commit panicked: the file is still whole.
        let _one_at_a_time = self
            .committing
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let now = self.holds()?;
        let io_err = |source| StoreError::Io {
            path: self.path.clone(),
            source,
        };
        let tmp = self.path.join(format!("{COMMITTED}.tmp"));
        let text = serde_json::to_vec(&now).map_err(|e| io_err(io::Error::other(e)))?;
        {
            use std::io::Write;
            let mut f = fs::File::create(&tmp).map_err(io_err)?;
            f.write_all(&text).map_err(io_err)?;
            f.sync_all().map_err(io_err)?;
        }
        fs::rename(&tmp, self.path.join(COMMITTED)).map_err(io_err)?;
        Ok(())
    }

    /// The store's directory.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The Cognitive Director's standing orders (none yet: the defaults). They are kept
    /// beside the audit log's head and changed through it
    /// ([`OrderBook`](crate::directives::OrderBook) of [`SledAuditLog`](crate::audit::SledAuditLog)),
    /// so that an order is in effect exactly when it is recorded; stores written before that
    /// kept them in a tree of their own, read here until the first change.
    ///
    /// # Errors
    /// The store cannot be read, or the orders are damaged.
    pub fn directives(&self) -> Result<crate::directives::Directives, StoreError> {
        for (tree, key) in [("audit_meta", "orders"), ("director", "orders")] {
            let t = self.tree(tree)?;
            if let Some(v) = t.get(key.as_bytes()).map_err(|e| self.sled_err(e))? {
                return serde_json::from_slice(&v).map_err(|e| StoreError::Record {
                    path: self.path.clone(),
                    tree,
                    key: key.to_owned(),
                    detail: e.to_string(),
                });
            }
        }
        Ok(crate::directives::Directives::default())
    }

    pub(crate) fn tree(&self, name: &str) -> Result<sled::Tree, StoreError> {
        self.db.open_tree(name).map_err(|e| self.sled_err(e))
    }

    /// Flushes every write to disk and records what the store now holds.
    ///
    /// Group commit: a caller whose write is done asks for durability; if a flush is already
    /// running it waits for the next one, which one caller runs for everyone waiting, so that
    /// concurrent writers share one flush instead of queueing for one each. Returns only once
    /// a flush that started after the caller's write has finished (or failed: then the error).
    pub(crate) fn flush(&self) -> Result<(), StoreError> {
        let (lock, turn) = &*self.flushes;
        fn relock(m: &std::sync::Mutex<Flushes>) -> std::sync::MutexGuard<'_, Flushes> {
            m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
        }
        let mut st = relock(lock);
        st.asked += 1;
        let mine = st.asked;
        loop {
            if st.done >= mine {
                return match &st.failed {
                    Some((after, upto, why)) if *after < mine && mine <= *upto => {
                        Err(StoreError::Io {
                            path: self.path.clone(),
                            source: io::Error::other(why.clone()),
                        })
                    }
                    _ => Ok(()),
                };
            }
            if st.running {
                st = turn
                    .wait(st)
                    .unwrap_or_else(std::sync::PoisonError::into_inner);
                continue;
            }
            // This caller flushes for every request made so far.
            st.running = true;
            let (after, upto) = (st.done, st.asked);
            drop(st);
            let result = self
                .db
                .flush()
                .map_err(|e| self.sled_err(e))
                .and_then(|_| self.commit());
            st = relock(lock);
            st.running = false;
            st.done = upto;
            if let Err(e) = &result {
                // Failures are kept as one range, so that a caller that wakes late still
                // sees its own: two failed flushes cover the requests between them too (a
                // caller may then hear of a failure its write survived, never the reverse).
                let after = st.failed.as_ref().map_or(after, |f| f.0.min(after));
                st.failed = Some((after, upto, e.to_string()));
            }
            turn.notify_all();
            return result;
        }
    }

    pub(crate) fn sled_err(&self, e: sled::Error) -> StoreError {
        map_sled(&self.path, e)
    }

    pub(crate) fn record_err(
        &self,
        tree: &'static str,
        key: &[u8],
        detail: impl ToString,
    ) -> StoreError {
        StoreError::Record {
            path: self.path.clone(),
            tree,
            key: String::from_utf8_lossy(key).replace('\0', "/"),
            detail: detail.to_string(),
        }
    }
}

/// The file in which `conclave serve` says where it serves a store it holds.
pub const SERVING: &str = "SERVING";

#[derive(Debug, Serialize, Deserialize)]
struct Serving {
    addr: String,
    pid: u32,
}

/// The server holding the store in `dir`, as it announced itself.
fn read_serving(dir: &Path) -> Option<(String, u32)> {
    let text = fs::read(dir.join(SERVING)).ok()?;
    let s: Serving = serde_json::from_slice(&text).ok()?;
    Some((s.addr, s.pid))
}

impl Store {
    /// Announces that `conclave serve` serves this store at `addr` (base URL), so that a
    /// command that finds the store in use can say where to read it. Removed with
    /// [`Store::withdraw_server`]; a stale one (a killed server) is never read, since the
    /// store's lock is free then.
    ///
    /// # Errors
    /// The file cannot be written.
    pub fn announce_server(&self, addr: &str) -> Result<(), StoreError> {
        let text = serde_json::to_vec(&Serving {
            addr: addr.to_owned(),
            pid: std::process::id(),
        })
        .unwrap_or_default();
        fs::write(self.path.join(SERVING), text).map_err(|source| StoreError::Io {
            path: self.path.clone(),
            source,
        })
    }

    /// Withdraws the announcement of [`Store::announce_server`].
    pub fn withdraw_server(&self) {
        let _ = fs::remove_file(self.path.join(SERVING));
    }
}

/// Opens sled under our lock. Nobody else can hold sled's own lock then, except this
/// process's previous handle while sled's flusher thread winds down after the drop: that is
/// waited for (up to 5 s), never reported as another process.
fn open_sled_patiently(dir: &Path, sled_dir: &Path) -> Result<sled::Db, StoreError> {
    let mut tries = 0;
    loop {
        match open_sled(sled_dir).map_err(|e| map_sled(dir, e)) {
            Err(StoreError::Locked(_)) if tries < 250 => {
                tries += 1;
                std::thread::sleep(std::time::Duration::from_millis(20));
            }
            other => return other,
        }
    }
}

fn open_sled(path: &Path) -> sled::Result<sled::Db> {
    sled::Config::new()
        .path(path)
        .mode(sled::Mode::HighThroughput)
        .open()
}

fn read_committed(dir: &Path) -> Result<Committed, StoreError> {
    match fs::read(dir.join(COMMITTED)) {
        Ok(t) => serde_json::from_slice(&t).map_err(|e| StoreError::Corrupt {
            path: dir.to_path_buf(),
            detail: format!("{COMMITTED} is not valid: {e}"),
        }),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(Committed::default()),
        Err(source) => Err(StoreError::Io {
            path: dir.to_path_buf(),
            source,
        }),
    }
}

fn holds(db: &sled::Db) -> sled::Result<Committed> {
    let trust_version = match db.open_tree("trust_meta")?.get(b"version")? {
        Some(v) => serde_json::from_slice::<serde_json::Value>(&v)
            .ok()
            .and_then(|j| j.get("value").and_then(serde_json::Value::as_u64))
            .unwrap_or(0),
        None => 0,
    };
    let audit_seq = match db.open_tree("audit_meta")?.get(b"head")? {
        Some(v) if v.len() >= 8 => {
            let mut b = [0u8; 8];
            b.copy_from_slice(&v[..8]);
            u64::from_be_bytes(b)
        }
        _ => 0,
    };
    Ok(Committed {
        trust_version,
        audit_seq,
    })
}

/// Stores larger than this are checked in place rather than on a copy.
const COPY_CHECK_LIMIT: u64 = 256 << 20;

/// Removes, from a store whose lock we hold, what killed processes left: incomplete sled
/// snapshots and scratch copies of a check.
fn clear_leftovers(dir: &Path, sled_dir: &Path) -> io::Result<()> {
    if let Ok(entries) = fs::read_dir(sled_dir) {
        for e in entries.flatten() {
            let name = e.file_name();
            let name = name.to_string_lossy();
            if name.starts_with("snap.") && name.ends_with(".generating") {
                fs::remove_file(e.path())?;
            }
        }
    }
    let scratch = dir.join(SCRATCH);
    if scratch.exists() {
        fs::remove_dir_all(scratch)?;
    }
    // A server killed before it could withdraw its announcement.
    match fs::remove_file(dir.join(SERVING)) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e),
        _ => Ok(()),
    }
}

/// Where the copy-check works, inside the store (cleared at the next open if a process is
/// killed while checking).
const SCRATCH: &str = "check-copy";

/// Opens a copy of the database and checks that it recovers at least what was committed;
/// what the copy holds (`None` when the store was too large to copy and was not checked).
fn verify_on_copy(dir: &Path, committed: Committed) -> Result<Option<Committed>, StoreError> {
    let src = dir.join("sled");
    let io_err = |source| StoreError::Io {
        path: dir.to_path_buf(),
        source,
    };
    if !src.is_dir() || dir_size(&src).map_err(io_err)? > COPY_CHECK_LIMIT {
        return Ok(None);
    }
    let scratch = dir.join(SCRATCH);
    let _ = fs::remove_dir_all(&scratch);
    let result = (|| {
        copy_dir(&src, &scratch).map_err(io_err)?;
        let db = open_sled(&scratch).map_err(|e| map_sled(dir, e))?;
        let have = holds(&db).map_err(|e| map_sled(dir, e))?;
        drop(db);
        if have.trust_version < committed.trust_version || have.audit_seq < committed.audit_seq {
            return Err(StoreError::Corrupt {
                path: dir.to_path_buf(),
                detail: format!(
                    "it should hold trust version {} and {} audit records, but only version {} and {} records can be read (damaged or truncated database files); conclave left it as it is: restore a backup, or `trust import` an export into a new store",
                    committed.trust_version,
                    committed.audit_seq,
                    have.trust_version,
                    have.audit_seq
                ),
            });
        }
        Ok(Some(have))
    })();
    let _ = fs::remove_dir_all(&scratch);
    result
}

fn dir_size(dir: &Path) -> io::Result<u64> {
    let mut total = 0;
    for e in fs::read_dir(dir)? {
        let e = e?;
        let m = e.metadata()?;
        total += if m.is_dir() {
            dir_size(&e.path())?
        } else {
            m.len()
        };
    }
    Ok(total)
}

fn copy_dir(from: &Path, to: &Path) -> io::Result<()> {
    fs::create_dir_all(to)?;
    for e in fs::read_dir(from)? {
        let e = e?;
        let target = to.join(e.file_name());
        if e.file_type()?.is_dir() {
            copy_dir(&e.path(), &target)?;
        } else {
            fs::copy(e.path(), target)?;
        }
    }
    Ok(())
}

fn is_empty_dir(dir: &Path) -> io::Result<bool> {
    if !dir.is_dir() {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "not a directory",
        ));
    }
    Ok(fs::read_dir(dir)?.next().is_none())
}

fn map_sled(dir: &Path, e: sled::Error) -> StoreError {
    match e {
        sled::Error::Io(io) if io.to_string().contains("could not acquire lock") => {
            StoreError::Locked(dir.to_path_buf())
        }
        sled::Error::Io(source) => StoreError::Io {
            path: dir.to_path_buf(),
            source,
        },
        sled::Error::Corruption { .. } => StoreError::Corrupt {
            path: dir.to_path_buf(),
            detail: "the database files fail their checksums".to_owned(),
        },
        other => StoreError::Corrupt {
            path: dir.to_path_buf(),
            detail: other.to_string(),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tmp(name: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("conclave-store-{name}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&d);
        d
    }

    #[test]
    fn creates_then_reopens() {
        let d = tmp("create");
        let s = Store::open(&d).unwrap();
        drop(s);
        assert!(d.join(MARKER).exists());
        Store::open(&d).unwrap();
        let _ = fs::remove_dir_all(&d);
    }

    #[test]
    fn refuses_foreign_and_newer_and_locked() {
        let d = tmp("foreign");
        fs::create_dir_all(&d).unwrap();
        fs::write(d.join("notes.txt"), "mine").unwrap();
        assert!(matches!(Store::open(&d), Err(StoreError::Foreign(_))));
        assert_eq!(
            fs::read_dir(&d).unwrap().count(),
            1,
            "a foreign directory must stay untouched"
        );
        fs::write(d.join(MARKER), r#"{"format": 99, "created_by": "future"}"#).unwrap();
        assert!(matches!(
            Store::open(&d),
            Err(StoreError::NewerFormat { found: 99, .. })
        ));
        fs::write(d.join(MARKER), "garbage").unwrap();
        assert!(matches!(Store::open(&d), Err(StoreError::Corrupt { .. })));
        let _ = fs::remove_dir_all(&d);

        let d = tmp("locked");
        let first = Store::open(&d).unwrap();
        let second = Store::open(&d);
        assert!(matches!(second, Err(StoreError::Locked(_))), "{second:?}");
        drop(first);
        let _ = fs::remove_dir_all(&d);
    }

    #[test]
    fn missing_store_reads_as_none() {
        let d = tmp("missing");
        assert!(Store::open_existing(&d).unwrap().is_none());
        assert!(!d.exists());
    }
}
