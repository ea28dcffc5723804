// Burns x-burn-us microseconds of CPU (default 2000) in a busy loop on the monotonic clock,
// then answers 200: a short CPU-heavy request, one that ends before its first epoch tick.
#include <stdlib.h>
#include "nimbus_http.h"

volatile unsigned long counter;

void exports_wasi_http_incoming_handler_handle(nh_request_t request, nh_outparam_t out) {
  char value[32] = "2000";
  nh_header(wasi_http_types_borrow_incoming_request(request), "x-burn-us", value, sizeof value);
  wasi_http_types_incoming_request_drop_own(request);
  unsigned long long ns = strtoull(value, NULL, 10) * 1000ULL;
  wasi_clocks_monotonic_clock_instant_t start = wasi_clocks_monotonic_clock_now();
  while (wasi_clocks_monotonic_clock_now() - start < ns) {
    for (int i = 0; i < 1000; i++) counter++;
  }
  nh_respond(out, 200, "burned\n");
}
