//! Content-addressed storage of uploaded components: `<dir>/sha256/<hex>`.
//!
//! An upload streams into a temporary file in the same directory while being hashed; only if
//! the hash matches the digest the client named is it fsynced and renamed into place. So a
//! blob's name always matches its content, a half-finished or interrupted upload is never
//! visible, and names cannot escape the directory (they are validated as 64 hex digits).
//!
//! Blobs no stored version references — uploads whose deploy was refused, components of
//! deleted apps — are removed by [`BlobStore::sweep`] once they are older than a grace period,
//! so a blob uploaded for a deploy still on its way is never taken. Looking a blob up
//! ([`BlobStore::contains`], which `HEAD /v1/blobs/{digest}` and deploys call) renews its
//! grace period: a client that found a blob stored and skips its upload can rely on it.

use std::io::Write;
use std::path::{Path, PathBuf};

use bytes::Bytes;
use futures::{Stream, StreamExt};
use sha2::{Digest, Sha256};

use crate::error::ControlError;

/// The blob store.
#[derive(Debug, Clone)]
pub struct BlobStore {
    dir: PathBuf,
    max_bytes: u64,
}

/// Checks that `digest` is a lower-case hex SHA-256.
pub fn validate_digest(digest: &str) -> Result<(), ControlError> {
    if digest.len() == 64
        && digest
            .bytes()
            .all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
    {
        Ok(())
    } else {
        Err(ControlError::BadRequest(format!(
            "invalid digest `{}`: expected 64 lower-case hex digits (SHA-256)",
            digest.chars().take(80).collect::<String>()
        )))
    }
}

impl BlobStore {
    /// Opens (creating) the store under `root`; uploads larger than `max_bytes` are refused.
    pub fn open(root: &Path, max_bytes: u64) -> Result<Self, ControlError> {
        let dir = root.join("sha256");
        std::fs::create_dir_all(&dir)
            .map_err(ControlError::io(format!("create {}", dir.display())))?;
        Ok(Self { dir, max_bytes })
    }

    /// The path of a blob (validated digest).
    pub fn path(&self, digest: &str) -> Result<PathBuf, ControlError> {
        validate_digest(digest)?;
        Ok(self.dir.join(digest))
    }

    /// Whether the blob exists; if it does, its grace period against [`Self::sweep`] starts
    /// again.
    pub fn contains(&self, digest: &str) -> Result<bool, ControlError> {
        let path = self.path(digest)?;
        match std::fs::File::options().write(true).open(&path) {
            Ok(file) => {
                if let Err(e) = file.set_modified(std::time::SystemTime::now()) {
                    tracing::debug!(error = %e, digest, "could not renew a blob's grace period");
                }
                Ok(true)
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(false),
            Err(e) => Err(ControlError::io(format!("open {}", path.display()))(e)),
        }
    }

    /// Removes every blob not in `keep`, and every unfinished upload, last touched more than
    /// `grace` ago. Returns how many files were removed. Blocking: call it off the runtime.
    pub fn sweep(
        &self,
        keep: &std::collections::HashSet<String>,
        grace: std::time::Duration,
    ) -> Result<usize, ControlError> {
        let cutoff = std::time::SystemTime::now()
            .checked_sub(grace)
            .unwrap_or(std::time::UNIX_EPOCH);
        let entries = std::fs::read_dir(&self.dir)
            .map_err(ControlError::io(format!("read {}", self.dir.display())))?;
        let mut removed = 0;
        for entry in entries {
            let entry = entry.map_err(ControlError::io(format!("read {}", self.dir.display())))?;
            let name = entry.file_name().to_string_lossy().into_owned();
            // A stored blob named by a version, or an upload that went quiet.
            if keep.contains(&name) {
                continue;
            }
            let touched = entry.metadata().and_then(|m| m.modified());
            match touched {
                Ok(at) if at <= cutoff => {}
                _ => continue,
            }
            match std::fs::remove_file(entry.path()) {
                Ok(()) => {
                    removed += 1;
                    tracing::info!(blob = %name, "removed a blob no version references");
                }
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => {
                    return Err(ControlError::io(format!(
                        "remove {}",
                        entry.path().display()
                    ))(e));
                }
            }
        }
        Ok(removed)
    }

    /// Reads a whole blob.
    pub async fn read(&self, digest: &str) -> Result<Vec<u8>, ControlError> {
        let path = self.path(digest)?;
        match tokio::fs::read(&path).await {
            Ok(bytes) => Ok(bytes),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Err(ControlError::NotFound(
                format!("blob {digest} not found; upload it first"),
            )),
            Err(e) => Err(ControlError::io(format!("read {}", path.display()))(e)),
        }
    }

    /// Stores a blob from a stream of chunks, verifying it hashes to `digest`. Returns the
    /// number of bytes stored.
    pub async fn put<S, E>(&self, digest: &str, mut body: S) -> Result<u64, ControlError>
    where
        S: Stream<Item = Result<Bytes, E>> + Unpin,
        E: std::fmt::Display,
    {
        let path = self.path(digest)?;
        let dir = self.dir.clone();
        let mut tmp = tokio::task::spawn_blocking(move || tempfile::NamedTempFile::new_in(dir))
            .await
            .map_err(|e| ControlError::Store(e.to_string()))?
            .map_err(ControlError::io("create temporary blob"))?;
        let mut hasher = Sha256::new();
        let mut size = 0u64;
        while let Some(chunk) = body.next().await {
            let chunk =
                chunk.map_err(|e| ControlError::BadRequest(format!("upload interrupted: {e}")))?;
            size += chunk.len() as u64;
            if size > self.max_bytes {
                return Err(ControlError::TooLarge(format!(
                    "upload exceeds the limit of {} bytes",
                    self.max_bytes
                )));
            }
            hasher.update(&chunk);
            // Chunks are small (≤ 64 KiB from hyper); a blocking write of one is fine here.
            tmp.write_all(&chunk)
                .map_err(ControlError::io("write blob"))?;
        }
        let actual = hex::encode(hasher.finalize());
        if actual != digest {
            return Err(ControlError::BadRequest(format!(
                "uploaded content hashes to {actual}, not {digest}"
            )));
        }
        tokio::task::spawn_blocking(move || -> Result<(), ControlError> {
            tmp.as_file()
                .sync_all()
                .map_err(ControlError::io("fsync blob"))?;
            tmp.persist(&path)
                .map_err(|e| ControlError::io(format!("store {}", path.display()))(e.error))?;
            Ok(())
        })
        .await
        .map_err(|e| ControlError::Store(e.to_string()))??;
        Ok(size)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "test code")]

    use std::collections::HashSet;
    use std::time::Duration;

    use super::*;

    async fn put(store: &BlobStore, content: &'static [u8]) -> String {
        let digest = hex::encode(Sha256::digest(content));
        let chunks = futures::stream::iter([Ok::<_, std::io::Error>(Bytes::from_static(content))]);
        store.put(&digest, chunks).await.unwrap();
        digest
    }

    #[tokio::test]
    async fn sweeping_removes_unreferenced_blobs_past_their_grace_period() {
        let dir = tempfile::tempdir().unwrap();
        let store = BlobStore::open(dir.path(), 1 << 20).unwrap();
        let kept = put(&store, b"referenced").await;
        let orphan = put(&store, b"refused deploy").await;
        std::fs::write(dir.path().join("sha256/.tmpA1b2C3"), b"interrupted upload").unwrap();
        let keep: HashSet<String> = [kept.clone()].into();

        // Everything is younger than an hour: nothing goes.
        assert_eq!(store.sweep(&keep, Duration::from_secs(3600)).unwrap(), 0);
        assert!(store.contains(&orphan).unwrap());

        assert_eq!(store.sweep(&keep, Duration::ZERO).unwrap(), 2);
        assert!(store.contains(&kept).unwrap());
        assert!(!store.contains(&orphan).unwrap());
        assert!(!dir.path().join("sha256/.tmpA1b2C3").exists());
    }

    #[tokio::test]
    async fn looking_a_blob_up_renews_its_grace_period() {
        let dir = tempfile::tempdir().unwrap();
        let store = BlobStore::open(dir.path(), 1 << 20).unwrap();
        let digest = put(&store, b"component").await;
        let path = store.path(&digest).unwrap();
        let old = std::time::SystemTime::now() - Duration::from_secs(7200);
        std::fs::File::options()
            .write(true)
            .open(&path)
            .unwrap()
            .set_modified(old)
            .unwrap();
        assert!(store.contains(&digest).unwrap());
        // Renewed: an hour's grace keeps it.
        let keep = HashSet::new();
        assert_eq!(store.sweep(&keep, Duration::from_secs(3600)).unwrap(), 0);
        assert!(store.contains(&digest).unwrap());
    }
}
