"""Test guest (nimbus-guest world): writes an object to bucket `scratch` through wasi:blobstore,
finishing the outgoing-value (PUT /finished/<name>) or returning without finishing it
(PUT /unfinished/<name>): an unfinished value must never become an object."""

from componentize_py_types import Ok
from wit_world import exports
from wit_world.imports import blobstore
from wit_world.imports.wasi_blobstore_types import OutgoingValue
from wit_world.imports.wasi_http_types import (
    Fields,
    IncomingRequest,
    OutgoingBody,
    OutgoingResponse,
    ResponseOutparam,
)


def respond(out: ResponseOutparam, status: int) -> None:
    response = OutgoingResponse(Fields.from_list([]))
    response.set_status_code(status)
    body = response.body()
    ResponseOutparam.set(out, Ok(response))
    OutgoingBody.finish(body, None)


class IncomingHandler(exports.IncomingHandler):
    def handle(self, request: IncomingRequest, response_out: ResponseOutparam) -> None:
        path = request.path_with_query() or "/"
        parts = path.strip("/").split("/")
        if len(parts) != 2 or parts[0] not in ("finished", "unfinished"):
            respond(response_out, 404)
            return
        if blobstore.container_exists("scratch"):
            container = blobstore.get_container("scratch")
        else:
            container = blobstore.create_container("scratch")
        value = OutgoingValue.new_outgoing_value()
        out = value.outgoing_value_write_body()
        container.write_data(parts[1], value)
        out.blocking_write_and_flush(b"some bytes that must not be half-stored")
        out.__exit__(None, None, None)
        if parts[0] == "finished":
            OutgoingValue.finish(value)
        # "unfinished": the value is dropped with the instance, never finished.
        respond(response_out, 200)
