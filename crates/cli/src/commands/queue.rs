//! `nimbus queue send|peek|stats|redrive`: the queue REST API from the shell.

use nimbus_control::types::{QueueInfo, RedriveRequest};

use crate::args::{QueueArgs, QueueCommand};
use crate::client::ApiClient;
use crate::commands::kv::read_value;

/// `nimbus queue`.
pub async fn run(args: QueueArgs, json: bool) -> anyhow::Result<()> {
    let client = ApiClient::from_args(&args.api)?;
    match args.command {
        QueueCommand::Send {
            app,
            queue,
            body,
            content_type,
            delay_ms,
        } => {
            let body = read_value(&body)?;
            let sent = client
                .queue_send(&app, &queue, body, content_type.as_deref(), delay_ms)
                .await?;
            if json {
                println!("{}", serde_json::to_string(&sent)?);
            } else {
                println!("{}", sent.id);
            }
        }
        QueueCommand::Peek { app, queue, limit } => {
            let messages = client.queue_peek(&app, &queue, limit).await?;
            if json {
                println!("{}", serde_json::to_string(&messages)?);
                return Ok(());
            }
            if messages.is_empty() {
                println!("no messages waiting in {app}/{queue}");
            }
            for m in messages {
                let body = m
                    .body
                    .unwrap_or_else(|| format!("(binary, base64) {}", m.body_base64));
                println!("{}  attempts={}  {}", m.id, m.attempts, body);
                if let Some(error) = m.last_error {
                    println!("    last error: {error}");
                }
                if let Some(from) = m.dead_lettered_from {
                    println!("    dead-lettered from: {from}");
                }
            }
        }
        QueueCommand::Stats { app, queue } => {
            let queues = match queue {
                Some(queue) => vec![client.queue_info(&app, &queue).await?],
                None => client.queue_list(&app).await?,
            };
            if json {
                println!("{}", serde_json::to_string(&queues)?);
            } else {
                print_stats(&queues);
            }
        }
        QueueCommand::Redrive {
            app,
            queue,
            to,
            limit,
        } => {
            let moved = client
                .queue_redrive(&app, &queue, &RedriveRequest { to, limit })
                .await?;
            if json {
                println!("{}", serde_json::to_string(&moved)?);
            } else {
                println!(
                    "moved {} message(s) from {queue} to {}",
                    moved.moved, moved.to
                );
            }
        }
    }
    Ok(())
}

fn print_stats(queues: &[QueueInfo]) {
    println!(
        "{:<24} {:>8} {:>8} {:>9}  CONSUMER",
        "QUEUE", "READY", "DELAYED", "IN-FLIGHT"
    );
    for q in queues {
        let mut consumer = q.consumer.clone().unwrap_or_else(|| "-".into());
        if let Some(dlq) = &q.dead_letter_queue {
            consumer.push_str(&format!(" (dead letters → {dlq})"));
        }
        if !q.dead_letter_for.is_empty() {
            consumer.push_str(&format!(
                " dead-letter queue of {}",
                q.dead_letter_for.join(", ")
            ));
        }
        println!(
            "{:<24} {:>8} {:>8} {:>9}  {consumer}",
            q.name, q.ready, q.delayed, q.in_flight
        );
    }
}
