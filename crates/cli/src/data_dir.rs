//! The data dir is the operator's alone: state, stores, blobs, keys and logs may hold
//! secrets, tokens' hashes and every tenant's data.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use anyhow::Context;
use rustix::fs::Mode;

/// Creates `dir` if needed and makes it owner-only: the process's umask becomes 077, so every
/// file and directory Nimbus creates from now on (redb files, objects, blobs, the secrets
/// key) is 0600/0700 whatever the operator's umask, and `dir` itself and what it already
/// holds at the top are set to 0700/0600 — a data dir made by an older Nimbus or by hand is
/// closed too (nothing below a 0700 directory is reachable by others).
pub fn prepare(dir: &Path) -> anyhow::Result<()> {
    rustix::process::umask(Mode::from_raw_mode(0o077));
    std::fs::create_dir_all(dir)
        .with_context(|| format!("cannot create data dir {}", dir.display()))?;
    restrict(dir, 0o700)?;
    for entry in
        std::fs::read_dir(dir).with_context(|| format!("cannot read data dir {}", dir.display()))?
    {
        let entry = entry.with_context(|| format!("cannot read data dir {}", dir.display()))?;
        let kind = entry.file_type()?;
        if kind.is_dir() {
            restrict(&entry.path(), 0o700)?;
        } else if kind.is_file() {
            restrict(&entry.path(), 0o600)?;
        }
    }
    Ok(())
}

fn restrict(path: &Path, mode: u32) -> anyhow::Result<()> {
    let current = std::fs::metadata(path)
        .with_context(|| format!("cannot read {}", path.display()))?
        .permissions()
        .mode();
    if current & 0o077 != 0 {
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))
            .with_context(|| format!("cannot make {} owner-only", path.display()))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "test code")]

    use super::*;

    #[test]
    fn an_open_data_dir_is_closed_and_new_files_are_owner_only() {
        let parent = tempfile::tempdir().unwrap();
        let dir = parent.path().join("data");
        std::fs::create_dir(&dir).unwrap();
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755)).unwrap();
        let old = dir.join("state.redb");
        std::fs::write(&old, b"x").unwrap();
        std::fs::set_permissions(&old, std::fs::Permissions::from_mode(0o644)).unwrap();

        prepare(&dir).unwrap();
        let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(&dir), 0o700);
        assert_eq!(mode(&old), 0o600);
        let new = dir.join("new.bin");
        std::fs::write(&new, b"y").unwrap();
        assert_eq!(mode(&new), 0o600);
        std::fs::create_dir(dir.join("sub")).unwrap();
        assert_eq!(mode(&dir.join("sub")), 0o700);
    }
}
