//! The conformance suite every [`KvBackend`] must pass. Each backend's test calls [`run`] with
//! a fresh, uniquely named tenant so runs never see each other's keys.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;

use crate::{KvBackend, KvError, MAX_KEY_BYTES, MAX_VALUE_BYTES, StoreId};

/// A failed conformance check.
#[derive(Debug, thiserror::Error)]
#[error("{check}: {detail}")]
pub struct Failure {
    /// Which check.
    pub check: &'static str,
    /// What was observed.
    pub detail: String,
}

fn ensure(ok: bool, check: &'static str, detail: impl FnOnce() -> String) -> Result<(), Failure> {
    if ok {
        Ok(())
    } else {
        Err(Failure {
            check,
            detail: detail(),
        })
    }
}

fn op<T>(check: &'static str, r: Result<T, KvError>) -> Result<T, Failure> {
    r.map_err(|e| Failure {
        check,
        detail: format!("unexpected error: {e}"),
    })
}

fn joined<T>(
    check: &'static str,
    r: Result<Result<T, KvError>, tokio::task::JoinError>,
) -> Result<T, Failure> {
    op(
        check,
        r.unwrap_or_else(|e| Err(KvError::Backend(e.to_string()))),
    )
}

/// Runs every check against `kv`, using stores of tenant `tenant` (make it unique per run).
pub async fn run(kv: Arc<dyn KvBackend>, tenant: &str) -> Result<(), Failure> {
    let s = StoreId::new(tenant, "main");
    let other = StoreId::new(tenant, "other");

    // Basic get/set/delete/exists, and store isolation.
    ensure(
        op("get missing", kv.get(&s, "k").await)?.is_none(),
        "get missing",
        || "found a value".into(),
    )?;
    op(
        "set",
        kv.set(&s, "k", Bytes::from_static(b"v1"), None).await,
    )?;
    let got = op("get", kv.get(&s, "k").await)?;
    ensure(
        got.as_deref() == Some(b"v1".as_slice()),
        "get after set",
        || format!("{got:?}"),
    )?;
    ensure(op("exists", kv.exists(&s, "k").await)?, "exists", || {
        "false".into()
    })?;
    ensure(
        op("other store", kv.get(&other, "k").await)?.is_none(),
        "stores are isolated",
        || "value leaked".into(),
    )?;
    op(
        "overwrite",
        kv.set(&s, "k", Bytes::from_static(b"v2"), None).await,
    )?;
    let got = op("get", kv.get(&s, "k").await)?;
    ensure(
        got.as_deref() == Some(b"v2".as_slice()),
        "overwrite",
        || format!("{got:?}"),
    )?;
    ensure(
        op("delete", kv.delete(&s, "k").await)?,
        "delete existing",
        || "returned false".into(),
    )?;
    ensure(
        !op("delete", kv.delete(&s, "k").await)?,
        "delete missing",
        || "returned true".into(),
    )?;
    ensure(
        !op("exists", kv.exists(&s, "k").await)?,
        "exists after delete",
        || "true".into(),
    )?;

    // Binary values and an empty value are kept exactly.
    let binary = Bytes::from((0..=255u8).collect::<Vec<_>>());
    op("set binary", kv.set(&s, "bin", binary.clone(), None).await)?;
    ensure(
        op("get", kv.get(&s, "bin").await)? == Some(binary),
        "binary value",
        || "differs".into(),
    )?;
    op("set empty", kv.set(&s, "empty", Bytes::new(), None).await)?;
    let got = op("get", kv.get(&s, "empty").await)?;
    ensure(
        got.as_deref() == Some(b"".as_slice()),
        "empty value",
        || format!("{got:?}"),
    )?;

    // Limits.
    let long_key = "k".repeat(MAX_KEY_BYTES + 1);
    ensure(
        matches!(
            kv.set(&s, &long_key, Bytes::new(), None).await,
            Err(KvError::InvalidKey(_))
        ),
        "oversized key rejected",
        || "accepted".into(),
    )?;
    ensure(
        matches!(kv.get(&s, "").await, Err(KvError::InvalidKey(_))),
        "empty key rejected",
        || "accepted".into(),
    )?;
    let big = Bytes::from(vec![0u8; MAX_VALUE_BYTES + 1]);
    ensure(
        matches!(
            kv.set(&s, "big", big, None).await,
            Err(KvError::ValueTooLarge { .. })
        ),
        "oversized value rejected",
        || "accepted".into(),
    )?;
    ensure(
        op("get", kv.get(&s, "big").await)?.is_none(),
        "rejected value not stored",
        || "stored".into(),
    )?;

    // TTL.
    op(
        "set ttl",
        kv.set(
            &s,
            "ttl",
            Bytes::from_static(b"x"),
            Some(Duration::from_millis(150)),
        )
        .await,
    )?;
    ensure(
        op("get", kv.get(&s, "ttl").await)?.is_some(),
        "ttl key visible before expiry",
        || "missing".into(),
    )?;
    tokio::time::sleep(Duration::from_millis(400)).await;
    ensure(
        op("get", kv.get(&s, "ttl").await)?.is_none(),
        "ttl key gone after expiry",
        || "still there".into(),
    )?;
    ensure(
        !op("exists", kv.exists(&s, "ttl").await)?,
        "ttl exists after expiry",
        || "true".into(),
    )?;

    // Counters.
    ensure(
        op("incr", kv.increment(&s, "n", 5).await)? == 5,
        "increment missing starts at 0",
        || "wrong".into(),
    )?;
    ensure(
        op("incr", kv.increment(&s, "n", -2).await)? == 3,
        "increment negative",
        || "wrong".into(),
    )?;
    let got = op("get", kv.get(&s, "n").await)?;
    ensure(
        got.as_deref() == Some(b"3".as_slice()),
        "counter stored as decimal",
        || format!("{got:?}"),
    )?;
    op(
        "set text",
        kv.set(&s, "text", Bytes::from_static(b"abc"), None).await,
    )?;
    ensure(
        matches!(
            kv.increment(&s, "text", 1).await,
            Err(KvError::NotACounter(_))
        ),
        "increment of non-number",
        || "did not fail with NotACounter".into(),
    )?;
    op(
        "set max",
        kv.set(&s, "max", Bytes::from(i64::MAX.to_string()), None)
            .await,
    )?;
    ensure(
        matches!(kv.increment(&s, "max", 1).await, Err(KvError::Overflow(_))),
        "increment overflow",
        || "did not fail with Overflow".into(),
    )?;

    // Concurrent increments are exact.
    let mut tasks = Vec::new();
    for _ in 0..8 {
        let kv = kv.clone();
        let s = s.clone();
        tasks.push(tokio::spawn(async move {
            for _ in 0..25 {
                kv.increment(&s, "race", 1).await?;
            }
            Ok::<_, KvError>(())
        }));
    }
    for t in tasks {
        joined("concurrent increment", t.await)?;
    }
    let got = op("get", kv.get(&s, "race").await)?;
    ensure(
        got.as_deref() == Some(b"200".as_slice()),
        "concurrent increments are exact",
        || format!("{got:?}"),
    )?;

    // Compare-and-swap.
    ensure(
        op(
            "cas",
            kv.compare_and_swap(&s, "c", None, Bytes::from_static(b"1"))
                .await,
        )?,
        "cas create when absent",
        || "false".into(),
    )?;
    ensure(
        !op(
            "cas",
            kv.compare_and_swap(&s, "c", None, Bytes::from_static(b"2"))
                .await,
        )?,
        "cas create when present",
        || "true".into(),
    )?;
    ensure(
        !op(
            "cas",
            kv.compare_and_swap(&s, "c", Some(b"x"), Bytes::from_static(b"2"))
                .await,
        )?,
        "cas wrong expected",
        || "true".into(),
    )?;
    ensure(
        op(
            "cas",
            kv.compare_and_swap(&s, "c", Some(b"1"), Bytes::from_static(b"2"))
                .await,
        )?,
        "cas right expected",
        || "false".into(),
    )?;
    let got = op("get", kv.get(&s, "c").await)?;
    ensure(
        got.as_deref() == Some(b"2".as_slice()),
        "cas stored",
        || format!("{got:?}"),
    )?;

    // Concurrent CAS: exactly one of many racing creators wins.
    let mut tasks = Vec::new();
    for i in 0..8u8 {
        let kv = kv.clone();
        let s = s.clone();
        tasks.push(tokio::spawn(async move {
            kv.compare_and_swap(&s, "leader", None, Bytes::from(vec![i]))
                .await
        }));
    }
    let mut winners = 0;
    for t in tasks {
        if joined("concurrent cas", t.await)? {
            winners += 1;
        }
    }
    ensure(winners == 1, "exactly one concurrent cas wins", || {
        format!("{winners} won")
    })?;

    // Listing with prefix and cursor collects every key exactly once.
    let l = StoreId::new(tenant, "list");
    let mut expected = BTreeSet::new();
    for i in 0..57 {
        let key = format!("user:{i:03}");
        op(
            "set",
            kv.set(&l, &key, Bytes::from_static(b"1"), None).await,
        )?;
        expected.insert(key);
    }
    op(
        "set",
        kv.set(&l, "order:1", Bytes::from_static(b"1"), None).await,
    )?;
    op(
        "set",
        kv.set(&l, "user*glob", Bytes::from_static(b"1"), None)
            .await,
    )?;
    let mut seen = BTreeSet::new();
    let mut cursor: Option<String> = None;
    let mut pages = 0;
    loop {
        let page = op(
            "list",
            kv.list_keys(&l, "user:", cursor.as_deref(), 10).await,
        )?;
        pages += 1;
        for key in page.keys {
            ensure(seen.insert(key.clone()), "listing repeats no key", || {
                key.clone()
            })?;
        }
        match page.cursor {
            Some(c) => cursor = Some(c),
            None => break,
        }
        ensure(pages < 100, "listing terminates", || {
            "over 100 pages".into()
        })?;
    }
    ensure(
        seen == expected,
        "listing by prefix finds exactly the matching keys",
        || format!("{} found, {} expected", seen.len(), expected.len()),
    )?;
    let all = op("list", kv.list_keys(&l, "", None, 1000).await)?;
    ensure(
        all.keys.len() == 59 && all.cursor.is_none(),
        "listing everything",
        || format!("{} keys", all.keys.len()),
    )?;
    Ok(())
}
