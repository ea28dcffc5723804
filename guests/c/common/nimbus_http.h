// Small helpers over the wit-bindgen C bindings of wasi:http, shared by the C test guests.
#ifndef NIMBUS_HTTP_H
#define NIMBUS_HTTP_H

#include <stddef.h>
#include <stdint.h>
#ifdef NIMBUS_GUEST_WORLD
// Built for the nimbus-guest world (build.sh's third argument): same interfaces plus the
// platform services; only the world-prefixed names differ.
#include "nimbus_guest.h"
#define http_guest_list_field_value_free nimbus_guest_list_field_value_free
#define http_guest_list_field_value_t nimbus_guest_list_field_value_t
#define http_guest_list_u8_t nimbus_guest_list_u8_t
#define http_guest_string_free nimbus_guest_string_free
#define http_guest_string_t nimbus_guest_string_t
#else
#include "http_guest.h"
#endif

typedef exports_wasi_http_incoming_handler_own_incoming_request_t nh_request_t;
typedef exports_wasi_http_incoming_handler_own_response_outparam_t nh_outparam_t;

// A response in progress: headers sent, body stream open.
typedef struct {
  wasi_http_types_own_outgoing_body_t body;
  wasi_io_streams_own_output_stream_t stream;
} nh_writer_t;

// Starts a response: status, optional content type, up to `n` extra headers.
nh_writer_t nh_start(nh_outparam_t out, uint16_t status, const char *content_type,
                     const char **names, const char **values, size_t n);
// Writes bytes to the response body (split into chunks the host accepts).
int nh_write(nh_writer_t *w, const void *data, size_t len);
// Finishes the response body.
void nh_finish(nh_writer_t *w);
// Abandons the response body: the host fails the response rather than completing it.
void nh_abort(nh_writer_t *w);
// A whole small response in one call.
void nh_respond(nh_outparam_t out, uint16_t status, const char *text);

// Copies the first value of request header `name` (lower-case) into buf (NUL-terminated); 0 if absent.
int nh_header(wasi_http_types_borrow_incoming_request_t req, const char *name, char *buf, size_t cap);
// Copies the request path-with-query into buf; 0 if absent.
int nh_path(wasi_http_types_borrow_incoming_request_t req, char *buf, size_t cap);

#endif
