"""Recover deliveries GitHub failed to make: GitHub never redelivers by itself, so in App mode
we list the App's recent deliveries and ask again for the failed ones we never stored."""

from __future__ import annotations

import logging
import time
from datetime import datetime, timezone

from .github import GitHub, classified
from .store import Store

log = logging.getLogger(__name__)
REDELIVERY_WINDOW = 3 * 24 * 3600  # GitHub keeps deliveries for 3 days
MAX_REDELIVERIES_PER_SCAN = 40  # stay well under ~80 content-creating requests a minute


def start_recovery(github: GitHub, store: Store, stop, interval: float):
    """A daemon thread that scans every ``interval`` seconds until ``stop`` (an Event) is set."""
    import threading

    def loop() -> None:
        while not stop.is_set():
            try:
                recover(github, store)
            except Exception as e:  # GitHub down: try again next round
                log.warning("delivery recovery failed: %s", e)
            stop.wait(interval)
    thread = threading.Thread(target=loop, name="sprout-recovery", daemon=True)
    thread.start()
    return thread


def recover(github: GitHub, store: Store, now: float | None = None) -> list[int]:
    """Request redelivery of failed deliveries unknown to the store; returns their ids."""
    now = now or time.time()
    integration = github.integration()
    requester = integration.requester
    attempts: dict[str, list[dict]] = {}
    url, params = "/app/hook/deliveries", {"per_page": 100}
    for _ in range(20):  # at most 2,000 recent deliveries
        with classified("list_hook_deliveries", github.stats):
            headers, page = requester.requestJsonAndCheck("GET", url, parameters=params)
        for d in page or []:
            attempts.setdefault(d["guid"], []).append(d)
        nxt = _next_link(headers.get("link", ""))
        if not nxt:
            break
        url, params = nxt, None
    requested = []
    for guid, tries in attempts.items():
        if store.has_delivery(guid) or any(200 <= (t.get("status_code") or 0) < 300 for t in tries):
            continue
        latest = max(tries, key=lambda t: t.get("delivered_at", ""))
        delivered = _ts(latest.get("delivered_at"))
        if delivered and now - delivered > REDELIVERY_WINDOW:
            continue
        if len(requested) >= MAX_REDELIVERIES_PER_SCAN:
            break
        with classified("redeliver", github.stats):
            requester.requestJsonAndCheck("POST", f"/app/hook/deliveries/{latest['id']}/attempts")
        requested.append(latest["id"])
        log.info("asked GitHub to redeliver %s (%s)", guid, latest.get("event"))
    return requested


def _next_link(link: str) -> str | None:
    for part in link.split(","):
        if 'rel="next"' in part:
            return part.split(";")[0].strip().strip("<>")
    return None


def _ts(value: str | None) -> float | None:
    if not value:
        return None
    try:
        return datetime.fromisoformat(value.replace("Z", "+00:00")).astimezone(timezone.utc).timestamp()
    except ValueError:
        return None
