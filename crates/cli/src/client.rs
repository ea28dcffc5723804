//! A typed client of the control API.

use anyhow::{Context, anyhow, bail};
use nimbus_control::types::{
    AppStatus, DeployRequest, DeployResponse, ErrorBody, FunctionStatus, Info, KeyList,
    RollbackRequest,
};
use reqwest::{Method, RequestBuilder, Response, StatusCode};
use serde::de::DeserializeOwned;

use crate::args::ApiArgs;
use crate::config::{ClientConfig, DEFAULT_API_LISTEN, client_config_path};

/// A control-API client.
#[derive(Debug, Clone)]
pub struct ApiClient {
    http: reqwest::Client,
    base: String,
    token: Option<String>,
}

/// An error response from the API.
#[derive(Debug)]
pub struct ApiError {
    /// HTTP status.
    pub status: StatusCode,
    /// Stable error code.
    pub code: String,
    /// Message.
    pub message: String,
}

impl std::fmt::Display for ApiError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for ApiError {}

impl ApiClient {
    /// Resolves the API URL and token: flags/env first, then the client config file, then
    /// the default local address.
    pub fn from_args(args: &ApiArgs) -> anyhow::Result<Self> {
        let file = ClientConfig::load(&client_config_path())?;
        let base = args
            .api
            .clone()
            .or_else(|| file.as_ref().map(|f| f.api.clone()))
            .unwrap_or_else(|| format!("http://{DEFAULT_API_LISTEN}"));
        let token = args.token.clone().or_else(|| file.and_then(|f| f.token));
        Ok(Self::new(base, token))
    }

    /// A client for `base` with `token`.
    pub fn new(base: String, token: Option<String>) -> Self {
        Self {
            http: reqwest::Client::new(),
            base: base.trim_end_matches('/').to_owned(),
            token,
        }
    }

    /// The API base URL.
    pub fn base(&self) -> &str {
        &self.base
    }

    fn request(&self, method: Method, path: &str) -> RequestBuilder {
        let builder = self.http.request(method, format!("{}{path}", self.base));
        match &self.token {
            Some(token) => builder.bearer_auth(token),
            None => builder,
        }
    }

    async fn send(&self, builder: RequestBuilder) -> anyhow::Result<Response> {
        let response = builder
            .send()
            .await
            .map_err(|e| anyhow!(Unreachable(self.base.clone(), e.to_string())))?;
        if response.status().is_success() {
            return Ok(response);
        }
        let status = response.status();
        let text = response.text().await.unwrap_or_default();
        let (code, message) = match serde_json::from_str::<ErrorBody>(&text) {
            Ok(body) => (body.error.code, body.error.message),
            Err(_) => (
                "http_error".to_owned(),
                format!("{status}: {}", text.trim()),
            ),
        };
        Err(ApiError {
            status,
            code,
            message,
        }
        .into())
    }

    async fn json<T: DeserializeOwned>(&self, builder: RequestBuilder) -> anyhow::Result<T> {
        let response = self.send(builder).await?;
        response
            .json()
            .await
            .context("invalid response from the control API")
    }

    /// `GET /v1/info`.
    pub async fn info(&self) -> anyhow::Result<Info> {
        self.json(self.request(Method::GET, "/v1/info")).await
    }

    /// Whether the blob is stored.
    pub async fn has_blob(&self, digest: &str) -> anyhow::Result<bool> {
        let response = self
            .request(Method::HEAD, &format!("/v1/blobs/{}", segment(digest)?))
            .send()
            .await
            .map_err(|e| anyhow!(Unreachable(self.base.clone(), e.to_string())))?;
        match response.status() {
            StatusCode::OK => Ok(true),
            StatusCode::NOT_FOUND => Ok(false),
            StatusCode::UNAUTHORIZED => Err(ApiError {
                status: StatusCode::UNAUTHORIZED,
                code: "unauthorized".into(),
                message: "missing or invalid API token".into(),
            }
            .into()),
            other => bail!("unexpected status {other} checking blob {digest}"),
        }
    }

    /// Uploads a blob from a streaming body.
    pub async fn put_blob(&self, digest: &str, body: reqwest::Body) -> anyhow::Result<()> {
        self.send(
            self.request(Method::PUT, &format!("/v1/blobs/{}", segment(digest)?))
                .body(body),
        )
        .await?;
        Ok(())
    }

    /// `POST /v1/apps`.
    pub async fn deploy(&self, request: &DeployRequest) -> anyhow::Result<DeployResponse> {
        self.json(self.request(Method::POST, "/v1/apps").json(request))
            .await
    }

    /// `GET /v1/apps`.
    pub async fn apps(&self) -> anyhow::Result<Vec<AppStatus>> {
        self.json(self.request(Method::GET, "/v1/apps")).await
    }

    /// `GET /v1/apps/{app}`.
    pub async fn app(&self, app: &str) -> anyhow::Result<AppStatus> {
        self.json(self.request(Method::GET, &format!("/v1/apps/{}", segment(app)?)))
            .await
    }

    /// `GET /v1/apps/{app}/functions`.
    pub async fn functions(&self, app: &str) -> anyhow::Result<Vec<FunctionStatus>> {
        self.json(self.request(
            Method::GET,
            &format!("/v1/apps/{}/functions", segment(app)?),
        ))
        .await
    }

    /// `POST /v1/apps/{app}/rollback`.
    pub async fn rollback(&self, app: &str, version: Option<u64>) -> anyhow::Result<AppStatus> {
        let body = RollbackRequest { version };
        self.json(
            self.request(
                Method::POST,
                &format!("/v1/apps/{}/rollback", segment(app)?),
            )
            .json(&body),
        )
        .await
    }

    /// `DELETE /v1/apps/{app}`.
    pub async fn delete(&self, app: &str) -> anyhow::Result<()> {
        self.send(self.request(Method::DELETE, &format!("/v1/apps/{}", segment(app)?)))
            .await?;
        Ok(())
    }
}

impl ApiClient {
    /// `GET /v1/kv/{store}/{key}`: the value, or `None` if the key does not exist.
    pub async fn kv_get(&self, store: &str, key: &str) -> anyhow::Result<Option<bytes::Bytes>> {
        let path = kv_path(store, key)?;
        match self.send(self.request(Method::GET, &path)).await {
            Ok(response) => Ok(Some(
                response
                    .bytes()
                    .await
                    .context("reading the value from the control API")?,
            )),
            Err(e)
                if e.downcast_ref::<ApiError>()
                    .is_some_and(|a| a.status == StatusCode::NOT_FOUND) =>
            {
                Ok(None)
            }
            Err(e) => Err(e),
        }
    }

    /// `PUT /v1/kv/{store}/{key}`.
    pub async fn kv_set(
        &self,
        store: &str,
        key: &str,
        value: Vec<u8>,
        ttl_secs: Option<u64>,
    ) -> anyhow::Result<()> {
        let mut builder = self.request(Method::PUT, &kv_path(store, key)?).body(value);
        if let Some(ttl) = ttl_secs {
            builder = builder.query(&[("ttl", ttl)]);
        }
        self.send(builder).await?;
        Ok(())
    }

    /// `DELETE /v1/kv/{store}/{key}`: whether the key existed.
    pub async fn kv_delete(&self, store: &str, key: &str) -> anyhow::Result<bool> {
        match self
            .send(self.request(Method::DELETE, &kv_path(store, key)?))
            .await
        {
            Ok(_) => Ok(true),
            Err(e)
                if e.downcast_ref::<ApiError>()
                    .is_some_and(|a| a.status == StatusCode::NOT_FOUND) =>
            {
                Ok(false)
            }
            Err(e) => Err(e),
        }
    }

    /// `GET /v1/kv/{store}`: one page of keys.
    pub async fn kv_list(
        &self,
        store: &str,
        prefix: &str,
        cursor: Option<&str>,
        limit: usize,
    ) -> anyhow::Result<KeyList> {
        let mut query = vec![("prefix", prefix.to_owned()), ("limit", limit.to_string())];
        if let Some(cursor) = cursor {
            query.push(("cursor", cursor.to_owned()));
        }
        self.json(
            self.request(Method::GET, &format!("/v1/kv/{}", segment(store)?))
                .query(&query),
        )
        .await
    }
}

impl ApiClient {
    /// `PUT /v1/apps/{app}/secrets/{name}`.
    pub async fn secret_set(&self, app: &str, name: &str, value: String) -> anyhow::Result<()> {
        let path = format!("/v1/apps/{}/secrets/{}", segment(app)?, segment(name)?);
        self.send(self.request(Method::PUT, &path).body(value))
            .await?;
        Ok(())
    }

    /// `GET /v1/apps/{app}/secrets`.
    pub async fn secret_list(&self, app: &str) -> anyhow::Result<Vec<SecretInfo>> {
        let path = format!("/v1/apps/{}/secrets", segment(app)?);
        self.json(self.request(Method::GET, &path)).await
    }

    /// `DELETE /v1/apps/{app}/secrets/{name}`.
    pub async fn secret_remove(&self, app: &str, name: &str) -> anyhow::Result<()> {
        let path = format!("/v1/apps/{}/secrets/{}", segment(app)?, segment(name)?);
        self.send(self.request(Method::DELETE, &path)).await?;
        Ok(())
    }
}

impl ApiClient {
    /// `POST /v1/keys`.
    pub async fn key_create(&self) -> anyhow::Result<nimbus_objstore::AccessKey> {
        self.json(self.request(Method::POST, "/v1/keys")).await
    }

    /// `GET /v1/keys`.
    pub async fn key_list(&self) -> anyhow::Result<Vec<nimbus_objstore::KeyInfo>> {
        self.json(self.request(Method::GET, "/v1/keys")).await
    }

    /// `DELETE /v1/keys/{id}`.
    pub async fn key_remove(&self, id: &str) -> anyhow::Result<()> {
        let path = format!("/v1/keys/{}", segment(id)?);
        self.send(self.request(Method::DELETE, &path)).await?;
        Ok(())
    }
}

mod invoke;
mod logs;
mod queue;
mod usage;

pub use invoke::AsyncOptions;
pub use logs::LogQuery;
pub use usage::UsageQuery;

/// A secret as listed by the API.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct SecretInfo {
    /// Name.
    pub name: String,
    /// Last set, ms since the Unix epoch.
    pub updated_at_ms: u64,
}

/// `/v1/kv/{store}/{key}`, the key as one segment (`/` sent as `%2F`).
fn kv_path(store: &str, key: &str) -> anyhow::Result<String> {
    if key.split('/').any(|part| part == "." || part == "..") {
        bail!(
            "invalid key `{key}`: `.` and `..` segments are refused (the REST API addresses \
             keys in URL paths, where they mean another path)"
        );
    }
    Ok(format!("/v1/kv/{}/{}", segment(store)?, segment(key)?))
}

/// One path segment of an API URL: user data percent-encoded so that no client or server
/// can read it as more (or fewer) segments. Everything but RFC 3986's unreserved
/// characters is encoded, `/` too. `.` and `..` are refused: URL libraries resolve them
/// even when percent-encoded (`%2E%2E` is `..` to the WHATWG URL parser), so
/// `/v1/apps/a/..` would reach `/v1/apps` — and an empty segment another route.
pub(crate) fn segment(value: &str) -> anyhow::Result<String> {
    if value.is_empty() || value == "." || value == ".." {
        bail!("invalid name `{value}`: empty, `.` and `..` cannot be sent in a URL path");
    }
    let mut out = String::with_capacity(value.len());
    for byte in value.bytes() {
        if byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'.' | b'_' | b'~') {
            out.push(char::from(byte));
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    Ok(out)
}

/// The API could not be reached at all.
#[derive(Debug)]
pub struct Unreachable(pub String, pub String);

impl std::fmt::Display for Unreachable {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "cannot reach the control API at {}: {}", self.0, self.1)
    }
}

impl std::error::Error for Unreachable {}
