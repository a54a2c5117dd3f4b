"""Durable store of deliveries and jobs (SQLite, WAL): what was acknowledged is never lost.

A delivery is stored before GitHub gets its 202, claimed by a worker under a lease, and finished,
rescheduled or parked as failed. A worker killed mid-delivery leaves a lease that expires, and
the next worker takes it over: at-least-once processing, with idempotent handlers.
"""

from __future__ import annotations

import json
import sqlite3
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

SCHEMA = """
CREATE TABLE IF NOT EXISTS deliveries (
    id TEXT PRIMARY KEY,
    event TEXT NOT NULL,
    action TEXT,
    body BLOB NOT NULL,
    hook_id TEXT,
    received_at REAL NOT NULL,
    status TEXT NOT NULL DEFAULT 'pending',
    attempts INTEGER NOT NULL DEFAULT 0,
    next_at REAL NOT NULL,
    lease_until REAL,
    worker TEXT,
    last_error TEXT,
    finished_at REAL,
    handler_ms REAL
);
CREATE INDEX IF NOT EXISTS deliveries_ready ON deliveries (status, next_at);
CREATE TABLE IF NOT EXISTS jobs (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    repo TEXT NOT NULL,
    pr INTEGER,
    sha TEXT NOT NULL,
    base_sha TEXT,
    kind TEXT NOT NULL,
    stage TEXT,
    verdict TEXT,
    status TEXT NOT NULL,
    ray_job_id TEXT,
    check_run_id INTEGER,
    installation_id INTEGER,
    detail TEXT,
    created_at REAL NOT NULL,
    updated_at REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS jobs_repo ON jobs (repo, status);
CREATE TABLE IF NOT EXISTS pr_heads (
    repo TEXT NOT NULL,
    pr INTEGER NOT NULL,
    sha TEXT NOT NULL,
    seen_at REAL NOT NULL,
    PRIMARY KEY (repo, pr, sha)
);
"""

ACTIVE_JOB = ("queued", "submitting", "running", "cancelling")


@dataclass
class Delivery:
    id: str
    event: str
    action: str | None
    body: bytes
    attempts: int
    received_at: float

    @property
    def payload(self) -> dict:
        return json.loads(self.body)


class Store:
    def __init__(self, path: Path | str):
        self.path = Path(path)
        if str(path) != ":memory:":
            self.path.parent.mkdir(parents=True, exist_ok=True)
        self.lock = threading.Lock()
        self.db = sqlite3.connect(str(path), check_same_thread=False, isolation_level=None, timeout=30)
        self.db.row_factory = sqlite3.Row
        self.db.execute("PRAGMA journal_mode=WAL")
        # FULL: a commit is on disk before GitHub is told 202.
        self.db.execute("PRAGMA synchronous=FULL")
        self.db.executescript(SCHEMA)
        # stores written before a column existed gain it (SQLite adds columns in place)
        have = {r[1] for r in self.db.execute("PRAGMA table_info(jobs)")}
        for column in ("base_sha", "stage", "verdict", "key", "submission_id"):
            if column not in have:
                self.db.execute(f"ALTER TABLE jobs ADD COLUMN {column} TEXT")
        if "missing_polls" not in have:
            self.db.execute("ALTER TABLE jobs ADD COLUMN missing_polls INTEGER NOT NULL DEFAULT 0")
        # one job per idempotency key: a retried delivery finds the job it queued before
        self.db.execute("CREATE UNIQUE INDEX IF NOT EXISTS jobs_key ON jobs (key) WHERE key IS NOT NULL")

    def close(self) -> None:
        with self.lock:
            self.db.close()

    def _x(self, sql: str, args: tuple = ()) -> sqlite3.Cursor:
        with self.lock:
            return self.db.execute(sql, args)

    # -- deliveries ------------------------------------------------------------------------
    def add_delivery(self, delivery_id: str, event: str, action: str | None, body: bytes,
                     hook_id: str | None = None) -> bool:
        """Store a delivery; False when it was already stored (a redelivery)."""
        now = time.time()
        cur = self._x("INSERT OR IGNORE INTO deliveries (id, event, action, body, hook_id, received_at, next_at)"
                      " VALUES (?, ?, ?, ?, ?, ?, ?)", (delivery_id, event, action, body, hook_id, now, now))
        return cur.rowcount == 1

    def has_delivery(self, delivery_id: str) -> bool:
        return self._x("SELECT 1 FROM deliveries WHERE id = ?", (delivery_id,)).fetchone() is not None

    def claim(self, worker: str, lease_seconds: float, max_attempts: int | None = None) -> Delivery | None:
        """The oldest ready delivery, leased to ``worker``. A delivery whose lease already ran out
        ``max_attempts`` times killed (or hung) a worker each time: it is never handed out again
        but parked as poison, in the idle path so that the busy path stays one statement."""
        now = time.time()
        limit = max_attempts or 1 << 30
        row = self._x(
            "UPDATE deliveries SET status = 'running', attempts = attempts + 1, worker = ?, lease_until = ?"
            " WHERE id = (SELECT id FROM deliveries WHERE (status = 'pending' AND next_at <= ?)"
            "   OR (status = 'running' AND lease_until < ? AND attempts < ?) ORDER BY received_at LIMIT 1)"
            " RETURNING id, event, action, body, attempts, received_at",
            (worker, now + lease_seconds, now, now, limit)).fetchone()
        if row:
            return Delivery(**dict(row))
        if max_attempts:
            self._x("UPDATE deliveries SET status = 'poison', finished_at = ?, lease_until = NULL,"
                    " last_error = 'poison: the worker died or hung ' || attempts || ' times handling it'"
                    " || COALESCE(' (last error: ' || last_error || ')', '')"
                    " WHERE status = 'running' AND lease_until < ? AND attempts >= ?", (now, now, max_attempts))
        return None

    def renew(self, delivery_id: str, worker: str, lease_seconds: float) -> bool:
        """Extend the lease while a handler works; False when another worker took it over."""
        cur = self._x("UPDATE deliveries SET lease_until = ? WHERE id = ? AND worker = ? AND status = 'running'",
                      (time.time() + lease_seconds, delivery_id, worker))
        return cur.rowcount == 1

    def finish(self, delivery_id: str, status: str = "done", handler_ms: float | None = None,
               error: str | None = None, worker: str | None = None) -> bool:
        """Record the outcome; with ``worker``, only if that worker still owns the delivery."""
        sql = ("UPDATE deliveries SET status = ?, finished_at = ?, handler_ms = ?, last_error = ?,"
               " lease_until = NULL WHERE id = ?")
        args: tuple = (status, time.time(), handler_ms, error, delivery_id)
        if worker is not None:
            sql += " AND worker = ? AND status = 'running'"
            args += (worker,)
        return self._x(sql, args).rowcount == 1

    def reschedule(self, delivery_id: str, delay: float, error: str, worker: str | None = None) -> bool:
        sql = "UPDATE deliveries SET status = 'pending', next_at = ?, last_error = ?, lease_until = NULL WHERE id = ?"
        args: tuple = (time.time() + delay, error, delivery_id)
        if worker is not None:
            sql += " AND worker = ? AND status = 'running'"
            args += (worker,)
        return self._x(sql, args).rowcount == 1

    def counts(self) -> dict[str, int]:
        rows = self._x("SELECT status, COUNT(*) AS n FROM deliveries GROUP BY status").fetchall()
        return {r["status"]: r["n"] for r in rows}

    def counts_by_event(self) -> list[tuple[str, str, int]]:
        rows = self._x("SELECT event, status, COUNT(*) AS n FROM deliveries GROUP BY event, status").fetchall()
        return [(r["event"], r["status"], r["n"]) for r in rows]

    def oldest_pending_age(self) -> float:
        row = self._x("SELECT MIN(received_at) AS t FROM deliveries WHERE status IN ('pending', 'running')").fetchone()
        return time.time() - row["t"] if row and row["t"] else 0.0

    def recent(self, limit: int = 50) -> list[dict[str, Any]]:
        rows = self._x("SELECT id, event, action, status, attempts, received_at, finished_at, last_error,"
                       " handler_ms FROM deliveries ORDER BY received_at DESC LIMIT ?", (limit,)).fetchall()
        return [dict(r) for r in rows]

    def delivery(self, delivery_id: str) -> dict | None:
        row = self._x("SELECT * FROM deliveries WHERE id = ?", (delivery_id,)).fetchone()
        return dict(row) if row else None

    # -- jobs ------------------------------------------------------------------------------
    def add_job(self, repo: str, pr: int | None, sha: str, kind: str, installation_id: int | None,
                status: str = "queued", base_sha: str | None = None, key: str | None = None) -> int:
        """A new job's id; with a ``key`` already stored, the existing job's id (idempotent)."""
        now = time.time()
        with self.lock:
            if key is not None:
                row = self.db.execute("SELECT id FROM jobs WHERE key = ?", (key,)).fetchone()
                if row:
                    return int(row["id"])
            cur = self.db.execute(
                "INSERT INTO jobs (repo, pr, sha, base_sha, kind, status, installation_id, key, created_at,"
                " updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (repo, pr, sha, base_sha, kind, status, installation_id, key, now, now))
            return int(cur.lastrowid)

    def job_by_key(self, key: str) -> dict | None:
        row = self._x("SELECT * FROM jobs WHERE key = ?", (key,)).fetchone()
        return dict(row) if row else None

    # -- pull request heads: what a commenter saw ------------------------------------------
    def saw_head(self, repo: str, pr: int, sha: str, at: float) -> None:
        """Remember that ``sha`` was the head of ``pr`` at ``at`` (the earliest sighting wins)."""
        self._x("INSERT INTO pr_heads (repo, pr, sha, seen_at) VALUES (?, ?, ?, ?)"
                " ON CONFLICT (repo, pr, sha) DO UPDATE SET seen_at = MIN(seen_at, excluded.seen_at)",
                (repo, pr, sha, at))

    def head_seen_at(self, repo: str, pr: int, sha: str) -> float | None:
        row = self._x("SELECT seen_at FROM pr_heads WHERE repo = ? AND pr = ? AND sha = ?",
                      (repo, pr, sha)).fetchone()
        return row["seen_at"] if row else None

    def update_job(self, job_id: int, **fields: Any) -> None:
        if not fields:
            return
        cols = ", ".join(f"{k} = ?" for k in fields)
        self._x(f"UPDATE jobs SET {cols}, updated_at = ? WHERE id = ?", (*fields.values(), time.time(), job_id))

    def job(self, job_id: int) -> dict | None:
        row = self._x("SELECT * FROM jobs WHERE id = ?", (job_id,)).fetchone()
        return dict(row) if row else None

    def jobs(self, repo: str | None = None, statuses: tuple[str, ...] | None = None, limit: int = 50,
             kind: str | None = None, pr: int | None = None) -> list[dict]:
        sql, args = "SELECT * FROM jobs WHERE 1=1", []
        if repo:
            sql += " AND repo = ?"
            args.append(repo)
        if pr is not None:
            sql += " AND pr = ?"
            args.append(pr)
        if kind:
            sql += " AND kind = ?"
            args.append(kind)
        if statuses:
            sql += f" AND status IN ({','.join('?' * len(statuses))})"
            args += list(statuses)
        sql += " ORDER BY id DESC LIMIT ?"
        args.append(limit)
        return [dict(r) for r in self._x(sql, tuple(args)).fetchall()]
