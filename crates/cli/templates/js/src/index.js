// An HTTP function: `event.request` is a standard Request; respond with a standard Response.
addEventListener("fetch", (event) => event.respondWith(handle(event.request)));

async function handle(request) {
  const url = new URL(request.url);
  return Response.json({
    message: "Hello from {{name}}!",
    method: request.method,
    path: url.pathname,
  });
}
