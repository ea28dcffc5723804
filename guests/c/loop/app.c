// Loops forever without responding: must be stopped by the CPU budget / timeout.
#include "nimbus_http.h"

volatile unsigned long counter;

void exports_wasi_http_incoming_handler_handle(nh_request_t request, nh_outparam_t out) {
  (void)request;
  (void)out;
  for (;;) counter++;
}
