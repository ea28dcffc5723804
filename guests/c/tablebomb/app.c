// Grows a funcref table of its own, 4,096 elements at a time, until `table.grow` fails (returns
// -1), then answers 200 `table grew to <N> elements\n`. A host without a table limit would let it
// grow to the pooling slot's size or, on the on-demand allocator, until memory runs out.
//
// C has no table type, so the table and the instruction come from inline assembly; the
// target attribute enables reference-types for that one function only (the rest of the
// guest stays MVP + the usual features, and build.sh needs no extra flags).
#include <stdio.h>
#include "nimbus_http.h"

__asm__(".tabletype nimbus_bomb_table, funcref\nnimbus_bomb_table:\n");

__attribute__((target("reference-types"))) static int table_grow(int delta) {
  int previous;
  __asm__ volatile("ref.null_func\n\tlocal.get %1\n\ttable.grow nimbus_bomb_table\n\tlocal.set %0"
                   : "=r"(previous)
                   : "r"(delta));
  return previous;
}

void exports_wasi_http_incoming_handler_handle(nh_request_t request, nh_outparam_t out) {
  wasi_http_types_incoming_request_drop_own(request);
  long size = 0;
  for (;;) {
    int previous = table_grow(4096);
    if (previous < 0) break;
    size = (long)previous + 4096;
  }
  char msg[64];
  snprintf(msg, sizeof msg, "table grew to %ld elements\n", size);
  nh_respond(out, 200, msg);
}
