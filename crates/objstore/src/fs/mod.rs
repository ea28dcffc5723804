//! The embedded backend: object bytes in files, metadata in redb.
//!
//! ```text
//! <dir>/objects.redb   buckets, objects, multipart uploads and parts (and access keys)
//! <dir>/data/<id>      immutable data files, named by random id, never by the user's key
//! <dir>/tmp/<id>       bodies being received
//! ```
//!
//! **Writes** stream into `tmp/<id>` while MD5 (the ETag) and CRC-32C are computed, then fsync, rename into
//! `data/`, fsync the directory, and only then commit the metadata row; the file an overwrite
//! replaced is removed after that commit. A crash anywhere leaves at worst an unreferenced file
//! (swept at the next open): no reader ever sees a partial object, and an acknowledged one is
//! on disk.
//!
//! **Objects are lists of segments** (data files): a PUT makes one, a completed multipart upload
//! keeps its part files as they are, in order — completing a 1 GiB upload moves metadata, not
//! bytes. A copy hard-links the source's files (they are never modified in place).
//!
//! **Reads** open every segment file up front (so a concurrent overwrite cannot pull a file away
//! mid-stream) and verify each segment's CRC-32C whenever they read it whole; a mismatch ends
//! the stream with an error instead of corrupt bytes. Range reads that cover part of a segment
//! are not verified (there is no per-block checksum).
//!
//! # Layout
//! - this file: the records, opening and sweeping the store, the bucket and object operations;
//! - `write`: a body streamed into a data file, and the commit that makes it an object;
//! - `read`: segments streamed back, checksums verified;
//! - `multipart`: uploads, parts, completing and aborting.

mod multipart;
mod read;
mod write;

use std::collections::{BTreeMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use async_trait::async_trait;
use bytes::{Bytes, BytesMut};
use futures::StreamExt;
use md5::Digest;
use md5::Md5;
use redb::{Database, ReadableDatabase, ReadableTable, TableDefinition};
use serde::{Deserialize, Serialize};
use tokio::io::AsyncWriteExt;

use crate::ObjectError;
use crate::error::store_err;
use crate::names::{check_bucket_name, check_key};
use read::{SegmentRead, read_stream, resolve_range};

use crate::store::{
    BucketInfo, ByteRange, ByteStream, ListPage, ListQuery, MAX_PART_NUMBER, MAX_PUT_BYTES,
    MIN_PART_BYTES, ObjectInfo, ObjectMeta, ObjectRead, ObjectStore, PartInfo,
};

const BUCKETS: TableDefinition<&str, &[u8]> = TableDefinition::new("buckets");
const OBJECTS: TableDefinition<&str, &[u8]> = TableDefinition::new("objects");
const UPLOADS: TableDefinition<&str, &[u8]> = TableDefinition::new("uploads");
const PARTS: TableDefinition<&str, &[u8]> = TableDefinition::new("parts");

/// Write buffer between the network and the file.
const WRITE_BUFFER: usize = 1 << 20;
/// Bytes received between background flushes of a body being written.
const FLUSH_EVERY: u64 = 32 << 20;
/// Read chunk size.
const READ_CHUNK: usize = 1 << 20;

#[derive(Debug, Clone, Serialize, Deserialize)]
struct BucketRecord {
    created_ms: u64,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct Segment {
    file: String,
    size: u64,
    /// CRC-32C of the file's bytes (hardware-accelerated: verifying costs reads next to
    /// nothing; it catches corruption, not tampering — the data dir is trusted).
    crc32c: u32,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct ObjectRecord {
    size: u64,
    etag: String,
    content_type: Option<String>,
    user_metadata: BTreeMap<String, String>,
    modified_ms: u64,
    segments: Vec<Segment>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct UploadRecord {
    tenant: String,
    bucket: String,
    key: String,
    content_type: Option<String>,
    user_metadata: BTreeMap<String, String>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct PartRecord {
    segment: Segment,
    md5: String,
    modified_ms: u64,
}

/// The filesystem object store.
#[derive(Clone)]
pub struct FsStore {
    dir: Arc<PathBuf>,
    db: Arc<Database>,
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

fn time_of(ms: u64) -> SystemTime {
    UNIX_EPOCH + Duration::from_millis(ms)
}

fn bucket_key(tenant: &str, bucket: &str) -> String {
    format!("{tenant}/{bucket}")
}

/// `tenant/bucket/` — neither may contain `/`, so this prefix is unambiguous.
fn object_prefix(tenant: &str, bucket: &str) -> String {
    format!("{tenant}/{bucket}/")
}

fn part_key(upload: &str, number: u32) -> String {
    format!("{upload}/{number:05}")
}

fn encode<T: Serialize>(value: &T) -> Result<Vec<u8>, ObjectError> {
    serde_json::to_vec(value).map_err(store_err)
}

fn decode<T: for<'de> Deserialize<'de>>(bytes: &[u8]) -> Result<T, ObjectError> {
    serde_json::from_slice(bytes).map_err(store_err)
}

impl ObjectRecord {
    fn info(&self, key: &str) -> ObjectInfo {
        ObjectInfo {
            key: key.to_owned(),
            size: self.size,
            etag: self.etag.clone(),
            last_modified: time_of(self.modified_ms),
            meta: ObjectMeta {
                content_type: self.content_type.clone(),
                user_metadata: self.user_metadata.clone(),
            },
        }
    }
}

impl FsStore {
    /// Opens (creating) the store under `dir`, removing what a crash may have left behind:
    /// partial bodies in `tmp/` and data files no object or part refers to.
    pub fn open(dir: &Path) -> Result<Self, ObjectError> {
        for sub in ["data", "tmp"] {
            std::fs::create_dir_all(dir.join(sub)).map_err(ObjectError::io(format!(
                "creating {}",
                dir.join(sub).display()
            )))?;
        }
        let db = nimbus_redb::create(dir.join("objects.redb"), nimbus_redb::cache::HOT_READ_CACHE)
            .map_err(store_err)?;
        let txn = db.begin_write().map_err(store_err)?;
        for table in [BUCKETS, OBJECTS, UPLOADS, PARTS] {
            txn.open_table(table).map_err(store_err)?;
        }
        txn.commit().map_err(store_err)?;
        let store = Self {
            dir: Arc::new(dir.to_owned()),
            db: Arc::new(db),
        };
        store.sweep()?;
        Ok(store)
    }

    /// The metadata database (shared with the access-key store).
    pub fn database(&self) -> Arc<Database> {
        self.db.clone()
    }

    fn sweep(&self) -> Result<(), ObjectError> {
        let tmp = self.dir.join("tmp");
        for entry in std::fs::read_dir(&tmp).map_err(ObjectError::io("reading tmp/"))? {
            let entry = entry.map_err(ObjectError::io("reading tmp/"))?;
            let _ = std::fs::remove_file(entry.path());
        }
        let mut referenced = HashSet::new();
        let txn = self.db.begin_read().map_err(store_err)?;
        for row in txn
            .open_table(OBJECTS)
            .map_err(store_err)?
            .iter()
            .map_err(store_err)?
        {
            let (_, v) = row.map_err(store_err)?;
            let record: ObjectRecord = decode(v.value())?;
            referenced.extend(record.segments.into_iter().map(|s| s.file));
        }
        for row in txn
            .open_table(PARTS)
            .map_err(store_err)?
            .iter()
            .map_err(store_err)?
        {
            let (_, v) = row.map_err(store_err)?;
            let part: PartRecord = decode(v.value())?;
            referenced.insert(part.segment.file);
        }
        let data = self.dir.join("data");
        let mut removed = 0;
        for entry in std::fs::read_dir(&data).map_err(ObjectError::io("reading data/"))? {
            let entry = entry.map_err(ObjectError::io("reading data/"))?;
            let name = entry.file_name().to_string_lossy().into_owned();
            if !referenced.contains(&name) && std::fs::remove_file(entry.path()).is_ok() {
                removed += 1;
            }
        }
        if removed > 0 {
            tracing::info!(removed, "removed unreferenced object data files");
        }
        Ok(())
    }

    fn data_path(&self, file: &str) -> PathBuf {
        self.dir.join("data").join(file)
    }

    /// Runs `f` in a write transaction on the blocking pool; commits if it succeeds.
    async fn write_txn<T: Send + 'static>(
        &self,
        f: impl FnOnce(&redb::WriteTransaction) -> Result<T, ObjectError> + Send + 'static,
    ) -> Result<T, ObjectError> {
        let db = self.db.clone();
        tokio::task::spawn_blocking(move || {
            let txn = db.begin_write().map_err(store_err)?;
            let value = f(&txn)?;
            txn.commit().map_err(store_err)?;
            Ok(value)
        })
        .await
        .map_err(store_err)?
    }

    fn require_bucket(&self, tenant: &str, bucket: &str) -> Result<(), ObjectError> {
        check_bucket_name(bucket)?;
        let txn = self.db.begin_read().map_err(store_err)?;
        let table = txn.open_table(BUCKETS).map_err(store_err)?;
        if table
            .get(bucket_key(tenant, bucket).as_str())
            .map_err(store_err)?
            .is_none()
        {
            return Err(ObjectError::NoSuchBucket(bucket.to_owned()));
        }
        Ok(())
    }

    fn record(&self, tenant: &str, bucket: &str, key: &str) -> Result<ObjectRecord, ObjectError> {
        self.require_bucket(tenant, bucket)?;
        check_key(key)?;
        let txn = self.db.begin_read().map_err(store_err)?;
        let table = txn.open_table(OBJECTS).map_err(store_err)?;
        let full = object_prefix(tenant, bucket) + key;
        match table.get(full.as_str()).map_err(store_err)? {
            Some(v) => decode(v.value()),
            None => Err(ObjectError::NoSuchKey(bucket.to_owned(), key.to_owned())),
        }
    }
}

async fn sync_dir(dir: PathBuf) -> Result<(), ObjectError> {
    tokio::task::spawn_blocking(move || {
        std::fs::File::open(&dir)
            .and_then(|d| d.sync_all())
            .map_err(ObjectError::io(format!("syncing {}", dir.display())))
    })
    .await
    .map_err(store_err)?
}

#[async_trait]
impl ObjectStore for FsStore {
    async fn create_bucket(&self, tenant: &str, bucket: &str) -> Result<(), ObjectError> {
        check_bucket_name(bucket)?;
        let row = bucket_key(tenant, bucket);
        let name = bucket.to_owned();
        let bytes = encode(&BucketRecord {
            created_ms: now_ms(),
        })?;
        self.write_txn(move |txn| {
            let mut table = txn.open_table(BUCKETS).map_err(store_err)?;
            if table.get(row.as_str()).map_err(store_err)?.is_some() {
                return Err(ObjectError::BucketExists(name));
            }
            table
                .insert(row.as_str(), bytes.as_slice())
                .map_err(store_err)?;
            Ok(())
        })
        .await
    }

    async fn delete_bucket(&self, tenant: &str, bucket: &str) -> Result<(), ObjectError> {
        self.require_bucket(tenant, bucket)?;
        let row = bucket_key(tenant, bucket);
        let prefix = object_prefix(tenant, bucket);
        let (tenant, name) = (tenant.to_owned(), bucket.to_owned());
        self.write_txn(move |txn| {
            let objects = txn.open_table(OBJECTS).map_err(store_err)?;
            let has_objects = objects
                .range::<&str>(prefix.as_str()..)
                .map_err(store_err)?
                .next()
                .transpose()
                .map_err(store_err)?
                .is_some_and(|(k, _)| k.value().starts_with(&prefix));
            let uploads = txn.open_table(UPLOADS).map_err(store_err)?;
            let mut has_uploads = false;
            for row in uploads.iter().map_err(store_err)? {
                let (_, v) = row.map_err(store_err)?;
                let upload: UploadRecord = decode(v.value())?;
                if upload.tenant == tenant && upload.bucket == name {
                    has_uploads = true;
                    break;
                }
            }
            if has_objects || has_uploads {
                return Err(ObjectError::BucketNotEmpty(name));
            }
            txn.open_table(BUCKETS)
                .map_err(store_err)?
                .remove(row.as_str())
                .map_err(store_err)?;
            Ok(())
        })
        .await
    }

    async fn head_bucket(&self, tenant: &str, bucket: &str) -> Result<BucketInfo, ObjectError> {
        check_bucket_name(bucket)?;
        let txn = self.db.begin_read().map_err(store_err)?;
        let table = txn.open_table(BUCKETS).map_err(store_err)?;
        match table
            .get(bucket_key(tenant, bucket).as_str())
            .map_err(store_err)?
        {
            Some(v) => Ok(BucketInfo {
                name: bucket.to_owned(),
                created: time_of(decode::<BucketRecord>(v.value())?.created_ms),
            }),
            None => Err(ObjectError::NoSuchBucket(bucket.to_owned())),
        }
    }

    async fn list_buckets(&self, tenant: &str) -> Result<Vec<BucketInfo>, ObjectError> {
        let prefix = format!("{tenant}/");
        let txn = self.db.begin_read().map_err(store_err)?;
        let table = txn.open_table(BUCKETS).map_err(store_err)?;
        let mut out = Vec::new();
        for row in table.range::<&str>(prefix.as_str()..).map_err(store_err)? {
            let (k, v) = row.map_err(store_err)?;
            let Some(name) = k.value().strip_prefix(&prefix) else {
                break;
            };
            out.push(BucketInfo {
                name: name.to_owned(),
                created: time_of(decode::<BucketRecord>(v.value())?.created_ms),
            });
        }
        Ok(out)
    }

    async fn put(
        &self,
        tenant: &str,
        bucket: &str,
        key: &str,
        meta: ObjectMeta,
        body: ByteStream,
    ) -> Result<ObjectInfo, ObjectError> {
        self.require_bucket(tenant, bucket)?;
        check_key(key)?;
        let written = self.write_body(body, MAX_PUT_BYTES).await?;
        let record = ObjectRecord {
            size: written.segment.size,
            etag: hex::encode(written.md5),
            content_type: meta.content_type,
            user_metadata: meta.user_metadata,
            modified_ms: now_ms(),
            segments: vec![written.segment],
        };
        self.commit_object(tenant, bucket, key, record, true, |_| Ok(()))
            .await
    }

    async fn get(
        &self,
        tenant: &str,
        bucket: &str,
        key: &str,
        range: Option<(u64, Option<u64>)>,
    ) -> Result<ObjectRead, ObjectError> {
        let record = self.record(tenant, bucket, key)?;
        let range = resolve_range(range, record.size)?;
        let mut parts = Vec::new();
        let mut offset = 0;
        for segment in &record.segments {
            let (seg_start, seg_end) = (offset, offset + segment.size);
            offset = seg_end;
            if seg_end <= range.start || seg_start >= range.end {
                continue;
            }
            let start = range.start.max(seg_start) - seg_start;
            let end = range.end.min(seg_end) - seg_start;
            let file = tokio::fs::File::open(self.data_path(&segment.file))
                .await
                .map_err(ObjectError::io(format!("opening the data of `{key}`")))?
                .into_std()
                .await;
            let whole = start == 0 && end == segment.size;
            parts.push(SegmentRead {
                file: Arc::new(file),
                start,
                len: end - start,
                expect: whole.then_some(segment.crc32c),
                name: segment.file.clone(),
            });
        }
        Ok(ObjectRead {
            info: record.info(key),
            range,
            body: read_stream(parts),
        })
    }

    async fn head(&self, tenant: &str, bucket: &str, key: &str) -> Result<ObjectInfo, ObjectError> {
        Ok(self.record(tenant, bucket, key)?.info(key))
    }

    async fn delete(&self, tenant: &str, bucket: &str, key: &str) -> Result<bool, ObjectError> {
        self.require_bucket(tenant, bucket)?;
        check_key(key)?;
        let full = object_prefix(tenant, bucket) + key;
        let old = self
            .write_txn(move |txn| {
                let mut table = txn.open_table(OBJECTS).map_err(store_err)?;
                let old = table
                    .remove(full.as_str())
                    .map_err(store_err)?
                    .map(|v| decode::<ObjectRecord>(v.value()))
                    .transpose()?;
                Ok(old)
            })
            .await?;
        let existed = old.is_some();
        if let Some(old) = old {
            self.remove_files(old.segments.into_iter().map(|s| s.file))
                .await;
        }
        Ok(existed)
    }

    async fn copy(
        &self,
        tenant: &str,
        from: (&str, &str),
        to: (&str, &str),
        meta: Option<ObjectMeta>,
    ) -> Result<ObjectInfo, ObjectError> {
        let source = self.record(tenant, from.0, from.1)?;
        self.require_bucket(tenant, to.0)?;
        check_key(to.1)?;
        let mut segments = Vec::with_capacity(source.segments.len());
        for segment in &source.segments {
            let file = uuid::Uuid::now_v7().simple().to_string();
            let (src, dst) = (self.data_path(&segment.file), self.data_path(&file));
            // Data files are immutable, so a hard link is a copy; fall back to copying bytes
            // where links are not possible.
            let linked = tokio::fs::hard_link(&src, &dst).await;
            if linked.is_err() {
                tokio::fs::copy(&src, &dst)
                    .await
                    .map_err(ObjectError::io(format!("copying the data of `{}`", from.1)))?;
            }
            segments.push(Segment {
                file,
                size: segment.size,
                crc32c: segment.crc32c,
            });
        }
        sync_dir(self.dir.join("data")).await?;
        let meta = meta.unwrap_or(ObjectMeta {
            content_type: source.content_type.clone(),
            user_metadata: source.user_metadata.clone(),
        });
        let record = ObjectRecord {
            size: source.size,
            etag: source.etag.clone(),
            content_type: meta.content_type,
            user_metadata: meta.user_metadata,
            modified_ms: now_ms(),
            segments,
        };
        self.commit_object(tenant, to.0, to.1, record, true, |_| Ok(()))
            .await
    }

    async fn list(
        &self,
        tenant: &str,
        bucket: &str,
        query: ListQuery,
    ) -> Result<ListPage, ObjectError> {
        self.require_bucket(tenant, bucket)?;
        let base = object_prefix(tenant, bucket);
        // `after` is a key (`k…`) or a common prefix (`p…`) from an earlier page.
        let (after_key, after_prefix) = match query.after.as_deref() {
            None => (None, None),
            Some(token) => match token.split_at_checked(1) {
                Some(("k", key)) => (Some(key.to_owned()), None),
                Some(("p", prefix)) => (Some(prefix.to_owned()), Some(prefix.to_owned())),
                _ => {
                    return Err(ObjectError::InvalidArgument(
                        "invalid continuation token".into(),
                    ));
                }
            },
        };
        let lower = match &after_key {
            Some(after) if after.as_str() >= query.prefix.as_str() => {
                std::ops::Bound::Excluded(format!("{base}{after}"))
            }
            _ => std::ops::Bound::Included(format!("{base}{}", query.prefix)),
        };
        let max = query.max.max(1);
        let txn = self.db.begin_read().map_err(store_err)?;
        let table = txn.open_table(OBJECTS).map_err(store_err)?;
        let range = match &lower {
            std::ops::Bound::Excluded(s) => table.range::<&str>((
                std::ops::Bound::Excluded(s.as_str()),
                std::ops::Bound::Unbounded,
            )),
            std::ops::Bound::Included(s) => table.range::<&str>(s.as_str()..),
            std::ops::Bound::Unbounded => table.range::<&str>(..),
        }
        .map_err(store_err)?;

        let mut page = ListPage::default();
        let mut last: Option<String> = None;
        let mut count = 0;
        for row in range {
            let (k, v) = row.map_err(store_err)?;
            let Some(key) = k.value().strip_prefix(&base) else {
                break;
            };
            if !key.starts_with(&query.prefix) {
                break;
            }
            if after_prefix.as_deref().is_some_and(|p| key.starts_with(p)) {
                continue;
            }
            let common = query
                .delimiter
                .as_deref()
                .filter(|d| !d.is_empty())
                .and_then(|d| {
                    key[query.prefix.len()..]
                        .find(d)
                        .map(|i| key[..query.prefix.len() + i + d.len()].to_owned())
                });
            if let Some(common) = common {
                if page.common_prefixes.last() == Some(&common) {
                    continue;
                }
                if count == max {
                    page.next = last;
                    return Ok(page);
                }
                last = Some(format!("p{common}"));
                page.common_prefixes.push(common);
            } else {
                if count == max {
                    page.next = last;
                    return Ok(page);
                }
                let record: ObjectRecord = decode(v.value())?;
                last = Some(format!("k{key}"));
                page.objects.push(record.info(key));
            }
            count += 1;
        }
        Ok(page)
    }

    async fn create_upload(
        &self,
        tenant: &str,
        bucket: &str,
        key: &str,
        meta: ObjectMeta,
    ) -> Result<String, ObjectError> {
        multipart::create_upload(self, tenant, bucket, key, meta).await
    }

    async fn upload_part(
        &self,
        tenant: &str,
        upload: &str,
        number: u32,
        body: ByteStream,
    ) -> Result<PartInfo, ObjectError> {
        multipart::upload_part(self, tenant, upload, number, body).await
    }

    async fn upload_target(
        &self,
        tenant: &str,
        upload: &str,
    ) -> Result<(String, String), ObjectError> {
        multipart::upload_target(self, tenant, upload).await
    }

    async fn list_parts(&self, tenant: &str, upload: &str) -> Result<Vec<PartInfo>, ObjectError> {
        multipart::list_parts(self, tenant, upload).await
    }

    async fn complete_upload(
        &self,
        tenant: &str,
        upload: &str,
        parts: Vec<(u32, String)>,
    ) -> Result<ObjectInfo, ObjectError> {
        multipart::complete_upload(self, tenant, upload, parts).await
    }

    async fn abort_upload(&self, tenant: &str, upload: &str) -> Result<(), ObjectError> {
        multipart::abort_upload(self, tenant, upload).await
    }
}
