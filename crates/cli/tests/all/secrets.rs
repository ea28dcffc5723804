//! Config and secrets end to end: `[function.config]` and app secrets reach functions through
//! `wasi:config`; secrets are encrypted at rest, write-only through the API, never logged.

use crate::guests;
use crate::harness::{Nimbus, logs};

const SECRET: &str = "sk_live_canary_5f1d2e";

fn manifest(secrets: &str) -> String {
    format!(
        r#"[app]
name = "shop"

[[function]]
name = "reader"
component = "reader.wasm"
routes = ["/config", "/config/..."]
secrets = [{secrets}]

[function.config]
api_url = "https://api.example.com"

[[function]]
name = "other"
component = "reader.wasm"
routes = ["/other/config", "/other/config/..."]
"#
    )
}

async fn config(nimbus: &Nimbus, path: &str) -> serde_json::Value {
    let resp = nimbus.get(path).await;
    assert_eq!(resp.status(), 200);
    resp.json().await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn functions_read_config_and_declared_secrets_only() {
    let component = guests::js_world("guests/js/config.js", "nimbus-guest");
    let nimbus = Nimbus::start().await;
    let deploy = |m: String| {
        let component = component.clone();
        let nimbus = &nimbus;
        async move {
            nimbus
                .deploy(&m, &[("reader", &component), ("other", &component)])
                .await
        }
    };

    // A declared secret that is not set fails the deploy, saying how to set it.
    let err = deploy(manifest(r#""stripe_key""#))
        .await
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("secret `stripe_key`") && err.contains("nimbus secret set shop stripe_key"),
        "{err}"
    );

    nimbus
        .api
        .secret_set("shop", "stripe_key", SECRET.into())
        .await
        .unwrap();
    deploy(manifest(r#""stripe_key""#)).await.unwrap();

    let all = config(&nimbus, "/config").await;
    assert_eq!(all["all"]["api_url"], "https://api.example.com");
    assert_eq!(all["all"]["stripe_key"], SECRET);
    // The other function of the same app did not declare it: it sees nothing.
    let other = config(&nimbus, "/other/config").await;
    assert_eq!(other["all"], serde_json::json!({}));
    assert_eq!(
        config(&nimbus, "/other/config/stripe_key").await["value"],
        serde_json::Value::Null
    );

    // A new value reaches the next request, no redeploy.
    nimbus
        .api
        .secret_set("shop", "stripe_key", "sk_rotated".into())
        .await
        .unwrap();
    assert_eq!(
        config(&nimbus, "/config/stripe_key").await["value"],
        "sk_rotated"
    );
    nimbus
        .api
        .secret_set("shop", "stripe_key", SECRET.into())
        .await
        .unwrap();

    // Listings show names only; the value never comes back out of the API.
    let listed = nimbus.api.secret_list("shop").await.unwrap();
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0].name, "stripe_key");
    let raw = nimbus.api_text("/v1/apps/shop/secrets").await;
    assert!(!raw.contains(SECRET), "{raw}");

    // Encrypted at rest: the plaintext is nowhere in the data dir's secret store.
    let stored = std::fs::read(nimbus.data_dir.path().join("secrets.redb")).unwrap();
    assert!(!stored.windows(SECRET.len()).any(|w| w == SECRET.as_bytes()));

    // After a restart the secret is decrypted again with the key file.
    let nimbus = nimbus.restart().await;
    assert_eq!(config(&nimbus, "/config/stripe_key").await["value"], SECRET);

    // Removed: absent at run time (the live version keeps serving).
    nimbus
        .api
        .secret_remove("shop", "stripe_key")
        .await
        .unwrap();
    assert_eq!(
        config(&nimbus, "/config/stripe_key").await["value"],
        serde_json::Value::Null
    );
    let again = nimbus.api.secret_remove("shop", "stripe_key").await;
    assert!(again.unwrap_err().to_string().contains("no secret"));

    // Never in the platform's log.
    assert!(!logs().contains(SECRET), "a secret value reached the log");
    assert!(
        !logs().contains("sk_rotated"),
        "a secret value reached the log"
    );
    nimbus.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_secret_requests_get_clear_errors() {
    let nimbus = Nimbus::start().await;
    let api = &nimbus.api;
    let err = api
        .secret_set("shop", "Bad-Name", "v".into())
        .await
        .unwrap_err()
        .to_string();
    assert!(err.contains("invalid secret name"), "{err}");
    let err = api
        .secret_set("Shop", "ok", "v".into())
        .await
        .unwrap_err()
        .to_string();
    assert!(err.contains("app name"), "{err}");
    let err = api
        .secret_set("shop", "big", "x".repeat(64 * 1024 + 1))
        .await
        .unwrap_err()
        .to_string();
    assert!(err.contains("at most 65536 bytes"), "{err}");
    nimbus.stop().await;
}
