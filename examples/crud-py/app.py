"""A JSON CRUD API over wasi:keyvalue (see nimbus.toml for the routes).

Items are JSON objects stored under `item:<id>`; ids come from an atomic counter
(`wasi:keyvalue/atomics.increment`), and conditional updates (`If-Match`) use the interface's
compare-and-swap, so two clients editing the same item cannot both win.
"""

import hashlib
import json
from typing import Optional, Tuple

from componentize_py_types import Err, Ok
from wit_world import exports
from wit_world.imports import atomics, batch
# Interfaces of the nimbus-guest world that share a name (wasi:keyvalue's and wasi:config's
# `store`, wasi:http's and wasi:blobstore's `types`) get package-qualified module names.
from wit_world.imports import wasi_keyvalue_store as store
from wit_world.imports.streams import StreamError_Closed
from wit_world.imports.wasi_http_types import (
    Fields,
    IncomingBody,
    IncomingRequest,
    Method_Delete,
    Method_Get,
    Method_Post,
    Method_Put,
    OutgoingBody,
    OutgoingResponse,
    ResponseOutparam,
)

STORE = "items"
PREFIX = "item:"
MAX_BODY = 64 * 1024


class HttpError(Exception):
    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status
        self.message = message


def etag(value: bytes) -> str:
    return '"' + hashlib.sha256(value).hexdigest()[:20] + '"'


def read_body(request: IncomingRequest) -> bytes:
    body = request.consume()
    stream = body.stream()
    data = bytearray()
    try:
        while True:
            try:
                chunk = stream.blocking_read(65536)
            except Err as e:
                if isinstance(e.value, StreamError_Closed):
                    break
                raise
            data += chunk
            if len(data) > MAX_BODY:
                raise HttpError(413, f"body over {MAX_BODY} bytes")
    finally:
        stream.__exit__(None, None, None)
    IncomingBody.finish(body)
    return bytes(data)


def parse_item(raw: bytes) -> bytes:
    try:
        item = json.loads(raw)
    except ValueError as e:
        raise HttpError(400, f"invalid JSON: {e}")
    if not isinstance(item, dict):
        raise HttpError(400, "an item is a JSON object")
    item.pop("id", None)
    return json.dumps(item, sort_keys=True).encode()


def header(request: IncomingRequest, name: str) -> Optional[str]:
    values = request.headers().get(name)
    return values[0].decode() if values else None


def describe(e: Err) -> str:
    value = e.value
    if isinstance(value, store.Error_Other):
        return value.value
    return type(value).__name__.split("_", 1)[-1]


def with_id(item_id: str, value: bytes) -> dict:
    item = json.loads(value)
    item["id"] = item_id
    return item


def route(request: IncomingRequest) -> Tuple[int, object, list]:
    path = (request.path_with_query() or "/").split("?", 1)[0]
    method = request.method()
    bucket = store.open(STORE)
    if path == "/items":
        if isinstance(method, Method_Get):
            keys = []
            cursor = None
            while True:
                page = bucket.list_keys(cursor)
                keys += [k for k in page.keys if k.startswith(PREFIX)]
                cursor = page.cursor
                if cursor is None:
                    break
            items = [with_id(k[len(PREFIX):], v) for k, v in filter(None, batch.get_many(bucket, keys))]
            return 200, items, []
        if isinstance(method, Method_Post):
            value = parse_item(read_body(request))
            item_id = str(atomics.increment(bucket, "next-id", 1))
            bucket.set(PREFIX + item_id, value)
            return 201, with_id(item_id, value), [("location", f"/items/{item_id}"), ("etag", etag(value))]
        raise HttpError(405, "use GET or POST")

    item_id = path[len("/items/"):]
    if not item_id or "/" in item_id:
        raise HttpError(404, "no such item")
    key = PREFIX + item_id
    if isinstance(method, Method_Get):
        value = bucket.get(key)
        if value is None:
            raise HttpError(404, f"no item {item_id}")
        return 200, with_id(item_id, value), [("etag", etag(value))]
    if isinstance(method, Method_Put):
        value = parse_item(read_body(request))
        expected = header(request, "if-match")
        if expected is None:
            bucket.set(key, value)
            return 200, with_id(item_id, value), [("etag", etag(value))]
        cas = atomics.Cas.new(bucket, key)
        current = cas.current()
        if current is None:
            raise HttpError(404, f"no item {item_id}")
        if etag(current) != expected:
            raise HttpError(412, f"item {item_id} has changed (ETag {etag(current)})")
        try:
            atomics.swap(cas, value)
        except Err as e:
            if isinstance(e.value, atomics.CasError_CasFailed):
                raise HttpError(412, f"item {item_id} changed during the update")
            raise
        return 200, with_id(item_id, value), [("etag", etag(value))]
    if isinstance(method, Method_Delete):
        if not bucket.exists(key):
            raise HttpError(404, f"no item {item_id}")
        bucket.delete(key)
        return 204, None, []
    raise HttpError(405, "use GET, PUT or DELETE")


def respond(response_out: ResponseOutparam, status: int, payload: object, headers: list) -> None:
    fields = [(name, value.encode()) for name, value in headers]
    data = b""
    if payload is not None:
        fields.append(("content-type", b"application/json"))
        data = json.dumps(payload).encode() + b"\n"
    response = OutgoingResponse(Fields.from_list(fields))
    response.set_status_code(status)
    body = response.body()
    ResponseOutparam.set(response_out, Ok(response))
    with body.write() as stream:
        # blocking-write-and-flush accepts at most 4096 bytes per call.
        for i in range(0, len(data), 4096):
            stream.blocking_write_and_flush(data[i : i + 4096])
    OutgoingBody.finish(body, None)


class IncomingHandler(exports.IncomingHandler):
    def handle(self, request: IncomingRequest, response_out: ResponseOutparam) -> None:
        try:
            status, payload, headers = route(request)
        except HttpError as e:
            status, payload, headers = e.status, {"error": e.message}, []
        except Err as e:
            status, payload, headers = 500, {"error": f"key-value store: {describe(e)}"}, []
        respond(response_out, status, payload, headers)
