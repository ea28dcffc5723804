"""An HTTP function exporting the standard wasi:http/proxy world (componentize-py)."""

import json

from componentize_py_types import Ok
from wit_world import exports
from wit_world.imports.types import (
    Fields,
    IncomingRequest,
    OutgoingBody,
    OutgoingResponse,
    ResponseOutparam,
)


class IncomingHandler(exports.IncomingHandler):
    def handle(self, request: IncomingRequest, response_out: ResponseOutparam) -> None:
        payload = {
            "message": "Hello from {{name}}!",
            "path": request.path_with_query() or "/",
        }
        headers = Fields.from_list([("content-type", b"application/json")])
        response = OutgoingResponse(headers)
        response.set_status_code(200)
        body = response.body()
        ResponseOutparam.set(response_out, Ok(response))
        with body.write() as stream:
            stream.blocking_write_and_flush(json.dumps(payload).encode() + b"\n")
        OutgoingBody.finish(body, None)
