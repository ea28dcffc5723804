"""A Python HTTP function: echoes the method and path as JSON."""

import json

from componentize_py_types import Ok
from wit_world import exports
from wit_world.imports.types import (
    Fields,
    IncomingRequest,
    Method_Get,
    OutgoingBody,
    OutgoingResponse,
    ResponseOutparam,
)


class IncomingHandler(exports.IncomingHandler):
    def handle(self, request: IncomingRequest, response_out: ResponseOutparam) -> None:
        method = "GET" if isinstance(request.method(), Method_Get) else "other"
        payload = {"hello": "from Python on Nimbus", "method": method, "path": request.path_with_query()}
        response = OutgoingResponse(Fields.from_list([("content-type", b"application/json")]))
        response.set_status_code(200)
        body = response.body()
        ResponseOutparam.set(response_out, Ok(response))
        with body.write() as stream:
            stream.blocking_write_and_flush(json.dumps(payload).encode() + b"\n")
        OutgoingBody.finish(body, None)
