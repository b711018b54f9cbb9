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
        dir.rename(&tmp, dir, name)?;
        sync_dir(dir)
    })();
    if result.is_err() {
        let _ = dir.remove_file(&tmp);
    }
    result
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
