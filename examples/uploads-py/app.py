"""Upload-and-list on wasi:blobstore, with a visit counter on wasi:keyvalue (see nimbus.toml).

Bodies are never held whole: uploads splice the request's input stream into the object's
output stream, downloads splice the object's input stream into the response, both on the host.
"""

import json
from typing import Optional, Tuple
from urllib.parse import unquote

from componentize_py_types import Err, Ok
from wit_world import exports
from wit_world.imports import atomics, blobstore
from wit_world.imports import wasi_keyvalue_store as kv
from wit_world.imports.streams import InputStream, OutputStream, StreamError_Closed
from wit_world.imports.wasi_blobstore_types import IncomingValue, OutgoingValue
from wit_world.imports.wasi_http_types import (
    Fields,
    IncomingBody,
    IncomingRequest,
    Method_Delete,
    Method_Get,
    Method_Put,
    OutgoingBody,
    OutgoingResponse,
    ResponseOutparam,
)

BUCKET = "uploads"
WHOLE = 2**64 - 1  # get-data's inclusive end meaning "to the end"


def bucket():
    if not blobstore.container_exists(BUCKET):
        return blobstore.create_container(BUCKET)
    return blobstore.get_container(BUCKET)


def splice_all(src: InputStream, dst: OutputStream) -> int:
    """Copies src to dst on the host until src ends; returns the bytes copied."""
    total = 0
    while True:
        try:
            total += dst.blocking_splice(src, 1 << 20)
        except Err as e:
            if isinstance(e.value, StreamError_Closed):
                dst.blocking_flush()
                return total
            raise


def count(name: str) -> int:
    return atomics.increment(kv.open("stats"), name, 1)


def respond(out: ResponseOutparam, status: int, payload: Optional[object] = None) -> None:
    data = b"" if payload is None else json.dumps(payload).encode() + b"\n"
    headers = [("content-type", b"application/json")] if payload is not None else []
    response = OutgoingResponse(Fields.from_list(headers))
    response.set_status_code(status)
    body = response.body()
    ResponseOutparam.set(out, Ok(response))
    with body.write() as stream:
        for i in range(0, len(data), 4096):
            stream.blocking_write_and_flush(data[i : i + 4096])
    OutgoingBody.finish(body, None)


def upload(request: IncomingRequest, name: str) -> Tuple[int, object]:
    container = bucket()
    value = OutgoingValue.new_outgoing_value()
    out = value.outgoing_value_write_body()
    # Name the object first, so the body streams straight into the store.
    container.write_data(name, value)
    body = request.consume()
    src = body.stream()
    size = splice_all(src, out)
    src.__exit__(None, None, None)
    IncomingBody.finish(body)
    out.__exit__(None, None, None)
    OutgoingValue.finish(value)
    count("uploads")
    return 201, {"name": name, "size": size}


def download(out: ResponseOutparam, name: str) -> None:
    container = bucket()
    if not container.has_object(name):
        respond(out, 404, {"error": f"no file {name}"})
        return
    value = container.get_data(name, 0, WHOLE)
    size = value.size()
    src = IncomingValue.incoming_value_consume_async(value)
    response = OutgoingResponse(Fields.from_list([
        ("content-type", b"application/octet-stream"),
        ("content-length", str(size).encode()),
    ]))
    response.set_status_code(200)
    body = response.body()
    ResponseOutparam.set(out, Ok(response))
    dst = body.write()
    splice_all(src, dst)
    src.__exit__(None, None, None)
    dst.__exit__(None, None, None)
    OutgoingBody.finish(body, None)


def listing() -> Tuple[int, object]:
    container = bucket()
    names = []
    with container.list_objects() as stream:
        while True:
            page, done = stream.read_stream_object_names(100)
            names += page
            if done:
                break
    files = [{"name": n, "size": container.object_info(n).size} for n in names]
    return 200, {"files": files, "listed": count("listings")}


class IncomingHandler(exports.IncomingHandler):
    def handle(self, request: IncomingRequest, response_out: ResponseOutparam) -> None:
        path = (request.path_with_query() or "/").split("?", 1)[0]
        method = request.method()
        name = unquote(path[len("/files/"):]) if path.startswith("/files/") else ""
        try:
            if path == "/files" and isinstance(method, Method_Get):
                respond(response_out, *listing())
            elif name and isinstance(method, Method_Put):
                respond(response_out, *upload(request, name))
            elif name and isinstance(method, Method_Get):
                download(response_out, name)
            elif name and isinstance(method, Method_Delete):
                bucket().delete_object(name)
                respond(response_out, 204)
            else:
                respond(response_out, 405, {"error": "PUT/GET/DELETE /files/<name>, GET /files"})
        except Err as e:
            respond(response_out, 500, {"error": f"storage: {e.value}"})
