// A visit counter on wasi:keyvalue (the standard WASI key-value interface, as in Spin).
//   GET /count/<name>  atomically increments counter <name>, answers {"name", "count"}
//   GET /counts        every counter, read with one batch call: {"<name>": count, ...}
//
// `increment` is atomic in the store, so concurrent requests never lose a visit. wasi:keyvalue
// `s64` values are BigInts in JavaScript.
import { open } from "wasi:keyvalue/store@0.2.0-draft2";
import { increment } from "wasi:keyvalue/atomics@0.2.0-draft2";
import { getMany } from "wasi:keyvalue/batch@0.2.0-draft2";

const PREFIX = "count:";

addEventListener("fetch", (event) => event.respondWith(handle(event.request)));

function json(status, body) {
  return new Response(JSON.stringify(body) + "\n", {
    status,
    headers: { "content-type": "application/json" },
  });
}

// wasi:keyvalue errors arrive as exceptions whose payload is the WIT variant.
function describe(err) {
  const payload = err && err.payload;
  if (payload && payload.tag) {
    return payload.val ? `${payload.tag}: ${payload.val}` : payload.tag;
  }
  return String(err);
}

function allKeys(bucket) {
  const keys = [];
  let cursor = undefined;
  do {
    const page = bucket.listKeys(cursor);
    keys.push(...page.keys);
    cursor = page.cursor;
  } while (cursor !== undefined && cursor !== null);
  return keys;
}

async function handle(request) {
  if (request.method !== "GET") {
    return json(405, { error: "use GET" });
  }
  const path = new URL(request.url).pathname;
  try {
    const bucket = open("counters");
    if (path === "/counts") {
      const keys = allKeys(bucket).filter((k) => k.startsWith(PREFIX));
      const counts = {};
      for (const entry of getMany(bucket, keys)) {
        if (entry) {
          const [key, value] = entry;
          counts[key.slice(PREFIX.length)] = Number(new TextDecoder().decode(value));
        }
      }
      return json(200, counts);
    }
    const name = decodeURIComponent(path.replace(/^\/count\/?/, ""));
    if (!name) {
      return json(400, { error: "say which counter: /count/<name>" });
    }
    const count = increment(bucket, PREFIX + name, 1n);
    return json(200, { name, count: Number(count) });
  } catch (err) {
    return json(500, { error: `key-value store: ${describe(err)}` });
  }
}
