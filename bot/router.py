"""Route a delivery by event and action to the handlers registered for it."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable

Handler = Callable[["Event", Any], None]


@dataclass(frozen=True)
class Event:
    name: str
    action: str | None
    payload: dict
    delivery_id: str

    @property
    def repo(self) -> str:
        return self.payload.get("repository", {}).get("full_name", "")

    @property
    def installation_id(self) -> int | None:
        return (self.payload.get("installation") or {}).get("id")


@dataclass
class Router:
    routes: dict = field(default_factory=dict)  # (event, action or None) -> [handlers]

    def __init__(self, *routers: "Router"):
        self.routes = {}
        for r in routers:
            for key, handlers in r.routes.items():
                self.routes.setdefault(key, []).extend(handlers)

    def on(self, event: str, *actions: str) -> Callable[[Handler], Handler]:
        def register(fn: Handler) -> Handler:
            for action in actions or (None,):
                self.routes.setdefault((event, action), []).append(fn)
            return fn
        return register

    def handlers(self, event: str, action: str | None) -> list[Handler]:
        return [*self.routes.get((event, None), []), *self.routes.get((event, action), [])] if action \
            else list(self.routes.get((event, None), []))
