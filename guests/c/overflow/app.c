// Recurses without bound on wasm's own call stack, with no locals in linear memory (unlike
// `deep`, whose 1 KiB frames run out of the 64 KiB shadow stack first): what must stop it is
// the engine's native stack limit (`max_wasm_stack`), as a stack-overflow trap, without taking
// the host thread down.
#include "nimbus_http.h"

static unsigned recurse(unsigned depth);

// Called through a volatile pointer so that the compiler can neither see the recursion nor
// turn it into a loop.
static unsigned (*volatile next)(unsigned) = recurse;

static unsigned recurse(unsigned depth) {
  return next(depth + 1) * 3 + depth;
}

void exports_wasi_http_incoming_handler_handle(nh_request_t request, nh_outparam_t out) {
  wasi_http_types_incoming_request_drop_own(request);
  unsigned n = recurse(0);
  nh_respond(out, 200, n ? "unreachable\n" : "unreachable!\n");
}
