// Benchmark handler for queue events (exports nimbus:events/handler, world event-guest).
// The event's data is "<send time, Unix ns> <mode>": the sender's wall clock just before it
// sent the message. At the very start of the handler the guest reads the wall clock; with mode
// "record" it stores the difference (send → handler start, ns) in the key-value store `bench`
// under the event id; with "noop" it does nothing else (the trivial handler of the throughput
// run). Sender and host share the machine's clock.
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "event_guest.h"

static bool fail(event_guest_string_t *err, const char *message) {
  event_guest_string_dup(err, message);
  return false;
}

bool exports_nimbus_events_handler_handle(exports_nimbus_events_handler_event_t *event,
                                          event_guest_string_t *err) {
  wasi_clocks_wall_clock_datetime_t now;
  wasi_clocks_wall_clock_now(&now);
  uint64_t now_ns = now.seconds * 1000000000ull + now.nanoseconds;

  char data[64] = {0};
  if (event->data.is_some) {
    size_t n = event->data.val.len < sizeof data - 1 ? event->data.val.len : sizeof data - 1;
    memcpy(data, event->data.val.ptr, n);
  }
  char *mode = strchr(data, ' ');
  if (mode == NULL) {
    exports_nimbus_events_handler_event_free(event);
    return fail(err, "data must be \"<send ns> <mode>\"");
  }
  *mode++ = '\0';
  bool ok = true;
  if (strcmp(mode, "record") == 0) {
    uint64_t sent_ns = strtoull(data, NULL, 10);
    char value[32];
    int len = snprintf(value, sizeof value, "%lld", (long long)(now_ns - sent_ns));
    event_guest_string_t name;
    event_guest_string_set(&name, "bench");
    wasi_keyvalue_store_own_bucket_t own;
    wasi_keyvalue_store_error_t kv_err;
    if (!wasi_keyvalue_store_open(&name, &own, &kv_err)) {
      exports_nimbus_events_handler_event_free(event);
      return fail(err, "cannot open store `bench`");
    }
    event_guest_list_u8_t bytes = {(uint8_t *)value, (size_t)len};
    ok = wasi_keyvalue_store_method_bucket_set(wasi_keyvalue_store_borrow_bucket(own), &event->id,
                                               &bytes, &kv_err);
    wasi_keyvalue_store_bucket_drop_own(own);
  }
  exports_nimbus_events_handler_event_free(event);
  return ok ? true : fail(err, "set failed");
}
