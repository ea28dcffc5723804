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

/// A body written to `data/`, not yet referenced.
struct Written {
    segment: Segment,
    md5: [u8; 16],
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

    /// Streams `body` into a new data file, durable when this returns. MD5 (for the ETag) and
    /// CRC-32C (for reads) are computed on a blocking thread while the bytes are being
    /// received and written, so hashing overlaps the I/O instead of adding to it.
    async fn write_body(&self, mut body: ByteStream, limit: u64) -> Result<Written, ObjectError> {
        let id = uuid::Uuid::now_v7().simple().to_string();
        let tmp = self.dir.join("tmp").join(&id);
        let (chunks, mut to_hash) = tokio::sync::mpsc::channel::<Bytes>(16);
        let hasher = tokio::task::spawn_blocking(move || {
            let (mut md5, mut crc) = (Md5::new(), 0u32);
            while let Some(chunk) = to_hash.blocking_recv() {
                md5.update(&chunk);
                crc = crc32c::crc32c_append(crc, &chunk);
            }
            (<[u8; 16]>::from(md5.finalize()), crc)
        });
        let result = async {
            let file = tokio::fs::File::create(&tmp)
                .await
                .map_err(ObjectError::io("creating a temporary file"))?;
            // A second handle on the same file, to flush what is written so far in the
            // background while more arrives: the final fsync then has little left to do.
            let flusher = Arc::new(
                file.try_clone()
                    .await
                    .map_err(ObjectError::io("opening a temporary file"))?
                    .into_std()
                    .await,
            );
            let mut flushing: Option<tokio::task::JoinHandle<std::io::Result<()>>> = None;
            let mut unflushed: u64 = 0;
            let mut out = tokio::io::BufWriter::with_capacity(WRITE_BUFFER, file);
            let mut size: u64 = 0;
            while let Some(chunk) = body.next().await {
                let chunk = chunk.map_err(|e| ObjectError::IncompleteBody(e.to_string()))?;
                size += chunk.len() as u64;
                if size > limit {
                    return Err(ObjectError::TooLarge(format!(
                        "bodies are at most {limit} bytes"
                    )));
                }
                unflushed += chunk.len() as u64;
                chunks
                    .send(chunk.clone())
                    .await
                    .map_err(|_| ObjectError::Store("the hashing thread stopped".into()))?;
                out.write_all(&chunk)
                    .await
                    .map_err(ObjectError::io("writing object data"))?;
                if unflushed >= FLUSH_EVERY && flushing.as_ref().is_none_or(|f| f.is_finished()) {
                    unflushed = 0;
                    let handle = flusher.clone();
                    flushing = Some(tokio::task::spawn_blocking(move || handle.sync_data()));
                }
            }
            out.flush()
                .await
                .map_err(ObjectError::io("writing object data"))?;
            if let Some(flushing) = flushing {
                let _ = flushing.await;
            }
            let file = out.into_inner();
            file.sync_all()
                .await
                .map_err(ObjectError::io("syncing object data"))?;
            Ok(size)
        }
        .await;
        drop(chunks);
        let hashed = hasher.await.map_err(store_err);
        let (size, (md5, crc32c)) = match (result, hashed) {
            (Ok(size), Ok(hashes)) => (size, hashes),
            (Err(e), _) | (_, Err(e)) => {
                let _ = tokio::fs::remove_file(&tmp).await;
                return Err(e);
            }
        };
        let data = self.dir.join("data");
        let target = data.join(&id);
        tokio::fs::rename(&tmp, &target)
            .await
            .map_err(ObjectError::io("moving object data into place"))?;
        sync_dir(data).await?;
        Ok(Written {
            segment: Segment {
                file: id,
                size,
                crc32c,
            },
            md5,
        })
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

    /// Commits `record` as the object `key`, then removes the files of what it replaced.
    async fn commit_object(
        &self,
        tenant: &str,
        bucket: &str,
        key: &str,
        record: ObjectRecord,
        owns_files: bool,
        extra: impl FnOnce(&redb::WriteTransaction) -> Result<(), ObjectError> + Send + 'static,
    ) -> Result<ObjectInfo, ObjectError> {
        let full = object_prefix(tenant, bucket) + key;
        let bucket_row = bucket_key(tenant, bucket);
        let bytes = encode(&record)?;
        let missing_bucket = bucket.to_owned();
        let replaced = self
            .write_txn(move |txn| {
                if txn
                    .open_table(BUCKETS)
                    .map_err(store_err)?
                    .get(bucket_row.as_str())
                    .map_err(store_err)?
                    .is_none()
                {
                    return Err(ObjectError::NoSuchBucket(missing_bucket));
                }
                let mut table = txn.open_table(OBJECTS).map_err(store_err)?;
                let old = table
                    .insert(full.as_str(), bytes.as_slice())
                    .map_err(store_err)?
                    .map(|v| decode::<ObjectRecord>(v.value()))
                    .transpose()?;
                drop(table);
                extra(txn)?;
                Ok(old)
            })
            .await;
        let replaced = match replaced {
            Ok(replaced) => replaced,
            Err(e) => {
                // Not committed: files written for this object are garbage now (a multipart
                // completion's part files are still the upload's).
                if owns_files {
                    self.remove_files(record.segments.iter().map(|s| s.file.clone()))
                        .await;
                }
                return Err(e);
            }
        };
        if let Some(old) = replaced {
            self.remove_files(old.segments.into_iter().map(|s| s.file))
                .await;
        }
        Ok(record.info(key))
    }

    async fn remove_files(&self, files: impl Iterator<Item = String>) {
        for file in files {
            let _ = tokio::fs::remove_file(self.data_path(&file)).await;
        }
    }

    fn upload(&self, tenant: &str, upload: &str) -> Result<UploadRecord, ObjectError> {
        let txn = self.db.begin_read().map_err(store_err)?;
        let table = txn.open_table(UPLOADS).map_err(store_err)?;
        let record: UploadRecord = match table.get(upload).map_err(store_err)? {
            Some(v) => decode(v.value())?,
            None => return Err(ObjectError::NoSuchUpload(upload.to_owned())),
        };
        if record.tenant != tenant {
            return Err(ObjectError::NoSuchUpload(upload.to_owned()));
        }
        Ok(record)
    }

    fn parts(&self, upload: &str) -> Result<Vec<(u32, PartRecord)>, ObjectError> {
        let txn = self.db.begin_read().map_err(store_err)?;
        let table = txn.open_table(PARTS).map_err(store_err)?;
        let prefix = format!("{upload}/");
        let mut out = Vec::new();
        for row in table.range::<&str>(prefix.as_str()..).map_err(store_err)? {
            let (k, v) = row.map_err(store_err)?;
            let Some(number) = k.value().strip_prefix(&prefix) else {
                break;
            };
            let number = number.parse().map_err(store_err)?;
            out.push((number, decode(v.value())?));
        }
        Ok(out)
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

/// Resolves an optional `(first, last-inclusive)` range against `size`.
fn resolve_range(range: Option<(u64, Option<u64>)>, size: u64) -> Result<ByteRange, ObjectError> {
    match range {
        None => Ok(ByteRange {
            start: 0,
            end: size,
        }),
        Some((start, _)) if start >= size => Err(ObjectError::InvalidRange(size)),
        Some((start, last)) => Ok(ByteRange {
            start,
            end: last.map_or(size, |l| l.saturating_add(1).min(size)),
        }),
    }
}

/// One segment's share of a read.
struct SegmentRead {
    file: Arc<std::fs::File>,
    /// Next offset to read.
    start: u64,
    len: u64,
    /// The CRC-32C to check at the end, when the whole segment is read.
    expect: Option<u32>,
    name: String,
}

/// Reads `len` bytes at `offset`, failing if the file ends first.
fn read_exact_at(file: &std::fs::File, len: usize, offset: u64) -> std::io::Result<Bytes> {
    use std::os::unix::fs::FileExt;
    let mut buf = BytesMut::zeroed(len);
    let mut filled = 0;
    while filled < len {
        let n = file.read_at(&mut buf[filled..], offset + filled as u64)?;
        if n == 0 {
            return Err(std::io::Error::new(
                std::io::ErrorKind::UnexpectedEof,
                "stored object data is shorter than recorded",
            ));
        }
        filled += n;
    }
    Ok(buf.freeze())
}

/// The body of a read: the segments' bytes in order, each verified when read whole.
fn read_stream(parts: Vec<SegmentRead>) -> ByteStream {
    Box::pin(read_segments(parts))
}

fn read_segments(
    parts: Vec<SegmentRead>,
) -> impl futures::Stream<Item = Result<bytes::Bytes, std::io::Error>> + Send + Sync {
    struct State {
        parts: std::vec::IntoIter<SegmentRead>,
        current: Option<(SegmentRead, Option<u32>)>,
    }
    let state = State {
        parts: parts.into_iter(),
        current: None,
    };
    futures::stream::try_unfold(state, |mut st| async move {
        loop {
            let Some((part, hasher)) = st.current.as_mut() else {
                match st.parts.next() {
                    Some(part) => {
                        let hasher = part.expect.is_some().then_some(0u32);
                        st.current = Some((part, hasher));
                        continue;
                    }
                    None => return Ok(None),
                }
            };
            if part.len == 0 {
                if let (Some(crc), Some(expect)) = (hasher.take(), part.expect)
                    && crc != expect
                {
                    tracing::error!(file = %part.name, "object data failed its checksum");
                    return Err(std::io::Error::new(
                        std::io::ErrorKind::InvalidData,
                        "stored object data failed its checksum",
                    ));
                }
                st.current = None;
                continue;
            }
            let want = usize::try_from(part.len)
                .unwrap_or(usize::MAX)
                .min(READ_CHUNK);
            // One positional read per chunk on the blocking pool, straight into the buffer
            // that is sent (no seek state, no intermediate copy).
            let (file, offset) = (part.file.clone(), part.start);
            let buf = tokio::task::spawn_blocking(move || read_exact_at(&file, want, offset))
                .await
                .map_err(std::io::Error::other)??;
            if let Some(crc) = hasher.as_mut() {
                *crc = crc32c::crc32c_append(*crc, &buf);
            }
            part.start += buf.len() as u64;
            part.len -= buf.len() as u64;
            return Ok(Some((buf, st)));
        }
    })
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
        self.require_bucket(tenant, bucket)?;
        check_key(key)?;
        let id = uuid::Uuid::now_v7().simple().to_string();
        let bytes = encode(&UploadRecord {
            tenant: tenant.to_owned(),
            bucket: bucket.to_owned(),
            key: key.to_owned(),
            content_type: meta.content_type,
            user_metadata: meta.user_metadata,
        })?;
        let row = id.clone();
        self.write_txn(move |txn| {
            txn.open_table(UPLOADS)
                .map_err(store_err)?
                .insert(row.as_str(), bytes.as_slice())
                .map_err(store_err)?;
            Ok(())
        })
        .await?;
        Ok(id)
    }

    async fn upload_part(
        &self,
        tenant: &str,
        upload: &str,
        number: u32,
        body: ByteStream,
    ) -> Result<PartInfo, ObjectError> {
        if !(1..=MAX_PART_NUMBER).contains(&number) {
            return Err(ObjectError::InvalidArgument(format!(
                "part numbers are 1 to {MAX_PART_NUMBER} (got {number})"
            )));
        }
        self.upload(tenant, upload)?;
        let written = self.write_body(body, MAX_PUT_BYTES).await?;
        let part = PartRecord {
            md5: hex::encode(written.md5),
            segment: written.segment,
            modified_ms: now_ms(),
        };
        let info = PartInfo {
            number,
            size: part.segment.size,
            etag: part.md5.clone(),
            last_modified: time_of(part.modified_ms),
        };
        let (row, upload_row, upload_id) = (
            part_key(upload, number),
            upload.to_owned(),
            upload.to_owned(),
        );
        let bytes = encode(&part)?;
        let replaced = self
            .write_txn(move |txn| {
                // The upload may have been completed or aborted meanwhile.
                if txn
                    .open_table(UPLOADS)
                    .map_err(store_err)?
                    .get(upload_row.as_str())
                    .map_err(store_err)?
                    .is_none()
                {
                    return Err(ObjectError::NoSuchUpload(upload_id));
                }
                let mut parts = txn.open_table(PARTS).map_err(store_err)?;
                let old = parts
                    .insert(row.as_str(), bytes.as_slice())
                    .map_err(store_err)?
                    .map(|v| decode::<PartRecord>(v.value()))
                    .transpose()?;
                Ok(old)
            })
            .await;
        match replaced {
            Ok(old) => {
                if let Some(old) = old {
                    self.remove_files(std::iter::once(old.segment.file)).await;
                }
                Ok(info)
            }
            Err(e) => {
                self.remove_files(std::iter::once(part.segment.file)).await;
                Err(e)
            }
        }
    }

    async fn upload_target(
        &self,
        tenant: &str,
        upload: &str,
    ) -> Result<(String, String), ObjectError> {
        let record = self.upload(tenant, upload)?;
        Ok((record.bucket, record.key))
    }

    async fn list_parts(&self, tenant: &str, upload: &str) -> Result<Vec<PartInfo>, ObjectError> {
        self.upload(tenant, upload)?;
        Ok(self
            .parts(upload)?
            .into_iter()
            .map(|(number, part)| PartInfo {
                number,
                size: part.segment.size,
                etag: part.md5,
                last_modified: time_of(part.modified_ms),
            })
            .collect())
    }

    async fn complete_upload(
        &self,
        tenant: &str,
        upload: &str,
        parts: Vec<(u32, String)>,
    ) -> Result<ObjectInfo, ObjectError> {
        let record = self.upload(tenant, upload)?;
        if parts.is_empty() {
            return Err(ObjectError::InvalidPart(
                "a multipart upload needs at least one part".into(),
            ));
        }
        if parts.windows(2).any(|w| w[0].0 >= w[1].0) {
            return Err(ObjectError::InvalidPartOrder);
        }
        let uploaded: BTreeMap<u32, PartRecord> = self.parts(upload)?.into_iter().collect();
        let mut segments = Vec::with_capacity(parts.len());
        let mut md5s = Vec::with_capacity(parts.len() * 16);
        let mut size = 0;
        let last = parts.len() - 1;
        for (i, (number, etag)) in parts.iter().enumerate() {
            let part = uploaded.get(number).ok_or_else(|| {
                ObjectError::InvalidPart(format!("part {number} has not been uploaded"))
            })?;
            if etag.trim_matches('"') != part.md5 {
                return Err(ObjectError::InvalidPart(format!(
                    "part {number}: ETag {etag} does not match the uploaded part's \"{}\"",
                    part.md5
                )));
            }
            if i != last && part.segment.size < MIN_PART_BYTES {
                return Err(ObjectError::EntityTooSmall {
                    part: *number,
                    size: part.segment.size,
                    min: MIN_PART_BYTES,
                });
            }
            md5s.extend(hex::decode(&part.md5).map_err(store_err)?);
            size += part.segment.size;
            segments.push(part.segment.clone());
        }
        let used: HashSet<u32> = parts.iter().map(|(n, _)| *n).collect();
        let unused: Vec<String> = uploaded
            .iter()
            .filter(|(n, _)| !used.contains(n))
            .map(|(_, p)| p.segment.file.clone())
            .collect();
        let object = ObjectRecord {
            size,
            etag: format!("{}-{}", hex::encode(Md5::digest(&md5s)), parts.len()),
            content_type: record.content_type.clone(),
            user_metadata: record.user_metadata.clone(),
            modified_ms: now_ms(),
            segments,
        };
        let upload_row = upload.to_owned();
        let expected: Vec<(u32, String)> = uploaded
            .iter()
            .map(|(n, p)| (*n, p.segment.file.clone()))
            .collect();
        let info = self
            .commit_object(
                tenant,
                &record.bucket,
                &record.key,
                object,
                false,
                move |txn| {
                    if txn
                        .open_table(UPLOADS)
                        .map_err(store_err)?
                        .remove(upload_row.as_str())
                        .map_err(store_err)?
                        .is_none()
                    {
                        return Err(ObjectError::NoSuchUpload(upload_row));
                    }
                    let mut table = txn.open_table(PARTS).map_err(store_err)?;
                    for (number, file) in expected {
                        let removed = table
                            .remove(part_key(&upload_row, number).as_str())
                            .map_err(store_err)?
                            .map(|v| decode::<PartRecord>(v.value()))
                            .transpose()?;
                        // A part re-uploaded while completing: refuse rather than lose a file.
                        if removed.is_none_or(|p| p.segment.file != file) {
                            return Err(ObjectError::InvalidPart(format!(
                                "part {number} changed while the upload was being completed"
                            )));
                        }
                    }
                    Ok(())
                },
            )
            .await?;
        self.remove_files(unused.into_iter()).await;
        Ok(info)
    }

    async fn abort_upload(&self, tenant: &str, upload: &str) -> Result<(), ObjectError> {
        self.upload(tenant, upload)?;
        let parts = self.parts(upload)?;
        let upload_row = upload.to_owned();
        let numbers: Vec<u32> = parts.iter().map(|(n, _)| *n).collect();
        self.write_txn(move |txn| {
            txn.open_table(UPLOADS)
                .map_err(store_err)?
                .remove(upload_row.as_str())
                .map_err(store_err)?;
            let mut table = txn.open_table(PARTS).map_err(store_err)?;
            for number in numbers {
                table
                    .remove(part_key(&upload_row, number).as_str())
                    .map_err(store_err)?;
            }
            Ok(())
        })
        .await?;
        self.remove_files(parts.into_iter().map(|(_, p)| p.segment.file))
            .await;
        Ok(())
    }
}
