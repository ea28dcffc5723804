// The front door of the queue worker: POST /orders with {"order": ..., "amount": ...} queues the
// order and answers 202 at once with the message id; the worker handles it later, with retries.
// Sending needs `queues = ["orders"]` on this function (nimbus:queue/sender).
import { send } from "nimbus:queue/sender@0.1.0";

addEventListener("fetch", (event) => event.respondWith(handle(event.request)));

function json(status, body) {
  return new Response(JSON.stringify(body) + "\n", {
    status,
    headers: { "content-type": "application/json" },
  });
}

async function handle(request) {
  if (request.method !== "POST") {
    return json(405, { error: "POST an order" });
  }
  const text = await request.text();
  let order;
  try {
    order = JSON.parse(text);
  } catch (e) {
    return json(400, { error: `not JSON: ${e}` });
  }
  if (typeof order.order !== "string") {
    return json(400, { error: 'expected {"order": string, "amount": number}' });
  }
  try {
    const id = send("orders", {
      body: new TextEncoder().encode(text),
      contentType: "application/json",
      delayMs: undefined,
    });
    return json(202, { queued: order.order, message: id });
  } catch (e) {
    // nimbus:queue errors arrive as exceptions whose payload is the WIT variant.
    const tag = e && e.payload && e.payload.tag;
    return json(tag === "full" ? 429 : 500, { error: tag || String(e) });
  }
}
