"""A Python HTTP function (componentize-py): greets, and echoes the method and path as JSON.

componentize-py builds the module named on its command line (`componentize app` -> app.py)
and calls the `IncomingHandler` class it defines for each request. os.environ is the
function's [function.env] at request time (not the build machine's environment).
"""

import json
import os

from componentize_py_types import Ok
from wit_world import exports
from wit_world.imports.types import (
    Fields,
    IncomingRequest,
    Method,
    Method_Other,
    OutgoingBody,
    OutgoingResponse,
    ResponseOutparam,
)


def method_name(method: Method) -> str:
    if isinstance(method, Method_Other):
        return method.value
    return type(method).__name__.removeprefix("Method_").upper()  # Method_Get -> GET


class IncomingHandler(exports.IncomingHandler):
    def handle(self, request: IncomingRequest, response_out: ResponseOutparam) -> None:
        path = request.path_with_query() or "/"
        greeting = os.environ.get("GREETING") or "Hello"
        payload = {
            "hello": "from Python on Nimbus",
            "greeting": f"{greeting} from {path}",
            "method": method_name(request.method()),
            "path": path,
        }
        response = OutgoingResponse(Fields.from_list([("content-type", b"application/json")]))
        response.set_status_code(200)
        body = response.body()
        ResponseOutparam.set(response_out, Ok(response))
        with body.write() as stream:
            data = json.dumps(payload).encode() + b"\n"
            # blocking-write-and-flush accepts at most 4096 bytes per call.
            for i in range(0, len(data), 4096):
                stream.blocking_write_and_flush(data[i : i + 4096])
        OutgoingBody.finish(body, None)
