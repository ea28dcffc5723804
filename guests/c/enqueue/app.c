// Sends one message, "1 record", to the app's queue `jobs` through nimbus:queue/sender and
// answers 200 with the message id (500 with the error's case otherwise). World nimbus-guest;
// needs queues = ["jobs"].
#include <stdio.h>
#include <string.h>
#include "nimbus_http.h"

void exports_wasi_http_incoming_handler_handle(nh_request_t request, nh_outparam_t out) {
  wasi_http_types_incoming_request_drop_own(request);
  static const char body[] = "1 record";
  nimbus_guest_string_t queue = {(uint8_t *)"jobs", 4};
  nimbus_queue_sender_message_t message = {
      .body = {(uint8_t *)body, sizeof body - 1},
      .content_type = {.is_some = false},
      .delay_ms = {.is_some = false},
  };
  nimbus_guest_string_t id;
  nimbus_queue_sender_error_t err;
  if (!nimbus_queue_sender_send(&queue, &message, &id, &err)) {
    char msg[64];
    snprintf(msg, sizeof msg, "send failed: error case %d\n", (int)err.tag);
    nh_respond(out, 500, msg);
    return;
  }
  char text[128];
  size_t n = id.len < sizeof text - 2 ? id.len : sizeof text - 2;
  memcpy(text, id.ptr, n);
  text[n] = '\n';
  text[n + 1] = 0;
  nimbus_guest_string_free(&id);
  nh_respond(out, 200, text);
}
