// The minimal hello component: measures the platform's own per-request overhead.
#include "nimbus_http.h"

void exports_wasi_http_incoming_handler_handle(nh_request_t request, nh_outparam_t out) {
  wasi_http_types_incoming_request_drop_own(request);
  nh_respond(out, 200, "hello from nimbus\n");
}
