"""The run directory's lock (charrnn/train/runlock.py) under a race for a stale lock."""

import subprocess
import sys
import time

from charrnn.train import runlock
from charrnn.train.trainer import train
from tests.helpers import tiny


def test_two_trainers_taking_over_a_stale_lock_at_once_one_runs(corpus, tmp_path, monkeypatch):
    """Both find the lock of a dead trainer and decide, slowly, that it is stale: only one may
    take it (with unlink-and-recreate both would, the second deleting the first one's lock)."""
    import threading
    run = tmp_path / "r"
    run.mkdir()
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    (run / "train.lock").write_text(str(dead.pid))
    real = runlock._alive
    monkeypatch.setattr(runlock, "_alive", lambda pid: time.sleep(0.3) or real(pid))
    outcomes = []

    def trainer():
        try:
            outcomes.append(train(tiny(corpus, run, steps=5)).step)
        except Exception as e:  # noqa: BLE001 - the refusal is the expected outcome
            outcomes.append(str(e))

    threads = [threading.Thread(target=trainer) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    ran = [o for o in outcomes if o == 5]
    refused = [o for o in outcomes if isinstance(o, str) and "in use by another trainer" in o]
    assert len(ran) == len(refused) == 1, outcomes
    assert not (run / "train.lock").exists()

