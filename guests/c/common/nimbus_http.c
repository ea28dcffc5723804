#include <string.h>
#include "nimbus_http.h"

static void add_header(wasi_http_types_borrow_fields_t fields, const char *name, const char *value) {
  // Import arguments are only borrowed by the bindings: no copies needed.
  wasi_http_types_field_name_t n = {(uint8_t *)name, strlen(name)};
  wasi_http_types_field_value_t v = {(uint8_t *)value, strlen(value)};
  wasi_http_types_header_error_t err;
  wasi_http_types_method_fields_append(fields, &n, &v, &err);
}

nh_writer_t nh_start(nh_outparam_t out, uint16_t status, const char *content_type,
                     const char **names, const char **values, size_t n) {
  wasi_http_types_own_fields_t headers = wasi_http_types_constructor_fields();
  wasi_http_types_borrow_fields_t hb = wasi_http_types_borrow_fields(headers);
  if (content_type) add_header(hb, "content-type", content_type);
  for (size_t i = 0; i < n; i++) add_header(hb, names[i], values[i]);
  wasi_http_types_own_outgoing_response_t resp = wasi_http_types_constructor_outgoing_response(headers);
  wasi_http_types_borrow_outgoing_response_t rb = wasi_http_types_borrow_outgoing_response(resp);
  wasi_http_types_method_outgoing_response_set_status_code(rb, status);
  nh_writer_t w;
  wasi_http_types_method_outgoing_response_body(rb, &w.body);
  wasi_http_types_method_outgoing_body_write(wasi_http_types_borrow_outgoing_body(w.body), &w.stream);
  wasi_http_types_result_own_outgoing_response_error_code_t result;
  result.is_err = false;
  result.val.ok = resp;
  wasi_http_types_static_response_outparam_set(out, &result);
  return w;
}

int nh_write(nh_writer_t *w, const void *data, size_t len) {
  const uint8_t *p = data;
  while (len > 0) {
    size_t chunk = len > 4096 ? 4096 : len;
    http_guest_list_u8_t list = {(uint8_t *)p, chunk};
    wasi_io_streams_stream_error_t err;
    if (!wasi_io_streams_method_output_stream_blocking_write_and_flush(
            wasi_io_streams_borrow_output_stream(w->stream), &list, &err))
      return -1;
    p += chunk;
    len -= chunk;
  }
  return 0;
}

void nh_finish(nh_writer_t *w) {
  wasi_io_streams_output_stream_drop_own(w->stream);
  wasi_http_types_error_code_t err;
  wasi_http_types_static_outgoing_body_finish(w->body, NULL, &err);
}

void nh_abort(nh_writer_t *w) {
  // Dropping an outgoing-body without `finish` tells the host the body is incomplete, so the
  // response fails instead of ending as a silently truncated success.
  wasi_io_streams_output_stream_drop_own(w->stream);
  wasi_http_types_outgoing_body_drop_own(w->body);
}

void nh_respond(nh_outparam_t out, uint16_t status, const char *text) {
  nh_writer_t w = nh_start(out, status, "text/plain", NULL, NULL, 0);
  nh_write(&w, text, strlen(text));
  nh_finish(&w);
}

static int copy_out(const uint8_t *ptr, size_t len, char *buf, size_t cap) {
  if (cap == 0) return 0;
  size_t n = len < cap - 1 ? len : cap - 1;
  memcpy(buf, ptr, n);
  buf[n] = 0;
  return 1;
}

int nh_header(wasi_http_types_borrow_incoming_request_t req, const char *name, char *buf, size_t cap) {
  wasi_http_types_own_headers_t headers = wasi_http_types_method_incoming_request_headers(req);
  wasi_http_types_field_name_t n = {(uint8_t *)name, strlen(name)};
  http_guest_list_field_value_t values;
  wasi_http_types_method_fields_get(wasi_http_types_borrow_fields(headers), &n, &values);
  int found = 0;
  if (values.len > 0) found = copy_out(values.ptr[0].ptr, values.ptr[0].len, buf, cap);
  http_guest_list_field_value_free(&values);
  wasi_http_types_fields_drop_own(headers);
  return found;
}

int nh_path(wasi_http_types_borrow_incoming_request_t req, char *buf, size_t cap) {
  http_guest_string_t path;
  if (!wasi_http_types_method_incoming_request_path_with_query(req, &path)) return 0;
  int ok = copy_out(path.ptr, path.len, buf, cap);
  http_guest_string_free(&path);
  return ok;
}
