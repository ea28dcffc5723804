//! The usage part of the API client.

use nimbus_control::usage_api::{RecordsResponse, UsageResponse};
use reqwest::Method;

use super::ApiClient;

/// What a usage query asks for (`None`: the server's default).
#[derive(Debug, Default)]
pub struct UsageQuery<'a> {
    /// Start (`24h`, `7d`, ms since the epoch).
    pub since: Option<&'a str>,
    /// End (exclusive).
    pub until: Option<&'a str>,
    /// `app`, `function`, `hour` or `day`.
    pub by: Option<&'a str>,
    /// Only this app.
    pub app: Option<&'a str>,
    /// Only this function.
    pub function: Option<&'a str>,
}

impl UsageQuery<'_> {
    fn pairs(&self) -> Vec<(&'static str, &str)> {
        [
            ("since", self.since),
            ("until", self.until),
            ("by", self.by),
            ("app", self.app),
            ("function", self.function),
        ]
        .into_iter()
        .filter_map(|(k, v)| v.map(|v| (k, v)))
        .collect()
    }
}

impl ApiClient {
    /// `GET /v1/usage`.
    pub async fn usage(&self, query: &UsageQuery<'_>) -> anyhow::Result<UsageResponse> {
        self.json(self.request(Method::GET, "/v1/usage").query(&query.pairs()))
            .await
    }

    /// `GET /v1/usage?format=csv`.
    pub async fn usage_csv(&self, query: &UsageQuery<'_>) -> anyhow::Result<String> {
        let mut pairs = query.pairs();
        pairs.push(("format", "csv"));
        let response = self
            .send(self.request(Method::GET, "/v1/usage").query(&pairs))
            .await?;
        Ok(response.text().await?)
    }

    /// `GET /v1/usage/records`.
    pub async fn usage_records(
        &self,
        query: &UsageQuery<'_>,
        id: Option<&str>,
        limit: usize,
    ) -> anyhow::Result<RecordsResponse> {
        let mut pairs: Vec<(&str, String)> = query
            .pairs()
            .into_iter()
            .filter(|(k, _)| *k != "by")
            .map(|(k, v)| (k, v.to_owned()))
            .collect();
        if let Some(id) = id {
            pairs.push(("id", id.to_owned()));
        }
        pairs.push(("limit", limit.to_string()));
        self.json(self.request(Method::GET, "/v1/usage/records").query(&pairs))
            .await
    }
}
