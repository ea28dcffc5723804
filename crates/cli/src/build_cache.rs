//! Which builds can be skipped: `nimbus deploy` runs a function's `build` command only when its
//! inputs changed since that command last succeeded.
//!
//! A build's fingerprint is a SHA-256 over its command and every file of the app directory —
//! path, length and content, in path order — except the build's own outputs (the components
//! of the functions it builds) and the directories listed in [`SKIPPED_DIRS`] (dependencies
//! that a lock file already pins, caches, version control). It is taken after a successful
//! build, so files the build itself writes (a lock file npm updates) count as its inputs, and
//! kept in `.nimbus/builds.json` in the app directory. A build is skipped when the fingerprint
//! taken now equals the stored one and every output exists; componentize-js writes a different
//! component on every build, so skipping is also what keeps an unchanged redeploy from being
//! compiled again.

use std::collections::BTreeMap;
use std::io::Read;
use std::path::{Path, PathBuf};

use anyhow::Context;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// Directories whose contents are not build inputs.
pub const SKIPPED_DIRS: &[&str] = &[
    ".nimbus",
    ".git",
    "node_modules",
    "target",
    "__pycache__",
    ".venv",
    "venv",
];

/// Where the fingerprints live, relative to the app directory.
const STATE_FILE: &str = ".nimbus/builds.json";

/// The fingerprints of the builds that last succeeded, by command.
#[derive(Debug, Default, Serialize, Deserialize)]
pub struct BuildState {
    /// Format version.
    pub v: u32,
    /// Command → fingerprint (hex SHA-256).
    pub builds: BTreeMap<String, String>,
}

impl BuildState {
    /// The state of `dir`; empty if there is none or it cannot be read (a build then runs).
    pub fn load(dir: &Path) -> Self {
        std::fs::read(dir.join(STATE_FILE))
            .ok()
            .and_then(|bytes| serde_json::from_slice(&bytes).ok())
            .unwrap_or_default()
    }

    /// Writes the state into `dir/.nimbus/`.
    pub fn save(&self, dir: &Path) -> anyhow::Result<()> {
        let path = dir.join(STATE_FILE);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent)
                .with_context(|| format!("cannot create {}", parent.display()))?;
        }
        let text = serde_json::to_vec_pretty(self)?;
        std::fs::write(&path, text).with_context(|| format!("cannot write {}", path.display()))
    }
}

/// The fingerprint of `command` run in `dir`, whose outputs are `outputs` (paths relative to
/// `dir`).
pub fn fingerprint(dir: &Path, command: &str, outputs: &[PathBuf]) -> anyhow::Result<String> {
    let mut files = Vec::new();
    collect(dir, Path::new(""), &mut files)?;
    files.sort();
    let mut hash = Sha256::new();
    hash.update(command.as_bytes());
    hash.update([0]);
    let mut buf = vec![0u8; 64 * 1024];
    for relative in files {
        if outputs.iter().any(|o| o == &relative) {
            continue;
        }
        let path = dir.join(&relative);
        let mut file = std::fs::File::open(&path)
            .with_context(|| format!("cannot read {}", path.display()))?;
        hash.update(relative.to_string_lossy().as_bytes());
        hash.update([0]);
        hash.update(file.metadata()?.len().to_le_bytes());
        loop {
            let n = file.read(&mut buf)?;
            if n == 0 {
                break;
            }
            hash.update(&buf[..n]);
        }
    }
    Ok(hex::encode(hash.finalize()))
}

/// Every regular file below `dir/relative` (symlinks followed to files, not to directories).
fn collect(dir: &Path, relative: &Path, files: &mut Vec<PathBuf>) -> anyhow::Result<()> {
    let here = dir.join(relative);
    let entries =
        std::fs::read_dir(&here).with_context(|| format!("cannot read {}", here.display()))?;
    for entry in entries {
        let entry = entry.with_context(|| format!("cannot read {}", here.display()))?;
        let name = entry.file_name();
        let path = relative.join(&name);
        let kind = entry.file_type()?;
        if kind.is_dir() {
            if !SKIPPED_DIRS.iter().any(|skip| name == *skip) {
                collect(dir, &path, files)?;
            }
        } else if kind.is_file() || (kind.is_symlink() && dir.join(&path).is_file()) {
            files.push(path);
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "test code")]

    use super::*;

    #[test]
    fn the_fingerprint_follows_inputs_and_ignores_outputs_and_dependencies() {
        let app = tempfile::tempdir().unwrap();
        let dir = app.path();
        std::fs::create_dir_all(dir.join("src")).unwrap();
        std::fs::create_dir_all(dir.join("dist")).unwrap();
        std::fs::create_dir_all(dir.join("node_modules/x")).unwrap();
        std::fs::write(dir.join("src/index.js"), "a").unwrap();
        std::fs::write(dir.join("package.json"), "{}").unwrap();
        let outputs = [PathBuf::from("dist/app.wasm")];
        let print = || fingerprint(dir, "make", &outputs).unwrap();
        let first = print();

        // Outputs, dependencies and the state itself are not inputs.
        std::fs::write(dir.join("dist/app.wasm"), "new component").unwrap();
        std::fs::write(dir.join("node_modules/x/index.js"), "dep").unwrap();
        BuildState::default().save(dir).unwrap();
        assert_eq!(print(), first);

        // A changed, added or renamed source file is; so is the command.
        std::fs::write(dir.join("src/index.js"), "b").unwrap();
        let changed = print();
        assert_ne!(changed, first);
        std::fs::write(dir.join("src/more.js"), "").unwrap();
        assert_ne!(print(), changed);
        let added = print();
        std::fs::rename(dir.join("src/more.js"), dir.join("src/other.js")).unwrap();
        assert_ne!(print(), added);
        assert_ne!(fingerprint(dir, "make all", &outputs).unwrap(), print());
    }

    #[test]
    fn state_round_trips_and_a_broken_file_reads_as_empty() {
        let app = tempfile::tempdir().unwrap();
        let mut state = BuildState::default();
        state.builds.insert("make".into(), "abc".into());
        state.save(app.path()).unwrap();
        assert_eq!(BuildState::load(app.path()).builds["make"], "abc");
        std::fs::write(app.path().join(STATE_FILE), "{not json").unwrap();
        assert!(BuildState::load(app.path()).builds.is_empty());
    }
}
