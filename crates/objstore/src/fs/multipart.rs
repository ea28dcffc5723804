//! Multipart uploads: an upload's parts are data files of their own until it completes, when
//! the object's record lists them as its segments (no bytes move).

use super::*;

pub(super) async fn create_upload(
    store: &FsStore,
    tenant: &str,
    bucket: &str,
    key: &str,
    meta: ObjectMeta,
) -> Result<String, ObjectError> {
    store.require_bucket(tenant, bucket)?;
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
    store
        .write_txn(move |txn| {
            txn.open_table(UPLOADS)
                .map_err(store_err)?
                .insert(row.as_str(), bytes.as_slice())
                .map_err(store_err)?;
            Ok(())
        })
        .await?;
    Ok(id)
}

pub(super) async fn upload_part(
    store: &FsStore,
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
    store.upload(tenant, upload)?;
    let written = store.write_body(body, MAX_PUT_BYTES).await?;
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
    let replaced = store
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
                store.remove_files(std::iter::once(old.segment.file)).await;
            }
            Ok(info)
        }
        Err(e) => {
            store.remove_files(std::iter::once(part.segment.file)).await;
            Err(e)
        }
    }
}

pub(super) async fn upload_target(
    store: &FsStore,
    tenant: &str,
    upload: &str,
) -> Result<(String, String), ObjectError> {
    let record = store.upload(tenant, upload)?;
    Ok((record.bucket, record.key))
}

pub(super) async fn list_parts(
    store: &FsStore,
    tenant: &str,
    upload: &str,
) -> Result<Vec<PartInfo>, ObjectError> {
    store.upload(tenant, upload)?;
    Ok(store
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

pub(super) async fn complete_upload(
    store: &FsStore,
    tenant: &str,
    upload: &str,
    parts: Vec<(u32, String)>,
) -> Result<ObjectInfo, ObjectError> {
    let record = store.upload(tenant, upload)?;
    if parts.is_empty() {
        return Err(ObjectError::InvalidPart(
            "a multipart upload needs at least one part".into(),
        ));
    }
    if parts.windows(2).any(|w| w[0].0 >= w[1].0) {
        return Err(ObjectError::InvalidPartOrder);
    }
    let uploaded: BTreeMap<u32, PartRecord> = store.parts(upload)?.into_iter().collect();
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
    let info = store
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
    store.remove_files(unused.into_iter()).await;
    Ok(info)
}

pub(super) async fn abort_upload(
    store: &FsStore,
    tenant: &str,
    upload: &str,
) -> Result<(), ObjectError> {
    store.upload(tenant, upload)?;
    let parts = store.parts(upload)?;
    let upload_row = upload.to_owned();
    let numbers: Vec<u32> = parts.iter().map(|(n, _)| *n).collect();
    store
        .write_txn(move |txn| {
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
    store
        .remove_files(parts.into_iter().map(|(_, p)| p.segment.file))
        .await;
    Ok(())
}

impl FsStore {
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
