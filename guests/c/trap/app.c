// Traps before responding: the gateway must answer 500 without internals.
#include "nimbus_http.h"

void exports_wasi_http_incoming_handler_handle(nh_request_t request, nh_outparam_t out) {
  (void)request;
  (void)out;
  __builtin_trap();
}
