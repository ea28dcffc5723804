//! The filesystem backend through the `ObjectStore` trait: atomic writes, ranges, listings,
//! multipart ETags, checksums, crash leftovers.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "test code"
)]

use bytes::Bytes;
use futures::StreamExt;
use md5::{Digest, Md5};
use nimbus_objstore::store::{ByteStream, ListQuery, ObjectMeta, ObjectStore};
use nimbus_objstore::{FsStore, ObjectError};

const T: &str = "default";

fn body(chunks: Vec<&'static [u8]>) -> ByteStream {
    Box::pin(futures::stream::iter(
        chunks.into_iter().map(|c| Ok(Bytes::from_static(c))),
    ))
}

fn owned(data: Vec<u8>) -> ByteStream {
    Box::pin(futures::stream::iter(
        data.chunks(64 << 10)
            .map(|c| Ok(Bytes::copy_from_slice(c)))
            .collect::<Vec<_>>(),
    ))
}

async fn read_all(
    store: &FsStore,
    bucket: &str,
    key: &str,
    range: Option<(u64, Option<u64>)>,
) -> Result<Vec<u8>, std::io::Error> {
    let mut read = store.get(T, bucket, key, range).await.unwrap();
    let mut out = Vec::new();
    while let Some(chunk) = read.body.next().await {
        out.extend_from_slice(&chunk?);
    }
    Ok(out)
}

fn data_files(dir: &std::path::Path) -> usize {
    std::fs::read_dir(dir.join("data")).unwrap().count()
}

#[tokio::test]
async fn put_get_head_overwrite_delete() {
    let dir = tempfile::tempdir().unwrap();
    let store = FsStore::open(dir.path()).unwrap();
    store.create_bucket(T, "photos").await.unwrap();
    assert!(matches!(
        store.create_bucket(T, "photos").await,
        Err(ObjectError::BucketExists(_))
    ));
    // Another tenant has its own namespace.
    store.create_bucket("other", "photos").await.unwrap();

    let meta = ObjectMeta {
        content_type: Some("text/plain".into()),
        user_metadata: [("owner".to_owned(), "ada".to_owned())].into(),
    };
    let info = store
        .put(
            T,
            "photos",
            "a/b.txt",
            meta.clone(),
            body(vec![b"hello ", b"world"]),
        )
        .await
        .unwrap();
    assert_eq!(info.size, 11);
    assert_eq!(info.etag, hex::encode(Md5::digest(b"hello world")));
    let head = store.head(T, "photos", "a/b.txt").await.unwrap();
    assert_eq!(head.meta, meta);
    assert_eq!(
        read_all(&store, "photos", "a/b.txt", None).await.unwrap(),
        b"hello world"
    );
    assert!(matches!(
        store.head("other", "photos", "a/b.txt").await,
        Err(ObjectError::NoSuchKey(..))
    ));

    // Overwrite: new content, and the old file is gone.
    store
        .put(
            T,
            "photos",
            "a/b.txt",
            ObjectMeta::default(),
            body(vec![b"v2"]),
        )
        .await
        .unwrap();
    assert_eq!(
        read_all(&store, "photos", "a/b.txt", None).await.unwrap(),
        b"v2"
    );
    assert_eq!(data_files(dir.path()), 1);

    assert!(matches!(
        store.delete_bucket(T, "photos").await,
        Err(ObjectError::BucketNotEmpty(_))
    ));
    assert!(store.delete(T, "photos", "a/b.txt").await.unwrap());
    assert!(!store.delete(T, "photos", "a/b.txt").await.unwrap());
    assert_eq!(data_files(dir.path()), 0);
    store.delete_bucket(T, "photos").await.unwrap();
    assert!(matches!(
        store
            .put(T, "photos", "x", ObjectMeta::default(), body(vec![b"x"]))
            .await,
        Err(ObjectError::NoSuchBucket(_))
    ));
}

#[tokio::test]
async fn a_body_that_fails_midway_leaves_nothing_behind() {
    let dir = tempfile::tempdir().unwrap();
    let store = FsStore::open(dir.path()).unwrap();
    store.create_bucket(T, "b-1").await.unwrap();
    store
        .put(T, "b-1", "k", ObjectMeta::default(), body(vec![b"old"]))
        .await
        .unwrap();
    // The client goes away after 1 MiB.
    let broken: ByteStream = Box::pin(futures::stream::iter(vec![
        Ok(Bytes::from(vec![1u8; 1 << 20])),
        Err(std::io::Error::new(
            std::io::ErrorKind::ConnectionReset,
            "client went away",
        )),
    ]));
    let err = store
        .put(T, "b-1", "k", ObjectMeta::default(), broken)
        .await
        .unwrap_err();
    assert!(matches!(err, ObjectError::IncompleteBody(_)), "{err}");
    // The previous object is intact; no temporary or orphan file is left.
    assert_eq!(read_all(&store, "b-1", "k", None).await.unwrap(), b"old");
    assert_eq!(
        std::fs::read_dir(dir.path().join("tmp")).unwrap().count(),
        0
    );
    assert_eq!(data_files(dir.path()), 1);
}

#[tokio::test]
async fn ranges() {
    let dir = tempfile::tempdir().unwrap();
    let store = FsStore::open(dir.path()).unwrap();
    store.create_bucket(T, "b-1").await.unwrap();
    let data: Vec<u8> = (0..1000u32).map(|i| (i % 251) as u8).collect();
    store
        .put(T, "b-1", "k", ObjectMeta::default(), owned(data.clone()))
        .await
        .unwrap();
    assert_eq!(
        read_all(&store, "b-1", "k", Some((10, Some(19))))
            .await
            .unwrap(),
        &data[10..20]
    );
    assert_eq!(
        read_all(&store, "b-1", "k", Some((990, None)))
            .await
            .unwrap(),
        &data[990..]
    );
    // A last byte past the end is clamped; a first byte past the end is refused.
    assert_eq!(
        read_all(&store, "b-1", "k", Some((995, Some(5000))))
            .await
            .unwrap(),
        &data[995..]
    );
    assert!(matches!(
        store.get(T, "b-1", "k", Some((1000, None))).await,
        Err(ObjectError::InvalidRange(1000))
    ));
}

#[tokio::test]
async fn listing_with_prefix_delimiter_and_continuation() {
    let dir = tempfile::tempdir().unwrap();
    let store = FsStore::open(dir.path()).unwrap();
    store.create_bucket(T, "b-1").await.unwrap();
    let keys = [
        "a.txt",
        "docs/",
        "docs/x.md",
        "docs/y.md",
        "photos/2024/1.jpg",
        "photos/2024/2.jpg",
        "photos/2025/1.jpg",
        "photos/top.jpg",
        "z.txt",
    ];
    for key in keys {
        store
            .put(T, "b-1", key, ObjectMeta::default(), body(vec![b"x"]))
            .await
            .unwrap();
    }
    // Delimiter at the root, two entries per page: every entry exactly once, in order.
    let mut entries = Vec::new();
    let mut after = None;
    loop {
        let page = store
            .list(
                T,
                "b-1",
                ListQuery {
                    prefix: String::new(),
                    delimiter: Some("/".into()),
                    after,
                    max: 2,
                },
            )
            .await
            .unwrap();
        assert!(page.objects.len() + page.common_prefixes.len() <= 2);
        entries.extend(page.objects.iter().map(|o| o.key.clone()));
        entries.extend(page.common_prefixes.iter().cloned());
        match page.next {
            Some(next) => after = Some(next),
            None => break,
        }
    }
    entries.sort();
    assert_eq!(entries, ["a.txt", "docs/", "photos/", "z.txt"]);

    // Under a prefix, with the folder-marker object `docs/` itself listed as an object.
    let page = store
        .list(
            T,
            "b-1",
            ListQuery {
                prefix: "docs/".into(),
                delimiter: Some("/".into()),
                after: None,
                max: 1,
            },
        )
        .await
        .unwrap();
    assert_eq!(page.objects[0].key, "docs/");
    let page = store
        .list(
            T,
            "b-1",
            ListQuery {
                prefix: "docs/".into(),
                delimiter: Some("/".into()),
                after: page.next,
                max: 10,
            },
        )
        .await
        .unwrap();
    let rest: Vec<_> = page.objects.iter().map(|o| o.key.as_str()).collect();
    assert_eq!(rest, ["docs/x.md", "docs/y.md"]);

    let page = store
        .list(
            T,
            "b-1",
            ListQuery {
                prefix: "photos/".into(),
                delimiter: Some("/".into()),
                after: None,
                max: 10,
            },
        )
        .await
        .unwrap();
    assert_eq!(page.common_prefixes, ["photos/2024/", "photos/2025/"]);
    assert_eq!(page.objects.len(), 1);
    assert_eq!(page.next, None);

    // No delimiter: a flat listing.
    let page = store
        .list(
            T,
            "b-1",
            ListQuery {
                prefix: "photos/".into(),
                delimiter: None,
                after: None,
                max: 100,
            },
        )
        .await
        .unwrap();
    assert_eq!(page.objects.len(), 4);
}

#[tokio::test]
async fn multipart_etag_order_and_sizes() {
    let dir = tempfile::tempdir().unwrap();
    let store = FsStore::open(dir.path()).unwrap();
    store.create_bucket(T, "b-1").await.unwrap();
    let part1 = vec![1u8; 5 << 20];
    let part2 = vec![2u8; 1000];
    let upload = store
        .create_upload(
            T,
            "b-1",
            "big",
            ObjectMeta {
                content_type: Some("application/x-test".into()),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    let p1 = store
        .upload_part(T, &upload, 1, owned(part1.clone()))
        .await
        .unwrap();
    let p2 = store
        .upload_part(T, &upload, 2, owned(part2.clone()))
        .await
        .unwrap();
    assert_eq!(store.list_parts(T, &upload).await.unwrap().len(), 2);

    // Wrong order, unknown part, wrong ETag: refused, the upload still usable.
    assert!(matches!(
        store
            .complete_upload(T, &upload, vec![(2, p2.etag.clone()), (1, p1.etag.clone())])
            .await,
        Err(ObjectError::InvalidPartOrder)
    ));
    assert!(matches!(
        store
            .complete_upload(T, &upload, vec![(1, p1.etag.clone()), (3, p2.etag.clone())])
            .await,
        Err(ObjectError::InvalidPart(_))
    ));
    assert!(matches!(
        store
            .complete_upload(T, &upload, vec![(1, p2.etag.clone())])
            .await,
        Err(ObjectError::InvalidPart(_))
    ));

    let info = store
        .complete_upload(
            T,
            &upload,
            vec![(1, format!("\"{}\"", p1.etag)), (2, p2.etag.clone())],
        )
        .await
        .unwrap();
    let mut md5s = Vec::new();
    md5s.extend(Md5::digest(&part1));
    md5s.extend(Md5::digest(&part2));
    assert_eq!(info.etag, format!("{}-2", hex::encode(Md5::digest(&md5s))));
    assert_eq!(info.size, (5 << 20) + 1000);
    let all = read_all(&store, "b-1", "big", None).await.unwrap();
    assert_eq!(all.len(), (5 << 20) + 1000);
    assert_eq!(&all[..5 << 20], &part1[..]);
    assert_eq!(&all[5 << 20..], &part2[..]);
    // A range across the part boundary.
    let start = (5 << 20) - 3;
    let cross = read_all(&store, "b-1", "big", Some((start, Some(start + 5))))
        .await
        .unwrap();
    assert_eq!(cross, [1, 1, 1, 2, 2, 2]);
    assert!(matches!(
        store.list_parts(T, &upload).await,
        Err(ObjectError::NoSuchUpload(_))
    ));

    // A small part that is not the last: EntityTooSmall.
    let upload = store
        .create_upload(T, "b-1", "small", ObjectMeta::default())
        .await
        .unwrap();
    let a = store
        .upload_part(T, &upload, 1, body(vec![b"tiny"]))
        .await
        .unwrap();
    let b = store
        .upload_part(T, &upload, 2, body(vec![b"tiny"]))
        .await
        .unwrap();
    assert!(matches!(
        store
            .complete_upload(T, &upload, vec![(1, a.etag), (2, b.etag)])
            .await,
        Err(ObjectError::EntityTooSmall { part: 1, .. })
    ));
    // Abort removes the parts' files.
    let before = data_files(dir.path());
    store.abort_upload(T, &upload).await.unwrap();
    assert_eq!(data_files(dir.path()), before - 2);
}

#[tokio::test]
async fn corruption_is_detected_on_read_and_copies_are_independent() {
    let dir = tempfile::tempdir().unwrap();
    let store = FsStore::open(dir.path()).unwrap();
    store.create_bucket(T, "b-1").await.unwrap();
    store
        .put(
            T,
            "b-1",
            "k",
            ObjectMeta::default(),
            owned(vec![7u8; 100_000]),
        )
        .await
        .unwrap();
    store
        .copy(T, ("b-1", "k"), ("b-1", "copy"), None)
        .await
        .unwrap();
    store.delete(T, "b-1", "k").await.unwrap();
    assert_eq!(
        read_all(&store, "b-1", "copy", None).await.unwrap(),
        vec![7u8; 100_000]
    );

    // Flip a byte in the copy's data file: a full read fails instead of returning it.
    let file = std::fs::read_dir(dir.path().join("data"))
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .path();
    let mut bytes = std::fs::read(&file).unwrap();
    bytes[500] ^= 0xff;
    std::fs::write(&file, bytes).unwrap();
    let err = read_all(&store, "b-1", "copy", None).await.unwrap_err();
    assert_eq!(err.kind(), std::io::ErrorKind::InvalidData);
}

#[tokio::test]
async fn reopening_sweeps_what_a_crash_left() {
    let dir = tempfile::tempdir().unwrap();
    {
        let store = FsStore::open(dir.path()).unwrap();
        store.create_bucket(T, "b-1").await.unwrap();
        store
            .put(T, "b-1", "kept", ObjectMeta::default(), body(vec![b"kept"]))
            .await
            .unwrap();
    }
    // What a kill -9 mid-write leaves: a partial temp file and an unreferenced data file.
    std::fs::write(dir.path().join("tmp/partial"), b"half").unwrap();
    std::fs::write(dir.path().join("data/orphan"), b"never committed").unwrap();
    let store = FsStore::open(dir.path()).unwrap();
    assert_eq!(
        std::fs::read_dir(dir.path().join("tmp")).unwrap().count(),
        0
    );
    assert_eq!(data_files(dir.path()), 1);
    assert_eq!(
        read_all(&store, "b-1", "kept", None).await.unwrap(),
        b"kept"
    );
}
