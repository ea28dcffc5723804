//! `nimbus build`: runs each function's `build` command in the app directory.

use std::path::{Path, PathBuf};
use std::process::Stdio;

use anyhow::{Context, bail};
use nimbus_manifest::App;

use crate::args::DirArgs;
use crate::build_cache::{self, BuildState};

/// Reads and validates `dir/nimbus.toml`.
pub fn read_manifest(dir: &Path) -> anyhow::Result<(App, String, PathBuf)> {
    let path = dir.join("nimbus.toml");
    let text = std::fs::read_to_string(&path)
        .with_context(|| format!("cannot read {}", path.display()))?;
    let shown = path.display().to_string();
    let app = nimbus_manifest::parse(&text, &shown)?;
    Ok((app, text, path))
}

/// What [`run_builds`] did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Builds {
    /// Build commands run.
    pub ran: usize,
    /// Build commands skipped: inputs unchanged since they last succeeded.
    pub skipped: usize,
}

/// Runs the distinct build commands of `app` in `dir`, in manifest order — except, unless
/// `force`, those whose inputs are unchanged since they last succeeded (see `build_cache`).
pub async fn run_builds(app: &App, dir: &Path, quiet: bool, force: bool) -> anyhow::Result<Builds> {
    let mut state = BuildState::load(dir);
    state.v = 1;
    let mut builds = Builds::default();
    let mut done: Vec<&str> = Vec::new();
    for function in &app.functions {
        let Some(command) = function.build.as_deref() else {
            continue;
        };
        if done.contains(&command) {
            continue;
        }
        done.push(command);
        // The components this command builds.
        let outputs: Vec<PathBuf> = app
            .functions
            .iter()
            .filter(|f| f.build.as_deref() == Some(command))
            .map(|f| PathBuf::from(&f.component))
            .collect();
        let unchanged = !force
            && outputs.iter().all(|o| dir.join(o).is_file())
            && state.builds.get(command).is_some_and(|stored| {
                build_cache::fingerprint(dir, command, &outputs).is_ok_and(|now| &now == stored)
            });
        if unchanged {
            builds.skipped += 1;
            if !quiet {
                eprintln!("build of {} skipped: inputs unchanged", function.name);
            }
            continue;
        }
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
            state.builds.remove(command);
            state.save(dir)?;
            bail!(
                "build of function `{}` failed ({status}): `{command}`",
                function.name
            );
        }
        builds.ran += 1;
        let print = build_cache::fingerprint(dir, command, &outputs)?;
        state.builds.insert(command.to_owned(), print);
        state.save(dir)?;
    }
    Ok(builds)
}

/// `nimbus build`.
pub async fn run(args: DirArgs, json: bool) -> anyhow::Result<()> {
    let (app, _, _) = read_manifest(&args.dir)?;
    // An explicit build always runs.
    run_builds(&app, &args.dir, json, true).await?;
    if json {
        println!("{}", serde_json::json!({ "app": app.name, "built": true }));
    } else {
        println!("built {}", app.name);
    }
    Ok(())
}
