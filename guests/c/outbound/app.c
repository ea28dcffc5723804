// GETs the URL in the x-target header through wasi:http/outgoing-handler and returns the
// upstream body, or 502 naming the error code (e.g. HTTP-request-denied).
#include <stdio.h>
#include <string.h>
#include "nimbus_http.h"

static const char *code_name(uint8_t tag) {
  switch (tag) {
    case WASI_HTTP_TYPES_ERROR_CODE_HTTP_REQUEST_DENIED: return "HTTP-request-denied";
    default: return "other";
  }
}

static void fail(nh_outparam_t out, const char *what, int tag) {
  char msg[128];
  snprintf(msg, sizeof msg, "outbound error: %s (%d)\n", what, tag);
  nh_respond(out, 502, msg);
}

void exports_wasi_http_incoming_handler_handle(nh_request_t request, nh_outparam_t out) {
  char target[1024] = "";
  nh_header(wasi_http_types_borrow_incoming_request(request), "x-target", target, sizeof target);
  wasi_http_types_incoming_request_drop_own(request);

  // Split http://authority/path.
  const char *rest = target;
  wasi_http_types_scheme_t scheme = {WASI_HTTP_TYPES_SCHEME_HTTP};
  if (strncmp(rest, "http://", 7) == 0) rest += 7;
  else if (strncmp(rest, "https://", 8) == 0) { rest += 8; scheme.tag = WASI_HTTP_TYPES_SCHEME_HTTPS; }
  const char *slash = strchr(rest, '/');
  http_guest_string_t authority, path;
  http_guest_string_dup_n(&authority, rest, slash ? (size_t)(slash - rest) : strlen(rest));
  http_guest_string_dup(&path, slash ? slash : "/");

  wasi_http_types_own_outgoing_request_t req = wasi_http_types_constructor_outgoing_request(wasi_http_types_constructor_fields());
  wasi_http_types_borrow_outgoing_request_t rb = wasi_http_types_borrow_outgoing_request(req);
  wasi_http_types_method_outgoing_request_set_scheme(rb, &scheme);
  wasi_http_types_method_outgoing_request_set_authority(rb, &authority);
  wasi_http_types_method_outgoing_request_set_path_with_query(rb, &path);

  wasi_http_outgoing_handler_own_future_incoming_response_t future;
  wasi_http_outgoing_handler_error_code_t err;
  if (!wasi_http_outgoing_handler_handle(req, NULL, &future, &err)) {
    fail(out, code_name(err.tag), err.tag);
    return;
  }
  wasi_http_types_borrow_future_incoming_response_t fb = wasi_http_types_borrow_future_incoming_response(future);
  wasi_http_types_result_result_own_incoming_response_error_code_void_t result;
  while (!wasi_http_types_method_future_incoming_response_get(fb, &result)) {
    wasi_http_types_own_pollable_t p = wasi_http_types_method_future_incoming_response_subscribe(fb);
    wasi_io_poll_method_pollable_block(wasi_io_poll_borrow_pollable(p));
    wasi_io_poll_pollable_drop_own(p);
  }
  if (result.is_err) { fail(out, "future consumed", -1); return; }
  if (result.val.ok.is_err) {
    fail(out, code_name(result.val.ok.val.err.tag), result.val.ok.val.err.tag);
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
  while (wasi_io_streams_method_input_stream_blocking_read(wasi_io_streams_borrow_input_stream(in), 65536, &chunk, &serr)) {
    nh_write(&w, chunk.ptr, chunk.len);
    http_guest_list_u8_free(&chunk);
  }
  wasi_io_streams_input_stream_drop_own(in);
  wasi_http_types_incoming_body_drop_own(body);
  nh_finish(&w);
}
