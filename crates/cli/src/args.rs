//! Command-line arguments.

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

/// Nimbus: serverless functions and backend services in one binary.
#[derive(Debug, Parser)]
#[command(name = "nimbus", version, about)]
pub struct Cli {
    /// Print machine-readable JSON instead of human output.
    #[arg(long, global = true)]
    pub json: bool,
    /// The command.
    #[command(subcommand)]
    pub command: Command,
}

/// How client commands reach the control API.
#[derive(Debug, Clone, Args)]
pub struct ApiArgs {
    /// Control API URL (default: the local `nimbus up`, from its client config).
    #[arg(long, env = "NIMBUS_API", global = true)]
    pub api: Option<String>,
    /// API token (default: from the client config written by `nimbus up`).
    #[arg(long, env = "NIMBUS_TOKEN", global = true, hide_env_values = true)]
    pub token: Option<String>,
}

/// The commands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the platform: function gateway and control API, state in one data dir.
    Up(Box<UpArgs>),
    /// Create a new app from a template.
    New(NewArgs),
    /// Run the build commands of an app's functions.
    Build(DirArgs),
    /// Build, upload and deploy an app; prints its URLs once it is live.
    Deploy(DeployArgs),
    /// List apps.
    Apps(ApiOnly),
    /// List the functions of an app.
    Functions(AppArgs),
    /// Call a function over HTTP and print the response.
    Invoke(InvokeArgs),
    /// Make an earlier version of an app live again.
    Rollback(RollbackArgs),
    /// Delete an app and its routes.
    Delete(AppArgs),
    /// Read and write key-value stores.
    Kv(KvArgs),
    /// Set, list and remove an app's secrets (functions read them through wasi:config).
    Secret(SecretArgs),
    /// Issue, list and revoke access keys for the S3 API.
    Keys(KeysArgs),
    /// Send to, peek at, count and redrive an app's queues.
    Queue(QueueArgs),
    /// Inspect asynchronous invocations (`nimbus invoke --async`).
    Invocations(InvocationsArgs),
    /// Usage and cost: invocations, GB-seconds and dollars per app, function, hour or day.
    Usage(UsageArgs),
    /// Functions' output and the platform's events about their invocations; `-f` follows.
    Logs(LogsArgs),
}

/// `nimbus logs`.
#[derive(Debug, Args)]
pub struct LogsArgs {
    /// Only this app, or `APP/FUNCTION` for one function.
    pub target: Option<String>,
    /// From: a duration back from now (`10m`, `1h`, `7d`) or ms since the epoch.
    #[arg(long, default_value = "1h")]
    pub since: String,
    /// Only the lines of this invocation (or request) id.
    #[arg(long)]
    pub invocation: Option<String>,
    /// Most stored lines shown (the newest).
    #[arg(long, default_value_t = 200)]
    pub limit: usize,
    /// Keep running and print new lines as they are written.
    #[arg(short, long)]
    pub follow: bool,
    /// API access.
    #[command(flatten)]
    pub api: ApiArgs,
}

/// `nimbus usage`.
#[derive(Debug, Args)]
pub struct UsageArgs {
    /// Only this app, or `APP/FUNCTION` for one function.
    pub target: Option<String>,
    /// Start: a duration back from now (`90m`, `24h`, `7d`) or ms since the epoch.
    #[arg(long, default_value = "24h")]
    pub since: String,
    /// End (exclusive), in the same forms [default: now].
    #[arg(long)]
    pub until: Option<String>,
    /// Group rows by `app`, `function`, `hour` or `day`.
    #[arg(long, default_value = "function")]
    pub by: String,
    /// Print the rows as CSV (for spreadsheets) instead of a table.
    #[arg(long, conflicts_with = "records")]
    pub csv: bool,
    /// Print single invocations' usage records instead of a report (at most `--limit`).
    #[arg(long)]
    pub records: bool,
    /// Only the records of this invocation (or request) id; implies `--records`.
    #[arg(long)]
    pub id: Option<String>,
    /// Most records printed with `--records`.
    #[arg(long, default_value_t = 100)]
    pub limit: usize,
    /// API access.
    #[command(flatten)]
    pub api: ApiArgs,
}

/// `nimbus up`.
#[derive(Debug, Args)]
pub struct UpArgs {
    /// Data directory [default: ~/.local/share/nimbus].
    #[arg(long, env = "NIMBUS_DATA_DIR")]
    pub data_dir: Option<PathBuf>,
    /// Address for function traffic [default: 127.0.0.1:8080].
    #[arg(long, env = "NIMBUS_LISTEN")]
    pub listen: Option<SocketAddr>,
    /// Address for the control API [default: 127.0.0.1:7070].
    #[arg(long, env = "NIMBUS_API_LISTEN")]
    pub api_listen: Option<SocketAddr>,
    /// Address for the S3 API [default: 127.0.0.1:9000].
    #[arg(long, env = "NIMBUS_S3_LISTEN")]
    pub s3_listen: Option<SocketAddr>,
    /// A TOML file with `data_dir`, `listen`, `api_listen`, `s3_listen`, `kv` and
    /// `secrets_key_file` (flags and env vars win).
    #[arg(long, env = "NIMBUS_SERVER_CONFIG")]
    pub config: Option<PathBuf>,
    /// Issue a new API token (the old one stops working) and write it to the client config.
    #[arg(long)]
    pub reset_token: bool,
    /// KiB of each pooled instance slot kept resident between requests [default: 16384].
    /// More trades memory for fewer page faults per request (large JS/Python guests).
    #[arg(long, env = "NIMBUS_KEEP_RESIDENT_KIB")]
    pub keep_resident_kib: Option<usize>,
    /// How long an idle function keeps its compiled code in memory before it scales to zero:
    /// a duration (`10m`, `90s`, `0s`) or `adaptive` (learned per function from its idle
    /// times, Shahrad et al. ATC '20) [default: 10m].
    #[arg(long, env = "NIMBUS_KEEP_ALIVE")]
    pub keep_alive: Option<String>,
    /// Guests of one app that may run CPU-bound slices at once, so a flood on one app cannot
    /// starve another [default: CPU cores − 1, at least 1]. A large value turns fair sharing
    /// off (benchmarks compare both).
    #[arg(long, env = "NIMBUS_CPU_SLOTS_PER_APP", value_parser = clap::value_parser!(u32).range(1..=100_000))]
    pub cpu_slots_per_app: Option<u32>,
    /// Nice value (0-19) of the threads that run CPU-bound guests: above 0, requests to
    /// short functions preempt a spinning guest at once, and CPU-bound functions get less of
    /// a busy machine. 0 keeps them at Nimbus's own priority [default: 0].
    #[arg(long, env = "NIMBUS_CPU_NICE", value_parser = clap::value_parser!(i32).range(0..=19))]
    pub cpu_nice: Option<i32>,
    /// Milliseconds between epoch ticks while apps contend for the CPU: how often a running
    /// guest then yields its worker thread (so another app's CPU-bound guest delays a request
    /// by at most one tick), and the granularity of `cpu_time_ms` budgets. Otherwise the tick
    /// is 5 ms (or this, if longer) [default: 1].
    #[arg(long, env = "NIMBUS_EPOCH_TICK_MS", value_parser = clap::value_parser!(u32).range(1..=100))]
    pub epoch_tick_ms: Option<u32>,
    /// Milliseconds a connection that was answered 429 (the gateway turning a request away:
    /// a function at `max_concurrency`, an app at its instance budget) waits before its next
    /// request is read, so clients that retry at once cannot crowd out the requests being
    /// served; fresh connections are read at once. 0 turns the pause off [default: 10].
    #[arg(long, env = "NIMBUS_REJECTION_PAUSE_MS", value_parser = clap::value_parser!(u32).range(0..=10_000))]
    pub rejection_pause_ms: Option<u32>,
    /// The region S3 clients sign their requests for; requests signed for another region
    /// are refused (AuthorizationHeaderMalformed) [default: us-east-1].
    #[arg(long, env = "NIMBUS_S3_REGION", value_name = "REGION")]
    pub s3_region: Option<String>,
    /// Accept SigV2 (HMAC-SHA1) signatures on the S3 API, for clients too old for SigV4.
    /// Off by default: SigV2 is deprecated by AWS and weaker.
    #[arg(long, env = "NIMBUS_S3_ALLOW_SIGV2")]
    pub s3_allow_sigv2: bool,
    /// Milliseconds a client has, from the first byte of a request head, to send all of it;
    /// slower connections are closed (all listeners) [default: 10000].
    #[arg(long, env = "NIMBUS_HEADER_READ_TIMEOUT_MS", value_parser = clap::value_parser!(u32).range(100..=600_000))]
    pub header_read_timeout_ms: Option<u32>,
    /// Milliseconds a connection may stay open with no request in progress, and a client
    /// may leave a response unread, before it is closed (all listeners; streaming responses
    /// such as `logs -f` are not cut) [default: 30000].
    #[arg(long, env = "NIMBUS_IDLE_TIMEOUT_MS", value_parser = clap::value_parser!(u32).range(100..=3_600_000))]
    pub idle_timeout_ms: Option<u32>,
    /// Connections each listener (functions, control API, S3) holds open at once; past it
    /// new ones wait in the kernel's backlog. Lowered at start to fit the open-file limit
    /// [default: 4096].
    #[arg(long, env = "NIMBUS_MAX_CONNECTIONS", value_parser = clap::value_parser!(u32).range(1..=1_000_000))]
    pub max_connections: Option<u32>,
    /// Connections one client address (an IPv6 /64) may hold open on each listener; more
    /// are refused (429) [default: no cap]. `--trusted-proxies` are exempt.
    #[arg(long, env = "NIMBUS_MAX_CONNECTIONS_PER_CLIENT", value_parser = clap::value_parser!(u32).range(1..=1_000_000))]
    pub max_connections_per_client: Option<u32>,
    /// Comma-separated addresses or networks of load balancers and proxies in front of
    /// Nimbus (`10.0.0.7,10.1.0.0/16`), exempt from `--max-connections-per-client`.
    #[arg(long, env = "NIMBUS_TRUSTED_PROXIES", value_name = "LIST")]
    pub trusted_proxies: Option<nimbus_serve::TrustedProxies>,
    /// WebAssembly instances alive at once on this machine, across all apps (pooling
    /// allocator slots) [default: 1000].
    #[arg(long, env = "NIMBUS_MAX_INSTANCES", value_parser = clap::value_parser!(u32).range(1..=100_000))]
    pub max_instances: Option<u32>,
    /// Instances one app may have alive at once across its functions, so one app cannot
    /// take the whole pool; past it the app's requests get 429 [default: half of
    /// --max-instances].
    #[arg(long, env = "NIMBUS_MAX_INSTANCES_PER_APP", value_parser = clap::value_parser!(u32).range(1..=100_000))]
    pub max_instances_per_app: Option<u32>,
    /// Do not meter invocations, collect metrics or keep function logs (`nimbus usage`,
    /// `/metrics` and `nimbus logs` are unavailable): for measuring their own cost.
    #[arg(long)]
    pub no_metering: bool,
    /// Key-value backend: `embedded` (durable, in the data dir), `redis://HOST:PORT` or
    /// `nats://HOST:PORT` (JetStream KV) [default: embedded].
    #[arg(long, env = "NIMBUS_KV")]
    pub kv: Option<String>,
    /// Queue backend: `embedded` (durable, in the data dir) or `nats://HOST:PORT` (JetStream)
    /// [default: embedded].
    #[arg(long, env = "NIMBUS_QUEUES")]
    pub queues: Option<String>,
    /// File holding the 64-hex-digit master key that encrypts secrets [default: the data
    /// dir's `secrets.key`, created on first start]. Keep it elsewhere so that a copy of the
    /// data dir alone decrypts nothing.
    #[arg(long, env = "NIMBUS_SECRETS_KEY_FILE")]
    pub secrets_key_file: Option<PathBuf>,
    /// How long function log lines are kept, e.g. `7d`, `48h`, `90m` [default: 7d].
    #[arg(long, env = "NIMBUS_LOG_RETENTION", value_name = "AGE", value_parser = parse_age)]
    pub log_retention: Option<std::time::Duration>,
    /// Most function log data kept, in MiB; past it the oldest lines go first [default: 1024].
    #[arg(long, env = "NIMBUS_LOG_MAX_MB", value_name = "MIB", value_parser = clap::value_parser!(u64).range(1..=10_000_000))]
    pub log_max_mb: Option<u64>,
    /// Export OpenTelemetry traces (gateway, invocations, outbound HTTP, key-value, objects,
    /// queues) over OTLP/HTTP to this collector: a base URL such as `http://localhost:4318`
    /// (`/v1/traces` is added) or the full traces URL [default: tracing off].
    #[arg(long, env = "NIMBUS_OTLP_ENDPOINT", value_name = "URL")]
    pub otlp_endpoint: Option<String>,
    /// A header sent with every trace export, `NAME=VALUE` (an API key, say; repeatable).
    #[arg(long = "otlp-header", value_name = "NAME=VALUE", value_parser = parse_header)]
    pub otlp_headers: Vec<(String, String)>,
    /// Share of the traces that start here to record, 0.0 to 1.0 (a caller's `traceparent`
    /// sampling decision is always followed) [default: 1.0].
    #[arg(long, env = "NIMBUS_TRACE_SAMPLE_RATIO", value_name = "RATIO")]
    pub trace_sample_ratio: Option<f64>,
    /// After starting, build and deploy the app in this directory (repeatable).
    #[arg(long = "deploy", value_name = "DIR")]
    pub deploy: Vec<PathBuf>,
}

/// A command that only talks to the API.
#[derive(Debug, Args)]
pub struct ApiOnly {
    /// API access.
    #[command(flatten)]
    pub api: ApiArgs,
}

/// A command on one app.
#[derive(Debug, Args)]
pub struct AppArgs {
    /// App name.
    pub app: String,
    /// API access.
    #[command(flatten)]
    pub api: ApiArgs,
}

/// A command on an app directory.
#[derive(Debug, Args)]
pub struct DirArgs {
    /// The app directory (holding nimbus.toml).
    #[arg(default_value = ".")]
    pub dir: PathBuf,
}

/// `nimbus deploy`.
#[derive(Debug, Args)]
pub struct DeployArgs {
    /// The app directory (holding nimbus.toml).
    #[arg(default_value = ".")]
    pub dir: PathBuf,
    /// Skip the build commands; upload the components as they are.
    #[arg(long, conflicts_with = "rebuild")]
    pub no_build: bool,
    /// Run every build command, even those whose inputs are unchanged since they last
    /// succeeded (by default those are skipped).
    #[arg(long)]
    pub rebuild: bool,
    /// API access.
    #[command(flatten)]
    pub api: ApiArgs,
}

/// Template languages.
#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum Lang {
    /// JavaScript (componentize-js).
    Js,
    /// Python (componentize-py).
    Python,
}

/// `nimbus new`.
#[derive(Debug, Args)]
pub struct NewArgs {
    /// App name (also the directory created).
    pub name: String,
    /// Template language.
    #[arg(long, value_enum, default_value = "js")]
    pub lang: Lang,
    /// Parent directory to create the app in.
    #[arg(long, default_value = ".")]
    pub dir: PathBuf,
}

/// `nimbus invoke`.
#[derive(Debug, Args)]
pub struct InvokeArgs {
    /// `APP/FUNCTION`, or `APP` if it has one function.
    pub target: String,
    /// Path to request (default: the function's first route).
    #[arg(long)]
    pub path: Option<String>,
    /// HTTP method.
    #[arg(short = 'X', long, default_value = "GET")]
    pub method: String,
    /// Request body (`@file` reads a file).
    #[arg(short, long)]
    pub data: Option<String>,
    /// Extra header `Name: value` (repeatable).
    #[arg(short = 'H', long = "header")]
    pub headers: Vec<String>,
    /// Invoke asynchronously: queued durably, run with retries; prints the invocation id
    /// (see `nimbus invocations show`). Works for HTTP and event functions.
    #[arg(long = "async")]
    pub async_: bool,
    /// With --async: repeats with the same key within 24 h are not run again.
    #[arg(long, requires = "async_")]
    pub idempotency_key: Option<String>,
    /// API access.
    #[command(flatten)]
    pub api: ApiArgs,
}

/// `nimbus invocations`.
#[derive(Debug, Args)]
pub struct InvocationsArgs {
    /// The operation.
    #[command(subcommand)]
    pub command: InvocationsCommand,
    /// API access.
    #[command(flatten)]
    pub api: ApiArgs,
}

/// `nimbus invocations …` operations.
#[derive(Debug, Subcommand)]
pub enum InvocationsCommand {
    /// Status and result of an asynchronous invocation.
    Show {
        /// The invocation id printed by `nimbus invoke --async`.
        id: String,
        /// Wait until it has succeeded or failed.
        #[arg(long)]
        wait: bool,
    },
}

/// `nimbus rollback`.
#[derive(Debug, Args)]
pub struct RollbackArgs {
    /// App name.
    pub app: String,
    /// Version to activate (default: the one before the active version).
    #[arg(long)]
    pub to: Option<u64>,
    /// API access.
    #[command(flatten)]
    pub api: ApiArgs,
}

/// `nimbus kv`.
#[derive(Debug, Args)]
pub struct KvArgs {
    /// The operation.
    #[command(subcommand)]
    pub command: KvCommand,
    /// API access.
    #[command(flatten)]
    pub api: ApiArgs,
}

/// `nimbus kv …` operations.
#[derive(Debug, Subcommand)]
pub enum KvCommand {
    /// Print a value (raw bytes).
    Get {
        /// Store name.
        store: String,
        /// Key.
        key: String,
    },
    /// Write a value.
    Set {
        /// Store name.
        store: String,
        /// Key.
        key: String,
        /// The value; `@FILE` reads a file, `-` reads standard input.
        value: String,
        /// Seconds until the key expires.
        #[arg(long)]
        ttl: Option<u64>,
    },
    /// Delete a key.
    Del {
        /// Store name.
        store: String,
        /// Key.
        key: String,
    },
    /// List keys, in order, following cursors.
    List {
        /// Store name.
        store: String,
        /// Only keys starting with this.
        #[arg(long, default_value = "")]
        prefix: String,
        /// Stop after this many keys.
        #[arg(long)]
        limit: Option<usize>,
    },
}

/// `nimbus secret`.
#[derive(Debug, Args)]
pub struct SecretArgs {
    /// The operation.
    #[command(subcommand)]
    pub command: SecretCommand,
    /// API access.
    #[command(flatten)]
    pub api: ApiArgs,
}

/// `nimbus secret …` operations.
#[derive(Debug, Subcommand)]
pub enum SecretCommand {
    /// Set a secret. Without VALUE (or with `-`) the value is read from standard input, which
    /// keeps it out of shell history.
    Set {
        /// App name.
        app: String,
        /// Secret name (`a-z`, `0-9`, `_`).
        name: String,
        /// The value.
        value: Option<String>,
    },
    /// List the names of an app's secrets (values are never shown).
    List {
        /// App name.
        app: String,
    },
    /// Remove a secret.
    Rm {
        /// App name.
        app: String,
        /// Secret name.
        name: String,
    },
}

/// `nimbus keys`.
#[derive(Debug, Args)]
pub struct KeysArgs {
    /// The operation.
    #[command(subcommand)]
    pub command: KeysCommand,
    /// API access.
    #[command(flatten)]
    pub api: ApiArgs,
}

/// `nimbus keys …` operations.
#[derive(Debug, Subcommand)]
pub enum KeysCommand {
    /// Issue a key pair; the secret is printed this once.
    Create,
    /// List key ids.
    List,
    /// Revoke a key.
    Rm {
        /// The access key id.
        id: String,
    },
}

/// `nimbus queue`.
#[derive(Debug, Args)]
pub struct QueueArgs {
    /// The operation.
    #[command(subcommand)]
    pub command: QueueCommand,
    /// API access.
    #[command(flatten)]
    pub api: ApiArgs,
}

/// `nimbus queue …` operations.
#[derive(Debug, Subcommand)]
pub enum QueueCommand {
    /// Send a message; prints its id once it is stored.
    Send {
        /// App name.
        app: String,
        /// Queue name.
        queue: String,
        /// The body; `@FILE` reads a file, `-` reads standard input.
        body: String,
        /// Media type of the body.
        #[arg(long)]
        content_type: Option<String>,
        /// Deliver no sooner than this many milliseconds from now.
        #[arg(long)]
        delay_ms: Option<u64>,
    },
    /// Show messages waiting in a queue (without taking them).
    Peek {
        /// App name.
        app: String,
        /// Queue name.
        queue: String,
        /// Most messages shown (1–100).
        #[arg(long, default_value_t = 10)]
        limit: usize,
    },
    /// Message counts of an app's queues (or of one).
    Stats {
        /// App name.
        app: String,
        /// Queue name; all of the app's queues if omitted.
        queue: Option<String>,
    },
    /// Move the messages of a dead-letter queue back to be processed again.
    Redrive {
        /// App name.
        app: String,
        /// The dead-letter queue.
        queue: String,
        /// Where to move them [default: the queue whose trigger dead-letters into QUEUE].
        #[arg(long)]
        to: Option<String>,
        /// Most messages moved.
        #[arg(long)]
        limit: Option<usize>,
    },
}

/// `NAME=VALUE` of `--otlp-header`.
fn parse_header(raw: &str) -> Result<(String, String), String> {
    match raw.split_once('=') {
        Some((name, value)) if !name.trim().is_empty() => {
            Ok((name.trim().to_owned(), value.trim().to_owned()))
        }
        _ => Err(format!("{raw:?} is not NAME=VALUE")),
    }
}

/// An age such as `7d`, `48h`, `90m` or `30s` (`--log-retention`).
fn parse_age(raw: &str) -> Result<std::time::Duration, String> {
    let raw = raw.trim();
    let split = raw
        .find(|c: char| !c.is_ascii_digit())
        .ok_or_else(|| format!("{raw:?} needs a unit: s, m, h or d (e.g. 7d)"))?;
    let (number, unit) = raw.split_at(split);
    let n: u64 = number
        .parse()
        .map_err(|_| format!("{raw:?} is not an age (e.g. 7d, 48h)"))?;
    let secs = match unit {
        "s" => 1,
        "m" => 60,
        "h" => 3600,
        "d" => 86_400,
        _ => return Err(format!("{raw:?}: unknown unit {unit:?} (s, m, h or d)")),
    };
    match n.checked_mul(secs) {
        Some(0) | None => Err(format!("{raw:?} is not a usable age")),
        Some(total) => Ok(std::time::Duration::from_secs(total)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ages_and_headers_parse() {
        assert_eq!(
            parse_age("7d"),
            Ok(std::time::Duration::from_secs(7 * 86_400))
        );
        assert_eq!(parse_age("90m"), Ok(std::time::Duration::from_secs(5400)));
        assert!(parse_age("7").is_err());
        assert!(parse_age("0d").is_err());
        assert!(parse_age("7w").is_err());
        assert!(parse_age("99999999999999999999d").is_err());
        assert_eq!(
            parse_header("x-api-key = k=v"),
            Ok(("x-api-key".to_owned(), "k=v".to_owned()))
        );
        assert!(parse_header("novalue").is_err());
        assert!(parse_header("=v").is_err());
    }
}
