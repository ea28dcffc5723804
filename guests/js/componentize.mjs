// Builds a JavaScript `addEventListener("fetch", ...)` handler into a component exporting
// wasi:http/incoming-handler@0.2.10 with componentize-js 0.23 (StarlingMonkey), against
// guests/wit-0.2.10 (world nimbus:guest/http-guest = wasi:http/proxy@0.2.10 + wasi:cli/environment).
//   node guests/js/componentize.mjs <src.js> <out.wasm> [world]
// world: `http-guest` (default; plain wasi:http/proxy, runs on any host) or `nimbus-guest`
// (plus wasi:keyvalue — see guests/wit-0.2.10/world.wit).
// Run `npm ci` in guests/js (or scripts/setup-toolchains.sh) first.
//
// The source may import relative modules and the world's WIT interfaces, e.g.
//   import { getEnvironment } from "wasi:cli/environment@0.2.10";  // env vars (no process.env)
// Top-level code runs once at build time (Wizer snapshot): read env vars inside the handler.
import { componentize } from "@bytecodealliance/componentize-js";
import { mkdir, rename, writeFile } from "node:fs/promises";
import { dirname, resolve } from "node:path";
import { fileURLToPath } from "node:url";

const [source, out, world = "http-guest"] = process.argv.slice(2);
if (!source || !out) {
  console.error("usage: node componentize.mjs <src.js> <out.wasm> [world]");
  process.exit(2);
}
const here = dirname(fileURLToPath(import.meta.url));
const started = Date.now();
const { component } = await componentize({
  sourcePath: resolve(source),
  witPath: resolve(here, "../wit-0.2.10"),
  worldName: world,
});
await mkdir(dirname(resolve(out)), { recursive: true });
await writeFile(`${out}.tmp`, component);
await rename(`${out}.tmp`, out);
console.error(`componentized ${source} -> ${out} (${component.byteLength} bytes, ${Date.now() - started} ms)`);
