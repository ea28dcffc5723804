// The JS hello world used by tests and benchmarks.
addEventListener("fetch", (event) => {
  event.respondWith(
    new Response("hello from nimbus js\n", {
      headers: { "content-type": "text/plain" },
    }),
  );
});
