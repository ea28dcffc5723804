// Does x-work-k thousand rounds of an integer hash (default 1000), then answers 200 with the
// result: a fixed amount of CPU work per request, however loaded the machine is (unlike
// `burn`, which loops until a wall-clock time has passed).
#include <stdio.h>
#include <stdlib.h>
#include "nimbus_http.h"

void exports_wasi_http_incoming_handler_handle(nh_request_t request, nh_outparam_t out) {
  char value[32] = "1000";
  nh_header(wasi_http_types_borrow_incoming_request(request), "x-work-k", value, sizeof value);
  wasi_http_types_incoming_request_drop_own(request);
  unsigned long long rounds = strtoull(value, NULL, 10) * 1000ULL;
  unsigned long long h = 1469598103934665603ULL;
  for (unsigned long long i = 0; i < rounds; i++) {
    h = (h ^ (i & 0xff)) * 1099511628211ULL;
  }
  char body[40];
  snprintf(body, sizeof body, "%llx\n", h);
  nh_respond(out, 200, body);
}
