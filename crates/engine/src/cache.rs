//! A content-addressed cache of compiled components on disk.
//!
//! Layout: `<dir>/<engine-key>/<component-sha256>.cwasm`. The engine key is a hash of every
//! engine setting that affects the compiled code (wasmtime's own
//! `precompile_compatibility_hash`), so two engines configured differently never share an
//! artifact, and an upgrade of wasmtime simply misses the cache.
//!
//! Writes are crash-safe: the artifact is written to a temporary file in the same directory,
//! fsynced and renamed into place, so a reader sees either no file or a complete one. Loading
//! maps the file (`Component::deserialize_file`), so instances of the same component share the
//! compiled code's pages.

use std::hash::{Hash, Hasher};
use std::io::Write;
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};
use wasmtime::component::Component;

use crate::error::EngineError;

/// The compiled-artifact cache of one engine.
#[derive(Debug, Clone)]
pub struct ArtifactCache {
    dir: PathBuf,
}

/// The SHA-256 of a component's bytes, lower-case hex.
pub fn component_digest(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

impl ArtifactCache {
    /// Opens (creating if needed) the cache for `engine` under `root`.
    pub fn open(root: &Path, engine: &wasmtime::Engine) -> Result<Self, EngineError> {
        // DefaultHasher::new() uses fixed keys, so the key is stable for a given build of
        // Nimbus; a different build may produce a different key, which only costs a recompile.
        let mut hasher = std::collections::hash_map::DefaultHasher::new();
        engine.precompile_compatibility_hash().hash(&mut hasher);
        let dir = root.join(format!("{:016x}", hasher.finish()));
        std::fs::create_dir_all(&dir).map_err(|source| EngineError::Cache {
            path: dir.clone(),
            source,
        })?;
        Ok(Self { dir })
    }

    /// Where the artifact of the component with `digest` lives.
    pub fn path_of(&self, digest: &str) -> PathBuf {
        self.dir.join(format!("{digest}.cwasm"))
    }

    /// Loads the cached artifact for `digest`, or `None` on a miss. An artifact that exists
    /// but cannot be loaded (truncated by a crash of an older version, or incompatible) is
    /// removed and reported as a miss, so the caller recompiles it.
    pub fn load(
        &self,
        engine: &wasmtime::Engine,
        digest: &str,
    ) -> Result<Option<Component>, EngineError> {
        match self.deserialize(engine, digest) {
            Ok(component) => Ok(component),
            Err(err) => {
                let path = self.path_of(digest);
                tracing::warn!(path = %path.display(), error = %err, "discarding unusable cached artifact");
                let _ = std::fs::remove_file(&path);
                Ok(None)
            }
        }
    }

    /// Loads the artifact just stored for `digest`; unlike [`Self::load`], a failure is an
    /// error that says why (for example: the component needs more tables per module than the
    /// instance pool allows).
    pub(crate) fn load_fresh(
        &self,
        engine: &wasmtime::Engine,
        digest: &str,
    ) -> Result<Component, EngineError> {
        self.deserialize(engine, digest)
            .map_err(|e| EngineError::Compile(format!("{e:#}")))?
            .ok_or_else(|| EngineError::Compile("the compiled artifact disappeared".into()))
    }

    fn deserialize(
        &self,
        engine: &wasmtime::Engine,
        digest: &str,
    ) -> Result<Option<Component>, wasmtime::Error> {
        let path = self.path_of(digest);
        if !path.exists() {
            return Ok(None);
        }
        // SAFETY: `deserialize_file` trusts the file to be an artifact produced by
        // `Engine::precompile_component` of a compatible engine. Only this cache writes into
        // its directory, always through an atomic rename of a fully written and fsynced file,
        // and wasmtime itself checks the artifact header (version and engine settings) before
        // using it. The data dir must not be writable by untrusted users (documented).
        #[expect(unsafe_code, reason = "loading our own precompiled artifacts")]
        let loaded = unsafe { Component::deserialize_file(engine, &path) };
        loaded.map(Some)
    }

    /// Stores a compiled artifact for `digest` atomically and returns its path.
    pub fn store(&self, digest: &str, artifact: &[u8]) -> Result<PathBuf, EngineError> {
        let path = self.path_of(digest);
        let io_err = |source| EngineError::Cache {
            path: path.clone(),
            source,
        };
        let mut tmp = tempfile::NamedTempFile::new_in(&self.dir).map_err(io_err)?;
        tmp.write_all(artifact).map_err(io_err)?;
        tmp.as_file().sync_all().map_err(io_err)?;
        tmp.persist(&path).map_err(|e| io_err(e.error))?;
        // Make the rename itself durable.
        if let Ok(dir) = std::fs::File::open(&self.dir) {
            let _ = dir.sync_all();
        }
        Ok(path)
    }
}
