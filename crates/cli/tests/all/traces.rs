//! Traces: spans from the gateway through the invocation to outbound HTTP, key-value and queue
//! deliveries, exported over OTLP/HTTP to a collector, with W3C `traceparent` read from callers,
//! handed into functions and put on their outbound requests.

use std::collections::HashMap;
use std::convert::Infallible;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use http_body_util::BodyExt;
use nimbus_trace::OtlpConfig;
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTraceServiceRequest, ExportTraceServiceResponse,
};
use opentelemetry_proto::tonic::common::v1::any_value::Value;
use opentelemetry_proto::tonic::trace::v1::Span;
use opentelemetry_proto::tonic::trace::v1::span::SpanKind;
use opentelemetry_proto::tonic::trace::v1::status::StatusCode;
use prost::Message;

use crate::guests;
use crate::harness::Nimbus;

/// A caller's span: trace `…0a`, span `00f067aa0ba902b7`, sampled.
fn caller(trace: u8) -> String {
    format!("00-4bf92f3577b34da6a3ce929d0e0e47{trace:02x}-00f067aa0ba902b7-01")
}
const CALLER_SPAN: &str = "00f067aa0ba902b7";

fn trace_of(trace: u8) -> String {
    format!("4bf92f3577b34da6a3ce929d0e0e47{trace:02x}")
}

/// A span as the collector received it, with its ids in hex.
#[derive(Debug, Clone)]
struct Got {
    trace: String,
    id: String,
    parent: String,
    name: String,
    kind: SpanKind,
    attributes: HashMap<String, String>,
    error: bool,
    service: String,
}

impl Got {
    fn from(span: &Span, service: &str) -> Self {
        let attributes = span
            .attributes
            .iter()
            .map(|kv| {
                let value = match kv.value.as_ref().and_then(|v| v.value.as_ref()) {
                    Some(Value::StringValue(s)) => s.clone(),
                    Some(Value::IntValue(i)) => i.to_string(),
                    Some(Value::BoolValue(b)) => b.to_string(),
                    other => format!("{other:?}"),
                };
                (kv.key.clone(), value)
            })
            .collect();
        Self {
            trace: hex::encode(&span.trace_id),
            id: hex::encode(&span.span_id),
            parent: hex::encode(&span.parent_span_id),
            name: span.name.clone(),
            kind: SpanKind::try_from(span.kind).unwrap_or(SpanKind::Unspecified),
            attributes,
            error: span
                .status
                .as_ref()
                .is_some_and(|s| s.code == StatusCode::Error as i32),
            service: service.to_owned(),
        }
    }

    fn attr(&self, key: &str) -> &str {
        self.attributes.get(key).map_or("", String::as_str)
    }
}

/// A real OTLP/HTTP receiver on port 0: decodes every protobuf export with the official
/// message types and keeps the spans.
async fn collector() -> (String, Arc<Mutex<Vec<Got>>>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let spans: Arc<Mutex<Vec<Got>>> = Arc::default();
    let keep = spans.clone();
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let spans = keep.clone();
            tokio::spawn(async move {
                let service = hyper::service::service_fn(
                    move |req: hyper::Request<hyper::body::Incoming>| {
                        let spans = spans.clone();
                        async move {
                            assert_eq!(req.uri().path(), "/v1/traces");
                            assert_eq!(req.headers()["content-type"], "application/x-protobuf");
                            let body = req.into_body().collect().await.unwrap().to_bytes();
                            let export = ExportTraceServiceRequest::decode(body).unwrap();
                            for resource in export.resource_spans {
                                let service = resource
                                    .resource
                                    .iter()
                                    .flat_map(|r| &r.attributes)
                                    .find(|kv| kv.key == "service.name")
                                    .and_then(|kv| kv.value.as_ref()?.value.clone());
                                let service = match service {
                                    Some(Value::StringValue(s)) => s,
                                    _ => String::new(),
                                };
                                for scope in resource.scope_spans {
                                    for span in &scope.spans {
                                        spans.lock().unwrap().push(Got::from(span, &service));
                                    }
                                }
                            }
                            let reply = ExportTraceServiceResponse::default().encode_to_vec();
                            Ok::<_, Infallible>(hyper::Response::new(http_body_util::Full::new(
                                bytes::Bytes::from(reply),
                            )))
                        }
                    },
                );
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(hyper_util::rt::TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    (url, spans)
}

/// An upstream that answers 200 and keeps the `traceparent` of every request.
async fn recording_upstream() -> (std::net::SocketAddr, Arc<Mutex<Vec<String>>>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let seen: Arc<Mutex<Vec<String>>> = Arc::default();
    let keep = seen.clone();
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let seen = keep.clone();
            tokio::spawn(async move {
                let service = hyper::service::service_fn(
                    move |req: hyper::Request<hyper::body::Incoming>| {
                        let header = req
                            .headers()
                            .get("traceparent")
                            .map(|v| v.to_str().unwrap().to_owned());
                        seen.lock().unwrap().push(header.unwrap_or_default());
                        async {
                            Ok::<_, Infallible>(hyper::Response::new(http_body_util::Full::new(
                                bytes::Bytes::from_static(b"upstream says hi"),
                            )))
                        }
                    },
                );
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(hyper_util::rt::TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    (addr, seen)
}

async fn traced_nimbus(collector: &str) -> Nimbus {
    let endpoint = collector.to_owned();
    Nimbus::start_configured(move |config| {
        config.tracing = Some(OtlpConfig {
            export_interval: Duration::from_millis(50),
            ..OtlpConfig::new(endpoint)
        });
    })
    .await
}

/// Waits until `done` holds for the spans of `trace`, then returns them.
async fn spans_of(spans: &Mutex<Vec<Got>>, trace: &str, done: impl Fn(&[Got]) -> bool) -> Vec<Got> {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let got: Vec<Got> = spans
            .lock()
            .unwrap()
            .iter()
            .filter(|s| s.trace == trace)
            .cloned()
            .collect();
        if done(&got) {
            return got;
        }
        assert!(
            Instant::now() < deadline,
            "spans of trace {trace} never all arrived; got {got:#?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Whether a span of every name in `names` has arrived (spans of one trace are exported as
/// each ends, so a parent can arrive after its children).
fn has(spans: &[Got], names: &[&str]) -> bool {
    names.iter().all(|n| spans.iter().any(|s| s.name == *n))
}

fn one<'a>(spans: &'a [Got], name: &str) -> &'a Got {
    let found: Vec<&Got> = spans.iter().filter(|s| s.name == name).collect();
    assert_eq!(found.len(), 1, "one span named {name:?} in {spans:#?}");
    found[0]
}

const MANIFEST: &str = r#"
[app]
name = "traced"

[[function]]
name = "outbound"
component = "outbound.wasm"
routes = ["/out"]
allowed_outbound_hosts = ["http://127.0.0.1:*"]

[[function]]
name = "echo"
component = "echo.wasm"
routes = ["/echo/..."]

[[function]]
name = "kvbench"
component = "kvbench.wasm"
routes = ["/kvbench"]
key_value_stores = ["bench"]
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_is_traced_from_the_gateway_to_its_outbound_and_key_value_calls() {
    let (collector, spans) = collector().await;
    let (upstream, seen) = recording_upstream().await;
    let nimbus = traced_nimbus(&collector).await;
    let components = [
        ("outbound", guests::c("outbound")),
        ("echo", guests::c("echo")),
        ("kvbench", guests::c_world("kvbench", "nimbus-guest")),
    ];
    let components: Vec<(&str, &std::path::Path)> =
        components.iter().map(|(n, p)| (*n, p.as_path())).collect();
    nimbus.deploy(MANIFEST, &components).await.unwrap();
    let get = |path: &str, trace: Option<u8>| {
        let mut request = nimbus.http.get(format!("{}{path}", nimbus.gateway_url));
        if let Some(trace) = trace {
            request = request.header("traceparent", caller(trace));
        }
        request
    };

    // Outbound HTTP: gateway → invocation → client span, and the upstream is told the client
    // span is its parent.
    let response = get("/out", Some(0x0a))
        .header("x-target", format!("http://{upstream}/x?token=secret"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(response.text().await.unwrap(), "upstream says hi");
    let trace = trace_of(0x0a);
    let got = spans_of(&spans, &trace, |s| s.len() >= 3).await;
    assert_eq!(got.len(), 3, "{got:#?}");
    let server = got
        .iter()
        .find(|s| s.kind == SpanKind::Server && s.name == "GET")
        .unwrap();
    let invoke = one(&got, "invoke traced/outbound");
    let client = got.iter().find(|s| s.kind == SpanKind::Client).unwrap();
    assert_eq!(
        server.parent, CALLER_SPAN,
        "the caller's span is the parent"
    );
    assert_eq!(server.attr("http.response.status_code"), "200");
    assert_eq!(server.attr("nimbus.function"), "traced/outbound");
    assert_eq!(server.service, "nimbus");
    assert_eq!(invoke.kind, SpanKind::Server);
    assert_eq!(invoke.parent, server.id);
    assert_eq!(invoke.attr("faas.trigger"), "http");
    assert_eq!(invoke.attr("faas.name"), "outbound");
    assert!(matches!(invoke.attr("faas.coldstart"), "true" | "false"));
    assert!(!invoke.error);
    assert_eq!(client.name, "GET");
    assert_eq!(client.parent, invoke.id);
    assert_eq!(client.attr("http.response.status_code"), "200");
    assert_eq!(client.attr("url.full"), format!("http://{upstream}/x"));
    assert_eq!(
        seen.lock().unwrap().as_slice(),
        [format!("00-{trace}-{}-01", client.id)],
        "the upstream continues the trace under the client span"
    );

    // Into the function: the guest sees its invocation's span as the request's traceparent.
    let response = get("/echo/x", Some(0x0b)).send().await.unwrap();
    assert_eq!(response.status(), 200);
    let seen_by_guest = response.headers()["x-traceparent"]
        .to_str()
        .unwrap()
        .to_owned();
    let trace = trace_of(0x0b);
    let got = spans_of(&spans, &trace, |s| s.len() >= 2).await;
    let invoke = one(&got, "invoke traced/echo");
    assert_eq!(seen_by_guest, format!("00-{trace}-{}-01", invoke.id));

    // Key-value calls are spans under the invocation: kvbench seeds its key with one set,
    // then times n = 3 more.
    let response = get("/kvbench?op=set&n=3&size=8", Some(0x0c))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200, "{}", response.text().await.unwrap());
    let trace = trace_of(0x0c);
    let got = spans_of(&spans, &trace, |s| {
        s.iter().filter(|s| s.name == "set bench").count() >= 4
            && has(s, &["invoke traced/kvbench"])
    })
    .await;
    let invoke = one(&got, "invoke traced/kvbench");
    let sets: Vec<&Got> = got.iter().filter(|s| s.name == "set bench").collect();
    assert_eq!(sets.len(), 4, "{got:#?}");
    for set in sets {
        assert_eq!(set.parent, invoke.id);
        assert_eq!(set.kind, SpanKind::Client);
        assert_eq!(set.attr("db.operation.name"), "set");
        assert_eq!(set.attr("db.system.name"), "nimbus.kv");
        assert_eq!(set.attr("db.namespace"), "bench");
    }

    // Without a caller's traceparent, the gateway starts the trace.
    let response = get("/echo/y", None).send().await.unwrap();
    let header = response.headers()["x-traceparent"].to_str().unwrap();
    let trace = header.split('-').nth(1).unwrap().to_owned();
    let got = spans_of(&spans, &trace, |s| s.len() >= 2).await;
    let server = got
        .iter()
        .find(|s| s.name == "GET" && s.kind == SpanKind::Server)
        .unwrap();
    assert_eq!(server.parent, "", "a root span");
    assert_eq!(one(&got, "invoke traced/echo").parent, server.id);
    nimbus.stop().await;
}

const QUEUE_MANIFEST: &str = r#"
[app]
name = "tq"

[[function]]
name = "worker"
component = "worker.wasm"
key_value_stores = ["bench"]

[[queue]]
name = "jobs"

[[trigger.queue]]
function = "worker"
queue = "jobs"
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_queue_delivery_continues_the_senders_trace() {
    let (collector, spans) = collector().await;
    let nimbus = traced_nimbus(&collector).await;
    let worker = guests::c_world("eventbench", "event-guest");
    nimbus
        .deploy(QUEUE_MANIFEST, &[("worker", &worker)])
        .await
        .unwrap();
    // A binary-mode CloudEvent whose distributed-tracing extension names the sender's span.
    let response = nimbus
        .http
        .post(format!(
            "{}/v1/apps/tq/queues/jobs/messages",
            nimbus.api.base()
        ))
        .bearer_auth(&nimbus.token)
        .header("ce-specversion", "1.0")
        .header("ce-id", "job-1")
        .header("ce-source", "/tests")
        .header("ce-type", "dev.nimbus.test")
        .header("ce-traceparent", caller(0x0d))
        .body("1 record")
        .send()
        .await
        .unwrap();
    assert!(response.status().is_success(), "{}", response.status());
    let trace = trace_of(0x0d);
    let got = spans_of(&spans, &trace, |s| s.len() >= 2).await;
    let invoke = one(&got, "invoke tq/worker");
    assert_eq!(invoke.kind, SpanKind::Consumer);
    assert_eq!(invoke.parent, CALLER_SPAN);
    assert_eq!(invoke.attr("faas.trigger"), "pubsub");
    let set = got.iter().find(|s| s.name == "set bench").unwrap();
    assert_eq!(set.parent, invoke.id);
    nimbus.stop().await;
}

const PRODUCER_MANIFEST: &str = r#"
[app]
name = "tp"

[[function]]
name = "enqueue"
component = "enqueue.wasm"
routes = ["/enqueue"]
queues = ["jobs"]

[[function]]
name = "worker"
component = "worker.wasm"
key_value_stores = ["bench"]

[[queue]]
name = "jobs"

[[trigger.queue]]
function = "worker"
queue = "jobs"
"#;

/// One trace across a queue: the HTTP invocation's send is a PRODUCER span, and the consumer's
/// invocation hangs under it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_function_sending_to_a_queue_links_the_consumer_into_its_trace() {
    let (collector, spans) = collector().await;
    let nimbus = traced_nimbus(&collector).await;
    let enqueue = guests::c_world("enqueue", "nimbus-guest");
    let worker = guests::c_world("eventbench", "event-guest");
    nimbus
        .deploy(
            PRODUCER_MANIFEST,
            &[("enqueue", &enqueue), ("worker", &worker)],
        )
        .await
        .unwrap();
    let response = nimbus
        .http
        .get(format!("{}/enqueue", nimbus.gateway_url))
        .header("traceparent", caller(0x0f))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200, "{}", response.text().await.unwrap());
    let message_id = response.text().await.unwrap().trim().to_owned();
    let trace = trace_of(0x0f);
    let got = spans_of(&spans, &trace, |s| {
        has(
            s,
            &[
                "invoke tp/enqueue",
                "send jobs",
                "invoke tp/worker",
                "set bench",
            ],
        )
    })
    .await;
    let invoke = one(&got, "invoke tp/enqueue");
    let send = one(&got, "send jobs");
    let consumer = one(&got, "invoke tp/worker");
    assert_eq!(send.kind, SpanKind::Producer);
    assert_eq!(send.parent, invoke.id);
    assert_eq!(send.attr("messaging.destination.name"), "jobs");
    assert_eq!(send.attr("messaging.message.id"), message_id);
    assert_eq!(consumer.kind, SpanKind::Consumer);
    assert_eq!(
        consumer.parent, send.id,
        "the consumer continues the sender's span"
    );
    let set = got.iter().find(|s| s.name == "set bench").unwrap();
    assert_eq!(set.parent, consumer.id);
    nimbus.stop().await;
}

/// wasi:blobstore calls are spans under the invocation too (the Python blobdrop guest writes
/// one object).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn object_writes_are_spans_under_the_invocation() {
    let (collector, spans) = collector().await;
    let nimbus = traced_nimbus(&collector).await;
    let component = guests::py("guests/py/blobdrop", "nimbus-guest");
    let manifest = crate::harness::manifest(
        "tb",
        "writer",
        &["/finished/..."],
        "buckets = [\"scratch\"]",
    );
    nimbus
        .deploy(&manifest, &[("writer", &component)])
        .await
        .unwrap();
    let response = nimbus
        .http
        .put(format!("{}/finished/whole.txt", nimbus.gateway_url))
        .header("traceparent", caller(0x10))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let trace = trace_of(0x10);
    let got = spans_of(&spans, &trace, |s| {
        has(s, &["invoke tb/writer", "put scratch"])
    })
    .await;
    let invoke = one(&got, "invoke tb/writer");
    let put = one(&got, "put scratch");
    assert_eq!(put.parent, invoke.id);
    assert_eq!(put.kind, SpanKind::Client);
    assert_eq!(put.attr("db.system.name"), "nimbus.objects");
    assert_eq!(put.attr("db.namespace"), "scratch");
    nimbus.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_tracing_traceparent_passes_through_and_a_dead_collector_costs_no_request() {
    // Off (the default): the caller's header reaches the function untouched.
    let nimbus = Nimbus::start().await;
    nimbus.deploy_guest("plain", "echo", &["/echo"], "").await;
    let response = nimbus
        .http
        .get(format!("{}/echo", nimbus.gateway_url))
        .header("traceparent", caller(0x0e))
        .send()
        .await
        .unwrap();
    assert_eq!(response.headers()["x-traceparent"], caller(0x0e).as_str());
    nimbus.stop().await;

    // On, with nothing listening at the collector: every request is still served.
    let dead = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", dead.local_addr().unwrap());
    drop(dead);
    let nimbus = traced_nimbus(&url).await;
    nimbus.deploy_guest("plain", "echo", &["/echo"], "").await;
    for _ in 0..50 {
        let response = nimbus.get("/echo").await;
        assert_eq!(response.status(), 200);
        assert!(response.headers().contains_key("x-traceparent"));
    }
    nimbus.stop().await;
}
