// Backend-for-frontend: fetch users and orders at the same time and merge them into one JSON
// document, {"users": …, "orders": …}. An upstream failure becomes a 502 JSON error that says
// which upstream failed. The upstream URLs are the USERS_URL / ORDERS_URL env vars of the
// manifest ([function.env]).
//
// componentize-js has no `process.env`; env vars come from the standard WASI interface.
import { getEnvironment } from "wasi:cli/environment@0.2.10";

addEventListener("fetch", (event) => event.respondWith(handle()));

async function fetchJson(name, url) {
  if (!url) throw new Error(`${name}: ${name.toUpperCase()}_URL is not set`);
  let response;
  try {
    response = await fetch(url);
  } catch (e) {
    throw new Error(`${name}: ${e.message || e}`);
  }
  if (!response.ok) throw new Error(`${name}: upstream answered ${response.status}`);
  try {
    return await response.json();
  } catch (e) {
    throw new Error(`${name}: invalid JSON (${e.message || e})`);
  }
}

async function handle() {
  // Read per request: top-level code runs at build time (Wizer snapshot), not at deploy.
  const env = Object.fromEntries(getEnvironment());
  try {
    // Both requests are in flight at once: the response takes as long as the slower upstream.
    const [users, orders] = await Promise.all([
      fetchJson("users", env.USERS_URL),
      fetchJson("orders", env.ORDERS_URL),
    ]);
    return Response.json({ users, orders });
  } catch (e) {
    return Response.json({ error: String(e.message || e) }, { status: 502 });
  }
}
