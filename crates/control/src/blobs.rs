//! Content-addressed storage of uploaded components: `<dir>/sha256/<hex>`.
//!
//! An upload streams into a temporary file in the same directory while being hashed; only if
//! the hash matches the digest the client named is it fsynced and renamed into place. So a
//! blob's name always matches its content, a half-finished or interrupted upload is never
//! visible, and names cannot escape the directory (they are validated as 64 hex digits).

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

    /// Whether the blob exists.
    pub fn contains(&self, digest: &str) -> Result<bool, ControlError> {
        Ok(self.path(digest)?.exists())
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
