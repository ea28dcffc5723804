//! `nimbus secret set|list|rm`: an app's secrets, write-only from the shell.

use std::io::Read;

use anyhow::Context;

use crate::args::{SecretArgs, SecretCommand};
use crate::client::ApiClient;

/// `nimbus secret`.
pub async fn run(args: SecretArgs, json: bool) -> anyhow::Result<()> {
    let client = ApiClient::from_args(&args.api)?;
    match args.command {
        SecretCommand::Set { app, name, value } => {
            let value = match value.as_deref() {
                None | Some("-") => {
                    let mut buf = String::new();
                    std::io::stdin()
                        .read_to_string(&mut buf)
                        .context("reading the secret from standard input")?;
                    // `echo value | nimbus secret set …` should not store the newline.
                    if buf.ends_with('\n') {
                        buf.pop();
                        if buf.ends_with('\r') {
                            buf.pop();
                        }
                    }
                    buf
                }
                Some(v) => v.to_owned(),
            };
            client.secret_set(&app, &name, value).await?;
            if json {
                println!("{}", serde_json::json!({ "app": app, "set": name }));
            } else {
                println!("set secret {name} of {app}");
            }
        }
        SecretCommand::List { app } => {
            let secrets = client.secret_list(&app).await?;
            if json {
                println!("{}", serde_json::to_string(&secrets)?);
            } else {
                for secret in secrets {
                    println!("{}", secret.name);
                }
            }
        }
        SecretCommand::Rm { app, name } => {
            client.secret_remove(&app, &name).await?;
            if json {
                println!("{}", serde_json::json!({ "app": app, "removed": name }));
            } else {
                println!("removed secret {name} of {app}");
            }
        }
    }
    Ok(())
}
