"""Peer health kit throughput: recorded events per second (one task, 8 Trio tasks, 8 threads)
and snapshot + JSON render time at 1k / 10k / 50k peers. Prints JSON, then a table.

    python -m benchmarks.peerhealth_bench
"""

from __future__ import annotations

import json
import statistics
import threading
import time
from typing import Any

import trio

from peerhealth import (
    LeaseHealthRenderer,
    PeerLeaseHandle,
    PeerLeaseHealthTracker,
    lease_health_json,
    merge_snapshots,
)

EVENTS = 300_000


def _work(tracker: PeerLeaseHealthTracker, worker: int, events: int) -> None:
    """A realistic mix: heartbeats, assignments and releases over 1000 peers (3 events a loop)."""
    for i in range(events // 3):
        peer = f"peer-{i % 1000}"
        handle = PeerLeaseHandle(i, worker, "l")
        tracker.record_heartbeat(peer)
        tracker.record_lease_assigned(peer, handle)
        tracker.record_lease_released(peer, handle, requeued=(i % 10 == 0))


def single_task() -> float:
    t = PeerLeaseHealthTracker()
    start = time.perf_counter()
    _work(t, 0, EVENTS)
    return EVENTS / (time.perf_counter() - start)


def trio_tasks(n: int = 8) -> float:
    t = PeerLeaseHealthTracker()

    async def worker(w: int) -> None:
        per = EVENTS // n
        for chunk in range(0, per, 3000):
            _work(t, w, min(3000, per - chunk))
            await trio.lowlevel.checkpoint()

    async def main() -> float:
        start = time.perf_counter()
        async with trio.open_nursery() as nursery:
            for w in range(n):
                nursery.start_soon(worker, w)
        return EVENTS / (time.perf_counter() - start)

    return trio.run(main)


def threads(n: int = 8) -> float:
    t = PeerLeaseHealthTracker()
    workers = [threading.Thread(target=_work, args=(t, w, EVENTS // n)) for w in range(n)]
    start = time.perf_counter()
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    return EVENTS / (time.perf_counter() - start)


def render(peers: int, repeats: int = 7) -> dict[str, float]:
    """Cold: every peer changed since the last render. Warm: 1% of peers changed (a scrape
    every few seconds in steady state), using the endpoint's caching renderer."""
    t = PeerLeaseHealthTracker()

    def touch_all() -> None:
        for i in range(peers):
            t.record_heartbeat(f"peer-{i}")

    for i in range(peers):
        t.record_gossip(
            f"peer-{i}", {"mesh.role": "worker", "mesh.region": "eu", "label.zone": "b"}
        )
        t.record_lease_assigned(f"peer-{i}", PeerLeaseHandle(i, 0, f"lease-{i}"), "shard", str(i))
    cold, cold_dict, warm = [], [], []
    renderer = LeaseHealthRenderer()
    for r in range(repeats):
        touch_all()
        a = time.perf_counter()
        renderer.render(merge_snapshots([t]))
        cold.append((time.perf_counter() - a) * 1000)
        a = time.perf_counter()
        json.dumps(lease_health_json(merge_snapshots([t])))
        cold_dict.append((time.perf_counter() - a) * 1000)
        for i in range(0, peers, 100):
            t.record_heartbeat(f"peer-{(i + r) % peers}")
        a = time.perf_counter()
        renderer.render(merge_snapshots([t]))
        warm.append((time.perf_counter() - a) * 1000)
    return {
        "peers": peers,
        "cold_ms_median": round(statistics.median(cold), 2),
        "cold_plain_json_ms_median": round(statistics.median(cold_dict), 2),
        "warm_1pct_ms_median": round(statistics.median(warm), 2),
        "warm_1pct_ms_max": round(max(warm), 2),
    }


def main() -> None:
    result: dict[str, Any] = {
        "events_per_s_single_task": round(single_task()),
        "events_per_s_8_trio_tasks": round(trio_tasks()),
        "events_per_s_8_threads": round(threads()),
        "render": [render(n) for n in (1_000, 10_000, 50_000)],
    }
    print(json.dumps(result, indent=2))
    print(f"\n{'recording':<28}{'events/s':>12}")
    for k in ("events_per_s_single_task", "events_per_s_8_trio_tasks", "events_per_s_8_threads"):
        print(f"{k.removeprefix('events_per_s_'):<28}{result[k]:>12,}")
    print("\nsnapshot + JSON render, ms (median)")
    print(f"{'peers':>7}{'cold':>9}{'cold, no cache':>16}{'warm, 1% changed':>18}")
    for r in result["render"]:
        print(
            f"{r['peers']:>7}{r['cold_ms_median']:>9}{r['cold_plain_json_ms_median']:>16}"
            f"{r['warm_1pct_ms_median']:>18}"
        )


if __name__ == "__main__":
    main()
