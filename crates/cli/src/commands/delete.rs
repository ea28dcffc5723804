//! `nimbus delete APP`.

use crate::args::AppArgs;
use crate::client::ApiClient;

/// `nimbus delete`.
pub async fn run(args: AppArgs, json: bool) -> anyhow::Result<()> {
    let client = ApiClient::from_args(&args.api)?;
    client.delete(&args.app).await?;
    if json {
        println!("{}", serde_json::json!({ "deleted": args.app }));
    } else {
        println!("deleted {}", args.app);
    }
    Ok(())
}
