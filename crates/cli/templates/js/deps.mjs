// Makes this app's npm dependencies available in node_modules without installing them per app:
// every app with the same dependencies shares one install in Nimbus's cache
// (${XDG_CACHE_HOME:-~/.cache}/nimbus/npm/<hash of the dependencies>; NIMBUS_NPM_CACHE
// overrides), which node_modules links to. The first app installs it (npm, once per machine
// and dependency set); every later `nimbus new` app and every redeploy only checks the link.
//   node deps.mjs
//
// componentize-js 0.23 imports @bytecodealliance/preview2-shim without listing it as a
// dependency; npm 11 then marks the copy it happened to install as extraneous and prunes it on
// the next install. package.json lists it (at the version jco-std's peer range takes), so every
// install keeps it.
import { createHash } from "node:crypto";
import { spawnSync } from "node:child_process";
import {
  existsSync, lstatSync, mkdirSync, mkdtempSync, readFileSync, readlinkSync, renameSync, rmSync,
  symlinkSync, writeFileSync,
} from "node:fs";
import { homedir } from "node:os";
import { join, resolve } from "node:path";

const DONE = ".nimbus-complete";

function sorted(value) {
  if (Array.isArray(value) || value === null || typeof value !== "object") {
    return value;
  }
  return Object.fromEntries(Object.keys(value).sort().map((k) => [k, sorted(value[k])]));
}

const pkg = JSON.parse(readFileSync("package.json", "utf8"));
const deps = sorted({
  dependencies: pkg.dependencies ?? {},
  devDependencies: pkg.devDependencies ?? {},
  overrides: pkg.overrides ?? {},
});
const key = createHash("sha256").update(JSON.stringify(deps)).digest("hex").slice(0, 16);
const cache = resolve(process.env.NIMBUS_NPM_CACHE
  ?? join(process.env.XDG_CACHE_HOME ?? join(homedir(), ".cache"), "nimbus", "npm"));
const shared = join(cache, key);
const modules = join(shared, "node_modules");

if (!existsSync(join(modules, DONE))) {
  // Installed into a fresh directory and renamed into place: a failed or concurrent install
  // never leaves a half-filled shared directory behind.
  mkdirSync(cache, { recursive: true });
  const staging = mkdtempSync(join(cache, `.${key}-`));
  writeFileSync(join(staging, "package.json"),
    JSON.stringify({ name: "nimbus-shared-deps", private: true, type: "module", ...deps }, null, 2));
  console.error(`installing npm dependencies into ${shared} (once per machine)`);
  const npm = spawnSync("npm", ["install", "--no-audit", "--no-fund", "--silent"], {
    cwd: staging,
    stdio: "inherit",
    shell: process.platform === "win32",
  });
  if (npm.status !== 0) {
    rmSync(staging, { recursive: true, force: true });
    process.exit(npm.status ?? 1);
  }
  writeFileSync(join(staging, "node_modules", DONE), "");
  if (existsSync(join(modules, DONE))) {
    // Another build finished the same install meanwhile: keep that one.
    rmSync(staging, { recursive: true, force: true });
  } else {
    rmSync(shared, { recursive: true, force: true }); // an unfinished leftover, if any
    renameSync(staging, shared);
  }
}

let linked = false;
try {
  linked = lstatSync("node_modules").isSymbolicLink() && readlinkSync("node_modules") === modules;
} catch {
  // No node_modules yet.
}
if (!linked) {
  rmSync("node_modules", { recursive: true, force: true });
  symlinkSync(modules, "node_modules", "dir");
  console.error(`node_modules -> ${modules}`);
}
