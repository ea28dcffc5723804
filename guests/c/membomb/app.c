// Allocates and touches 1 MiB chunks until malloc fails, then reports how far it got. (If the
// host traps on a failed memory.grow instead, the request ends in a trap: also acceptable.)
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "nimbus_http.h"

// Chunks are linked into a list reachable from a global, so the compiler cannot elide the
// allocations (an unused malloc may legally be removed, and then the loop never ends).
void *volatile head;

void exports_wasi_http_incoming_handler_handle(nh_request_t request, nh_outparam_t out) {
  wasi_http_types_incoming_request_drop_own(request);
  unsigned long mib = 0;
  for (;;) {
    char *p = malloc(1 << 20);
    if (!p) break;
    memset(p, 1, 1 << 20);
    *(void **)p = head;
    head = p;
    mib++;
  }
  // Give the memory back to malloc (linear memory stays grown), so that answering — which
  // allocates a little — cannot run out.
  while (head) {
    void *next = *(void **)head;
    free(head);
    head = next;
  }
  char msg[64];
  snprintf(msg, sizeof msg, "allocated %lu MiB\n", mib);
  nh_respond(out, 200, msg);
}
