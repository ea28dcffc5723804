// A JavaScript function: greets whoever is named in the path (/hello/<name>).
addEventListener("fetch", (event) => event.respondWith(handle(event.request)));

async function handle(request) {
  const url = new URL(request.url);
  const name = decodeURIComponent(url.pathname.replace(/^\/hello\/?/, "")) || "world";
  return new Response(`Hello, ${name}! (from a JavaScript function on Nimbus)\n`, {
    headers: { "content-type": "text/plain; charset=utf-8" },
  });
}
