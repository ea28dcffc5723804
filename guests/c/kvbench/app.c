// Times wasi:keyvalue calls from inside a function, one by one, with the monotonic clock:
//   GET /kvbench?op=get|set|increment&n=N&size=BYTES
// answers {"op","n","size","p50_ns","p99_ns","mean_ns","min_ns","max_ns"}. Each sample is one
// host call as the guest sees it (canonical ABI both ways + the backend), so it is an upper
// bound on the host-side time. Needs key_value_stores = ["bench"].
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "nimbus_http.h"

#define MAX_N 100000

static int cmp_u64(const void *a, const void *b) {
  uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
  return x < y ? -1 : x > y;
}

static long param(const char *path, const char *name, long fallback) {
  char key[32];
  snprintf(key, sizeof key, "%s=", name);
  const char *at = strstr(path, key);
  return at ? atol(at + strlen(key)) : fallback;
}

static uint64_t samples[MAX_N];

void exports_wasi_http_incoming_handler_handle(nh_request_t request, nh_outparam_t out) {
  char path[512];
  nh_path(wasi_http_types_borrow_incoming_request(request), path, sizeof path);
  wasi_http_types_incoming_request_drop_own(request);
  long n = param(path, "n", 1000), size = param(path, "size", 100);
  if (n < 1 || n > MAX_N || size < 0 || size > (1 << 20)) {
    nh_respond(out, 400, "n must be 1..100000, size 0..1048576\n");
    return;
  }
  const char *op = strstr(path, "op=set") ? "set" : strstr(path, "op=increment") ? "increment" : "get";

  nimbus_guest_string_t name = {(uint8_t *)"bench", 5};
  wasi_keyvalue_store_own_bucket_t own;
  wasi_keyvalue_store_error_t err;
  if (!wasi_keyvalue_store_open(&name, &own, &err)) {
    nh_respond(out, 500, "cannot open store `bench`\n");
    return;
  }
  wasi_keyvalue_store_borrow_bucket_t bucket = wasi_keyvalue_store_borrow_bucket(own);
  nimbus_guest_string_t key = {(uint8_t *)"bench-key", 9};
  nimbus_guest_string_t counter = {(uint8_t *)"bench-counter", 13};
  uint8_t *bytes = malloc(size ? size : 1);
  memset(bytes, 'x', size);
  nimbus_guest_list_u8_t value = {bytes, (size_t)size};
  if (!wasi_keyvalue_store_method_bucket_set(bucket, &key, &value, &err)) {
    nh_respond(out, 500, "set failed\n");
    return;
  }

  for (long i = 0; i < n; i++) {
    uint64_t t0 = wasi_clocks_monotonic_clock_now();
    bool ok;
    if (op[0] == 'g') {
      nimbus_guest_option_list_u8_t got;
      ok = wasi_keyvalue_store_method_bucket_get(bucket, &key, &got, &err);
      if (ok) nimbus_guest_option_list_u8_free(&got);
    } else if (op[0] == 's') {
      ok = wasi_keyvalue_store_method_bucket_set(bucket, &key, &value, &err);
    } else {
      int64_t now;
      ok = wasi_keyvalue_atomics_increment(bucket, &counter, 1, &now, &err);
    }
    samples[i] = wasi_clocks_monotonic_clock_now() - t0;
    if (!ok) {
      nh_respond(out, 500, "key-value call failed\n");
      return;
    }
  }
  free(bytes);
  wasi_keyvalue_store_bucket_drop_own(own);

  uint64_t total = 0;
  for (long i = 0; i < n; i++) total += samples[i];
  qsort(samples, n, sizeof samples[0], cmp_u64);
  char body[256];
  snprintf(body, sizeof body,
           "{\"op\":\"%s\",\"n\":%ld,\"size\":%ld,\"p50_ns\":%llu,\"p99_ns\":%llu,\"mean_ns\":%llu,"
           "\"min_ns\":%llu,\"max_ns\":%llu}\n",
           op, n, size, (unsigned long long)samples[n / 2], (unsigned long long)samples[(n * 99) / 100],
           (unsigned long long)(total / n), (unsigned long long)samples[0],
           (unsigned long long)samples[n - 1]);
  nh_respond(out, 200, body);
}
