"""Which processes belong to a benchmark run, the CPU each part of the system spent, the RSS of
the platform.

Only this run's processes count: the benchmark's own children (the platform and everything Ray
started under it, the baseline, wrk, Locust), the benchmark itself (the open-loop driver and the
database polling), and the embedded PostgreSQL (found by its data directory, it daemonizes).
Other programs on the machine are left out, except RabbitMQ and Redis when the run uses the
machine's (``AFISHA_AMQP_URL`` / ``AFISHA_REDIS_URL``) and every PostgreSQL process when the run
uses the machine's server (``AFISHA_BENCH_DATABASE_URL``): those are shared, and say so.
"""

from __future__ import annotations

import os

import psutil

# Set by bench.py: the embedded PostgreSQL's data directory, and which shared servers count.
MARKERS: dict[str, str] = {"data_dir": ""}


def component(proc: psutil.Process) -> str:
    """Which part of the system a process is, for the CPU-by-component table."""
    try:
        cmdline = proc.cmdline()
        name = proc.name()
    except (psutil.NoSuchProcess, psutil.AccessDenied):
        return "other"
    first = cmdline[0] if cmdline else name
    joined = " ".join(cmdline[:4])
    if proc.pid == os.getpid():
        return "bench driver (open loop, polling)"
    if first.startswith("ray::ServeReplica:"):  # "...:afisha:Gateway" or ".Gateway.method()"
        return first.removeprefix("ray::ServeReplica:").split(":", 1)[-1].split(".")[0]
    if first.startswith("ray::") and "Inventory" in first:
        return "inventory actors/hosts"
    if first.startswith("ray::") or "ray/core" in first or "raylet" in name or "gcs_server" in name:
        return "ray (controller, proxy, dashboard, gcs)"
    if "locust" in joined:
        return "locust (load generator)"
    if name == "wrk" or first.endswith("/wrk") or first == "wrk":
        return "wrk (load generator)"
    if "benchmarks.baseline" in " ".join(cmdline):
        return "baseline"
    if "cluster.cli" in joined:
        return "afisha run (driver)"
    for label in ("postgres", "haproxy", "beam.smp", "redis-server"):
        if label in name or label in first:
            return {"beam.smp": "rabbitmq (shared)", "redis-server": "redis (shared)"}.get(
                label, label)
    return "other (this run)"


def tracked() -> list[psutil.Process]:
    """This run's processes (see the module's docstring)."""
    me = psutil.Process()
    found: dict[int, psutil.Process] = {me.pid: me}
    found.update({p.pid: p for p in me.children(recursive=True)})
    shared_pg = bool(os.environ.get("AFISHA_BENCH_DATABASE_URL"))
    shared = {"beam.smp": bool(os.environ.get("AFISHA_AMQP_URL")),
              "redis-server": bool(os.environ.get("AFISHA_REDIS_URL"))}
    data_dir = MARKERS["data_dir"]
    for proc in psutil.process_iter(["name", "cmdline"]):
        try:
            name = proc.info["name"] or ""
            cmd = " ".join(proc.info["cmdline"] or [])
            if data_dir and data_dir in cmd:  # the embedded postmaster, then its backends
                found.setdefault(proc.pid, proc)
                found.update({p.pid: p for p in proc.children(recursive=True)})
            elif shared.get(name) or (shared_pg and name.startswith("postgres")):
                found.setdefault(proc.pid, proc)
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            continue
    return list(found.values())


Snapshot = dict[int, tuple[str, float]]


def cpu_snapshot() -> Snapshot:
    found: Snapshot = {}
    for proc in tracked():
        try:
            times = proc.cpu_times()
            found[proc.pid] = (component(proc), times.user + times.system)
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            continue
    return found


def cpu_delta(before: Snapshot, after: Snapshot | None = None) -> dict[str, float]:
    """CPU seconds per component between two snapshots (processes started since count from 0;
    processes that ended in between are lost, which only short-lived helpers do)."""
    totals: dict[str, float] = {}
    for pid, (name, used) in (after if after is not None else cpu_snapshot()).items():
        earlier = before.get(pid)
        spent = used - earlier[1] if earlier and earlier[0] == name else used
        totals[name] = totals.get(name, 0.0) + max(spent, 0.0)
    return {k: round(v, 3) for k, v in sorted(totals.items(), key=lambda kv: -kv[1]) if v > 0.005}


def tree_rss(pid: int) -> int:
    """Bytes of RSS of a process and all its descendants (shared pages counted per process, so
    an upper bound)."""
    try:
        root = psutil.Process(pid)
        procs = [root, *root.children(recursive=True)]
    except psutil.NoSuchProcess:
        return 0
    total = 0
    for proc in procs:
        try:
            total += proc.memory_info().rss
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            continue
    return total


def tree_cpu_seconds(pid: int) -> float:
    """CPU seconds (user + system) a process and its living descendants have used."""
    try:
        root = psutil.Process(pid)
        procs = [root, *root.children(recursive=True)]
    except psutil.NoSuchProcess:
        return 0.0
    total = 0.0
    for proc in procs:
        try:
            times = proc.cpu_times()
            total += times.user + times.system
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            continue
    return total
