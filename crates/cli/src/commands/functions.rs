//! `nimbus functions APP`: the functions of an app's live version.

use crate::args::AppArgs;
use crate::client::ApiClient;
use crate::output;

/// `nimbus functions`.
pub async fn run(args: AppArgs, json: bool) -> anyhow::Result<()> {
    let client = ApiClient::from_args(&args.api)?;
    let functions = client.functions(&args.app).await?;
    if json {
        return output::json(&functions);
    }
    let info = client.info().await?;
    println!(
        "{:<16} {:>6} {:>9} {:>8}  {:<6} {:<14} URL",
        "FUNCTION", "MEMORY", "TIMEOUT", "MAX-CONC", "STATE", "COMPONENT"
    );
    for f in functions {
        // "warm": code in memory; "idle": scaled to zero, the next call activates it.
        let state = match f.resident {
            Some(true) => "warm",
            Some(false) => "idle",
            None => "-",
        };
        let mut urls = f
            .routes
            .iter()
            .map(|route| output::route_url(&info.gateway_url, route));
        println!(
            "{:<16} {:>4}MB {:>7}ms {:>8}  {:<6} {:<14} {}",
            f.name,
            f.memory_mb,
            f.timeout_ms,
            f.max_concurrency,
            state,
            f.component.get(..12).unwrap_or(&f.component),
            urls.next().unwrap_or_default(),
        );
        for url in urls {
            println!("{:<73}{url}", "");
        }
    }
    Ok(())
}
