// GETs the URL in the x-target header through wasi:http/outgoing-handler and answers 200 with
// the upstream body, or 502 `outbound error: <error-code variant>` (e.g. HTTP-request-denied
// when the host is not in allowed_outbound_hosts).
#include <stdio.h>
#include <string.h>
#include "nimbus_http.h"

// wasi:http/types error-code cases, in declaration order (= tag).
static const char *const code_names[] = {
    "DNS-timeout", "DNS-error", "destination-not-found", "destination-unavailable",
    "destination-IP-prohibited", "destination-IP-unroutable", "connection-refused",
    "connection-terminated", "connection-timeout", "connection-read-timeout",
    "connection-write-timeout", "connection-limit-reached", "TLS-protocol-error",
    "TLS-certificate-error", "TLS-alert-received", "HTTP-request-denied",
    "HTTP-request-length-required", "HTTP-request-body-size", "HTTP-request-method-invalid",
    "HTTP-request-URI-invalid", "HTTP-request-URI-too-long", "HTTP-request-header-section-size",
    "HTTP-request-header-size", "HTTP-request-trailer-section-size", "HTTP-request-trailer-size",
    "HTTP-response-incomplete", "HTTP-response-header-section-size", "HTTP-response-header-size",
    "HTTP-response-body-size", "HTTP-response-trailer-section-size", "HTTP-response-trailer-size",
    "HTTP-response-transfer-coding", "HTTP-response-content-coding", "HTTP-response-timeout",
    "HTTP-upgrade-failed", "HTTP-protocol-error", "loop-detected", "configuration-error",
    "internal-error",
};
_Static_assert(sizeof code_names / sizeof *code_names == WASI_HTTP_TYPES_ERROR_CODE_INTERNAL_ERROR + 1,
               "error-code cases changed");

static void fail(nh_outparam_t out, const char *name) {
  char msg[128];
  snprintf(msg, sizeof msg, "outbound error: %s\n", name);
  nh_respond(out, 502, msg);
}

static void fail_code(nh_outparam_t out, uint8_t tag) {
  fail(out, tag < sizeof code_names / sizeof *code_names ? code_names[tag] : "unknown");
}

void exports_wasi_http_incoming_handler_handle(nh_request_t request, nh_outparam_t out) {
  char target[2048];
  int have_target = nh_header(wasi_http_types_borrow_incoming_request(request), "x-target", target, sizeof target);
  wasi_http_types_incoming_request_drop_own(request);
  if (!have_target) {
    nh_respond(out, 400, "missing x-target header\n");
    return;
  }

  // Split scheme://authority/path?query.
  const char *rest = target;
  wasi_http_types_scheme_t scheme = {.tag = WASI_HTTP_TYPES_SCHEME_HTTP};
  if (strncmp(rest, "http://", 7) == 0) {
    rest += 7;
  } else if (strncmp(rest, "https://", 8) == 0) {
    rest += 8;
    scheme.tag = WASI_HTTP_TYPES_SCHEME_HTTPS;
  }
  const char *slash = strchr(rest, '/');
  http_guest_string_t authority = {(uint8_t *)rest, slash ? (size_t)(slash - rest) : strlen(rest)};
  http_guest_string_t path = {(uint8_t *)(slash ? slash : "/"), strlen(slash ? slash : "/")};

  wasi_http_types_own_outgoing_request_t req =
      wasi_http_types_constructor_outgoing_request(wasi_http_types_constructor_fields());
  wasi_http_types_borrow_outgoing_request_t rb = wasi_http_types_borrow_outgoing_request(req);
  wasi_http_types_method_outgoing_request_set_scheme(rb, &scheme);
  wasi_http_types_method_outgoing_request_set_authority(rb, &authority);
  wasi_http_types_method_outgoing_request_set_path_with_query(rb, &path);

  wasi_http_outgoing_handler_own_future_incoming_response_t future;
  wasi_http_outgoing_handler_error_code_t err;
  if (!wasi_http_outgoing_handler_handle(req, NULL, &future, &err)) {
    fail_code(out, err.tag);  // e.g. HTTP-request-denied: refused before any connection
    return;
  }
  wasi_http_types_borrow_future_incoming_response_t fb = wasi_http_types_borrow_future_incoming_response(future);
  wasi_http_types_result_result_own_incoming_response_error_code_void_t result;
  while (!wasi_http_types_method_future_incoming_response_get(fb, &result)) {
    wasi_http_types_own_pollable_t p = wasi_http_types_method_future_incoming_response_subscribe(fb);
    wasi_io_poll_method_pollable_block(wasi_io_poll_borrow_pollable(p));
    wasi_io_poll_pollable_drop_own(p);
  }
  wasi_http_types_future_incoming_response_drop_own(future);
  if (result.is_err) {  // the future's value was already taken: cannot happen here
    fail(out, "future-already-taken");
    return;
  }
  if (result.val.ok.is_err) {  // e.g. connection-refused
    fail_code(out, result.val.ok.val.err.tag);
    return;
  }
  wasi_http_types_own_incoming_response_t resp = result.val.ok.val.ok;
  wasi_http_types_own_incoming_body_t body;
  wasi_http_types_method_incoming_response_consume(wasi_http_types_borrow_incoming_response(resp), &body);
  wasi_http_types_own_input_stream_t in;
  wasi_http_types_method_incoming_body_stream(wasi_http_types_borrow_incoming_body(body), &in);
  nh_writer_t w = nh_start(out, 200, "text/plain", NULL, NULL, 0);
  http_guest_list_u8_t chunk;
  wasi_io_streams_stream_error_t serr;
  int failed = 0;
  while (wasi_io_streams_method_input_stream_blocking_read(wasi_io_streams_borrow_input_stream(in), 65536, &chunk, &serr)) {
    failed = nh_write(&w, chunk.ptr, chunk.len) != 0;  // the client went away
    http_guest_list_u8_free(&chunk);
    if (failed) break;
  }
  if (!failed && serr.tag == WASI_IO_STREAMS_STREAM_ERROR_LAST_OPERATION_FAILED) failed = 1;
  wasi_io_streams_input_stream_drop_own(in);
  wasi_http_types_incoming_body_drop_own(body);
  wasi_http_types_incoming_response_drop_own(resp);
  // An upstream body that broke off must not turn into a complete 200.
  if (failed) nh_abort(&w);
  else nh_finish(&w);
}
