"""Time from ``afisha run`` to a healthy platform, and the platform's idle memory.

Starts the platform in a subprocess (embedded defaults unless AFISHA_* says otherwise, in a
temporary data directory), polls ``/actuator/health`` until 200, lets it idle, then sums the RSS
of every process it started (Ray, Serve replicas, embedded PostgreSQL) and stops it with SIGINT.
RSS counts shared pages once per process, so the sum is an upper bound.
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import tempfile
import time

import psutil

from cluster.ports import free_port, wait_until_healthy


def platform_processes(root: psutil.Process, data_dir: str) -> list[psutil.Process]:
    procs = {p.pid: p for p in [root, *root.children(recursive=True)]}
    for proc in psutil.process_iter(["cmdline"]):
        if data_dir in " ".join(proc.info["cmdline"] or []):
            procs.setdefault(proc.pid, proc)  # embedded PostgreSQL daemonizes itself
    return list(procs.values())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--idle", type=float, default=15, help="seconds to idle before measuring")
    args = parser.parse_args()
    data_dir = tempfile.mkdtemp(prefix="afisha-footprint-")
    port = free_port()
    env = {**os.environ, "AFISHA_DATA_DIR": data_dir, "AFISHA_HTTP_PORT": str(port),
           "AFISHA_DASHBOARD_PORT": str(free_port())}
    started = time.monotonic()
    process = subprocess.Popen([sys.executable, "-m", "cluster.cli", "run"], env=env, cwd=data_dir,
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}/actuator/health"
    try:
        wait_until_healthy(process, url, limit_s=600, poll_s=0.25)
        healthy_s = time.monotonic() - started
        time.sleep(args.idle)
        procs = platform_processes(psutil.Process(process.pid), data_dir)
        rss = sum(p.memory_info().rss for p in procs if p.is_running())
        print(f"healthy_s={healthy_s:.1f} idle_rss_gib={rss / 2**30:.2f} processes={len(procs)}")
    finally:
        process.send_signal(signal.SIGINT)
        process.wait(120)


if __name__ == "__main__":
    main()
