//! Checks every S3 request's authentication parameters before `s3s` verifies its signature.
//!
//! s3s (0.13) verifies signatures but leaves these to the server, and Nimbus answers them as
//! AWS S3 does:
//!
//! | what | rule | error |
//! | --- | --- | --- |
//! | SigV4 header auth | `x-amz-date` within 15 minutes of the server's clock (a captured request cannot be replayed later) | `RequestTimeTooSkewed` (403) |
//! | credential scope | service `s3`, the server's region, the date of `x-amz-date`; `host` signed | `AuthorizationHeaderMalformed` / `AuthorizationQueryParametersError` (400) |
//! | presigned URLs | `X-Amz-Expires` from 1 to 604,800 s (7 days); not expired; not dated in the future | `AuthorizationQueryParametersError` (400), `AccessDenied` (403), `RequestTimeTooSkewed` |
//! | SigV2 (HMAC-SHA1) | refused unless the operator allows it (old clients); then dated and capped like SigV4 | `InvalidRequest` (400) |
//! | browser POST uploads | refused for now: s3s would buffer the form before checking it | `NotImplemented` (501) |
//! | ambiguous requests | two `Authorization` headers, a presigned URL with an `Authorization` header, repeated auth parameters | `InvalidRequest` / `AuthorizationQueryParametersError` |
//!
//! The query string is decoded as s3s decodes it (form-urlencoded), so both read the same
//! parameters; a request without any authentication passes through and s3s refuses it.
//! Chunked (streaming) uploads sign each chunk with the header's date and scope: checking the
//! header at the start covers them, and a long upload may outlast the window.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use futures::future::BoxFuture;
use http::{HeaderMap, Method, Request, header};
use hyper::body::Incoming;
use s3s::service::S3Service;
use s3s::{HttpError, HttpResponse, S3Error, S3ErrorCode};

/// How far a signed request's date may be from the server's clock.
pub const MAX_SKEW: Duration = Duration::from_secs(15 * 60);
/// The longest a presigned URL may be valid, as in AWS.
pub const MAX_PRESIGNED_EXPIRY_SECS: u64 = 604_800;

/// What the S3 listener accepts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuthPolicy {
    /// The region clients sign for (`--s3-region`).
    pub region: String,
    /// Accept SigV2 (HMAC-SHA1) signatures, for clients too old for SigV4.
    pub allow_sigv2: bool,
}

impl Default for AuthPolicy {
    fn default() -> Self {
        Self {
            region: "us-east-1".into(),
            allow_sigv2: false,
        }
    }
}

/// The S3 service behind [`check`].
#[derive(Clone)]
pub struct GuardedS3 {
    inner: S3Service,
    policy: Arc<AuthPolicy>,
}

impl GuardedS3 {
    /// `inner`, answering requests that break `policy` itself.
    pub fn new(inner: S3Service, policy: AuthPolicy) -> Self {
        Self {
            inner,
            policy: Arc::new(policy),
        }
    }
}

impl std::fmt::Debug for GuardedS3 {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GuardedS3")
            .field("policy", &self.policy)
            .finish_non_exhaustive()
    }
}

impl hyper::service::Service<Request<Incoming>> for GuardedS3 {
    type Response = HttpResponse;
    type Error = HttpError;
    type Future = BoxFuture<'static, Result<HttpResponse, HttpError>>;

    fn call(&self, req: Request<Incoming>) -> Self::Future {
        let checked = check(
            req.method(),
            req.uri().query(),
            req.headers(),
            &self.policy,
            SystemTime::now(),
        );
        match checked {
            Ok(()) => hyper::service::Service::call(&self.inner, req),
            Err(err) => {
                tracing::debug!(code = %err.code().as_str(), message = ?err.message(), "s3 request refused before signature check");
                Box::pin(async move {
                    err.to_http_response()
                        .map_err(|e| HttpError::new(Box::new(e)))
                })
            }
        }
    }
}

fn error(code: S3ErrorCode, message: impl Into<String>) -> S3Error {
    S3Error::with_message(code, message.into())
}

/// Checks a request's authentication parameters (see the module docs) at time `now`.
pub fn check(
    method: &Method,
    query: Option<&str>,
    headers: &HeaderMap,
    policy: &AuthPolicy,
    now: SystemTime,
) -> Result<(), S3Error> {
    let is_form = || {
        headers
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.as_bytes().trim_ascii_start().get(..19))
            .is_some_and(|v| v.eq_ignore_ascii_case(b"multipart/form-data"))
    };
    if method == Method::POST && is_form() {
        return Err(error(
            S3ErrorCode::NotImplemented,
            "browser POST uploads (multipart/form-data) are not supported; use PUT or a presigned URL",
        ));
    }
    let params: Vec<(String, String)> = query
        .map(|q| form_urlencoded::parse(q.as_bytes()).into_owned().collect())
        .unwrap_or_default();
    let mut authorizations = headers.get_all(header::AUTHORIZATION).iter();
    let authorization = authorizations.next();
    if authorizations.next().is_some() {
        return Err(error(
            S3ErrorCode::InvalidRequest,
            "more than one Authorization header",
        ));
    }
    let authorization = match authorization {
        Some(value) => Some(value.to_str().map_err(|_| {
            error(
                S3ErrorCode::AuthorizationHeaderMalformed,
                "the Authorization header is not ASCII",
            )
        })?),
        None => None,
    };
    let query = Query(&params);

    // Same order as s3s: query `Signature` → V2 header → `X-Amz-Signature` → V4 header.
    if query.has("Signature") || query.has("AWSAccessKeyId") {
        refuse_v2(policy)?;
        if authorization.is_some() {
            return Err(ambiguous());
        }
        return check_v2_presigned(&query, now);
    }
    if let Some(value) = authorization
        && value.starts_with("AWS ")
    {
        refuse_v2(policy)?;
        return check_v2_header(headers, now);
    }
    if query.has("X-Amz-Signature") || query.has("X-Amz-Credential") {
        if authorization.is_some() {
            return Err(ambiguous());
        }
        return check_v4_presigned(&query, policy, now);
    }
    match authorization {
        Some(value) => check_v4_header(value, headers, policy, now),
        None => Ok(()),
    }
}

fn ambiguous() -> S3Error {
    error(
        S3ErrorCode::InvalidRequest,
        "a request is signed either in its query string or in its Authorization header, not both",
    )
}

fn refuse_v2(policy: &AuthPolicy) -> Result<(), S3Error> {
    if policy.allow_sigv2 {
        return Ok(());
    }
    Err(error(
        S3ErrorCode::InvalidRequest,
        "The authorization mechanism you have provided is not supported. Please use \
         AWS4-HMAC-SHA256. (SigV2 is off on this server: boto3 and the aws CLI presign with \
         SigV4 when configured with signature_version s3v4; or start nimbus up with \
         --s3-allow-sigv2.)",
    ))
}

/// The decoded query parameters.
struct Query<'a>(&'a [(String, String)]);

impl Query<'_> {
    fn has(&self, name: &str) -> bool {
        self.0.iter().any(|(k, _)| k == name)
    }

    /// The one value of `name`: missing or repeated is an error.
    fn one(&self, name: &str) -> Result<&str, S3Error> {
        let mut values = self.0.iter().filter(|(k, _)| k == name).map(|(_, v)| v);
        match (values.next(), values.next()) {
            (Some(value), None) => Ok(value),
            (None, _) => Err(error(
                S3ErrorCode::AuthorizationQueryParametersError,
                format!("the query parameter {name} is missing"),
            )),
            (Some(_), Some(_)) => Err(error(
                S3ErrorCode::AuthorizationQueryParametersError,
                format!("the query parameter {name} is repeated"),
            )),
        }
    }
}

/// `<access key>/<yyyymmdd>/<region>/<service>/aws4_request`.
struct Scope<'a> {
    date: &'a str,
    region: &'a str,
    service: &'a str,
}

fn parse_scope(credential: &str) -> Option<Scope<'_>> {
    let mut parts = credential.rsplitn(5, '/');
    let terminator = parts.next()?;
    let service = parts.next()?;
    let region = parts.next()?;
    let date = parts.next()?;
    let access_key = parts.next()?;
    (terminator == "aws4_request" && !access_key.is_empty()).then_some(Scope {
        date,
        region,
        service,
    })
}

/// The scope must name this server's service and region and the request's own date.
fn check_scope(
    scope: &Scope<'_>,
    amz_date: &str,
    policy: &AuthPolicy,
    code: S3ErrorCode,
) -> Result<(), S3Error> {
    if scope.service != "s3" {
        return Err(error(
            code,
            format!(
                "the credential scope names service '{}'; this endpoint is 's3'",
                scope.service
            ),
        ));
    }
    if scope.region != policy.region {
        return Err(error(
            code,
            format!(
                "the region '{}' is wrong; expecting '{}'",
                scope.region, policy.region
            ),
        ));
    }
    if !amz_date.starts_with(scope.date) || scope.date.len() != 8 {
        return Err(error(
            code,
            format!(
                "the credential scope's date {} is not the request's date {amz_date}",
                scope.date
            ),
        ));
    }
    Ok(())
}

fn require_host_signed(signed: &str, code: S3ErrorCode) -> Result<(), S3Error> {
    if signed.split(';').any(|h| h.eq_ignore_ascii_case("host")) {
        Ok(())
    } else {
        Err(error(code, "the host header must be signed"))
    }
}

/// Seconds since the Unix epoch of an ISO 8601 basic date-time, `20261206T131400Z`.
fn parse_amz_date(value: &str) -> Option<i64> {
    let bytes = value.as_bytes();
    if bytes.len() != 16
        || bytes[8] != b'T'
        || bytes[15] != b'Z'
        || !bytes[..8]
            .iter()
            .chain(&bytes[9..15])
            .all(u8::is_ascii_digit)
    {
        return None;
    }
    let num = |range: std::ops::Range<usize>| value.get(range)?.parse::<u32>().ok();
    let year = i32::try_from(num(0..4)?).ok()?;
    let month = time::Month::try_from(u8::try_from(num(4..6)?).ok()?).ok()?;
    let day = u8::try_from(num(6..8)?).ok()?;
    let (h, m, s) = (num(9..11)?, num(11..13)?, num(13..15)?);
    let date = time::Date::from_calendar_date(year, month, day).ok()?;
    let at = date
        .with_hms(
            u8::try_from(h).ok()?,
            u8::try_from(m).ok()?,
            u8::try_from(s).ok()?,
        )
        .ok()?;
    Some(at.assume_utc().unix_timestamp())
}

fn unix(now: SystemTime) -> i64 {
    match now.duration_since(SystemTime::UNIX_EPOCH) {
        Ok(d) => i64::try_from(d.as_secs()).unwrap_or(i64::MAX),
        Err(e) => -i64::try_from(e.duration().as_secs()).unwrap_or(i64::MAX),
    }
}

fn skew_secs() -> i64 {
    i64::try_from(MAX_SKEW.as_secs()).unwrap_or(i64::MAX)
}

/// A signed date must be within [`MAX_SKEW`] of the server's clock.
fn check_skew(date: i64, now: SystemTime) -> Result<(), S3Error> {
    if (unix(now) - date).abs() > skew_secs() {
        return Err(error(
            S3ErrorCode::RequestTimeTooSkewed,
            "The difference between the request time and the server's time is too large (more than 15 minutes).",
        ));
    }
    Ok(())
}

fn check_v4_header(
    authorization: &str,
    headers: &HeaderMap,
    policy: &AuthPolicy,
    now: SystemTime,
) -> Result<(), S3Error> {
    let malformed = |message: &str| error(S3ErrorCode::AuthorizationHeaderMalformed, message);
    let Some(fields) = authorization.strip_prefix("AWS4-HMAC-SHA256 ") else {
        return Err(malformed(
            "the Authorization header must use AWS4-HMAC-SHA256 (SigV4)",
        ));
    };
    let field = |name: &str| {
        fields
            .split(',')
            .map(str::trim)
            .find_map(|f| f.strip_prefix(name)?.strip_prefix('='))
    };
    let credential = field("Credential").ok_or_else(|| malformed("Credential is missing"))?;
    let signed = field("SignedHeaders").ok_or_else(|| malformed("SignedHeaders is missing"))?;
    let scope = parse_scope(credential)
        .ok_or_else(|| malformed("the Credential must be <key>/<date>/<region>/s3/aws4_request"))?;
    let amz_date = headers
        .get("x-amz-date")
        .and_then(|v| v.to_str().ok())
        .ok_or_else(|| {
            error(
                S3ErrorCode::AccessDenied,
                "SigV4 requests must carry an x-amz-date header",
            )
        })?;
    let date = parse_amz_date(amz_date)
        .ok_or_else(|| malformed("x-amz-date is not a date like 20261206T131400Z"))?;
    check_scope(
        &scope,
        amz_date,
        policy,
        S3ErrorCode::AuthorizationHeaderMalformed,
    )?;
    require_host_signed(signed, S3ErrorCode::AuthorizationHeaderMalformed)?;
    check_skew(date, now)
}

fn check_v4_presigned(
    query: &Query<'_>,
    policy: &AuthPolicy,
    now: SystemTime,
) -> Result<(), S3Error> {
    let code = S3ErrorCode::AuthorizationQueryParametersError;
    if query.one("X-Amz-Algorithm")? != "AWS4-HMAC-SHA256" {
        return Err(error(code, "X-Amz-Algorithm must be AWS4-HMAC-SHA256"));
    }
    let scope = parse_scope(query.one("X-Amz-Credential")?).ok_or_else(|| {
        error(
            code.clone(),
            "X-Amz-Credential must be <key>/<date>/<region>/s3/aws4_request",
        )
    })?;
    query.one("X-Amz-Signature")?;
    let amz_date = query.one("X-Amz-Date")?;
    let date = parse_amz_date(amz_date).ok_or_else(|| {
        error(
            code.clone(),
            "X-Amz-Date is not a date like 20261206T131400Z",
        )
    })?;
    let expires: u64 = query
        .one("X-Amz-Expires")?
        .parse()
        .map_err(|_| error(code.clone(), "X-Amz-Expires must be a number of seconds"))?;
    if !(1..=MAX_PRESIGNED_EXPIRY_SECS).contains(&expires) {
        return Err(error(
            code,
            format!(
                "X-Amz-Expires must be less than a week (in seconds) that is {MAX_PRESIGNED_EXPIRY_SECS}"
            ),
        ));
    }
    check_scope(&scope, amz_date, policy, code.clone())?;
    require_host_signed(query.one("X-Amz-SignedHeaders")?, code)?;
    let now = unix(now);
    if date - now > skew_secs() {
        return Err(error(
            S3ErrorCode::RequestTimeTooSkewed,
            "the presigned URL is dated in the future",
        ));
    }
    if now > date.saturating_add(i64::try_from(expires).unwrap_or(i64::MAX)) {
        return Err(error(S3ErrorCode::AccessDenied, "Request has expired"));
    }
    Ok(())
}

fn check_v2_header(headers: &HeaderMap, now: SystemTime) -> Result<(), S3Error> {
    let date = headers
        .get("x-amz-date")
        .or_else(|| headers.get(header::DATE))
        .and_then(|v| v.to_str().ok())
        .ok_or_else(|| {
            error(
                S3ErrorCode::AccessDenied,
                "SigV2 requests must carry a Date or x-amz-date header",
            )
        })?;
    let date = httpdate::parse_http_date(date).map_err(|_| {
        error(
            S3ErrorCode::AccessDenied,
            "the Date header is not an HTTP date",
        )
    })?;
    check_skew(unix(date), now)
}

fn check_v2_presigned(query: &Query<'_>, now: SystemTime) -> Result<(), S3Error> {
    let code = S3ErrorCode::AuthorizationQueryParametersError;
    query.one("AWSAccessKeyId")?;
    query.one("Signature")?;
    let expires: i64 = query
        .one("Expires")?
        .parse()
        .map_err(|_| error(code.clone(), "Expires must be seconds since the Unix epoch"))?;
    let now = unix(now);
    if expires - now > i64::try_from(MAX_PRESIGNED_EXPIRY_SECS).unwrap_or(i64::MAX) {
        return Err(error(
            code,
            format!(
                "Expires must be at most {MAX_PRESIGNED_EXPIRY_SECS} seconds (a week) from now"
            ),
        ));
    }
    if now > expires {
        return Err(error(S3ErrorCode::AccessDenied, "Request has expired"));
    }
    Ok(())
}

#[cfg(test)]
#[path = "guard_tests.rs"]
mod tests;
