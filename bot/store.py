"""Durable store of deliveries and jobs (SQLite, WAL): what was acknowledged is never lost.

A delivery is stored before GitHub gets its 202, claimed by a worker under a lease, and finished,
rescheduled or parked as failed. A worker killed mid-delivery leaves a lease that expires, and
the next worker takes it over: at-least-once processing, with idempotent handlers.
"""

from __future__ import annotations

import json
import logging
import os
import queue
import sqlite3
import threading
import time
from concurrent.futures import Future
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
-- the claim walks unfinished deliveries oldest first, however many finished ones there are
-- (its other columns answer the readiness test from the index, not from rows holding 25 MB bodies)
CREATE INDEX IF NOT EXISTS deliveries_open ON deliveries (received_at, status, next_at, lease_until, attempts)
    WHERE status IN ('pending', 'running');
CREATE TABLE IF NOT EXISTS worker_stats (
    name TEXT PRIMARY KEY,
    pid INTEGER NOT NULL,
    updated_at REAL NOT NULL,
    stats TEXT NOT NULL
);
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
-- every sighting of a head, not just the first: A -> B -> A must read as A, then B, then A again
CREATE TABLE IF NOT EXISTS head_sightings (
    repo TEXT NOT NULL,
    pr INTEGER NOT NULL,
    sha TEXT NOT NULL,
    seen_at REAL NOT NULL,
    PRIMARY KEY (repo, pr, seen_at, sha)
);
-- commands per person: a rate limit that answers once, then stays silent
CREATE TABLE IF NOT EXISTS command_uses (
    login TEXT NOT NULL,
    comment_id INTEGER NOT NULL,
    at REAL NOT NULL,
    verdict TEXT NOT NULL,
    PRIMARY KEY (login, comment_id)
);
CREATE INDEX IF NOT EXISTS command_uses_recent ON command_uses (login, at);
"""

ACTIVE_JOB = ("queued", "submitting", "running", "cancelling")
log = logging.getLogger(__name__)


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
    def __init__(self, path: Path | str, durable: bool = True):
        """``durable=False`` is for the worker process: its commits (claims, outcomes, jobs) skip
        the fsync, so it holds SQLite's write lock for microseconds rather than a disk flush,
        and the intake never waits on it. A process crash loses nothing (the OS has the pages);
        a power cut can lose the last outcomes, and those deliveries are handled again
        (at-least-once, idempotent handlers). Deliveries themselves are stored durably by
        ``add_delivery`` or ``GroupCommit``."""
        self.path = Path(path)
        if str(path) != ":memory:":
            self.path.parent.mkdir(parents=True, exist_ok=True)
        self.lock = threading.Lock()
        self.db = sqlite3.connect(str(path), check_same_thread=False, isolation_level=None, timeout=30)
        self.db.row_factory = sqlite3.Row
        self.db.execute("PRAGMA journal_mode=WAL")
        # FULL: a commit is on disk before GitHub is told 202.
        self.db.execute(f"PRAGMA synchronous={'FULL' if durable else 'NORMAL'}")
        self.db.executescript(SCHEMA)
        # stores written before a column existed gain it (SQLite adds columns in place)
        have = {r[1] for r in self.db.execute("PRAGMA table_info(jobs)")}
        for column in ("base_sha", "stage", "verdict", "key", "submission_id", "nonce"):
            if column not in have:
                self.db.execute(f"ALTER TABLE jobs ADD COLUMN {column} TEXT")
        if "missing_polls" not in have:
            self.db.execute("ALTER TABLE jobs ADD COLUMN missing_polls INTEGER NOT NULL DEFAULT 0")
        if "started_at" not in have:
            self.db.execute("ALTER TABLE jobs ADD COLUMN started_at REAL")
        # sightings kept before every one was (first sightings only): still good evidence
        self.db.execute("INSERT OR IGNORE INTO head_sightings (repo, pr, sha, seen_at)"
                        " SELECT repo, pr, sha, seen_at FROM pr_heads")
        self.db.execute("DELETE FROM pr_heads")
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
        cur = self._x("INSERT INTO deliveries (id, event, action, body, hook_id, received_at, next_at)"
                      " VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT (id) DO NOTHING", (delivery_id, event, action, body, hook_id, now, now))
        return cur.rowcount == 1

    def put_worker_stats(self, name: str, stats: dict) -> None:
        self._x("INSERT INTO worker_stats (name, pid, updated_at, stats) VALUES (?, ?, ?, ?)"
                " ON CONFLICT (name) DO UPDATE SET pid = excluded.pid, updated_at = excluded.updated_at,"
                " stats = excluded.stats", (name, os.getpid(), time.time(), json.dumps(stats)))

    def worker_stats(self) -> list[dict]:
        rows = self._x("SELECT name, pid, updated_at, stats FROM worker_stats").fetchall()
        return [{**dict(r), "stats": json.loads(r["stats"])} for r in rows]

    def has_delivery(self, delivery_id: str) -> bool:
        return self._x("SELECT 1 FROM deliveries WHERE id = ?", (delivery_id,)).fetchone() is not None

    def claim(self, worker: str, lease_seconds: float, max_attempts: int | None = None) -> Delivery | None:
        """The oldest ready delivery, leased to ``worker``. A delivery whose lease already ran out
        ``max_attempts`` times killed (or hung) a worker each time: it is never handed out again
        but parked as poison, in the idle path so that the busy path stays one statement."""
        now = time.time()
        limit = max_attempts or 1 << 30
        ready = ("(status = 'pending' AND next_at <= ?) OR (status = 'running' AND lease_until < ?"
                 " AND attempts < ?)")
        row = None
        for _ in range(8):
            # The search is a read (no write lock: the intake's commits never wait on it); the
            # claim is one primary-key update that re-checks the row is still ready, so two
            # workers racing for it cannot both win.
            found = self._x("SELECT id FROM deliveries INDEXED BY deliveries_open"
                            f" WHERE status IN ('pending', 'running') AND ({ready})"
                            " ORDER BY received_at LIMIT 1", (now, now, limit)).fetchone()
            if found is None:
                break
            row = self._x(
                "UPDATE deliveries SET status = 'running', attempts = attempts + 1, worker = ?,"
                f" lease_until = ? WHERE id = ? AND ({ready})"
                " RETURNING id, event, action, body, attempts, received_at",
                (worker, now + lease_seconds, found["id"], now, now, limit)).fetchone()
            if row:
                break
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
        """Remember that ``sha`` was the head of ``pr`` at ``at``; every sighting is kept."""
        self._x("INSERT INTO head_sightings (repo, pr, sha, seen_at) VALUES (?, ?, ?, ?)"
                " ON CONFLICT DO NOTHING", (repo, pr, sha, at))

    def head_seen_at(self, repo: str, pr: int, sha: str) -> float | None:
        """When ``sha`` was first seen as the head of ``pr`` (None: never)."""
        row = self._x("SELECT MIN(seen_at) AS t FROM head_sightings WHERE repo = ? AND pr = ? AND sha = ?",
                      (repo, pr, sha)).fetchone()
        return row["t"] if row and row["t"] is not None else None

    def head_at(self, repo: str, pr: int, at: float) -> str | None:
        """The head of ``pr`` as last seen at or before ``at`` (None: none seen by then)."""
        row = self._x("SELECT sha FROM head_sightings WHERE repo = ? AND pr = ? AND seen_at <= ?"
                      " ORDER BY seen_at DESC, rowid DESC LIMIT 1", (repo, pr, at)).fetchone()
        return row["sha"] if row else None

    # -- commands per person ---------------------------------------------------------------
    def admit_command(self, login: str, comment_id: int, per_hour: int, now: float | None = None) -> str:
        """'ok' (run it), 'warn' (over the limit: say so once) or 'silent' (over, already told).
        A redelivered comment gets the answer it got the first time. ``per_hour`` 0: no limit."""
        if not per_hour:
            return "ok"
        now = time.time() if now is None else now
        login = (login or "").lower()
        with self.lock:
            self.db.execute("BEGIN IMMEDIATE")
            try:
                row = self.db.execute("SELECT verdict FROM command_uses WHERE login = ? AND comment_id = ?",
                                      (login, comment_id)).fetchone()
                if row:
                    verdict = row["verdict"]
                else:
                    counts = dict(self.db.execute(
                        "SELECT verdict, COUNT(*) FROM command_uses WHERE login = ? AND at > ? GROUP BY verdict",
                        (login, now - 3600)).fetchall())
                    verdict = ("ok" if counts.get("ok", 0) < per_hour
                               else "silent" if counts.get("warn") else "warn")
                    self.db.execute("INSERT INTO command_uses (login, comment_id, at, verdict) VALUES (?, ?, ?, ?)",
                                    (login, comment_id, now, verdict))
                    self.db.execute("DELETE FROM command_uses WHERE at < ?", (now - 86400,))
                self.db.execute("COMMIT")
            except BaseException:
                self.db.execute("ROLLBACK")
                raise
        return verdict

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


class GroupCommit:
    """The intake's writer: deliveries that arrive together are stored in one transaction, one
    fsync for all of them, and each request hears back only once its row is on disk.

    One thread owns one connection. It takes whatever is queued (up to ``max_batch``), writes it,
    commits with synchronous=FULL, then resolves each caller's future: True for a new delivery,
    False for a redelivery. A failed commit fails every future in the batch (the caller answers
    5xx and GitHub keeps the delivery). Its connection never checkpoints during a commit
    (``wal_autocheckpoint=0``: a checkpoint copies megabytes and would land on one unlucky
    request); it checkpoints when idle, and the worker's connection checkpoints as usual.
    """

    def __init__(self, path: Path | str, max_batch: int = 256, idle_checkpoint: float = 1.0):
        self.db = sqlite3.connect(str(path), check_same_thread=False, isolation_level=None, timeout=30)
        self.db.execute("PRAGMA journal_mode=WAL")
        self.db.execute("PRAGMA synchronous=FULL")
        self.db.execute("PRAGMA wal_autocheckpoint=0")
        self.max_batch = max_batch
        self.idle_checkpoint = idle_checkpoint
        self.batches = 0
        self.rows = 0
        self._q: queue.SimpleQueue = queue.SimpleQueue()
        self._thread = threading.Thread(target=self._loop, name="sprout-intake-writer", daemon=True)
        self._thread.start()

    def submit(self, delivery_id: str, event: str, action: str | None, body: bytes,
               hook_id: str | None = None) -> Future:
        future: Future = Future()
        self._q.put(((delivery_id, event, action, body, hook_id), future))
        return future

    def close(self, timeout: float = 10) -> None:
        self._q.put(None)
        self._thread.join(timeout)
        self.db.close()

    def _loop(self) -> None:
        dirty = False
        while True:
            try:
                item = self._q.get(timeout=self.idle_checkpoint if dirty else None)
            except queue.Empty:
                try:
                    self.db.execute("PRAGMA wal_checkpoint(PASSIVE)")
                except sqlite3.Error as e:
                    log.warning("WAL checkpoint: %s", e)
                dirty = False
                continue
            if item is None:
                return
            batch = [item]
            while len(batch) < self.max_batch:
                try:
                    nxt = self._q.get_nowait()
                except queue.Empty:
                    break
                if nxt is None:
                    self._q.put(None)  # finish this batch, then stop
                    break
                batch.append(nxt)
            self._write(batch)
            dirty = True

    def _write(self, batch: list) -> None:
        try:
            new = self._commit([row for row, _ in batch])
        except Exception as e:
            if len(batch) == 1:
                batch[0][1].set_exception(e)
                return
            for item in batch:  # one bad row must not fail the deliveries that came with it
                self._write([item])
            return
        self.batches += 1
        self.rows += len(batch)
        for (_, future), is_new in zip(batch, new):
            future.set_result(is_new)

    def _commit(self, rows: list[tuple]) -> list[bool]:
        now = time.time()
        try:
            self.db.execute("BEGIN IMMEDIATE")
            new = []
            for delivery_id, event, action, body, hook_id in rows:
                cur = self.db.execute(
                    "INSERT INTO deliveries (id, event, action, body, hook_id, received_at, next_at)"
                    " VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT (id) DO NOTHING", (delivery_id, event, action, body, hook_id, now, now))
                new.append(cur.rowcount == 1)
            self.db.execute("COMMIT")
            return new
        except BaseException:
            if self.db.in_transaction:
                self.db.execute("ROLLBACK")
            raise
