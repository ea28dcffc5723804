// Builds a JavaScript `addEventListener("fetch", ...)` handler into a wasi:http/proxy
// component with componentize-js (StarlingMonkey).
//   node build.mjs <src.js> <out.wasm>
import { componentize } from "@bytecodealliance/componentize-js";
import { mkdir, writeFile } from "node:fs/promises";
import { dirname, resolve } from "node:path";
import { fileURLToPath } from "node:url";

const [source, out] = process.argv.slice(2);
if (!source || !out) {
  console.error("usage: node build.mjs <src.js> <out.wasm>");
  process.exit(2);
}
const here = dirname(fileURLToPath(import.meta.url));
const started = Date.now();
const { component } = await componentize({
  sourcePath: resolve(source),
  witPath: resolve(here, "wit"),
  worldName: "http-guest",
});
await mkdir(dirname(resolve(out)), { recursive: true });
await writeFile(out, component);
console.error(`componentized ${source} -> ${out} (${component.byteLength} bytes, ${Date.now() - started} ms)`);
