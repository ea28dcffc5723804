// Server-side rendering: the product list is rendered to HTML on every request. User input
// (the path and ?name=) is HTML-escaped before it goes into the page.
const products = [
  { name: "Cumulus umbrella", price: 24.5 },
  { name: "Stratus raincoat", price: 89.0 },
  { name: "Nimbus boots", price: 120.0 },
];

const escape = (s) =>
  String(s).replace(/[&<>"']/g, (c) => ({ "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" })[c]);

addEventListener("fetch", (event) => event.respondWith(render(event.request)));

function render(request) {
  const url = new URL(request.url);
  const visitor = url.searchParams.get("name") || "visitor";
  const rows = products
    .map((p) => `<li><span class="name">${escape(p.name)}</span> <span class="price">$${p.price.toFixed(2)}</span></li>`)
    .join("\n      ");
  const html = `<!doctype html>
<html lang="en">
  <head><meta charset="utf-8"><title>Nimbus shop</title></head>
  <body>
    <h1>Welcome, ${escape(visitor)}</h1>
    <p>You are at <code>${escape(url.pathname)}</code>.</p>
    <ul>
      ${rows}
    </ul>
  </body>
</html>
`;
  return new Response(html, { headers: { "content-type": "text/html; charset=utf-8" } });
}
