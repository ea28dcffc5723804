//! The S3 API: `s3s` parses and signs the protocol (SigV4 headers, presigned query strings,
//! chunked uploads, XML); this file maps each operation onto an [`ObjectStore`] and each
//! [`ObjectError`] onto its S3 error code. The tenant of every request is the tenant of the
//! access key that signed it; unsigned requests are refused by s3s before they get here.

use std::collections::BTreeMap;
use std::sync::Arc;

use async_trait::async_trait;
use futures::StreamExt;
use s3s::auth::{S3Auth, SecretKey};
use s3s::dto::{
    self, AbortMultipartUploadInput, AbortMultipartUploadOutput, Bucket, CommonPrefix,
    CompleteMultipartUploadInput, CompleteMultipartUploadOutput, CopyObjectInput, CopyObjectOutput,
    CopyObjectResult, CopySource, CreateBucketInput, CreateBucketOutput,
    CreateMultipartUploadInput, CreateMultipartUploadOutput, DeleteBucketInput, DeleteBucketOutput,
    DeleteObjectInput, DeleteObjectOutput, DeleteObjectsInput, DeleteObjectsOutput, DeletedObject,
    ETag, GetObjectInput, GetObjectOutput, HeadBucketInput, HeadBucketOutput, HeadObjectInput,
    HeadObjectOutput, ListBucketsInput, ListBucketsOutput, ListObjectsV2Input, ListObjectsV2Output,
    ListPartsInput, ListPartsOutput, Object, Part, PutObjectInput, PutObjectOutput, StreamingBlob,
    Timestamp, UploadPartInput, UploadPartOutput,
};
use s3s::{S3, S3Error, S3ErrorCode, S3Request, S3Response, S3Result};

use crate::ObjectError;
use crate::keys::KeyStore;
use crate::store::{ByteStream, ListQuery, ObjectInfo, ObjectMeta, ObjectStore};
use crate::xml::{KeyEncoding, echo_key};

/// Most keys one DeleteObjects request may name, as in S3.
const MAX_DELETE_KEYS: usize = 1000;

/// The S3 operations Nimbus serves.
#[derive(Clone)]
pub struct S3Api {
    store: Arc<dyn ObjectStore>,
    keys: KeyStore,
}

impl S3Api {
    /// The API over `store`, authenticating with `keys`.
    pub fn new(store: Arc<dyn ObjectStore>, keys: KeyStore) -> Self {
        Self { store, keys }
    }
}

/// SigV4 secrets come from the key store.
#[derive(Clone, Debug)]
pub struct KeyAuth(pub KeyStore);

#[async_trait]
impl S3Auth for KeyAuth {
    async fn get_secret_key(&self, access_key: &str) -> S3Result<SecretKey> {
        match self.0.lookup(access_key) {
            Ok(Some((secret, _))) => Ok(SecretKey::from(secret)),
            Ok(None) => Err(S3Error::new(S3ErrorCode::InvalidAccessKeyId)),
            Err(e) => Err(internal(e)),
        }
    }
}

fn internal(e: ObjectError) -> S3Error {
    tracing::error!(error = %e, "object store failure");
    S3Error::with_message(S3ErrorCode::InternalError, "internal error")
}

/// Maps a store error onto the S3 error a client expects.
fn s3(e: ObjectError) -> S3Error {
    let code = match &e {
        ObjectError::InvalidBucketName(..) => S3ErrorCode::InvalidBucketName,
        ObjectError::InvalidKey(_) => S3ErrorCode::KeyTooLongError,
        ObjectError::EmptyKey => S3ErrorCode::UserKeyMustBeSpecified,
        ObjectError::NoSuchBucket(_) => S3ErrorCode::NoSuchBucket,
        ObjectError::BucketExists(_) => S3ErrorCode::BucketAlreadyOwnedByYou,
        ObjectError::BucketNotEmpty(_) => S3ErrorCode::BucketNotEmpty,
        ObjectError::NoSuchKey(..) => S3ErrorCode::NoSuchKey,
        ObjectError::InvalidRange(_) => S3ErrorCode::InvalidRange,
        ObjectError::NoSuchUpload(_) => S3ErrorCode::NoSuchUpload,
        ObjectError::InvalidPart(_) => S3ErrorCode::InvalidPart,
        ObjectError::InvalidPartOrder => S3ErrorCode::InvalidPartOrder,
        ObjectError::EntityTooSmall { .. } => S3ErrorCode::EntityTooSmall,
        ObjectError::TooLarge(_) => S3ErrorCode::EntityTooLarge,
        ObjectError::InvalidArgument(_) => S3ErrorCode::InvalidArgument,
        ObjectError::IncompleteBody(_) => S3ErrorCode::IncompleteBody,
        ObjectError::Corrupt(_) | ObjectError::Store(_) | ObjectError::Io { .. } => {
            return internal(e);
        }
    };
    S3Error::with_message(code, crate::xml::escaped(&e.to_string()).into_owned())
}

fn body_of(blob: Option<StreamingBlob>) -> ByteStream {
    match blob {
        Some(blob) => Box::pin(blob.map(|r| r.map_err(std::io::Error::other))),
        None => Box::pin(futures::stream::empty()),
    }
}

fn meta_of(content_type: Option<String>, metadata: Option<dto::Metadata>) -> ObjectMeta {
    ObjectMeta {
        content_type,
        user_metadata: metadata
            .unwrap_or_default()
            .into_iter()
            .map(|(k, v)| (k.to_ascii_lowercase(), v))
            .collect::<BTreeMap<_, _>>(),
    }
}

fn etag(value: &str) -> ETag {
    ETag::Strong(value.to_owned())
}

fn metadata(info: &ObjectInfo) -> Option<dto::Metadata> {
    (!info.meta.user_metadata.is_empty()).then(|| {
        info.meta
            .user_metadata
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect()
    })
}

/// The list token as the client sees it: opaque, URL-safe.
fn encode_token(token: &str) -> String {
    hex::encode(token.as_bytes())
}

fn decode_token(token: &str) -> S3Result<String> {
    hex::decode(token)
        .ok()
        .and_then(|b| String::from_utf8(b).ok())
        .ok_or_else(|| {
            S3Error::with_message(S3ErrorCode::InvalidArgument, "invalid continuation token")
        })
}

impl S3Api {
    fn tenant<T>(&self, req: &S3Request<T>) -> S3Result<String> {
        let Some(credentials) = &req.credentials else {
            return Err(S3Error::with_message(
                S3ErrorCode::AccessDenied,
                "requests must be signed with a Nimbus access key (nimbus keys create)",
            ));
        };
        match self.keys.lookup(&credentials.access_key) {
            Ok(Some((_, tenant))) => Ok(tenant),
            Ok(None) => Err(S3Error::new(S3ErrorCode::InvalidAccessKeyId)),
            Err(e) => Err(internal(e)),
        }
    }
}

#[async_trait]
impl S3 for S3Api {
    async fn list_buckets(
        &self,
        req: S3Request<ListBucketsInput>,
    ) -> S3Result<S3Response<ListBucketsOutput>> {
        let tenant = self.tenant(&req)?;
        let buckets = self.store.list_buckets(&tenant).await.map_err(s3)?;
        Ok(S3Response::new(ListBucketsOutput {
            buckets: Some(
                buckets
                    .into_iter()
                    .map(|b| Bucket {
                        name: Some(b.name),
                        creation_date: Some(Timestamp::from(b.created)),
                        ..Default::default()
                    })
                    .collect(),
            ),
            ..Default::default()
        }))
    }

    async fn create_bucket(
        &self,
        req: S3Request<CreateBucketInput>,
    ) -> S3Result<S3Response<CreateBucketOutput>> {
        let tenant = self.tenant(&req)?;
        self.store
            .create_bucket(&tenant, &req.input.bucket)
            .await
            .map_err(s3)?;
        Ok(S3Response::new(CreateBucketOutput {
            location: Some(format!("/{}", req.input.bucket)),
        }))
    }

    async fn head_bucket(
        &self,
        req: S3Request<HeadBucketInput>,
    ) -> S3Result<S3Response<HeadBucketOutput>> {
        let tenant = self.tenant(&req)?;
        self.store
            .head_bucket(&tenant, &req.input.bucket)
            .await
            .map_err(s3)?;
        Ok(S3Response::new(HeadBucketOutput::default()))
    }

    async fn delete_bucket(
        &self,
        req: S3Request<DeleteBucketInput>,
    ) -> S3Result<S3Response<DeleteBucketOutput>> {
        let tenant = self.tenant(&req)?;
        self.store
            .delete_bucket(&tenant, &req.input.bucket)
            .await
            .map_err(s3)?;
        Ok(S3Response::new(DeleteBucketOutput::default()))
    }

    async fn put_object(
        &self,
        req: S3Request<PutObjectInput>,
    ) -> S3Result<S3Response<PutObjectOutput>> {
        let tenant = self.tenant(&req)?;
        let input = req.input;
        let meta = meta_of(input.content_type, input.metadata);
        let info = self
            .store
            .put(
                &tenant,
                &input.bucket,
                &input.key,
                meta,
                body_of(input.body),
            )
            .await
            .map_err(s3)?;
        Ok(S3Response::new(PutObjectOutput {
            e_tag: Some(etag(&info.etag)),
            ..Default::default()
        }))
    }

    async fn get_object(
        &self,
        req: S3Request<GetObjectInput>,
    ) -> S3Result<S3Response<GetObjectOutput>> {
        let tenant = self.tenant(&req)?;
        let input = req.input;
        let range = match input.range {
            None => None,
            Some(range) => {
                let info = self
                    .store
                    .head(&tenant, &input.bucket, &input.key)
                    .await
                    .map_err(s3)?;
                let bytes = range.check(info.size).map_err(|_| {
                    S3Error::with_message(
                        S3ErrorCode::InvalidRange,
                        format!(
                            "the range is not satisfiable for an object of {} bytes",
                            info.size
                        ),
                    )
                })?;
                Some((bytes.start, Some(bytes.end.saturating_sub(1))))
            }
        };
        let ranged = range.is_some();
        let read = self
            .store
            .get(&tenant, &input.bucket, &input.key, range)
            .await
            .map_err(s3)?;
        let info = read.info;
        let length = read.range.end - read.range.start;
        Ok(S3Response::new(GetObjectOutput {
            content_length: Some(i64::try_from(length).unwrap_or(i64::MAX)),
            content_range: ranged.then(|| {
                format!(
                    "bytes {}-{}/{}",
                    read.range.start,
                    read.range.end.saturating_sub(1),
                    info.size
                )
            }),
            content_type: info.meta.content_type.clone(),
            e_tag: Some(etag(&info.etag)),
            last_modified: Some(Timestamp::from(info.last_modified)),
            metadata: metadata(&info),
            accept_ranges: Some("bytes".into()),
            body: Some(StreamingBlob::wrap(read.body)),
            ..Default::default()
        }))
    }

    async fn head_object(
        &self,
        req: S3Request<HeadObjectInput>,
    ) -> S3Result<S3Response<HeadObjectOutput>> {
        let tenant = self.tenant(&req)?;
        let info = self
            .store
            .head(&tenant, &req.input.bucket, &req.input.key)
            .await
            .map_err(s3)?;
        Ok(S3Response::new(HeadObjectOutput {
            content_length: Some(i64::try_from(info.size).unwrap_or(i64::MAX)),
            content_type: info.meta.content_type.clone(),
            e_tag: Some(etag(&info.etag)),
            last_modified: Some(Timestamp::from(info.last_modified)),
            metadata: metadata(&info),
            accept_ranges: Some("bytes".into()),
            ..Default::default()
        }))
    }

    async fn delete_object(
        &self,
        req: S3Request<DeleteObjectInput>,
    ) -> S3Result<S3Response<DeleteObjectOutput>> {
        let tenant = self.tenant(&req)?;
        self.store
            .delete(&tenant, &req.input.bucket, &req.input.key)
            .await
            .map_err(s3)?;
        Ok(S3Response::new(DeleteObjectOutput::default()))
    }

    async fn delete_objects(
        &self,
        req: S3Request<DeleteObjectsInput>,
    ) -> S3Result<S3Response<DeleteObjectsOutput>> {
        let tenant = self.tenant(&req)?;
        let input = req.input;
        let quiet = input.delete.quiet.unwrap_or(false);
        if input.delete.objects.len() > MAX_DELETE_KEYS {
            return Err(S3Error::with_message(
                S3ErrorCode::MalformedXML,
                format!(
                    "a DeleteObjects request names at most {MAX_DELETE_KEYS} keys (got {})",
                    input.delete.objects.len()
                ),
            ));
        }
        let (mut deleted, mut errors) = (Vec::new(), Vec::new());
        for object in input.delete.objects {
            match self.store.delete(&tenant, &input.bucket, &object.key).await {
                Ok(_) => deleted.push(DeletedObject {
                    key: echo_key(object.key),
                    ..Default::default()
                }),
                Err(e) => {
                    let err = s3(e);
                    errors.push(dto::Error {
                        code: Some(err.code().as_str().to_owned()),
                        key: echo_key(object.key),
                        message: err.message().map(str::to_owned),
                        ..Default::default()
                    });
                }
            }
        }
        Ok(S3Response::new(DeleteObjectsOutput {
            deleted: (!quiet).then_some(deleted),
            errors: (!errors.is_empty()).then_some(errors),
            ..Default::default()
        }))
    }

    async fn copy_object(
        &self,
        req: S3Request<CopyObjectInput>,
    ) -> S3Result<S3Response<CopyObjectOutput>> {
        let tenant = self.tenant(&req)?;
        let input = req.input;
        let CopySource::Bucket { bucket, key, .. } = &input.copy_source else {
            return Err(S3Error::with_message(
                S3ErrorCode::NotImplemented,
                "copying from access points is not supported",
            ));
        };
        let replace = input
            .metadata_directive
            .as_ref()
            .is_some_and(|d| d.as_str().eq_ignore_ascii_case("REPLACE"));
        let meta = replace.then(|| meta_of(input.content_type.clone(), input.metadata.clone()));
        let info = self
            .store
            .copy(&tenant, (bucket, key), (&input.bucket, &input.key), meta)
            .await
            .map_err(s3)?;
        Ok(S3Response::new(CopyObjectOutput {
            copy_object_result: Some(CopyObjectResult {
                e_tag: Some(etag(&info.etag)),
                last_modified: Some(Timestamp::from(info.last_modified)),
                ..Default::default()
            }),
            ..Default::default()
        }))
    }

    async fn list_objects_v2(
        &self,
        req: S3Request<ListObjectsV2Input>,
    ) -> S3Result<S3Response<ListObjectsV2Output>> {
        let tenant = self.tenant(&req)?;
        let input = req.input;
        let encoding = KeyEncoding::requested(input.encoding_type.as_ref())?;
        let after = match (&input.continuation_token, &input.start_after) {
            (Some(token), _) => Some(decode_token(token)?),
            (None, Some(start)) => Some(format!("k{start}")),
            (None, None) => None,
        };
        let max = input.max_keys.unwrap_or(1000).clamp(0, 1000);
        let prefix = input.prefix.clone().unwrap_or_default();
        let page = if max == 0 {
            Default::default()
        } else {
            self.store
                .list(
                    &tenant,
                    &input.bucket,
                    ListQuery {
                        prefix: prefix.clone(),
                        delimiter: input.delimiter.clone(),
                        after,
                        max: usize::try_from(max).unwrap_or(1000),
                    },
                )
                .await
                .map_err(s3)?
        };
        let key_count = page.objects.len() + page.common_prefixes.len();
        let contents = page
            .objects
            .into_iter()
            .map(|o| {
                Ok(Object {
                    e_tag: Some(etag(&o.etag)),
                    last_modified: Some(Timestamp::from(o.last_modified)),
                    size: Some(i64::try_from(o.size).unwrap_or(i64::MAX)),
                    key: Some(encoding.text("key", o.key)?),
                    ..Default::default()
                })
            })
            .collect::<S3Result<Vec<_>>>()?;
        let common_prefixes = page
            .common_prefixes
            .into_iter()
            .map(|p| {
                Ok(CommonPrefix {
                    prefix: Some(encoding.text("common prefix", p)?),
                })
            })
            .collect::<S3Result<Vec<_>>>()?;
        Ok(S3Response::new(ListObjectsV2Output {
            name: Some(input.bucket),
            prefix: Some(encoding.text("prefix", prefix)?),
            delimiter: encoding.opt("delimiter", input.delimiter)?,
            max_keys: Some(max),
            key_count: Some(i32::try_from(key_count).unwrap_or(i32::MAX)),
            continuation_token: input.continuation_token,
            start_after: encoding.opt("start-after", input.start_after)?,
            is_truncated: Some(page.next.is_some()),
            next_continuation_token: page.next.as_deref().map(encode_token),
            contents: Some(contents),
            common_prefixes: (!common_prefixes.is_empty()).then_some(common_prefixes),
            encoding_type: encoding.echo(),
            ..Default::default()
        }))
    }

    async fn create_multipart_upload(
        &self,
        req: S3Request<CreateMultipartUploadInput>,
    ) -> S3Result<S3Response<CreateMultipartUploadOutput>> {
        let tenant = self.tenant(&req)?;
        let input = req.input;
        let meta = meta_of(input.content_type, input.metadata);
        let id = self
            .store
            .create_upload(&tenant, &input.bucket, &input.key, meta)
            .await
            .map_err(s3)?;
        Ok(S3Response::new(CreateMultipartUploadOutput {
            bucket: Some(input.bucket),
            key: echo_key(input.key),
            upload_id: Some(id),
            ..Default::default()
        }))
    }

    async fn upload_part(
        &self,
        req: S3Request<UploadPartInput>,
    ) -> S3Result<S3Response<UploadPartOutput>> {
        let tenant = self.tenant(&req)?;
        let input = req.input;
        let number = u32::try_from(input.part_number).map_err(|_| {
            S3Error::with_message(S3ErrorCode::InvalidArgument, "part numbers are 1 to 10000")
        })?;
        let part = self
            .store
            .upload_part(&tenant, &input.upload_id, number, body_of(input.body))
            .await
            .map_err(s3)?;
        Ok(S3Response::new(UploadPartOutput {
            e_tag: Some(etag(&part.etag)),
            ..Default::default()
        }))
    }

    async fn list_parts(
        &self,
        req: S3Request<ListPartsInput>,
    ) -> S3Result<S3Response<ListPartsOutput>> {
        let tenant = self.tenant(&req)?;
        let input = req.input;
        let marker = input.part_number_marker.unwrap_or(0);
        let max = usize::try_from(input.max_parts.unwrap_or(1000).clamp(1, 1000)).unwrap_or(1000);
        let parts = self
            .store
            .list_parts(&tenant, &input.upload_id)
            .await
            .map_err(s3)?;
        let mut after: Vec<_> = parts
            .into_iter()
            .filter(|p| i64::from(p.number) > i64::from(marker))
            .collect();
        let truncated = after.len() > max;
        after.truncate(max);
        let next = after
            .last()
            .map(|p| i32::try_from(p.number).unwrap_or(i32::MAX));
        Ok(S3Response::new(ListPartsOutput {
            bucket: Some(input.bucket),
            key: echo_key(input.key),
            upload_id: Some(input.upload_id),
            part_number_marker: Some(marker),
            max_parts: Some(i32::try_from(max).unwrap_or(1000)),
            is_truncated: Some(truncated),
            next_part_number_marker: if truncated { next } else { None },
            parts: Some(
                after
                    .into_iter()
                    .map(|p| Part {
                        e_tag: Some(etag(&p.etag)),
                        last_modified: Some(Timestamp::from(p.last_modified)),
                        part_number: Some(i32::try_from(p.number).unwrap_or(i32::MAX)),
                        size: Some(i64::try_from(p.size).unwrap_or(i64::MAX)),
                        ..Default::default()
                    })
                    .collect(),
            ),
            ..Default::default()
        }))
    }

    async fn complete_multipart_upload(
        &self,
        req: S3Request<CompleteMultipartUploadInput>,
    ) -> S3Result<S3Response<CompleteMultipartUploadOutput>> {
        let tenant = self.tenant(&req)?;
        let input = req.input;
        let mut parts = Vec::new();
        for part in input
            .multipart_upload
            .and_then(|m| m.parts)
            .unwrap_or_default()
        {
            let (Some(number), Some(tag)) = (part.part_number, part.e_tag) else {
                return Err(S3Error::with_message(
                    S3ErrorCode::MalformedXML,
                    "every part needs a PartNumber and an ETag",
                ));
            };
            let number = u32::try_from(number).map_err(|_| {
                S3Error::with_message(S3ErrorCode::InvalidPart, "part numbers are 1 to 10000")
            })?;
            parts.push((number, tag.into_value()));
        }
        let info = self
            .store
            .complete_upload(&tenant, &input.upload_id, parts)
            .await
            .map_err(s3)?;
        Ok(S3Response::new(CompleteMultipartUploadOutput {
            bucket: Some(input.bucket.clone()),
            key: echo_key(input.key.clone()),
            e_tag: Some(etag(&info.etag)),
            location: echo_key(format!("/{}/{}", input.bucket, input.key)),
            ..Default::default()
        }))
    }

    async fn abort_multipart_upload(
        &self,
        req: S3Request<AbortMultipartUploadInput>,
    ) -> S3Result<S3Response<AbortMultipartUploadOutput>> {
        let tenant = self.tenant(&req)?;
        self.store
            .abort_upload(&tenant, &req.input.upload_id)
            .await
            .map_err(s3)?;
        Ok(S3Response::new(AbortMultipartUploadOutput::default()))
    }
}
