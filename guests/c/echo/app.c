// Streams the request body back in 64 KiB reads (any size), with x-method and x-path headers,
// and x-traceparent: the request's traceparent header as the function saw it, if any.
#include <string.h>
#include "nimbus_http.h"

static const char *method_name(wasi_http_types_method_t *m, char *buf, size_t cap) {
  static const char *names[] = {"GET", "HEAD", "POST", "PUT", "DELETE", "CONNECT", "OPTIONS", "TRACE", "PATCH"};
  if (m->tag < 9) return names[m->tag];
  size_t n = m->val.other.len < cap - 1 ? m->val.other.len : cap - 1;  // method `other(string)`
  memcpy(buf, m->val.other.ptr, n);
  buf[n] = 0;
  return buf;
}

void exports_wasi_http_incoming_handler_handle(nh_request_t request, nh_outparam_t out) {
  wasi_http_types_borrow_incoming_request_t req = wasi_http_types_borrow_incoming_request(request);
  char path[2048] = "";
  nh_path(req, path, sizeof path);
  wasi_http_types_method_t method;
  wasi_http_types_method_incoming_request_method(req, &method);
  char other[64];
  char traceparent[128];
  int traced = nh_header(req, "traceparent", traceparent, sizeof traceparent);
  const char *names[] = {"x-method", "x-path", "x-traceparent"};
  const char *values[] = {method_name(&method, other, sizeof other), path, traceparent};

  wasi_http_types_own_incoming_body_t body;
  if (!wasi_http_types_method_incoming_request_consume(req, &body)) {
    nh_respond(out, 500, "no body\n");
    return;
  }
  wasi_http_types_own_input_stream_t in;
  wasi_http_types_method_incoming_body_stream(wasi_http_types_borrow_incoming_body(body), &in);
  wasi_io_streams_borrow_input_stream_t inb = wasi_io_streams_borrow_input_stream(in);

  // Read the first chunk before answering, so a body-limit error can still become a status.
  http_guest_list_u8_t chunk;
  wasi_io_streams_stream_error_t err;
  bool have = wasi_io_streams_method_input_stream_blocking_read(inb, 65536, &chunk, &err);
  if (!have && err.tag == WASI_IO_STREAMS_STREAM_ERROR_LAST_OPERATION_FAILED) {
    nh_respond(out, 400, "body read failed\n");
    return;
  }
  nh_writer_t w = nh_start(out, 200, "application/octet-stream", names, values, traced ? 3 : 2);
  while (have) {
    int ok = nh_write(&w, chunk.ptr, chunk.len);
    http_guest_list_u8_free(&chunk);
    if (ok != 0) {  // the client went away
      nh_abort(&w);
      return;
    }
    have = wasi_io_streams_method_input_stream_blocking_read(inb, 65536, &chunk, &err);
  }
  wasi_io_streams_input_stream_drop_own(in);
  wasi_http_types_incoming_body_drop_own(body);
  if (err.tag == WASI_IO_STREAMS_STREAM_ERROR_LAST_OPERATION_FAILED) {
    // The request body failed mid-stream (e.g. over the body limit): fail the response too.
    nh_abort(&w);
    return;
  }
  nh_finish(&w);
}
