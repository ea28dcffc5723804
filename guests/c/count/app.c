// Counts the calls this instance has served, in a global, and answers the count ("1\n" from
// every fresh instance); prints "call N" to stdout. Shows that an instance — even a
// pre-instantiated one (min_instances) — serves exactly one invocation.
#include <stdio.h>
#include "nimbus_http.h"

static int calls = 0;

void exports_wasi_http_incoming_handler_handle(nh_request_t request, nh_outparam_t out) {
  wasi_http_types_incoming_request_drop_own(request);
  calls += 1;
  printf("call %d\n", calls);
  fflush(stdout);
  char msg[32];
  snprintf(msg, sizeof msg, "%d\n", calls);
  nh_respond(out, 200, msg);
}
