// Answers 200 and then streams 64 KiB chunks forever: must be cut off by the function's
// max_response_bytes (or its timeout), without buffering on the way.
#include <string.h>
#include "nimbus_http.h"

static char chunk[65536];

void exports_wasi_http_incoming_handler_handle(nh_request_t request, nh_outparam_t out) {
  wasi_http_types_incoming_request_drop_own(request);
  memset(chunk, 'x', sizeof chunk);
  nh_writer_t w = nh_start(out, 200, "application/octet-stream", NULL, NULL, 0);
  while (nh_write(&w, chunk, sizeof chunk) == 0) {
  }
  nh_abort(&w);
}
