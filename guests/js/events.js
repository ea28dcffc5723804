// Test guest for the event-guest world: records every event it is given in the key-value store
// `events` (key = event id) and fails or spins on request.
//   type "test.fail" → err("asked to fail");  type "test.spin" → never returns
import { open } from "wasi:keyvalue/store@0.2.0-draft2";

export const handler = {
  handle(event) {
    if (event.type === "test.fail") {
      throw "asked to fail";
    }
    if (event.type === "test.spin") {
      for (;;) {}
    }
    const record = {
      lang: "js",
      source: event.source,
      type: event.type,
      subject: event.subject ?? null,
      time: event.time ?? null,
      datacontenttype: event.datacontenttype ?? null,
      data: event.data ? new TextDecoder().decode(event.data) : null,
      extensions: Object.fromEntries(event.extensions),
    };
    open("events").set(event.id, new TextEncoder().encode(JSON.stringify(record)));
  },
};
