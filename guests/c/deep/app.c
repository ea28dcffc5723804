// Recurses without bound (each frame pins 1 KiB of stack): must trap with a stack overflow,
// not take the host down.
#include <string.h>
#include "nimbus_http.h"

static volatile unsigned sink;

static unsigned recurse(unsigned depth) {
  volatile char frame[1024];
  memset((char *)frame, (int)depth, sizeof frame);
  sink += frame[depth % sizeof frame];
  return recurse(depth + 1) + frame[0];
}

void exports_wasi_http_incoming_handler_handle(nh_request_t request, nh_outparam_t out) {
  wasi_http_types_incoming_request_drop_own(request);
  unsigned n = recurse(0);
  nh_respond(out, 200, n ? "unreachable\n" : "unreachable!\n");
}
