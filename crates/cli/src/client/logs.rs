//! The logs part of the API client.

use futures::StreamExt;
use nimbus_control::logs_api::LogsResponse;
use nimbus_logs::LogLine;
use reqwest::Method;

use super::ApiClient;

/// Which lines to fetch.
#[derive(Debug, Default)]
pub struct LogQuery<'a> {
    /// Only this app.
    pub app: Option<&'a str>,
    /// Only this function.
    pub function: Option<&'a str>,
    /// Only this invocation (or request) id.
    pub invocation: Option<&'a str>,
    /// From (`10m`, `1h`, ms since the epoch).
    pub since: Option<&'a str>,
    /// At most this many stored lines.
    pub limit: Option<usize>,
}

impl LogQuery<'_> {
    fn pairs(&self, follow: bool) -> Vec<(&'static str, String)> {
        let mut pairs: Vec<(&'static str, String)> = [
            ("app", self.app),
            ("function", self.function),
            ("invocation", self.invocation),
            ("since", self.since),
        ]
        .into_iter()
        .filter_map(|(k, v)| v.map(|v| (k, v.to_owned())))
        .collect();
        if let Some(limit) = self.limit {
            pairs.push(("limit", limit.to_string()));
        }
        if follow {
            pairs.push(("follow", "true".into()));
        }
        pairs
    }
}

impl ApiClient {
    /// `GET /v1/logs`.
    pub async fn logs(&self, query: &LogQuery<'_>) -> anyhow::Result<LogsResponse> {
        self.json(
            self.request(Method::GET, "/v1/logs")
                .query(&query.pairs(false)),
        )
        .await
    }

    /// `GET /v1/logs?follow=true`: calls `each` for every line, stored ones first, until the
    /// server closes the stream or `each` returns false.
    pub async fn follow_logs(
        &self,
        query: &LogQuery<'_>,
        mut each: impl FnMut(LogLine) -> bool,
    ) -> anyhow::Result<()> {
        let response = self
            .send(
                self.request(Method::GET, "/v1/logs")
                    .query(&query.pairs(true)),
            )
            .await?;
        let mut body = response.bytes_stream();
        let mut pending = Vec::new();
        while let Some(chunk) = body.next().await {
            pending.extend_from_slice(&chunk?);
            while let Some(end) = pending.iter().position(|b| *b == b'\n') {
                let line: Vec<u8> = pending.drain(..=end).collect();
                let line: LogLine = serde_json::from_slice(&line)?;
                if !each(line) {
                    return Ok(());
                }
            }
        }
        Ok(())
    }
}
