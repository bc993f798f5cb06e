//! The name under which a PostgreSQL store leases outbox rows (`claimed_by`).
//!
//! A lease outlives the process that took it: when gcx dies mid-delivery (kill -9, a
//! crash, a power cut) its rows, and every later row of their keys, wait for the lease to
//! end before anyone delivers them ([`crate::store::OUTBOX_LEASE`], 60 s). To spare a restarted
//! gcx that wait, the name belongs to the data folder: it is kept in
//! `<data_dir>/outbox-claimant` and is only used while holding an exclusive lock on that
//! file. The kernel drops the lock when its holder dies, however it dies, so whoever takes
//! the lock next knows that no live process delivers under that name, and takes back the
//! name's leased rows at once. A second live gcx on the same folder finds the lock taken
//! and leases under a name of its own, as an instance on another host does.

use std::fs::{File, OpenOptions, TryLockError};
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::Path;

use parking_lot::Mutex;
use uuid::Uuid;

/// The file in the data folder that holds the name, and whose lock says it is in use.
pub const CLAIMANT_FILE: &str = "outbox-claimant";

/// A leasing name, and the lock that keeps it this process's own while it lives.
#[derive(Debug)]
pub(crate) struct Claimant {
    name: String,
    /// Held until [`Claimant::release`] or the end of the process; `None` for a name of
    /// this process alone.
    lock: Mutex<Option<File>>,
}

impl Claimant {
    /// The data folder's name when its lock is free, else a name of this process alone
    /// (also when the folder cannot hold the file: leases then wait out their time after
    /// a crash).
    pub(crate) fn for_folder(data_dir: &Path) -> Claimant {
        match Self::folder_name(data_dir) {
            Ok(Some(claimant)) => claimant,
            Ok(None) => Self::of_this_process(),
            Err(e) => {
                tracing::warn!(folder = %data_dir.display(), error = %e,
                    "cannot keep an outbox lease name in the data folder; a restart after a crash will wait for this process's leases to end");
                Self::of_this_process()
            }
        }
    }

    /// `host:pid:random`, unique to this process.
    pub(crate) fn of_this_process() -> Claimant {
        Claimant {
            name: format!(
                "{}:{}",
                crate::instance::id(),
                &Uuid::new_v4().simple().to_string()[..8]
            ),
            lock: Mutex::new(None),
        }
    }

    pub(crate) fn name(&self) -> &str {
        &self.name
    }

    /// Gives the folder's name up: the next store opened on the folder (in this process
    /// or another) takes it, with its leases. Only once this store leases no more.
    pub(crate) fn release(&self) {
        self.lock.lock().take();
    }

    /// `Ok(None)` when another live process holds the folder's name.
    fn folder_name(data_dir: &Path) -> std::io::Result<Option<Claimant>> {
        std::fs::create_dir_all(data_dir)?;
        let mut file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(data_dir.join(CLAIMANT_FILE))?;
        match file.try_lock() {
            Ok(()) => {}
            Err(TryLockError::WouldBlock) => return Ok(None),
            Err(TryLockError::Error(e)) => return Err(e),
        }
        let mut text = String::new();
        file.read_to_string(&mut text)?;
        let name = match text.trim() {
            "" => {
                // First use of this folder (or a write cut short): a new name.
                let name = format!("folder:{}", Uuid::new_v4().simple());
                file.set_len(0)?;
                file.seek(SeekFrom::Start(0))?;
                file.write_all(name.as_bytes())?;
                file.sync_all()?;
                name
            }
            stored => stored.to_owned(),
        };
        Ok(Some(Claimant {
            name,
            lock: Mutex::new(Some(file)),
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_folder_keeps_its_name_across_holders() {
        let dir = tempfile::tempdir().unwrap();
        let first = Claimant::for_folder(dir.path());
        assert!(first.name().starts_with("folder:"), "{}", first.name());
        let name = first.name().to_owned();
        first.release();
        let again = Claimant::for_folder(dir.path());
        assert_eq!(again.name(), name);
        let stored = std::fs::read_to_string(dir.path().join(CLAIMANT_FILE)).unwrap();
        assert_eq!(stored, name);
    }

    #[test]
    fn a_second_live_holder_gets_a_name_of_its_own() {
        let dir = tempfile::tempdir().unwrap();
        let first = Claimant::for_folder(dir.path());
        let second = Claimant::for_folder(dir.path());
        assert_ne!(first.name(), second.name());
        assert!(!second.name().starts_with("folder:"), "{}", second.name());
        assert_ne!(
            Claimant::of_this_process().name(),
            Claimant::of_this_process().name()
        );
    }

    #[test]
    fn two_folders_have_two_names() {
        let (a, b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        assert_ne!(
            Claimant::for_folder(a.path()).name(),
            Claimant::for_folder(b.path()).name()
        );
    }

    #[test]
    fn a_folder_that_cannot_hold_the_file_gives_a_name_of_this_process() {
        let dir = tempfile::tempdir().unwrap();
        let not_a_folder = dir.path().join("file");
        std::fs::write(&not_a_folder, "x").unwrap();
        let claimant = Claimant::for_folder(&not_a_folder);
        assert!(
            !claimant.name().starts_with("folder:"),
            "{}",
            claimant.name()
        );
    }
}
