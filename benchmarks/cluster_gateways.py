"""Hot-event reservations/s on the three-node local cluster with one, then two gateway replicas.

For each gateway count: ``make cluster``'s cluster (a head and two worker nodes on this machine,
tests/multinode/local_cluster.py) is started and Afisha deployed onto it with ``afisha deploy``
(placement as there: one proxy on the head, gateway replicas on distinct nodes, inventory hosts
spread, consumers on the workers). One published event with a paid ticket type of 10⁶ seats is
seeded; then ``--rounds`` wrk rounds of ``--seconds`` (``--connections`` connections), every
request a reservation of one seat with an Idempotency-Key never used before, as ``make bench``'s
capacity pass does (benchmarks/wrk_sale.lua). Between rounds it waits until the round is
settled (every registration has its pending payment and analytics row, at most
``--settle-seconds``). Prints reservations/s (201 answers ÷ wrk's duration) per round, the
median, p50/p99 and 5xx, and the settled rate.

All three nodes share the machine's cores (two on the development VM), so a second gateway
replica adds a process, not a core: the figure says what Serve's placement costs or gains here,
not what two machines would do.

Usage: ``python -m benchmarks.cluster_gateways [--rounds 3 --seconds 15 --connections 32]``.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

from benchmarks.capacity import lua_plan, run_wrk, wait_settled
from benchmarks.reserve_hot_event import seed
from cluster.settings import Settings, normalize_database_url
from serve.users.tokens import issue_access_token
from tests.e2e.conftest import E2E_JWT_SECRET
from tests.multinode.local_cluster import deployed


def measure(gateways: int, args: argparse.Namespace, results: Path) -> dict[str, Any]:
    with deployed(gateway_replicas=gateways) as platform:
        settings = Settings.model_validate({
            "database_url": normalize_database_url(platform.database),
            "jwt_secret": E2E_JWT_SECRET})
        [(event_id, tt_id)] = asyncio.run(seed(settings, 1, 10**6, 990))
        tokens = [issue_access_token(settings, str(uuid.uuid4())) for _ in range(64)]
        targets = [{"event_id": event_id, "ticket_type_id": tt_id}]
        rounds = []
        for number in range(1, args.rounds + 1):
            plan = results / f"cluster_{gateways}gw_{number}.lua"
            lua_plan(plan, f"cluster-{uuid.uuid4().hex[:8]}", "reserve", tokens, targets, [])
            began = time.monotonic()
            out = run_wrk(platform.base_url, plan, args.seconds, args.connections, 2,
                          results / "wrk.log")
            statuses = {int(k): v for k, v in out["statuses"].items()}
            duration = out["duration_us"] / 1e6
            rounds.append({"per_s": statuses.get(201, 0) / duration,
                           "p50_ms": out["p50_us"] / 1000, "p99_ms": out["p99_us"] / 1000,
                           "errors_5xx": sum(v for k, v in statuses.items() if k >= 500),
                           "timeouts": out["timeouts"], "reserved": statuses.get(201, 0)})
            settled = wait_settled(platform.database.replace("+asyncpg", ""), "afisha",
                                   [event_id], began, args.settle_seconds)
            rounds[-1]["settled_per_s"] = rounds[-1]["reserved"] / settled["settled_s"]
            print(f"  {gateways} gateway replica(s), round {number}: "
                  f"{rounds[-1]['per_s']:.0f} reservations/s, p50 {rounds[-1]['p50_ms']:.0f} ms, "
                  f"p99 {rounds[-1]['p99_ms']:.0f} ms, 5xx {rounds[-1]['errors_5xx']}, "
                  f"timeouts {out['timeouts']}; settled {rounds[-1]['settled_per_s']:.0f}/s in "
                  f"{settled['settled_s']:.0f} s", flush=True)
        return {"gateways": gateways, "rounds": rounds,
                "median_per_s": statistics.median(r["per_s"] for r in rounds)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--seconds", type=float, default=15)
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--settle-seconds", type=float, default=120)
    parser.add_argument("--gateways", type=int, nargs="+", default=[1, 2])
    args = parser.parse_args()
    results = Path(tempfile.mkdtemp(prefix="afisha-cluster-bench-"))
    measured = [measure(n, args, results) for n in args.gateways]
    print(f"hot event on 3 nodes sharing this machine, wrk -c{args.connections} "
          f"{args.rounds}x{args.seconds:.0f} s (wrk log: {results / 'wrk.log'}):")
    for m in measured:
        rates = ", ".join(f"{r['per_s']:.0f}" for r in m["rounds"])
        settled = ", ".join(f"{r['settled_per_s']:.0f}" for r in m["rounds"])
        print(f"  {m['gateways']} gateway replica(s): median {m['median_per_s']:.0f} "
              f"reservations/s (rounds {rates}; settled {settled})")


if __name__ == "__main__":
    main()
