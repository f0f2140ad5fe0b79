//! Writing a secret (officeswitch's proof key, its token secret) to its file: readable by
//! the owner only, never half-written (a temporary file in the same directory, renamed into
//! place), and never over a file that exists unless forced, even one that appeared while
//! the secret was being written.

use std::fs;
use std::io::{self, Write as _};
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

/// Why a secret file was not written.
#[derive(Debug)]
pub(crate) enum WriteError {
    /// `path` exists and `force` was not given.
    Exists,
    /// The file system refused.
    Io(io::Error),
}

/// Refuses early when `path` exists and `force` is not given (before generating a secret
/// for nothing); [`write_new`] checks again at the end.
pub(crate) fn check_absent(path: &Path, force: bool) -> Result<(), WriteError> {
    if !force && fs::symlink_metadata(path).is_ok() {
        return Err(WriteError::Exists);
    }
    Ok(())
}

/// Writes `data` to `path` (mode 0600), creating its directory; replaces an existing file
/// only if `force`.
pub(crate) fn write_new(path: &Path, force: bool, data: &[u8]) -> Result<(), WriteError> {
    check_absent(path, force)?;
    let file_name = path.file_name().ok_or_else(|| {
        WriteError::Io(io::Error::new(
            io::ErrorKind::InvalidInput,
            "the path does not end in a file name",
        ))
    })?;
    let dir = match path.parent() {
        Some(parent) if !parent.as_os_str().is_empty() => parent,
        _ => Path::new("."),
    };
    fs::create_dir_all(dir).map_err(WriteError::Io)?;
    let tmp = dir.join(temp_name(file_name));
    let result = write_private_file(&tmp, data)
        .map_err(WriteError::Io)
        .and_then(|()| install(&tmp, path, force));
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result?;
    sync_dir(dir);
    Ok(())
}

/// A fresh hidden name next to the file for the temporary copy.
fn temp_name(file_name: &std::ffi::OsStr) -> String {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos());
    format!(
        ".{}.tmp.{}.{}.{}",
        file_name.to_string_lossy(),
        std::process::id(),
        nanos,
        COUNTER.fetch_add(1, Ordering::Relaxed)
    )
}

/// Creates `path` (which must not exist) readable by the owner only, and writes `data` durably.
fn write_private_file(path: &Path, data: &[u8]) -> io::Result<()> {
    let mut options = fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt as _;
        options.mode(0o600);
    }
    let mut file = options.open(path)?;
    #[cfg(unix)]
    {
        // The umask can only remove bits from 0600, but make the mode exact anyway.
        use std::os::unix::fs::PermissionsExt as _;
        file.set_permissions(fs::Permissions::from_mode(0o600))?;
    }
    file.write_all(data)?;
    file.sync_all()
}

/// Moves the finished temporary file to `path`: replacing it if `force`, else only if absent.
fn install(tmp: &Path, path: &Path, force: bool) -> Result<(), WriteError> {
    if force {
        return fs::rename(tmp, path).map_err(WriteError::Io);
    }
    // A hard link fails if `path` exists, so a file created meanwhile is never clobbered.
    match fs::hard_link(tmp, path) {
        Ok(()) => {
            let _ = fs::remove_file(tmp);
            Ok(())
        }
        Err(error) if error.kind() == io::ErrorKind::AlreadyExists => Err(WriteError::Exists),
        // Filesystems without hard links: check, then rename.
        Err(_) if fs::symlink_metadata(path).is_ok() => Err(WriteError::Exists),
        Err(_) => fs::rename(tmp, path).map_err(WriteError::Io),
    }
}

/// Makes the rename durable (best effort; not all platforms can open a directory).
fn sync_dir(dir: &Path) {
    #[cfg(unix)]
    if let Ok(dir) = fs::File::open(dir) {
        let _ = dir.sync_all();
    }
    #[cfg(not(unix))]
    let _ = dir;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn install_without_force_never_clobbers_a_file_that_appeared_meanwhile() {
        let dir = tempfile::tempdir().unwrap();
        let tmp = dir.path().join(".k.tmp");
        let path = dir.path().join("k.pem");
        fs::write(&tmp, "new").unwrap();
        fs::write(&path, "someone else's").unwrap();
        assert!(matches!(
            install(&tmp, &path, false),
            Err(WriteError::Exists)
        ));
        assert_eq!(fs::read_to_string(&path).unwrap(), "someone else's");
        install(&tmp, &path, true).unwrap();
        assert_eq!(fs::read_to_string(&path).unwrap(), "new");
        assert!(!tmp.exists());
    }

    #[cfg(unix)]
    #[test]
    fn written_files_are_private_and_refused_over_existing_ones() {
        use std::os::unix::fs::PermissionsExt as _;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sub/secret");
        write_new(&path, false, b"one").unwrap();
        let mode = fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        assert!(matches!(
            write_new(&path, false, b"two"),
            Err(WriteError::Exists)
        ));
        write_new(&path, true, b"two").unwrap();
        assert_eq!(fs::read(&path).unwrap(), b"two");
    }
}
