//! `nimbus rollback APP [--to N]`.

use crate::args::RollbackArgs;
use crate::client::ApiClient;
use crate::output;

/// `nimbus rollback`.
pub async fn run(args: RollbackArgs, json: bool) -> anyhow::Result<()> {
    let client = ApiClient::from_args(&args.api)?;
    let app = client.rollback(&args.app, args.to).await?;
    if json {
        return output::json(&app);
    }
    println!("{} is now at version {}", app.name, app.active_version);
    Ok(())
}
