//! A body streamed into a data file (durable before it is referenced), and the commit that
//! makes a record of it an object.

use super::*;

/// A body written to `data/`, not yet referenced.
pub(super) struct Written {
    pub(super) segment: Segment,
    pub(super) md5: [u8; 16],
}

impl FsStore {
    /// Streams `body` into a new data file, durable when this returns. MD5 (for the ETag) and
    /// CRC-32C (for reads) are computed on a blocking thread while the bytes are being
    /// received and written, so hashing overlaps the I/O instead of adding to it.
    pub(super) async fn write_body(
        &self,
        mut body: ByteStream,
        limit: u64,
    ) -> Result<Written, ObjectError> {
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

    /// Commits `record` as the object `key`, then removes the files of what it replaced.
    pub(super) async fn commit_object(
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

    pub(super) async fn remove_files(&self, files: impl Iterator<Item = String>) {
        for file in files {
            let _ = tokio::fs::remove_file(self.data_path(&file)).await;
        }
    }
}
