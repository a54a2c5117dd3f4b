"""Two models loading at once in one process (a follower switching while another server in the
process loads, or two followers): transformers' loader is not thread-safe, and a race leaves the
weights on the meta device and breaks every later load in the process."""

import threading

from pipeline.serve.engine import Engine
from tests.serve.conftest import loud_model


def test_concurrent_loads_all_succeed(tmp_path):
    folders = [loud_model(tmp_path / "a", 1), loud_model(tmp_path / "b", 2)]
    failures: list = []

    def load_many(folder):
        for _ in range(4):
            try:
                Engine(folder, device="cpu")
            except Exception as e:  # the race shows as NotImplementedError: "Cannot copy out of meta tensor"
                failures.append(f"{type(e).__name__}: {e}")

    threads = [threading.Thread(target=load_many, args=(f,)) for f in folders]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not failures, failures[:2]
