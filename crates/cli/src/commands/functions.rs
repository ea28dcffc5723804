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
        "{:<16} {:>6} {:>9} {:>8}  {:<14} URL",
        "FUNCTION", "MEMORY", "TIMEOUT", "MAX-CONC", "COMPONENT"
    );
    for f in functions {
        for (i, route) in f.routes.iter().enumerate() {
            let url = output::route_url(&info.gateway_url, route);
            if i == 0 {
                println!(
                    "{:<16} {:>4}MB {:>7}ms {:>8}  {:<14} {url}",
                    f.name,
                    f.memory_mb,
                    f.timeout_ms,
                    f.max_concurrency,
                    f.component.get(..12).unwrap_or(&f.component),
                );
            } else {
                println!("{:<66}{url}", "");
            }
        }
    }
    Ok(())
}
