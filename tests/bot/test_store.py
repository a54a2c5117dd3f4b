"""The store under concurrency: group commit, and claims racing across connections."""

import sqlite3
import threading
import time
from concurrent.futures import wait

import pytest

from bot.store import GroupCommit, Store


def test_group_commit_stores_each_delivery_once_and_shares_commits(tmp_path):
    db = tmp_path / "bot.db"
    Store(db).close()  # the schema
    writer = GroupCommit(db)
    try:
        futures = []

        def send(k):
            for i in range(100):
                futures.append(writer.submit(f"d{k}-{i}", "pull_request", "opened", b"{}"))
        threads = [threading.Thread(target=send, args=(k,)) for k in range(8)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        again = writer.submit("d0-0", "pull_request", "opened", b"{}")  # a redelivery
        done, _ = wait(futures + [again], timeout=30)
        assert len(done) == 801
        assert all(f.result() is True for f in futures) and again.result() is False
        assert writer.rows == 801 and writer.batches < 801  # some commits carried several deliveries
    finally:
        writer.close()
    with sqlite3.connect(db) as c:
        assert c.execute("SELECT COUNT(*), COUNT(DISTINCT id) FROM deliveries").fetchone() == (800, 800)


def test_a_bad_row_fails_alone_and_a_locked_store_answers_late_not_wrong(tmp_path):
    db = tmp_path / "bot.db"
    Store(db).close()
    writer = GroupCommit(db)
    try:
        # Hold the write lock: the writer waits, so both deliveries land in one batch.
        blocker = sqlite3.connect(db, isolation_level=None)
        blocker.execute("BEGIN IMMEDIATE")
        good = writer.submit("good", "pull_request", "opened", b"{}")
        bad = writer.submit("bad", None, None, b"{}")  # event is NOT NULL
        time.sleep(0.3)
        assert not good.done()  # nothing is acknowledged before it is committed
        blocker.execute("ROLLBACK")
        blocker.close()
        assert good.result(timeout=30) is True
        with pytest.raises(sqlite3.IntegrityError):
            bad.result(timeout=30)
    finally:
        writer.close()
    assert Store(db).has_delivery("good") and not Store(db).has_delivery("bad")


def test_workers_racing_on_separate_connections_never_claim_the_same_delivery(tmp_path):
    db = tmp_path / "bot.db"
    store = Store(db)
    for i in range(200):
        store.add_delivery(f"d{i}", "pull_request", "opened", b"{}")
    claimed: list[str] = []
    lock = threading.Lock()

    def work(name):
        mine = Store(db, durable=False)  # as in the worker process: its own connection
        while (d := mine.claim(name, 60)) is not None:
            with lock:
                claimed.append(d.id)
            mine.finish(d.id, worker=name)
    threads = [threading.Thread(target=work, args=(f"w{k}",)) for k in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(claimed) == sorted(f"d{i}" for i in range(200))  # each exactly once
    assert store.counts() == {"done": 200}
