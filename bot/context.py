"""What a handler gets besides the event: GitHub, settings, store, job dispatcher."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from .github import Client, GitHub
from .settings import Settings
from .store import Store


@dataclass
class Context:
    settings: Settings
    github: GitHub
    store: Store
    dispatcher: Any = None  # bot.dispatch.Dispatcher, when retraining is enabled

    def gh(self, installation_id: int | None) -> Client:
        return self.github.client(installation_id)
