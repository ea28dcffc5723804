// Backend-for-frontend: fetch users and orders at the same time, merge them into one JSON
// document. An upstream failure becomes a 502 that says which upstream failed.
import { getEnvironment } from "wasi:cli/environment@0.2.10";

addEventListener("fetch", (event) => event.respondWith(handle()));

async function fetchJson(name, url) {
  let response;
  try {
    response = await fetch(url);
  } catch (e) {
    throw new Error(`${name}: ${e.message || e}`);
  }
  if (!response.ok) throw new Error(`${name}: upstream answered ${response.status}`);
  return response.json();
}

async function handle() {
  // Read per request: top-level code runs at build time (Wizer snapshot), not at deploy.
  const env = Object.fromEntries(getEnvironment());
  const started = Date.now();
  try {
    const [users, orders] = await Promise.all([
      fetchJson("users", env.USERS_URL),
      fetchJson("orders", env.ORDERS_URL),
    ]);
    return Response.json({ users, orders, took_ms: Date.now() - started });
  } catch (e) {
    return Response.json({ error: String(e.message || e) }, { status: 502 });
  }
}
