//! The data folder and the files in it that hold trigger payloads or keys (`gcx.db`, its
//! `-wal` and `-shm`, the audit signing key) are for their owner only: the folder is
//! created `0700`, the files `0600` before anything is written to them, and an existing
//! file that others may read is tightened to `0600` with a warning. SQLite gives a new
//! `-wal` or `-shm` file the mode of its database, so a private `gcx.db` keeps them
//! private too.
//!
//! On other platforms than Unix these are no-ops: the folder's ACLs apply.

use std::io;
use std::path::Path;

/// Mode of the data folder.
pub const DIR_MODE: u32 = 0o700;
/// Mode of the store's files and the signing key.
pub const FILE_MODE: u32 = 0o600;

/// Creates `dir` (and missing parents) readable by its owner only. An existing folder is
/// left as it is (it may be shared on purpose), with a warning when others may enter it.
pub fn create_dir(dir: &Path) -> io::Result<()> {
    if dir.is_dir() {
        warn_if_open(dir, "the data folder", "chmod 700 it");
        return Ok(());
    }
    let mut builder = std::fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::DirBuilderExt;
        builder.mode(DIR_MODE);
    }
    builder.create(dir)
}

/// Makes sure `file` exists and only its owner may read or write it: created empty with
/// mode `0600` when missing, tightened to `0600` (with a warning) when it is more open.
pub fn ensure_file(file: &Path) -> io::Result<()> {
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(FILE_MODE);
    }
    match options.open(file) {
        Ok(_) => Ok(()),
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => tighten(file),
        Err(e) => Err(e),
    }
}

/// Tightens `file` to `0600` when it exists and others may read or write it.
pub fn tighten(file: &Path) -> io::Result<()> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let metadata = match std::fs::metadata(file) {
            Ok(m) => m,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
            Err(e) => return Err(e),
        };
        let mode = metadata.permissions().mode() & 0o777;
        if mode & 0o077 != 0 {
            std::fs::set_permissions(file, std::fs::Permissions::from_mode(FILE_MODE))?;
            tracing::warn!(
                file = %file.display(),
                was = %format!("{mode:o}"),
                "other users could read this file; its mode is now 600"
            );
        }
    }
    #[cfg(not(unix))]
    let _ = file;
    Ok(())
}

fn warn_if_open(path: &Path, what: &str, fix: &str) {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        if let Ok(m) = std::fs::metadata(path) {
            let mode = m.permissions().mode() & 0o777;
            if mode & 0o077 != 0 {
                tracing::warn!(
                    folder = %path.display(),
                    mode = %format!("{mode:o}"),
                    "{what} is open to other users (its files are not); {fix}"
                );
            }
        }
    }
    #[cfg(not(unix))]
    let _ = (path, what, fix);
}

#[cfg(all(test, unix))]
mod tests {
    use std::os::unix::fs::PermissionsExt;

    use super::*;

    fn mode(path: &Path) -> u32 {
        std::fs::metadata(path).unwrap().permissions().mode() & 0o777
    }

    #[test]
    fn folders_and_files_are_created_private() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("a/b");
        create_dir(&dir).unwrap();
        assert_eq!(mode(&dir), 0o700);
        assert_eq!(mode(&tmp.path().join("a")), 0o700);
        let file = dir.join("f");
        ensure_file(&file).unwrap();
        assert_eq!(mode(&file), 0o600);
    }

    #[test]
    fn an_open_file_is_tightened() {
        let tmp = tempfile::tempdir().unwrap();
        let file = tmp.path().join("f");
        std::fs::write(&file, "data").unwrap();
        std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o644)).unwrap();
        ensure_file(&file).unwrap();
        assert_eq!(mode(&file), 0o600);
        assert_eq!(std::fs::read_to_string(&file).unwrap(), "data");
        // A missing file is nothing to tighten.
        tighten(&tmp.path().join("missing")).unwrap();
    }
}
