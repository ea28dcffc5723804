//! The storage engine API every backend implements, free of any S3 wire types so that the S3
//! API and `wasi:blobstore` can share it.

use std::collections::BTreeMap;
use std::time::SystemTime;

use async_trait::async_trait;
use bytes::Bytes;
use futures::Stream;

use crate::ObjectError;

/// A stream of body bytes, in or out (`Sync` too, as HTTP bodies must be).
pub type ByteStream =
    std::pin::Pin<Box<dyn Stream<Item = Result<Bytes, std::io::Error>> + Send + Sync + 'static>>;

/// What the client says about an object when writing it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ObjectMeta {
    /// `Content-Type`.
    pub content_type: Option<String>,
    /// `x-amz-meta-*` pairs (names lower-case, without the prefix).
    pub user_metadata: BTreeMap<String, String>,
}

/// A stored object, as listings and reads describe it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ObjectInfo {
    /// The key.
    pub key: String,
    /// Size in bytes.
    pub size: u64,
    /// The S3 ETag, without quotes: hex MD5 of the body, or for multipart uploads the hex MD5
    /// of the concatenated binary part MD5s followed by `-<parts>`.
    pub etag: String,
    /// When it was written.
    pub last_modified: SystemTime,
    /// Content type and user metadata.
    pub meta: ObjectMeta,
}

/// A bucket.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BucketInfo {
    /// Name.
    pub name: String,
    /// When it was created.
    pub created: SystemTime,
}

/// A byte range to read: `start..end` (end exclusive), already checked against the size.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ByteRange {
    /// First byte.
    pub start: u64,
    /// One past the last byte.
    pub end: u64,
}

/// An object being read: its description, the range served and the bytes.
pub struct ObjectRead {
    /// The object.
    pub info: ObjectInfo,
    /// The bytes served (the whole object if no range was asked for).
    pub range: ByteRange,
    /// The body. A full read verifies the stored checksums and ends with an error instead of
    /// returning corrupt bytes.
    pub body: ByteStream,
}

/// What to list.
#[derive(Debug, Clone, Default)]
pub struct ListQuery {
    /// Only keys starting with this.
    pub prefix: String,
    /// Group keys sharing `prefix` + anything + `delimiter` into common prefixes.
    pub delimiter: Option<String>,
    /// Continue after this (a key, or a common prefix from an earlier page).
    pub after: Option<String>,
    /// Most entries (objects plus common prefixes) to return; at least 1.
    pub max: usize,
}

/// One page of a listing.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ListPage {
    /// Objects, in key order.
    pub objects: Vec<ObjectInfo>,
    /// Common prefixes, in order.
    pub common_prefixes: Vec<String>,
    /// Where the next page starts (pass as `after`), if the listing is not complete.
    pub next: Option<String>,
}

/// An uploaded part.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PartInfo {
    /// Part number (1..=10000).
    pub number: u32,
    /// Size in bytes.
    pub size: u64,
    /// Hex MD5 of the part.
    pub etag: String,
    /// When it was uploaded.
    pub last_modified: SystemTime,
}

/// Largest single PUT and largest part: 5 GiB, as in S3.
pub const MAX_PUT_BYTES: u64 = 5 << 30;
/// Smallest part other than the last: 5 MiB, as in S3.
pub const MIN_PART_BYTES: u64 = 5 << 20;
/// Highest part number.
pub const MAX_PART_NUMBER: u32 = 10_000;

/// An object store. Every call names the tenant: buckets are per tenant.
#[async_trait]
pub trait ObjectStore: Send + Sync {
    /// Creates a bucket.
    async fn create_bucket(&self, tenant: &str, bucket: &str) -> Result<(), ObjectError>;
    /// Deletes an empty bucket.
    async fn delete_bucket(&self, tenant: &str, bucket: &str) -> Result<(), ObjectError>;
    /// The bucket, if it exists.
    async fn head_bucket(&self, tenant: &str, bucket: &str) -> Result<BucketInfo, ObjectError>;
    /// The tenant's buckets, by name.
    async fn list_buckets(&self, tenant: &str) -> Result<Vec<BucketInfo>, ObjectError>;

    /// Stores an object from a stream; nothing is visible until the whole body is durable.
    async fn put(
        &self,
        tenant: &str,
        bucket: &str,
        key: &str,
        meta: ObjectMeta,
        body: ByteStream,
    ) -> Result<ObjectInfo, ObjectError>;
    /// Reads an object, or the byte range `range` of it (`start..end`, end exclusive, clamped
    /// to the size; a start at or past the size is [`ObjectError::InvalidRange`]).
    async fn get(
        &self,
        tenant: &str,
        bucket: &str,
        key: &str,
        range: Option<(u64, Option<u64>)>,
    ) -> Result<ObjectRead, ObjectError>;
    /// Describes an object.
    async fn head(&self, tenant: &str, bucket: &str, key: &str) -> Result<ObjectInfo, ObjectError>;
    /// Deletes an object; deleting a missing key succeeds (as in S3). Returns whether it
    /// existed.
    async fn delete(&self, tenant: &str, bucket: &str, key: &str) -> Result<bool, ObjectError>;
    /// Copies an object (`meta: None` keeps the source's metadata).
    async fn copy(
        &self,
        tenant: &str,
        from: (&str, &str),
        to: (&str, &str),
        meta: Option<ObjectMeta>,
    ) -> Result<ObjectInfo, ObjectError>;
    /// Lists a bucket.
    async fn list(
        &self,
        tenant: &str,
        bucket: &str,
        query: ListQuery,
    ) -> Result<ListPage, ObjectError>;

    /// Starts a multipart upload; returns its id.
    async fn create_upload(
        &self,
        tenant: &str,
        bucket: &str,
        key: &str,
        meta: ObjectMeta,
    ) -> Result<String, ObjectError>;
    /// Stores one part (replacing an earlier upload of the same number).
    async fn upload_part(
        &self,
        tenant: &str,
        upload: &str,
        number: u32,
        body: ByteStream,
    ) -> Result<PartInfo, ObjectError>;
    /// The bucket and key a multipart upload will complete into.
    async fn upload_target(
        &self,
        tenant: &str,
        upload: &str,
    ) -> Result<(String, String), ObjectError>;
    /// The parts uploaded so far, by number.
    async fn list_parts(&self, tenant: &str, upload: &str) -> Result<Vec<PartInfo>, ObjectError>;
    /// Assembles the listed parts (number, etag) into the object, atomically.
    async fn complete_upload(
        &self,
        tenant: &str,
        upload: &str,
        parts: Vec<(u32, String)>,
    ) -> Result<ObjectInfo, ObjectError>;
    /// Abandons an upload and its parts.
    async fn abort_upload(&self, tenant: &str, upload: &str) -> Result<(), ObjectError>;
}
