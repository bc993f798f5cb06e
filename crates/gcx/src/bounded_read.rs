//! Reading a settings file (configuration, `gc` profiles, scenario, action catalogue) with
//! a size cap, so a path to something endless (`/dev/zero`, a FIFO) or huge is refused
//! after reading at most the cap, with the file's size and the cap in the message.

use std::io::Read;
use std::path::Path;

/// The most bytes a settings file may hold: far above any real one (the shipped
/// examples are a few KiB).
pub const MAX_SETTINGS_FILE: u64 = 1024 * 1024;

/// Why a settings file was not read.
#[derive(Debug, thiserror::Error)]
pub enum BoundedReadError {
    #[error("{0}")]
    Io(#[from] std::io::Error),
    #[error("the file is {} bytes; at most {cap} bytes ({} KiB) are read", size.map_or_else(|| format!("more than {cap}"), |s| s.to_string()), cap / 1024)]
    TooLarge {
        /// The size the file system reports, when it reports one (not for devices and
        /// pipes, which are read up to the cap).
        size: Option<u64>,
        cap: u64,
    },
    #[error("the file is not UTF-8 text (at byte {at})")]
    NotText { at: usize },
}

impl BoundedReadError {
    /// Whether the file does not exist.
    pub fn is_not_found(&self) -> bool {
        matches!(self, BoundedReadError::Io(e) if e.kind() == std::io::ErrorKind::NotFound)
    }
}

/// The text of the file at `path`, if it holds at most `cap` bytes of UTF-8.
pub fn read_to_string(path: &Path, cap: u64) -> Result<String, BoundedReadError> {
    let file = std::fs::File::open(path)?;
    let reported = file
        .metadata()
        .ok()
        .filter(std::fs::Metadata::is_file)
        .map(|m| m.len());
    if let Some(size) = reported.filter(|s| *s > cap) {
        return Err(BoundedReadError::TooLarge {
            size: Some(size),
            cap,
        });
    }
    let mut bytes = Vec::new();
    file.take(cap + 1).read_to_end(&mut bytes)?;
    if bytes.len() as u64 > cap {
        return Err(BoundedReadError::TooLarge {
            size: reported.filter(|s| *s > cap),
            cap,
        });
    }
    String::from_utf8(bytes).map_err(|e| BoundedReadError::NotText {
        at: e.utf8_error().valid_up_to(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_endless_device_is_cut_at_the_cap() {
        let e = read_to_string(Path::new("/dev/zero"), 1024).unwrap_err();
        assert_eq!(
            e.to_string(),
            "the file is more than 1024 bytes; at most 1024 bytes (1 KiB) are read"
        );
    }

    #[test]
    fn a_large_file_names_its_size() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("big.toml");
        std::fs::write(&path, vec![b'#'; 3000]).unwrap();
        let e = read_to_string(&path, 2048).unwrap_err().to_string();
        assert_eq!(
            e,
            "the file is 3000 bytes; at most 2048 bytes (2 KiB) are read"
        );
        assert_eq!(read_to_string(&path, 3000).unwrap().len(), 3000);
        assert!(
            read_to_string(&dir.path().join("nope"), 10)
                .unwrap_err()
                .is_not_found()
        );
    }
}
