#![allow(clippy::unwrap_used, reason = "test code")]

use std::time::{Duration, SystemTime};

use http::{HeaderMap, HeaderValue, Method};

use super::*;

/// 2026-12-06 13:14:00 UTC.
fn now() -> SystemTime {
    SystemTime::UNIX_EPOCH + Duration::from_secs(parse_amz_date("20261206T131400Z").unwrap() as u64)
}

const CREDENTIAL: &str = "NMBEXAMPLE/20261206/us-east-1/s3/aws4_request";

fn v4_headers(date: &str, credential: &str, signed: &str) -> HeaderMap {
    let mut headers = HeaderMap::new();
    headers.insert("x-amz-date", HeaderValue::from_str(date).unwrap());
    let auth =
        format!("AWS4-HMAC-SHA256 Credential={credential}, SignedHeaders={signed}, Signature=abcd");
    headers.insert("authorization", HeaderValue::from_str(&auth).unwrap());
    headers
}

fn code(result: Result<(), S3Error>) -> String {
    result.unwrap_err().code().as_str().to_owned()
}

fn get(query: Option<&str>, headers: &HeaderMap) -> Result<(), S3Error> {
    check(&Method::GET, query, headers, &AuthPolicy::default(), now())
}

#[test]
fn amz_dates_parse() {
    assert_eq!(parse_amz_date("19700101T000000Z"), Some(0));
    assert_eq!(parse_amz_date("20200229T235959Z"), Some(1_583_020_799));
    for bad in [
        "20261306T000000Z",
        "20261206T131400",
        "2026-12-06T13:14:00Z",
        "20261206X131400Z",
    ] {
        assert_eq!(parse_amz_date(bad), None, "{bad}");
    }
}

#[test]
fn a_fresh_sigv4_request_passes() {
    let headers = v4_headers("20261206T131000Z", CREDENTIAL, "host;x-amz-date");
    assert!(get(None, &headers).is_ok());
    // Unsigned requests are s3s's to refuse.
    assert!(get(None, &HeaderMap::new()).is_ok());
}

#[test]
fn sigv4_dates_outside_15_minutes_are_too_skewed() {
    for date in [
        "20200101T000000Z",
        "20990101T000000Z",
        "20261206T125850Z",
        "20261206T132910Z",
    ] {
        let credential = format!("NMBEXAMPLE/{}/us-east-1/s3/aws4_request", &date[..8]);
        let headers = v4_headers(date, &credential, "host;x-amz-date");
        assert_eq!(code(get(None, &headers)), "RequestTimeTooSkewed", "{date}");
    }
    let headers = v4_headers("20261206T125900Z", CREDENTIAL, "host;x-amz-date");
    assert!(get(None, &headers).is_ok());
}

#[test]
fn the_scope_must_be_this_servers_service_region_and_date() {
    for credential in [
        "NMBEXAMPLE/20261206/us-east-1/ec2/aws4_request",
        "NMBEXAMPLE/20261206/eu-west-1/s3/aws4_request",
        "NMBEXAMPLE/20261205/us-east-1/s3/aws4_request",
        "NMBEXAMPLE/20261206/us-east-1/s3/aws4",
        "NMBEXAMPLE/20261206/s3/aws4_request",
    ] {
        let headers = v4_headers("20261206T131000Z", credential, "host;x-amz-date");
        assert_eq!(
            code(get(None, &headers)),
            "AuthorizationHeaderMalformed",
            "{credential}"
        );
    }
    let headers = v4_headers("20261206T131000Z", CREDENTIAL, "x-amz-date");
    assert_eq!(code(get(None, &headers)), "AuthorizationHeaderMalformed");
    // Another configured region.
    let policy = AuthPolicy {
        region: "eu-west-1".into(),
        ..AuthPolicy::default()
    };
    let credential = "NMBEXAMPLE/20261206/eu-west-1/s3/aws4_request";
    let headers = v4_headers("20261206T131000Z", credential, "host");
    assert!(check(&Method::GET, None, &headers, &policy, now()).is_ok());
}

fn presigned(expires: &str, date: &str) -> String {
    format!(
        "X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Credential={}&X-Amz-Date={date}&X-Amz-Expires={expires}&X-Amz-SignedHeaders=host&X-Amz-Signature=abcd",
        format!("NMBEXAMPLE/{}/us-east-1/s3/aws4_request", &date[..8]).replace('/', "%2F")
    )
}

#[test]
fn presigned_urls_live_at_most_a_week() {
    let none = HeaderMap::new();
    assert!(get(Some(&presigned("604800", "20261206T131000Z")), &none).is_ok());
    for expires in ["604801", "4294967295", "0", "-1", "soon"] {
        let query = presigned(expires, "20261206T131000Z");
        assert_eq!(
            code(get(Some(&query), &none)),
            "AuthorizationQueryParametersError",
            "{expires}"
        );
    }
    // Expired, and dated in the future.
    let query = presigned("3600", "20261206T100000Z");
    assert_eq!(code(get(Some(&query), &none)), "AccessDenied");
    let query = presigned("3600", "20261207T000000Z");
    assert_eq!(code(get(Some(&query), &none)), "RequestTimeTooSkewed");
    // A presigned URL's scope is checked like a header's.
    let query = presigned("60", "20261206T131000Z").replace("%2Fs3%2F", "%2Fsts%2F");
    assert_eq!(
        code(get(Some(&query), &none)),
        "AuthorizationQueryParametersError"
    );
    // Repeated parameters, and a query signature beside an Authorization header.
    let query = format!("{}&X-Amz-Expires=60", presigned("60", "20261206T131000Z"));
    assert_eq!(
        code(get(Some(&query), &none)),
        "AuthorizationQueryParametersError"
    );
    let headers = v4_headers("20261206T131000Z", CREDENTIAL, "host");
    let query = presigned("60", "20261206T131000Z");
    assert_eq!(code(get(Some(&query), &headers)), "InvalidRequest");
}

#[test]
fn sigv2_is_refused_unless_allowed() {
    let mut headers = HeaderMap::new();
    headers.insert(
        "authorization",
        HeaderValue::from_static("AWS NMBEXAMPLE:c2lnbmF0dXJl"),
    );
    headers.insert(
        "date",
        HeaderValue::from_static("Sun, 06 Dec 2026 13:10:00 GMT"),
    );
    assert_eq!(code(get(None, &headers)), "InvalidRequest");
    let query = "AWSAccessKeyId=NMBEXAMPLE&Expires=1796562000&Signature=c2ln";
    assert_eq!(code(get(Some(query), &HeaderMap::new())), "InvalidRequest");

    let allowed = AuthPolicy {
        allow_sigv2: true,
        ..AuthPolicy::default()
    };
    let v2 = |query: Option<&str>, headers: &HeaderMap| {
        check(&Method::GET, query, headers, &allowed, now())
    };
    assert!(v2(None, &headers).is_ok());
    headers.insert(
        "date",
        HeaderValue::from_static("Wed, 01 Jan 2020 00:00:00 GMT"),
    );
    assert_eq!(code(v2(None, &headers)), "RequestTimeTooSkewed");
    // Expires is absolute: within a week, not past.
    let in_an_hour = unix(now()) + 3600;
    let query = format!("AWSAccessKeyId=NMBEXAMPLE&Expires={in_an_hour}&Signature=c2ln");
    assert!(v2(Some(&query), &HeaderMap::new()).is_ok());
    let in_a_year = unix(now()) + 365 * 86_400;
    let query = format!("AWSAccessKeyId=NMBEXAMPLE&Expires={in_a_year}&Signature=c2ln");
    assert_eq!(
        code(v2(Some(&query), &HeaderMap::new())),
        "AuthorizationQueryParametersError"
    );
    let an_hour_ago = unix(now()) - 3600;
    let query = format!("AWSAccessKeyId=NMBEXAMPLE&Expires={an_hour_ago}&Signature=c2ln");
    assert_eq!(code(v2(Some(&query), &HeaderMap::new())), "AccessDenied");
}

#[test]
fn form_uploads_and_doubled_headers_are_refused() {
    let mut headers = HeaderMap::new();
    headers.insert(
        "content-type",
        HeaderValue::from_static("multipart/form-data; boundary=x"),
    );
    let post = check(&Method::POST, None, &headers, &AuthPolicy::default(), now());
    assert_eq!(code(post), "NotImplemented");

    let mut headers = v4_headers("20261206T131000Z", CREDENTIAL, "host");
    headers.append(
        "authorization",
        HeaderValue::from_static("AWS4-HMAC-SHA256 x"),
    );
    assert_eq!(code(get(None, &headers)), "InvalidRequest");
}
