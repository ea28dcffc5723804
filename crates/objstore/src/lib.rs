//! Object storage for Nimbus apps: buckets of objects behind one small trait, the embedded
//! filesystem backend, and the S3 REST API that existing clients (aws CLI, boto3, any SDK)
//! speak — built on the `s3s` crate, which handles the protocol (SigV4, presigned URLs,
//! chunked uploads, XML) so that this crate only maps operations onto storage.
//!
//! # Layout
//!
//! - [`store`]: the [`ObjectStore`] trait and its types — what the S3 API (and, later,
//!   `wasi:blobstore` for functions) is written against.
//! - [`fs`]: [`FsStore`], the embedded backend: atomic, checksummed, streamed.
//! - [`s3`]: the `s3s::S3` implementation and error mapping; [`s3::KeyAuth`] for SigV4.
//! - [`guard`]: the checks s3s leaves to the server (signature age, credential scope,
//!   presigned-URL lifetime, SigV2), in front of it.
//! - [`xml`]: keys in listings: `encoding-type=url`, and nothing XML 1.0 cannot carry.
//! - [`keys`]: access keys Nimbus issues ([`KeyStore`]), one tenant each.
//! - [`server`]: the S3 listener.
//! - [`names`]: S3's naming rules.
//! - [`error`]: the error type, [`ObjectError`].

pub mod error;
pub mod fs;
pub mod guard;
pub mod keys;
pub mod names;
pub mod s3;
pub mod server;
pub mod store;
pub mod xml;

use std::path::Path;
use std::sync::Arc;

pub use error::ObjectError;
pub use fs::FsStore;
pub use keys::{AccessKey, KeyInfo, KeyStore};
pub use store::ObjectStore;

/// Everything the S3 listener needs, opened from one directory.
pub struct ObjectService {
    /// The storage.
    pub store: Arc<FsStore>,
    /// The access keys.
    pub keys: KeyStore,
}

impl ObjectService {
    /// Opens the embedded store and key store under `dir`; access-key secrets are sealed with
    /// `sealer`.
    pub fn open(dir: &Path, sealer: nimbus_secrets::Sealer) -> Result<Self, ObjectError> {
        let store = FsStore::open(dir)?;
        let keys = KeyStore::new(store.database(), sealer)?;
        Ok(Self {
            store: Arc::new(store),
            keys,
        })
    }

    /// The S3 service (signature checks against the key store, AWS bucket-name rules)
    /// under `policy`.
    pub fn s3_service(&self, policy: guard::AuthPolicy) -> guard::GuardedS3 {
        self.s3_service_over(self.store.clone(), policy)
    }

    /// The S3 service over `store` — this service's store behind a wrapper (e.g. one that
    /// reports changes to triggers) — under `policy`.
    pub fn s3_service_over(
        &self,
        store: Arc<dyn ObjectStore>,
        policy: guard::AuthPolicy,
    ) -> guard::GuardedS3 {
        let api = s3::S3Api::new(store, self.keys.clone());
        let mut builder = s3s::service::S3ServiceBuilder::new(api);
        builder.set_auth(s3::KeyAuth(self.keys.clone()));
        guard::GuardedS3::new(builder.build(), policy)
    }
}

/// Milliseconds since the Unix epoch.
pub(crate) fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}
