//! Durable file primitives shared by the state store and the policy writer.
//!
//! All writes go through a cap-std [`Dir`] handle so a name can never reach
//! outside the directory it was opened on. [`write_atomic`] is the one way a
//! whole file is replaced: a temp file in the same directory, `fsync`,
//! `rename` over the target, then `fsync` of the directory so the rename
//! itself survives a crash.

use cap_std::fs::{Dir, OpenOptions};
use std::io::{self, Write};

/// Atomically replaces `name` in `dir` with `contents`.
pub fn write_atomic(dir: &Dir, name: &str, contents: &[u8]) -> io::Result<()> {
    // Unique per process and per write, so threads never share a temp file.
    static WRITES: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let n = WRITES.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let tmp = format!(".{name}.tmp-{}-{n}", std::process::id());
    let result = (|| {
        let mut file = dir.open_with(&tmp, OpenOptions::new().write(true).create(true).truncate(true))?;
        file.write_all(contents)?;
        file.sync_all()?;
        drop(file);
        crate::failpoint::hit(crate::failpoint::VIEW_WRITE_BEFORE_RENAME);
        dir.rename(&tmp, dir, name)?;
        sync_dir(dir)
    })();
    if result.is_err() {
        let _ = dir.remove_file(&tmp);
    }
    result
}

/// Removes the temp files [`write_atomic`] left in `dir` when its process
/// died between writing and renaming (their names carry the writer's pid;
/// only those of processes that no longer exist are removed). Returns the
/// names removed, sorted.
pub fn remove_stale_temps(dir: &Dir) -> io::Result<Vec<String>> {
    let mut removed = Vec::new();
    for entry in dir.entries()? {
        let name = entry?.file_name().to_string_lossy().into_owned();
        let Some(pid) = temp_writer(&name) else { continue };
        // SAFETY: kill(2) with signal 0 only checks that the process exists.
        let alive =
            unsafe { libc::kill(pid, 0) } == 0 || io::Error::last_os_error().raw_os_error() == Some(libc::EPERM);
        if !alive {
            dir.remove_file(&name)?;
            removed.push(name);
        }
    }
    removed.sort();
    Ok(removed)
}

/// The writer's pid of a [`write_atomic`] temp name (`.NAME.tmp-PID-N`).
fn temp_writer(name: &str) -> Option<libc::pid_t> {
    let (_, rest) = name.strip_prefix('.')?.rsplit_once(".tmp-")?;
    let (pid, n) = rest.split_once('-')?;
    n.parse::<u64>().ok()?;
    pid.parse().ok().filter(|pid| *pid > 0)
}

/// Appends `line` (which must end in `\n`) to `name` in `dir` and fsyncs it.
pub fn append_durable(dir: &Dir, name: &str, line: &[u8]) -> io::Result<()> {
    let created = !dir.exists(name);
    let mut file = dir.open_with(name, OpenOptions::new().append(true).create(true))?;
    file.write_all(line)?;
    file.sync_data()?;
    if created {
        sync_dir(dir)?;
    }
    Ok(())
}

/// Flushes a directory's entries (new names, renames) to disk.
pub fn sync_dir(dir: &Dir) -> io::Result<()> {
    // The handle itself may be an `O_PATH` descriptor, which cannot be
    // fsynced; open the directory again for reading through it.
    dir.open_with(".", OpenOptions::new().read(true))?.sync_all()
}

#[cfg(test)]
mod tests {
    use super::*;
    use cap_std::ambient_authority;

    #[test]
    fn only_temp_files_of_dead_writers_are_removed() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = Dir::open_ambient_dir(tmp.path(), ambient_authority()).unwrap();
        // A pid above the kernel's maximum (4194304) never exists.
        let names = [
            ".view.json.tmp-99999999-0".to_owned(),
            format!(".view.json.tmp-{}-3", std::process::id()),
            "view.json".to_owned(),
            ".view.json.tmp-x-1".to_owned(),
        ];
        for name in &names {
            dir.write(name, b"{}").unwrap();
        }
        assert_eq!(remove_stale_temps(&dir).unwrap(), vec![names[0].clone()]);
        for name in &names[1..] {
            assert!(dir.exists(name), "{name} is kept");
        }
    }
}
