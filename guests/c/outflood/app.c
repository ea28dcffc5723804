// Starts `x-count` GETs of the URL in `x-target` at once through wasi:http/outgoing-handler
// (default 100, at most 4,096), then waits for every one and answers 200 with a tally:
// `ok=<n>` followed by `<error-code>=<n>` for each failure kind, one per line. An attacker that
// floods outbound connections; the host's per-invocation limits decide the tally.
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "nimbus_http.h"

#define MAX_REQUESTS 4096
// Tags past the last error-code case count as "denied-at-handle" (the call itself failed).
#define CODES (WASI_HTTP_TYPES_ERROR_CODE_INTERNAL_ERROR + 2)

static const char *code_name(int tag) {
  switch (tag) {
    case WASI_HTTP_TYPES_ERROR_CODE_CONNECTION_REFUSED: return "connection-refused";
    case WASI_HTTP_TYPES_ERROR_CODE_CONNECTION_LIMIT_REACHED: return "connection-limit-reached";
    case WASI_HTTP_TYPES_ERROR_CODE_HTTP_REQUEST_DENIED: return "HTTP-request-denied";
    case WASI_HTTP_TYPES_ERROR_CODE_INTERNAL_ERROR + 1: return "handle-failed";
    default: return "other-error";
  }
}

static wasi_http_outgoing_handler_own_future_incoming_response_t futures[MAX_REQUESTS];
static int started[MAX_REQUESTS];

void exports_wasi_http_incoming_handler_handle(nh_request_t request, nh_outparam_t out) {
  wasi_http_types_borrow_incoming_request_t rb_in = wasi_http_types_borrow_incoming_request(request);
  char target[1024], count_s[16];
  int have_target = nh_header(rb_in, "x-target", target, sizeof target);
  int count = nh_header(rb_in, "x-count", count_s, sizeof count_s) ? atoi(count_s) : 100;
  wasi_http_types_incoming_request_drop_own(request);
  if (!have_target || strncmp(target, "http://", 7) != 0) {
    nh_respond(out, 400, "missing x-target header (http://host:port/path)\n");
    return;
  }
  if (count < 1 || count > MAX_REQUESTS) count = MAX_REQUESTS;
  const char *rest = target + 7;
  const char *slash = strchr(rest, '/');
  http_guest_string_t authority = {(uint8_t *)rest, slash ? (size_t)(slash - rest) : strlen(rest)};
  http_guest_string_t path = {(uint8_t *)(slash ? slash : "/"), strlen(slash ? slash : "/")};
  wasi_http_types_scheme_t scheme = {.tag = WASI_HTTP_TYPES_SCHEME_HTTP};

  int tally[CODES] = {0};
  int ok = 0;
  for (int i = 0; i < count; i++) {
    wasi_http_types_own_outgoing_request_t req =
        wasi_http_types_constructor_outgoing_request(wasi_http_types_constructor_fields());
    wasi_http_types_borrow_outgoing_request_t rb = wasi_http_types_borrow_outgoing_request(req);
    wasi_http_types_method_outgoing_request_set_scheme(rb, &scheme);
    wasi_http_types_method_outgoing_request_set_authority(rb, &authority);
    wasi_http_types_method_outgoing_request_set_path_with_query(rb, &path);
    wasi_http_outgoing_handler_error_code_t err;
    started[i] = wasi_http_outgoing_handler_handle(req, NULL, &futures[i], &err);
    if (!started[i]) tally[CODES - 1]++;
  }
  for (int i = 0; i < count; i++) {
    if (!started[i]) continue;
    wasi_http_types_borrow_future_incoming_response_t fb = wasi_http_types_borrow_future_incoming_response(futures[i]);
    wasi_http_types_result_result_own_incoming_response_error_code_void_t result;
    while (!wasi_http_types_method_future_incoming_response_get(fb, &result)) {
      wasi_http_types_own_pollable_t p = wasi_http_types_method_future_incoming_response_subscribe(fb);
      wasi_io_poll_method_pollable_block(wasi_io_poll_borrow_pollable(p));
      wasi_io_poll_pollable_drop_own(p);
    }
    wasi_http_types_future_incoming_response_drop_own(futures[i]);
    if (result.is_err) {
      tally[WASI_HTTP_TYPES_ERROR_CODE_INTERNAL_ERROR]++;
    } else if (result.val.ok.is_err) {
      int tag = result.val.ok.val.err.tag;
      tally[tag <= WASI_HTTP_TYPES_ERROR_CODE_INTERNAL_ERROR ? tag : WASI_HTTP_TYPES_ERROR_CODE_INTERNAL_ERROR]++;
    } else {
      ok++;
      // Dropping the response closes its connection.
      wasi_http_types_incoming_response_drop_own(result.val.ok.val.ok);
    }
  }
  char msg[1024];
  int n = snprintf(msg, sizeof msg, "ok=%d\n", ok);
  // Known kinds by name, the rest folded into other-error.
  int other = 0;
  for (int tag = 0; tag < CODES; tag++) {
    if (!tally[tag]) continue;
    const char *name = code_name(tag);
    if (strcmp(name, "other-error") == 0) {
      other += tally[tag];
    } else if (n < (int)sizeof msg) {
      n += snprintf(msg + n, sizeof msg - n, "%s=%d\n", name, tally[tag]);
    }
  }
  if (other && n < (int)sizeof msg) snprintf(msg + n, sizeof msg - n, "other-error=%d\n", other);
  nh_respond(out, 200, msg);
}
