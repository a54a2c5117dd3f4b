"""Read PyGithub's recorded exchanges (../shared/github/pygithub-replay)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path


@dataclass
class Exchange:
    verb: str
    path: str
    request_body: str | None
    status: int
    response: object


def read(path: Path) -> list[Exchange]:
    lines = path.read_text().split("\n")
    out, i = [], 0
    while i + 9 < len(lines):
        if not lines[i].strip():
            i += 1
            continue
        _scheme, verb, _host, _port, req_path, _hdrs, body, status, _rh, resp = lines[i:i + 10]
        try:
            response = json.loads(resp) if resp.strip() else None
        except ValueError:
            response = None
        out.append(Exchange(verb, req_path, None if body == "None" else body, int(status), response))
        i += 11
    return out
