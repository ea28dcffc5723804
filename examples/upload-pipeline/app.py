"""Object-created handler (exports nimbus:events/handler): summarises a text object of bucket
`incoming` into a JSON object of bucket `summaries` (see nimbus.toml)."""

import json

from componentize_py_types import Err
from wit_world import exports
from wit_world.imports import blobstore
from wit_world.imports.wasi_blobstore_types import IncomingValue, OutgoingValue

WHOLE = 2**64 - 1  # get-data's inclusive end meaning "to the end"
MAX_BYTES = 16 << 20  # larger files are summarised by size only


def read_text(container, key: str) -> str:
    value = container.get_data(key, 0, WHOLE)
    data = IncomingValue.incoming_value_consume_sync(value)
    return data.decode("utf-8", errors="replace")


def write(container, key: str, data: bytes) -> None:
    value = OutgoingValue.new_outgoing_value()
    out = value.outgoing_value_write_body()
    container.write_data(key, value)
    for i in range(0, len(data), 4096):
        out.blocking_write_and_flush(data[i : i + 4096])
    out.__exit__(None, None, None)
    OutgoingValue.finish(value)


class Handler(exports.Handler):
    def handle(self, event) -> None:
        if event.type != "dev.nimbus.object.created":
            return
        change = json.loads(bytes(event.data or b"{}"))
        key, size = change["key"], change["size"]
        incoming = blobstore.get_container("incoming")
        summary = {"key": key, "bytes": size, "etag": change["etag"], "event": event.id}
        if size <= MAX_BYTES:
            text = read_text(incoming, key)
            summary["lines"] = text.count("\n") + (0 if text.endswith("\n") or not text else 1)
            summary["words"] = len(text.split())
            summary["first_line"] = text.split("\n", 1)[0][:200]
        try:
            write(blobstore.get_container("summaries"), key + ".json",
                  json.dumps(summary).encode())
        except Err as e:
            raise Err(f"writing the summary of {key}: {e.value}")
