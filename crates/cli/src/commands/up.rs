//! `nimbus up`: runs the platform in the foreground until Ctrl-C / SIGTERM.

use anyhow::Context;

use crate::args::UpArgs;
use crate::client::ApiClient;
use crate::config::{
    ClientConfig, DEFAULT_API_LISTEN, DEFAULT_LISTEN, DEFAULT_S3_LISTEN, ServerFile,
    client_config_path, default_data_dir,
};
use crate::server::{self, EngineTuning, KvSetting, QueueSetting, ServerConfig};

/// `nimbus up`.
pub async fn run(args: UpArgs) -> anyhow::Result<()> {
    // Every connection is a file descriptor: take what the hard limit allows before the
    // listeners' caps are fitted into it.
    nimbus_serve::raise_open_file_limit();
    let file = match &args.config {
        Some(path) => ServerFile::read(path)?,
        None => ServerFile::default(),
    };
    let config = ServerConfig {
        data_dir: args
            .data_dir
            .or(file.data_dir)
            .unwrap_or_else(default_data_dir),
        listen: match args.listen.or(file.listen) {
            Some(addr) => addr,
            None => DEFAULT_LISTEN.parse()?,
        },
        api_listen: match args.api_listen.or(file.api_listen) {
            Some(addr) => addr,
            None => DEFAULT_API_LISTEN.parse()?,
        },
        s3_listen: match args.s3_listen.or(file.s3_listen) {
            Some(addr) => addr,
            None => DEFAULT_S3_LISTEN.parse()?,
        },
        reset_token: args.reset_token,
        s3_auth: nimbus_objstore::guard::AuthPolicy {
            region: args
                .s3_region
                .unwrap_or_else(|| nimbus_objstore::guard::AuthPolicy::default().region),
            allow_sigv2: args.s3_allow_sigv2,
        },
        listeners: {
            let mut listeners = nimbus_serve::ServeConfig::default();
            if let Some(ms) = args.header_read_timeout_ms {
                listeners.header_read_timeout = std::time::Duration::from_millis(u64::from(ms));
            }
            if let Some(ms) = args.idle_timeout_ms {
                listeners.idle_timeout = std::time::Duration::from_millis(u64::from(ms));
            }
            if let Some(n) = args.max_connections {
                listeners.max_connections = n as usize;
            }
            listeners.max_connections_per_client =
                args.max_connections_per_client.map(|n| n as usize);
            listeners.trusted_proxies = args.trusted_proxies.unwrap_or_default();
            listeners
        },
        gateway: {
            let mut gateway = nimbus_gateway::GatewayConfig::default();
            if let Some(ms) = args.rejection_pause_ms {
                gateway.rejection_pause = std::time::Duration::from_millis(u64::from(ms));
            }
            gateway
        },
        engine: EngineTuning {
            keep_resident_bytes: args.keep_resident_kib.map(|kib| kib << 10),
            keep_alive: match &args.keep_alive {
                Some(policy) => policy
                    .parse()
                    .map_err(|e| anyhow::anyhow!("--keep-alive: {e}"))?,
                None => nimbus_scaling::KeepAlivePolicy::default(),
            },
            reap_interval: None,
            cpu_slots_per_app: args.cpu_slots_per_app.map(|n| n as usize),
            cpu_nice: args.cpu_nice,
            epoch_tick: args
                .epoch_tick_ms
                .map(|ms| std::time::Duration::from_millis(u64::from(ms))),
            max_instances: args.max_instances,
            max_instances_per_app: args.max_instances_per_app,
            pooling: None,
        },
        kv: match args.kv.or(file.kv) {
            Some(kv) => kv.parse()?,
            None => KvSetting::Embedded,
        },
        secrets_key_file: args.secrets_key_file.or(file.secrets_key_file),
        metering: !args.no_metering,
        prices: match file.prices {
            Some(prices) => {
                prices
                    .validate()
                    .map_err(|e| anyhow::anyhow!("config file [prices]: {e}"))?;
                prices
            }
            None => nimbus_metering::PriceTable::default(),
        },
        queues: match args.queues.or(file.queues) {
            Some(q) => q.parse()?,
            None => QueueSetting::Embedded,
        },
        log_retention: nimbus_logs::Retention {
            max_age: args
                .log_retention
                .unwrap_or(nimbus_logs::Retention::default().max_age),
            max_bytes: args
                .log_max_mb
                .map_or(nimbus_logs::Retention::default().max_bytes, |mb| mb << 20),
        },
        tracing: args.otlp_endpoint.map(|endpoint| nimbus_trace::OtlpConfig {
            headers: args.otlp_headers,
            sample_ratio: args.trace_sample_ratio.unwrap_or(1.0),
            ..nimbus_trace::OtlpConfig::new(endpoint)
        }),
    };
    let running = server::start(config.clone()).await?;
    let api_url = format!("http://{}", running.api_addr);

    // Keep the client config pointing at this server; the token is only known when created.
    let config_path = client_config_path();
    let existing = ClientConfig::load(&config_path).ok().flatten();
    let token = running
        .new_token
        .clone()
        .or_else(|| existing.as_ref().and_then(|c| c.token.clone()));
    ClientConfig {
        api: api_url.clone(),
        token: token.clone(),
    }
    .save(&config_path)?;

    println!("nimbus is up");
    println!("  functions   http://{}", running.gateway_addr);
    println!("  control API {api_url}");
    println!(
        "  S3 API      http://{}  (keys: nimbus keys create)",
        running.s3_addr
    );
    println!("  data dir    {}", config.data_dir.display());
    println!("  key-value   {}", config.kv);
    println!("  queues      {}", config.queues);
    if let Some(otlp) = &config.tracing {
        println!("  traces      {}", otlp.traces_url()?);
    }
    println!("  apps        {} restored", running.restored);
    if running.new_token.is_some() {
        println!("  API token   new, saved to {}", config_path.display());
    }

    let client = ApiClient::new(api_url, token);
    for dir in &args.deploy {
        let response = crate::commands::deploy::deploy_dir(
            &client,
            dir,
            crate::commands::deploy::Build::IfChanged,
            false,
        )
        .await
        .with_context(|| format!("deploying {}", dir.display()))?;
        let gateway = format!("http://{}", running.gateway_addr);
        println!(
            "deployed {} version {}",
            response.app.name, response.app.active_version
        );
        for function in &response.app.functions {
            for route in &function.routes {
                println!(
                    "  {:<16} {}",
                    function.name,
                    crate::output::route_url(&gateway, route)
                );
            }
        }
    }

    shutdown_signal().await;
    println!("shutting down: draining in-flight requests");
    running.shutdown().await
}

async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(term) => term,
                Err(_) => {
                    let _ = ctrl_c.await;
                    return;
                }
            };
        tokio::select! {
            _ = ctrl_c => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    {
        let _ = ctrl_c.await;
    }
}
