// Processes one order per event (exports nimbus:events/handler). The event is a CloudEvent; a
// message sent to the queue arrives as type "dev.nimbus.queue.message" with the body as data.
//
// An order is recorded in the key-value store `orders` under "order:<id>", and the counter
// "count:processed" goes up by one per processed event. Throwing fails the attempt: the
// platform retries it with backoff and dead-letters it after max_attempts.
import { open } from "wasi:keyvalue/store@0.2.0-draft2";
import { increment } from "wasi:keyvalue/atomics@0.2.0-draft2";

const text = new TextDecoder();
const bytes = new TextEncoder();

export const handler = {
  handle(event) {
    const store = open("orders");
    let order;
    try {
      order = JSON.parse(text.decode(event.data ?? new Uint8Array()));
    } catch (e) {
      throw `not JSON: ${e}`;
    }
    if (typeof order.order !== "string" || typeof order.amount !== "number") {
      throw 'expected {"order": string, "amount": number}';
    }
    const allowNegative = store.get("settings:allow-negative");
    if (order.amount < 0 && !(allowNegative && text.decode(allowNegative) === "1")) {
      throw `order ${order.order}: negative amount ${order.amount}`;
    }
    const attempt = Object.fromEntries(event.extensions).attempt;
    const record = { ...order, event: event.id, attempt: Number(attempt), at: event.time };
    store.set(`order:${order.order}`, bytes.encode(JSON.stringify(record)));
    increment(store, "count:processed", 1n);
  },
};
