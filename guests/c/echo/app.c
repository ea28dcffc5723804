// Streams the request body back, with x-method and x-path headers.
#include <stdio.h>
#include "nimbus_http.h"

static const char *method_name(wasi_http_types_method_t *m) {
  static const char *names[] = {"GET", "HEAD", "POST", "PUT", "DELETE", "CONNECT", "OPTIONS", "TRACE", "PATCH"};
  return m->tag < 9 ? names[m->tag] : "OTHER";
}

void exports_wasi_http_incoming_handler_handle(nh_request_t request, nh_outparam_t out) {
  wasi_http_types_borrow_incoming_request_t req = wasi_http_types_borrow_incoming_request(request);
  char path[2048] = "";
  nh_path(req, path, sizeof path);
  wasi_http_types_method_t method;
  wasi_http_types_method_incoming_request_method(req, &method);
  const char *names[] = {"x-method", "x-path"};
  const char *values[] = {method_name(&method), path};

  wasi_http_types_own_incoming_body_t body;
  if (!wasi_http_types_method_incoming_request_consume(req, &body)) {
    nh_respond(out, 500, "no body\n");
    return;
  }
  wasi_http_types_own_input_stream_t in;
  wasi_http_types_method_incoming_body_stream(wasi_http_types_borrow_incoming_body(body), &in);

  // Read the first chunk before answering, so a body-limit error can still become a status.
  http_guest_list_u8_t chunk;
  wasi_io_streams_stream_error_t err;
  int have = wasi_io_streams_method_input_stream_blocking_read(
      wasi_io_streams_borrow_input_stream(in), 65536, &chunk, &err);
  if (!have && err.tag == WASI_IO_STREAMS_STREAM_ERROR_LAST_OPERATION_FAILED) {
    nh_respond(out, 400, "body read failed\n");
    return;
  }
  nh_writer_t w = nh_start(out, 200, "application/octet-stream", names, values, 2);
  while (have) {
    nh_write(&w, chunk.ptr, chunk.len);
    http_guest_list_u8_free(&chunk);
    have = wasi_io_streams_method_input_stream_blocking_read(
        wasi_io_streams_borrow_input_stream(in), 65536, &chunk, &err);
  }
  wasi_io_streams_input_stream_drop_own(in);
  wasi_http_types_incoming_body_drop_own(body);
  nh_finish(&w);
}
