// Reads GREETING from the environment and writes to stdout and stderr (log capture test).
#include <stdio.h>
#include <stdlib.h>
#include "nimbus_http.h"

void exports_wasi_http_incoming_handler_handle(nh_request_t request, nh_outparam_t out) {
  wasi_http_types_incoming_request_drop_own(request);
  const char *greeting = getenv("GREETING");
  if (!greeting) greeting = "";
  printf("stdout-line GREETING=%s\n", greeting);
  fflush(stdout);
  fprintf(stderr, "stderr-line\n");
  char msg[256];
  snprintf(msg, sizeof msg, "GREETING=%s\n", greeting);
  nh_respond(out, 200, msg);
}
