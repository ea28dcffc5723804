//! `nimbus invoke APP[/FUNCTION]`: one HTTP request through the gateway, as a client would
//! send it.

use std::collections::BTreeMap;
use std::io::Write;

use anyhow::{Context, anyhow, bail};
use serde::Serialize;

use crate::args::InvokeArgs;
use crate::client::{ApiClient, AsyncOptions};
use crate::output;

#[derive(Serialize)]
struct Invoked {
    status: u16,
    headers: BTreeMap<String, String>,
    body: String,
}

/// `nimbus invoke`.
pub async fn run(args: InvokeArgs, json: bool) -> anyhow::Result<()> {
    let client = ApiClient::from_args(&args.api)?;
    let (app, wanted) = match args.target.split_once('/') {
        Some((a, f)) => (a, Some(f)),
        None => (args.target.as_str(), None),
    };
    let functions = client.functions(app).await?;
    let function = match wanted {
        Some(name) => functions
            .iter()
            .find(|f| f.name == name)
            .ok_or_else(|| anyhow!("app `{app}` has no function `{name}`"))?,
        None => match functions.as_slice() {
            [only] => only,
            _ => bail!("app `{app}` has several functions: name one as `{app}/FUNCTION`"),
        },
    };
    if args.async_ {
        let route = function.routes.first();
        return invoke_async(&client, app, &function.name, route, &args, json).await;
    }
    let route = function
        .routes
        .first()
        .ok_or_else(|| anyhow!("function `{}` has no HTTP route", function.name))?;
    let (host, route_path) = match route.find('/') {
        Some(0) | None => (None, route.as_str()),
        Some(i) => (Some(&route[..i]), &route[i..]),
    };
    let path = match &args.path {
        Some(p) => p.clone(),
        None => route_path
            .strip_suffix("/...")
            .unwrap_or(route_path)
            .to_owned(),
    };
    let path = if path.is_empty() {
        "/".to_owned()
    } else {
        path
    };
    let info = client.info().await?;
    let method = reqwest::Method::from_bytes(args.method.to_uppercase().as_bytes())
        .with_context(|| format!("invalid method `{}`", args.method))?;
    let mut request = reqwest::Client::new().request(method, format!("{}{path}", info.gateway_url));
    if let Some(host) = host {
        request = request.header(reqwest::header::HOST, host);
    }
    for header in &args.headers {
        let (name, value) = header
            .split_once(':')
            .ok_or_else(|| anyhow!("invalid header `{header}`: expected `Name: value`"))?;
        request = request.header(name.trim(), value.trim());
    }
    if let Some(data) = &args.data {
        let body = match data.strip_prefix('@') {
            Some(file) => std::fs::read(file).with_context(|| format!("cannot read {file}"))?,
            None => data.clone().into_bytes(),
        };
        request = request.body(body);
    }
    let response = request
        .send()
        .await
        .with_context(|| format!("cannot reach the gateway at {}", info.gateway_url))?;
    let status = response.status();
    let headers: BTreeMap<String, String> = response
        .headers()
        .iter()
        .map(|(k, v)| {
            (
                k.to_string(),
                String::from_utf8_lossy(v.as_bytes()).into_owned(),
            )
        })
        .collect();
    let body = response
        .bytes()
        .await
        .context("reading the response body")?;
    if json {
        return output::json(&Invoked {
            status: status.as_u16(),
            headers,
            body: String::from_utf8_lossy(&body).into_owned(),
        });
    }
    eprintln!(
        "HTTP {status} (request id {})",
        headers.get("x-request-id").map_or("-", String::as_str)
    );
    std::io::stdout().write_all(&body)?;
    Ok(())
}

/// `nimbus invoke --async`: queue the invocation, print its id.
async fn invoke_async(
    client: &ApiClient,
    app: &str,
    function: &str,
    route: Option<&String>,
    args: &InvokeArgs,
    json: bool,
) -> anyhow::Result<()> {
    let body = match &args.data {
        Some(data) => match data.strip_prefix('@') {
            Some(file) => std::fs::read(file).with_context(|| format!("cannot read {file}"))?,
            None => data.clone().into_bytes(),
        },
        None => Vec::new(),
    };
    let mut content_type = None;
    for header in &args.headers {
        let (name, value) = header
            .split_once(':')
            .ok_or_else(|| anyhow!("invalid header `{header}`: expected `Name: value`"))?;
        if !name.trim().eq_ignore_ascii_case("content-type") {
            bail!("with --async only the Content-Type header is passed on (got `{name}`)");
        }
        content_type = Some(value.trim().to_owned());
    }
    // HTTP functions get a path (the given one, or their first route's); event functions
    // ignore it.
    let path = args.path.clone().or_else(|| {
        route.map(|r| {
            let p = r.find('/').map_or("/", |i| &r[i..]);
            let p = p.strip_suffix("/...").unwrap_or(p);
            if p.is_empty() {
                "/".to_owned()
            } else {
                p.to_owned()
            }
        })
    });
    let method = args.method.to_uppercase();
    let options = AsyncOptions {
        content_type: content_type.as_deref(),
        method: Some(&method),
        path: path.as_deref(),
        idempotency_key: args.idempotency_key.as_deref(),
    };
    let accepted = client.invoke_async(app, function, body, options).await?;
    if json {
        return output::json(&accepted);
    }
    if accepted.deduplicated {
        eprintln!("already invoked with this idempotency key; not run again");
    }
    println!("{}", accepted.record.id);
    Ok(())
}
