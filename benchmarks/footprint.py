"""Time from ``afisha run`` to a healthy platform, and the platform's idle memory and CPU.

Starts the platform in a subprocess (embedded defaults unless AFISHA_* says otherwise, in a
temporary data directory), polls ``/actuator/health`` until 200, lets it idle, then sums the RSS
of every process it started (Ray, Serve replicas, inventory hosts, embedded PostgreSQL), and
the CPU time they use over ``--window`` seconds with nothing happening (``idle_cores``: CPU
seconds per second), and stops it with SIGINT. RSS counts shared pages once per process, so the
sum is an upper bound. ``--verbose`` lists the processes with their idle CPU.
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

from cluster.ports import free_port, serve_private_ports, wait_until_healthy


def platform_processes(root: psutil.Process, data_dir: str) -> list[psutil.Process]:
    procs = {p.pid: p for p in [root, *root.children(recursive=True)]}
    for proc in psutil.process_iter(["cmdline"]):
        if data_dir in " ".join(proc.info["cmdline"] or []):
            procs.setdefault(proc.pid, proc)  # embedded PostgreSQL daemonizes itself
    return list(procs.values())


def cpu_seconds(procs: list[psutil.Process]) -> dict[int, float]:
    found: dict[int, float] = {}
    for proc in procs:
        try:
            times = proc.cpu_times()
        except psutil.NoSuchProcess:
            continue
        found[proc.pid] = times.user + times.system
    return found


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--idle", type=float, default=15, help="seconds to idle before measuring")
    parser.add_argument("--window", type=float, default=30, help="seconds of idle CPU measured")
    parser.add_argument("--verbose", action="store_true", help="list processes and their CPU")
    args = parser.parse_args()
    data_dir = tempfile.mkdtemp(prefix="afisha-footprint-")
    port = free_port()
    env = {**os.environ, "AFISHA_DATA_DIR": data_dir, "AFISHA_HTTP_PORT": str(port),
           "AFISHA_DASHBOARD_PORT": str(free_port()), **serve_private_ports()}
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
        before = cpu_seconds(procs)
        time.sleep(args.window)
        after = cpu_seconds(procs)
        used = {pid: after[pid] - before[pid] for pid in after if pid in before}
        if args.verbose:
            names = {p.pid: " ".join(p.cmdline())[:90] for p in procs if p.is_running()}
            for pid, seconds in sorted(used.items(), key=lambda kv: -kv[1]):
                print(f"  {seconds / args.window:6.3f} cores  {names.get(pid, pid)}")
        print(f"healthy_s={healthy_s:.1f} idle_rss_gib={rss / 2**30:.2f} processes={len(procs)} "
              f"idle_cores={sum(used.values()) / args.window:.3f}")
    finally:
        process.send_signal(signal.SIGINT)
        process.wait(120)


if __name__ == "__main__":
    main()
