"""Test guest for the event-guest world: records every event in the key-value store `events`
(key = event id); type "test.fail" returns err("asked to fail")."""

import json

from componentize_py_types import Err
from wit_world import exports
from wit_world.imports import wasi_keyvalue_store as kv


class Handler(exports.Handler):
    def handle(self, event) -> None:
        if event.type == "test.fail":
            raise Err("asked to fail")
        record = {
            "lang": "python",
            "source": event.source,
            "type": event.type,
            "subject": event.subject,
            "time": event.time,
            "datacontenttype": event.datacontenttype,
            "data": event.data.decode() if event.data is not None else None,
            "extensions": dict(event.extensions),
        }
        kv.open("events").set(event.id, json.dumps(record).encode())
