//! The queue part of the API client (`/v1/apps/{app}/queues`).

use nimbus_control::types::{
    PeekedMessage, QueueInfo, RedriveRequest, RedriveResponse, SentMessage,
};
use reqwest::Method;

use super::{ApiClient, segment};

fn queue_path(app: &str, queue: &str, rest: &str) -> anyhow::Result<String> {
    Ok(format!(
        "/v1/apps/{}/queues/{}{rest}",
        segment(app)?,
        segment(queue)?
    ))
}

impl ApiClient {
    /// `POST /v1/apps/{app}/queues/{queue}/messages`.
    pub async fn queue_send(
        &self,
        app: &str,
        queue: &str,
        body: Vec<u8>,
        content_type: Option<&str>,
        delay_ms: Option<u64>,
    ) -> anyhow::Result<SentMessage> {
        let mut builder = self
            .request(Method::POST, &queue_path(app, queue, "/messages")?)
            .body(body);
        if let Some(ct) = content_type {
            builder = builder.header(reqwest::header::CONTENT_TYPE, ct);
        }
        if let Some(delay) = delay_ms {
            builder = builder.query(&[("delay_ms", delay)]);
        }
        self.json(builder).await
    }

    /// `GET /v1/apps/{app}/queues/{queue}/messages`.
    pub async fn queue_peek(
        &self,
        app: &str,
        queue: &str,
        limit: usize,
    ) -> anyhow::Result<Vec<PeekedMessage>> {
        let builder = self
            .request(Method::GET, &queue_path(app, queue, "/messages")?)
            .query(&[("limit", limit)]);
        self.json(builder).await
    }

    /// `GET /v1/apps/{app}/queues/{queue}`.
    pub async fn queue_info(&self, app: &str, queue: &str) -> anyhow::Result<QueueInfo> {
        self.json(self.request(Method::GET, &queue_path(app, queue, "")?))
            .await
    }

    /// `GET /v1/apps/{app}/queues`.
    pub async fn queue_list(&self, app: &str) -> anyhow::Result<Vec<QueueInfo>> {
        let path = format!("/v1/apps/{}/queues", segment(app)?);
        self.json(self.request(Method::GET, &path)).await
    }

    /// `POST /v1/apps/{app}/queues/{queue}/redrive`.
    pub async fn queue_redrive(
        &self,
        app: &str,
        queue: &str,
        request: &RedriveRequest,
    ) -> anyhow::Result<RedriveResponse> {
        let builder = self
            .request(Method::POST, &queue_path(app, queue, "/redrive")?)
            .json(request);
        self.json(builder).await
    }
}
