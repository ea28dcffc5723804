// A cron job (exports nimbus:events/handler): each tick is a CloudEvent of type
// "dev.nimbus.cron.tick" whose `time` is the scheduled time and whose id is the same for the
// same tick, so a report is written once per tick even if a run is repeated.
import { open } from "wasi:keyvalue/store@0.2.0-draft2";
import { increment } from "wasi:keyvalue/atomics@0.2.0-draft2";

const bytes = new TextEncoder();

export const handler = {
  handle(event) {
    const store = open("orders");
    let orders = 0;
    let cursor = undefined;
    do {
      const page = store.listKeys(cursor);
      orders += page.keys.filter((k) => k.startsWith("order:")).length;
      cursor = page.cursor;
    } while (cursor !== undefined && cursor !== null);
    const extensions = Object.fromEntries(event.extensions);
    const report = {
      tick: event.time,
      id: event.id,
      catchUp: extensions.catchup === "true",
      ranAt: new Date().toISOString(),
      orders,
    };
    const json = bytes.encode(JSON.stringify(report));
    store.set(`report:${event.time}`, json);
    store.set("report:latest", json);
    increment(store, "count:reports", 1n);
  },
};
