"""Downstream services run at a lower CPU priority, every thread of their process."""

from __future__ import annotations

import subprocess
import sys

CHILD = """
import os, threading, time
from serve.common.service import lower_priority
started = threading.Event()
threading.Thread(target=lambda: (started.set(), time.sleep(5)), daemon=True).start()
started.wait()
lower_priority(7)
print(sorted({os.getpriority(os.PRIO_PROCESS, int(t)) for t in os.listdir('/proc/self/task')}))
"""


def test_lower_priority_renices_every_thread_of_the_process() -> None:
    out = subprocess.run([sys.executable, "-c", CHILD], capture_output=True, text=True,
                         check=True, timeout=60).stdout
    assert out.strip() == "[7]"
