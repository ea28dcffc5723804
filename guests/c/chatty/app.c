// Prints 4 MiB to stdout (40,000 lines of 100 bytes, plus a marker line first), then answers
// 200 `printed\n`. A function that floods its log: the platform keeps a capped part.
#include <stdio.h>
#include <string.h>
#include "nimbus_http.h"

void exports_wasi_http_incoming_handler_handle(nh_request_t request, nh_outparam_t out) {
  wasi_http_types_incoming_request_drop_own(request);
  char line[101];
  memset(line, 'x', 99);
  line[99] = '\n';
  line[100] = 0;
  printf("chatty-start\n");
  for (int i = 0; i < 40000; i++) fputs(line, stdout);
  fflush(stdout);
  nh_respond(out, 200, "printed\n");
}
