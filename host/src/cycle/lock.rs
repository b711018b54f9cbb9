//! The cycle lock: one executing cycle per workspace at a time.
//!
//! `state/.cycle.lock` is taken without waiting when a cycle starts phase 1
//! in execute mode and held until it returns; an OS file lock (`flock`) is
//! the lock itself, so a killed holder never leaves the workspace locked. A
//! second cycle that finds it taken does not queue behind it (cron would
//! pile processes up): it records a `cycle-skipped` event naming the holder
//! and exits 0. Leases still guard each repository, for holders that crash
//! and for anything that mutates outside a cycle.
//!
//! On-disk format: while held, the file holds the holder as one JSON object
//! `{"pid": 4242, "host": "build-01", "started_at": "2026-11-25T10:00:00Z"}`,
//! rewritten by each new holder. It is informational only: a stale content
//! with no lock held means nothing.

use crate::state::StateError;
use cap_std::fs::{Dir, OpenOptions};
use serde::{Deserialize, Serialize};
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::Path;

/// File name of the lock inside `state/`.
pub const LOCK_FILE: &str = ".cycle.lock";

/// Who holds (or held) the cycle lock.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CycleHolder {
    pub pid: u32,
    pub host: String,
    pub started_at: String,
}

/// The held lock; released when dropped.
#[derive(Debug)]
pub struct CycleLock {
    _file: std::fs::File,
}

/// Result of trying to take the lock.
#[derive(Debug)]
pub enum Acquired {
    Held(CycleLock),
    /// Another process holds it; who, if its record could be read.
    Busy(Option<CycleHolder>),
}

/// Takes the lock without waiting and records `holder` in it.
pub fn try_acquire(state_dir: &Dir, state_path: &Path, holder: &CycleHolder) -> Result<Acquired, StateError> {
    try_acquire_file(state_dir, state_path, LOCK_FILE, holder)
}

/// [`try_acquire`] for another lock file of the same design (the tick lock,
/// `state/.tick.lock`, see [`crate::scheduler`]).
pub fn try_acquire_file(
    state_dir: &Dir,
    state_path: &Path,
    lock_file: &str,
    holder: &CycleHolder,
) -> Result<Acquired, StateError> {
    let path = state_path.join(lock_file);
    let write_err = |source| StateError::Write { path: path.clone(), source };
    let mut file = state_dir
        .open_with(lock_file, OpenOptions::new().read(true).write(true).create(true).truncate(false))
        .map_err(write_err)?
        .into_std();
    match file.try_lock() {
        Ok(()) => {}
        Err(std::fs::TryLockError::WouldBlock) => {
            let mut text = String::new();
            let holder = file.read_to_string(&mut text).ok().and_then(|_| serde_json::from_str(&text).ok());
            return Ok(Acquired::Busy(holder));
        }
        Err(std::fs::TryLockError::Error(source)) => return Err(write_err(source)),
    }
    let record = serde_json::to_vec(holder).map_err(|e| write_err(std::io::Error::other(e)))?;
    file.set_len(0)
        .and_then(|()| file.seek(SeekFrom::Start(0)))
        .and_then(|_| file.write_all(&record))
        .map_err(write_err)?;
    Ok(Acquired::Held(CycleLock { _file: file }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use cap_std::ambient_authority;

    fn holder(pid: u32) -> CycleHolder {
        CycleHolder { pid, host: "h".into(), started_at: "2026-11-25T10:00:00Z".into() }
    }

    #[test]
    fn a_second_taker_sees_the_first_holder_until_it_lets_go() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = Dir::open_ambient_dir(tmp.path(), ambient_authority()).unwrap();
        let first = match try_acquire(&dir, tmp.path(), &holder(1)).unwrap() {
            Acquired::Held(lock) => lock,
            Acquired::Busy(_) => panic!("the lock was free"),
        };
        match try_acquire(&dir, tmp.path(), &holder(2)).unwrap() {
            Acquired::Busy(seen) => assert_eq!(seen, Some(holder(1))),
            Acquired::Held(_) => panic!("two holders at once"),
        }
        drop(first);
        assert!(matches!(try_acquire(&dir, tmp.path(), &holder(3)).unwrap(), Acquired::Held(_)));
    }
}
