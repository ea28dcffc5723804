// Waits x-sleep-ms milliseconds on a monotonic-clock pollable (not a busy loop), then answers.
#include <stdlib.h>
#include "nimbus_http.h"

void exports_wasi_http_incoming_handler_handle(nh_request_t request, nh_outparam_t out) {
  char value[32] = "0";
  nh_header(wasi_http_types_borrow_incoming_request(request), "x-sleep-ms", value, sizeof value);
  wasi_http_types_incoming_request_drop_own(request);
  unsigned long long ms = strtoull(value, NULL, 10);
  wasi_clocks_monotonic_clock_own_pollable_t p = wasi_clocks_monotonic_clock_subscribe_duration(ms * 1000000ULL);
  wasi_io_poll_method_pollable_block(wasi_io_poll_borrow_pollable(p));
  wasi_io_poll_pollable_drop_own(p);
  nh_respond(out, 200, "slept\n");
}
