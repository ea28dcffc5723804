//! `nimbus apps`: list apps.

use crate::args::ApiOnly;
use crate::client::ApiClient;
use crate::output;

/// `nimbus apps`.
pub async fn run(args: ApiOnly, json: bool) -> anyhow::Result<()> {
    let client = ApiClient::from_args(&args.api)?;
    let apps = client.apps().await?;
    if json {
        return output::json(&apps);
    }
    if apps.is_empty() {
        println!("no apps deployed (try `nimbus deploy`)");
        return Ok(());
    }
    println!("{:<24} {:>7} {:>9}  ROUTES", "APP", "VERSION", "FUNCTIONS");
    for app in apps {
        let routes: Vec<&str> = app
            .functions
            .iter()
            .flat_map(|f| f.routes.iter().map(String::as_str))
            .collect();
        println!(
            "{:<24} {:>7} {:>9}  {}",
            app.name,
            app.active_version,
            app.functions.len(),
            routes.join(" ")
        );
    }
    Ok(())
}
