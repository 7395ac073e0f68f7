"""Schemathesis hooks for the fuzz run against the LB contract (tests/proxy/openapi.rs).

A refused request must change nothing: before each write the proxy's state is read, and
after a 4xx or 5xx answer it must be the same.
"""

import json
import os
import urllib.request

import schemathesis

BASE = os.environ["PODGATE_ADMIN_URL"]
TOKEN = os.environ["PODGATE_TOKEN"]
_before = {}


def _state():
    req = urllib.request.Request(
        BASE + "/v1/state", headers={"Authorization": "Bearer " + TOKEN}
    )
    with urllib.request.urlopen(req, timeout=10) as answer:
        return json.load(answer)


@schemathesis.hook
def before_call(ctx, case, **kwargs):
    if case.method.upper() != "GET":
        _before[id(case)] = _state()


@schemathesis.check
def refused_requests_change_nothing(ctx, response, case):
    before = _before.pop(id(case), None)
    if before is None or response.status_code < 400:
        return None
    if _state() != before:
        raise AssertionError(
            f"{case.method} {case.path} was refused ({response.status_code}) "
            "but the LB's state changed"
        )
    return None
