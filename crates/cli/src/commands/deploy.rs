//! `nimbus deploy`: build, upload changed components (content-addressed: an unchanged
//! component is never uploaded twice), deploy, print the URLs.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use futures::TryStreamExt;
use indicatif::{ProgressBar, ProgressStyle};
use nimbus_control::types::{DeployRequest, DeployResponse};
use sha2::{Digest, Sha256};
use tokio_util::io::ReaderStream;

use crate::args::DeployArgs;
use crate::client::ApiClient;
use crate::commands::build::{read_manifest, run_builds};
use crate::output;

/// `nimbus deploy`.
pub async fn run(args: DeployArgs, json: bool) -> anyhow::Result<()> {
    let client = ApiClient::from_args(&args.api)?;
    let build = match (args.no_build, args.rebuild) {
        (true, _) => Build::Skip,
        (false, true) => Build::Always,
        (false, false) => Build::IfChanged,
    };
    let response = deploy_dir(&client, &args.dir, build, json).await?;
    let info = client.info().await?;
    if json {
        output::json(&response)?;
    } else {
        let app = &response.app;
        let compiled = response.components.iter().filter(|c| !c.cache_hit).count();
        println!(
            "deployed {} version {} ({} function{}, {} component{} compiled)",
            app.name,
            app.active_version,
            app.functions.len(),
            if app.functions.len() == 1 { "" } else { "s" },
            compiled,
            if compiled == 1 { "" } else { "s" },
        );
        for function in &app.functions {
            for route in &function.routes {
                println!(
                    "  {:<16} {}",
                    function.name,
                    output::route_url(&info.gateway_url, route)
                );
            }
        }
    }
    Ok(())
}

/// Whether `deploy_dir` runs the build commands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Build {
    /// Not at all (`--no-build`).
    Skip,
    /// Those whose inputs changed since they last succeeded (the default).
    IfChanged,
    /// Every one (`--rebuild`).
    Always,
}

/// Builds (as `build` says), uploads and deploys the app in `dir`.
pub async fn deploy_dir(
    client: &ApiClient,
    dir: &Path,
    build: Build,
    quiet: bool,
) -> anyhow::Result<DeployResponse> {
    let (app, manifest, manifest_path) = read_manifest(dir)?;
    if build != Build::Skip {
        run_builds(&app, dir, quiet, build == Build::Always).await?;
    }
    let mut components = BTreeMap::new();
    let mut uploaded: BTreeMap<String, String> = BTreeMap::new();
    for function in &app.functions {
        let path = component_path(dir, &function.name, &function.component)?;
        let digest = digest_file(&path).await.with_context(|| {
            format!(
                "function `{}`: cannot read component {}",
                function.name,
                path.display()
            )
        })?;
        if !uploaded.contains_key(&digest) && !client.has_blob(&digest).await? {
            upload(client, &path, &digest, quiet).await?;
        }
        uploaded.insert(digest.clone(), function.name.clone());
        components.insert(function.name.clone(), digest);
    }
    client
        .deploy(&DeployRequest {
            manifest,
            manifest_file: Some(manifest_path.display().to_string()),
            components,
        })
        .await
}

/// The component's real path, which must lie inside the app directory. The manifest's check
/// reads only the path's text; a symlink (`dist/app.wasm -> ~/.ssh/id_ed25519`) could
/// otherwise point anywhere and have that file uploaded.
fn component_path(dir: &Path, function: &str, component: &str) -> anyhow::Result<PathBuf> {
    let root = dir
        .canonicalize()
        .with_context(|| format!("cannot resolve the app directory {}", dir.display()))?;
    let joined = dir.join(component);
    let real = joined.canonicalize().with_context(|| {
        format!(
            "function `{function}`: cannot read component {} (build it first, or check `component` in nimbus.toml)",
            joined.display()
        )
    })?;
    if !real.starts_with(&root) {
        bail!(
            "function `{function}`: component {} resolves to {}, outside the app directory {} \
             (a symlink?); components must be inside the directory of nimbus.toml",
            joined.display(),
            real.display(),
            root.display()
        );
    }
    Ok(real)
}

async fn digest_file(path: &Path) -> anyhow::Result<String> {
    let bytes = tokio::fs::read(path).await?;
    Ok(hex::encode(Sha256::digest(&bytes)))
}

async fn upload(client: &ApiClient, path: &Path, digest: &str, quiet: bool) -> anyhow::Result<()> {
    let file = tokio::fs::File::open(path)
        .await
        .with_context(|| format!("cannot open {}", path.display()))?;
    let len = file.metadata().await?.len();
    let bar = if quiet {
        ProgressBar::hidden()
    } else {
        let bar = ProgressBar::new(len);
        bar.set_style(
            ProgressStyle::with_template("uploading {msg} [{bar:30}] {bytes}/{total_bytes}")
                .unwrap_or_else(|_| ProgressStyle::default_bar())
                .progress_chars("=> "),
        );
        bar.set_message(
            path.file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default(),
        );
        bar
    };
    let progress = bar.clone();
    let stream = ReaderStream::new(file).inspect_ok(move |chunk| progress.inc(chunk.len() as u64));
    client
        .put_blob(digest, reqwest::Body::wrap_stream(stream))
        .await?;
    bar.finish_and_clear();
    Ok(())
}
