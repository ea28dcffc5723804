// A JavaScript function: greets whoever is named in the path (/hello/<name>), with the greeting
// from the GREETING env var if the manifest sets one ([function.env]).
//
// componentize-js has no `process.env`: env vars come from the standard WASI interface, imported
// like a module. Read them per request — top-level code runs once at build time (Wizer snapshot).
import { getEnvironment } from "wasi:cli/environment@0.2.10";

addEventListener("fetch", (event) => event.respondWith(handle(event.request)));

async function handle(request) {
  const env = Object.fromEntries(getEnvironment());
  const url = new URL(request.url);
  const raw = url.pathname.replace(/^\/hello\/?/, "");
  let name;
  try {
    name = decodeURIComponent(raw) || "world";
  } catch {
    name = raw; // malformed %-escape: greet it as written
  }
  const greeting = env.GREETING || "Hello";
  return new Response(`${greeting}, ${name}! (from a JavaScript function on Nimbus)\n`, {
    headers: { "content-type": "text/plain; charset=utf-8" },
  });
}
