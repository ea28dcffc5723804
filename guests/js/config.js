// Test guest: answers with what wasi:config gives it, as JSON.
//   GET …/config        {"all": {...get-all...}}
//   GET …/config/<key>  {"key": ..., "value": ... or null}
import { get, getAll } from "wasi:config/store@0.2.0-rc.1";

addEventListener("fetch", (event) => event.respondWith(handle(event.request)));

async function handle(request) {
  const path = new URL(request.url).pathname;
  const match = path.match(/\/config\/?(.*)$/);
  const key = match ? decodeURIComponent(match[1]) : "";
  const body = key ? { key, value: get(key) ?? null } : { all: Object.fromEntries(getAll()) };
  return new Response(JSON.stringify(body), { headers: { "content-type": "application/json" } });
}
