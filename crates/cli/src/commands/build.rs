//! `nimbus build`: runs each function's `build` command in the app directory.

use std::path::{Path, PathBuf};
use std::process::Stdio;

use anyhow::{Context, bail};
use nimbus_manifest::App;

use crate::args::DirArgs;

/// Reads and validates `dir/nimbus.toml`.
pub fn read_manifest(dir: &Path) -> anyhow::Result<(App, String, PathBuf)> {
    let path = dir.join("nimbus.toml");
    let text = std::fs::read_to_string(&path)
        .with_context(|| format!("cannot read {}", path.display()))?;
    let shown = path.display().to_string();
    let app = nimbus_manifest::parse(&text, &shown)?;
    Ok((app, text, path))
}

/// Runs the distinct build commands of `app` in `dir`, in manifest order.
pub async fn run_builds(app: &App, dir: &Path, quiet: bool) -> anyhow::Result<()> {
    let mut done: Vec<&str> = Vec::new();
    for function in &app.functions {
        let Some(command) = function.build.as_deref() else {
            continue;
        };
        if done.contains(&command) {
            continue;
        }
        done.push(command);
        if !quiet {
            eprintln!("building {}: {command}", function.name);
        }
        let status = tokio::process::Command::new("sh")
            .arg("-c")
            .arg(command)
            .current_dir(dir)
            .stdin(Stdio::null())
            .stdout(if quiet {
                Stdio::null()
            } else {
                Stdio::inherit()
            })
            .stderr(Stdio::inherit())
            .status()
            .await
            .with_context(|| format!("cannot run build command `{command}`"))?;
        if !status.success() {
            bail!(
                "build of function `{}` failed ({status}): `{command}`",
                function.name
            );
        }
    }
    Ok(())
}

/// `nimbus build`.
pub async fn run(args: DirArgs, json: bool) -> anyhow::Result<()> {
    let (app, _, _) = read_manifest(&args.dir)?;
    run_builds(&app, &args.dir, json).await?;
    if json {
        println!("{}", serde_json::json!({ "app": app.name, "built": true }));
    } else {
        println!("built {}", app.name);
    }
    Ok(())
}
