//! `nimbus invocations show ID [--wait]`: the record of an asynchronous invocation.

use std::time::Duration;

use nimbus_triggers::invoke::InvocationStatus;

use crate::args::{InvocationsArgs, InvocationsCommand};
use crate::client::ApiClient;
use crate::output;

/// `nimbus invocations`.
pub async fn run(args: InvocationsArgs, json: bool) -> anyhow::Result<()> {
    let client = ApiClient::from_args(&args.api)?;
    match args.command {
        InvocationsCommand::Show { id, wait } => {
            let mut record = client.invocation(&id).await?;
            while wait
                && matches!(
                    record.status,
                    InvocationStatus::Queued | InvocationStatus::Running
                )
            {
                tokio::time::sleep(Duration::from_millis(200)).await;
                record = client.invocation(&id).await?;
            }
            if json {
                return output::json(&record);
            }
            println!("invocation  {}", record.id);
            println!("function    {}/{}", record.app, record.function);
            println!(
                "status      {:?} after {} attempt(s)",
                record.status, record.attempts
            );
            if let Some(status) = record.result_status {
                println!("result      HTTP {status}");
            }
            if let Some(body) = &record.result {
                println!("{body}");
            } else if let Some(b64) = &record.result_base64 {
                println!("(binary result, base64) {b64}");
            }
            if let Some(error) = &record.error {
                println!("error       {error}");
            }
        }
    }
    Ok(())
}
