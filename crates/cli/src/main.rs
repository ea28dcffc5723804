//! The `nimbus` binary: parses arguments, runs one command, prints errors as one line plus a
//! hint.

use clap::Parser;
use nimbus_cli::args::{Cli, Command};
use nimbus_cli::client::{ApiError, Unreachable};
use nimbus_cli::commands;

/// mimalloc instead of glibc's malloc: records, log lines and request ids are allocated on the
/// runtime's workers and freed on the writer threads, a cross-thread free that glibc pays for
/// with arena locks and that keeps the workers' caches empty (BENCHMARKS.md, metering).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[tokio::main]
async fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    // s3s logs every client mistake (a bad signature, a missing key) at ERROR; Nimbus logs the
    // S3 failures that are its own (`nimbus_objstore::s3`), so s3s's request log is off unless
    // NIMBUS_LOG asks for it.
    let filter = tracing_subscriber::EnvFilter::try_from_env("NIMBUS_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info,s3s::ops=off"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .init();

    let json = cli.json;
    let lister = lister(&cli.command);
    let result = match cli.command {
        Command::Up(args) => commands::up::run(*args).await,
        Command::New(args) => commands::new::run(args, json),
        Command::Build(args) => commands::build::run(args, json).await,
        Command::Deploy(args) => commands::deploy::run(args, json).await,
        Command::Apps(args) => commands::apps::run(args, json).await,
        Command::Functions(args) => commands::functions::run(args, json).await,
        Command::Invoke(args) => commands::invoke::run(args, json).await,
        Command::Rollback(args) => commands::rollback::run(args, json).await,
        Command::Delete(args) => commands::delete::run(args, json).await,
        Command::Kv(args) => commands::kv::run(args, json).await,
        Command::Secret(args) => commands::secret::run(args, json).await,
        Command::Keys(args) => commands::keys::run(args, json).await,
        Command::Queue(args) => commands::queue::run(args, json).await,
        Command::Invocations(args) => commands::invocations::run(args, json).await,
        Command::Usage(args) => commands::usage::run(args, json).await,
        Command::Logs(args) => commands::logs::run(args, json).await,
    };
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("error: {err:#}");
            if let Some(hint) = hint(&err, lister) {
                eprintln!("hint: {hint}");
            }
            std::process::ExitCode::FAILURE
        }
    }
}

/// The command that lists what `command` names, for the hint after a `not_found`.
fn lister(command: &Command) -> &'static str {
    match command {
        Command::Kv(_) => "`nimbus kv list STORE` lists a store's keys",
        Command::Secret(_) => {
            "`nimbus secret list APP` lists an app's secrets, `nimbus apps` the apps"
        }
        Command::Keys(_) => "`nimbus keys list` lists the access keys",
        Command::Queue(_) => {
            "`nimbus queue stats APP` lists an app's queues, `nimbus apps` the apps"
        }
        Command::Invocations(_) => {
            "invocation records are kept 7 days; `nimbus invoke --async` prints new ids"
        }
        _ => "`nimbus apps` lists what is deployed",
    }
}

fn hint(err: &anyhow::Error, lister: &'static str) -> Option<&'static str> {
    if err.downcast_ref::<Unreachable>().is_some() {
        return Some("is `nimbus up` running? Point at another server with --api or NIMBUS_API");
    }
    if let Some(api) = err.downcast_ref::<ApiError>() {
        return match api.code.as_str() {
            "unauthorized" => Some(
                "set NIMBUS_TOKEN, or run `nimbus up --reset-token` on the server machine to write a new token to the client config",
            ),
            "invalid_manifest" => Some("fix nimbus.toml at the position shown and deploy again"),
            "invalid_component" => {
                Some("functions must be WebAssembly components exporting the wasi:http/proxy world")
            }
            "route_conflict" => Some("change the route, or delete the app that owns it"),
            "not_found" => Some(lister),
            _ => None,
        };
    }
    if err
        .downcast_ref::<nimbus_manifest::ManifestError>()
        .is_some()
    {
        return Some("fix nimbus.toml at the position shown");
    }
    None
}
