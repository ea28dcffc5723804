//! `nimbus keys create|list|rm`: access keys for the S3 API.

use crate::args::{KeysArgs, KeysCommand};
use crate::client::ApiClient;

/// `nimbus keys`.
pub async fn run(args: KeysArgs, json: bool) -> anyhow::Result<()> {
    let client = ApiClient::from_args(&args.api)?;
    match args.command {
        KeysCommand::Create => {
            let key = client.key_create().await?;
            let endpoint = client
                .info()
                .await?
                .s3_url
                .unwrap_or_else(|| "http://127.0.0.1:9000".into());
            if json {
                println!(
                    "{}",
                    serde_json::json!({
                        "access_key_id": key.access_key_id,
                        "secret_access_key": key.secret_access_key,
                        "tenant": key.tenant,
                        "endpoint_url": endpoint,
                    })
                );
            } else {
                println!("access_key_id      {}", key.access_key_id);
                println!("secret_access_key  {}", key.secret_access_key);
                println!();
                println!("The secret is shown only now. For the aws CLI or an SDK:");
                println!("  export AWS_ACCESS_KEY_ID={}", key.access_key_id);
                println!("  export AWS_SECRET_ACCESS_KEY=<the secret above>");
                println!("  aws --endpoint-url {endpoint} s3 ls");
                println!(
                    "Presigned URLs must be SigV4: `aws configure set default.s3.signature_version s3v4`,"
                );
                println!("  in boto3 Config(signature_version=\"s3v4\").");
            }
        }
        KeysCommand::List => {
            let keys = client.key_list().await?;
            if json {
                println!("{}", serde_json::to_string(&keys)?);
            } else {
                for key in keys {
                    println!("{}", key.access_key_id);
                }
            }
        }
        KeysCommand::Rm { id } => {
            client.key_remove(&id).await?;
            if json {
                println!("{}", serde_json::json!({ "revoked": id }));
            } else {
                println!("revoked {id}");
            }
        }
    }
    Ok(())
}
