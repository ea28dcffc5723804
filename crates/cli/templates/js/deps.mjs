// Runs `npm install` only when package.json or package-lock.json changed since the last
// successful install, or node_modules is gone: an unchanged redeploy skips npm entirely.
//   node deps.mjs
//
// componentize-js 0.23 imports @bytecodealliance/preview2-shim without listing it as a
// dependency; npm 11 then marks the copy it happened to install as extraneous and prunes it
// on the next install. package.json lists it (at the version jco-std's peer range takes),
// so every install keeps it.
import { createHash } from "node:crypto";
import { existsSync, readFileSync, writeFileSync } from "node:fs";
import { spawnSync } from "node:child_process";

const STAMP = "node_modules/.nimbus-installed";

function inputs() {
  const hash = createHash("sha256");
  for (const file of ["package.json", "package-lock.json"]) {
    const text = existsSync(file) ? readFileSync(file, "utf8") : "";
    hash.update(`${file}\0${text}\0`);
  }
  return hash.digest("hex");
}

if (!existsSync(STAMP) || readFileSync(STAMP, "utf8") !== inputs()) {
  const npm = spawnSync("npm", ["install", "--no-audit", "--no-fund", "--silent"], {
    stdio: "inherit",
    shell: process.platform === "win32",
  });
  if (npm.status !== 0) {
    process.exit(npm.status ?? 1);
  }
  // Hashed after the install: npm may have written or updated the lock file.
  writeFileSync(STAMP, inputs());
}
