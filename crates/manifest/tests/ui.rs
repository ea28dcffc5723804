//! Snapshot tests of whole manifests, in the style of Spin's `crates/manifest/tests/ui.rs`.
//!
//! Every `ui/valid/*.toml` must parse; its snapshot is the resulting `App` as JSON. Every
//! `ui/invalid/*.toml` must fail; its snapshot is the error exactly as a user would see it.
//! To add a case, drop in a file and run `INSTA_UPDATE=always cargo test -p nimbus-manifest`,
//! then read the new `.snap` file before committing it.

use std::fs;

use nimbus_manifest::{OutboundHost, Route};

/// The file name passed to `parse`, so snapshots read like real CLI output.
const FILE: &str = "nimbus.toml";

#[test]
fn valid_manifests() {
    insta::glob!("ui/valid/*.toml", |path| {
        let app = nimbus_manifest::parse(&fs::read_to_string(path).unwrap(), FILE)
            .unwrap_or_else(|e| panic!("{} should be valid:\n{e}", path.display()));
        insta::assert_snapshot!(serde_json::to_string_pretty(&app).unwrap());

        // The normalised forms must parse back to the same values, so tools can print a
        // route or outbound host and users can paste it into a manifest.
        for function in &app.functions {
            for route in &function.routes {
                assert_eq!(Route::parse(&route.to_string()).as_ref(), Ok(route));
            }
            for host in &function.allowed_outbound_hosts {
                assert_eq!(OutboundHost::parse(&host.to_string()).as_ref(), Ok(host));
            }
        }
    });
}

#[test]
fn invalid_manifests() {
    insta::glob!("ui/invalid/*.toml", |path| {
        let err = match nimbus_manifest::parse(&fs::read_to_string(path).unwrap(), FILE) {
            Ok(app) => panic!("{} should be invalid, got {app:#?}", path.display()),
            Err(err) => err,
        };
        // Every error must say where: line, column and field.
        assert!(
            err.line.is_some() && err.column.is_some(),
            "no position: {err}"
        );
        insta::assert_snapshot!(err.to_string());
    });
}
