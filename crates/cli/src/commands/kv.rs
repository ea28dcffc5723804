//! `nimbus kv get|set|del|list`: the key-value REST API from the shell.

use std::io::{Read, Write};

use anyhow::{Context, bail};

use crate::args::{KvArgs, KvCommand};
use crate::client::ApiClient;

/// Keys fetched per listing request.
const PAGE: usize = 1000;

/// `nimbus kv`.
pub async fn run(args: KvArgs, json: bool) -> anyhow::Result<()> {
    let client = ApiClient::from_args(&args.api)?;
    match args.command {
        KvCommand::Get { store, key } => {
            let Some(value) = client.kv_get(&store, &key).await? else {
                bail!("no key `{key}` in store `{store}`");
            };
            if json {
                let body = match std::str::from_utf8(&value) {
                    Ok(text) => serde_json::json!({ "store": store, "key": key, "value": text }),
                    Err(_) => {
                        use base64::Engine;
                        let encoded = base64::engine::general_purpose::STANDARD.encode(&value);
                        serde_json::json!({ "store": store, "key": key, "value_base64": encoded })
                    }
                };
                println!("{body}");
            } else {
                let mut out = std::io::stdout().lock();
                out.write_all(&value)?;
                out.flush()?;
            }
        }
        KvCommand::Set {
            store,
            key,
            value,
            ttl,
        } => {
            let bytes = read_value(&value)?;
            let size = bytes.len();
            client.kv_set(&store, &key, bytes, ttl).await?;
            if json {
                println!(
                    "{}",
                    serde_json::json!({ "store": store, "key": key, "bytes": size, "ttl": ttl })
                );
            } else {
                println!("set {store}/{key} ({size} bytes)");
            }
        }
        KvCommand::Del { store, key } => {
            if !client.kv_delete(&store, &key).await? {
                bail!("no key `{key}` in store `{store}`");
            }
            if json {
                println!("{}", serde_json::json!({ "store": store, "deleted": key }));
            } else {
                println!("deleted {store}/{key}");
            }
        }
        KvCommand::List {
            store,
            prefix,
            limit,
        } => {
            let mut keys = Vec::new();
            let mut cursor: Option<String> = None;
            loop {
                let want = limit.map_or(PAGE, |l| l.saturating_sub(keys.len()).min(PAGE));
                if want == 0 {
                    break;
                }
                let page = client
                    .kv_list(&store, &prefix, cursor.as_deref(), want)
                    .await?;
                keys.extend(page.keys);
                match page.cursor {
                    Some(next) => cursor = Some(next),
                    None => break,
                }
            }
            if json {
                println!("{}", serde_json::json!({ "store": store, "keys": keys }));
            } else {
                let mut out = std::io::stdout().lock();
                for key in keys {
                    writeln!(out, "{key}")?;
                }
            }
        }
    }
    Ok(())
}

/// The value argument: literal text, `@FILE`, or `-` for standard input.
pub(crate) fn read_value(arg: &str) -> anyhow::Result<Vec<u8>> {
    if arg == "-" {
        let mut buf = Vec::new();
        std::io::stdin()
            .read_to_end(&mut buf)
            .context("reading the value from standard input")?;
        return Ok(buf);
    }
    if let Some(path) = arg.strip_prefix('@') {
        return std::fs::read(path).with_context(|| format!("cannot read {path}"));
    }
    Ok(arg.as_bytes().to_vec())
}
