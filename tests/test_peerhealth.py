"""The peer health kit: tracker, concurrency, providers, JSON, backpressure, replication."""

from __future__ import annotations

import json
import sys
import threading
from collections.abc import Callable, Iterator, Sequence
from datetime import UTC, datetime, timedelta

import pytest
import trio
import trio.testing

from peerhealth import (
    BackpressureDiagnostics,
    BackpressureMonitor,
    CheckpointingSink,
    Labels,
    LeaseHealthRenderer,
    PeerHealth,
    PeerLeaseHandle,
    PeerLeaseHealthTracker,
    ReplicationEventKind,
    ReplicationSource,
    lease_health_json,
    merge_snapshots,
    monitored_memory_channel,
    resolve_low_watermark,
)


class FakeTime:
    def __init__(self) -> None:
        self.t = 1000.0
        self.base = datetime(2026, 11, 22, 12, 0, tzinfo=UTC)

    def mono(self) -> float:
        return self.t

    def wall(self) -> datetime:
        return self.base + timedelta(seconds=self.t - 1000.0)


def tracker(clock: FakeTime, grace: float = 30.0) -> PeerLeaseHealthTracker:
    return PeerLeaseHealthTracker(grace, monotonic=clock.mono, wall=clock.wall)


H1, H2 = PeerLeaseHandle(1, 0, "lease-a"), PeerLeaseHandle(2, 1, "lease-b")


def test_health_follows_heartbeats_grace_and_disconnects() -> None:
    clock = FakeTime()
    t = tracker(clock)
    assert t.is_peer_eligible("unknown")
    t.record_gossip("p", {"mesh.role": "worker"})
    assert t.is_peer_eligible("p")  # no heartbeat yet: healthy
    t.record_heartbeat("p")
    clock.t += 30.0
    assert t.is_peer_eligible("p")  # within the grace
    clock.t += 0.001
    assert not t.is_peer_eligible("p")
    assert t.snapshot().summary.unhealthy_peers == 1  # snapshots observe the grace expiry
    t.record_heartbeat("p")
    assert t.is_peer_eligible("p")
    t.record_disconnect("p", "dead")
    snap = t.snapshot().peer("p")
    assert snap is not None and not snap.is_healthy and snap.metadata["disconnect.reason"] == "dead"
    assert snap.last_disconnect == clock.wall()
    t.record_lease_assigned("p", H1, "shard", "orders/3")  # an assignment clears the disconnect
    assert t.is_peer_eligible("p")
    assert t.transitions == {"to_unhealthy": 2, "to_healthy": 2}


def test_assignments_releases_and_pending_reassignments() -> None:
    t = tracker(FakeTime())
    t.record_lease_assigned("p", H1, "shard", "a")
    t.record_lease_assigned("p", H2, "shard", "b")
    t.record_lease_released("p", H1, requeued=True)
    t.record_lease_released("p", H2, requeued=True)
    p = t.snapshot().peer("p")
    assert p is not None
    assert (p.active_assignments, p.pending_reassignments, p.active_leases) == (0, 2, ())
    t.record_lease_assigned("p", H1)
    t.record_lease_assigned("p", H2)
    t.record_lease_assigned("p", PeerLeaseHandle(3, 0, "c"))
    p = t.snapshot().peer("p")
    assert p is not None and p.pending_reassignments == 0 and p.active_assignments == 3
    t.record_lease_released("p", H1, requeued=False)
    p = t.snapshot().peer("p")
    assert (
        p is not None
        and p.pending_reassignments == 0
        and [h.lease_id for h in p.active_leases] == ["lease-b", "c"]
    )


def test_metadata_keys_are_case_insensitive_and_keep_their_casing() -> None:
    t = tracker(FakeTime())
    t.record_gossip("p", {"Mesh.Role": "worker", "label.Zone": "b"})
    t.record_gossip("p", {"mesh.role": "dispatcher"})
    md = t.snapshot().peer("p").metadata  # type: ignore[union-attr]
    assert md["MESH.ROLE"] == "dispatcher" and list(md) == ["Mesh.Role", "label.Zone"]
    assert Labels({"A": "1"}) == {"a": "1"}


def test_json_shape_field_for_field_with_nulls_omitted() -> None:
    clock = FakeTime()
    t = tracker(clock)
    t.record_heartbeat("p1")
    t.record_lease_assigned("p1", H1, "shard", "x")
    t.record_disconnect("p2", "left")
    doc = lease_health_json(merge_snapshots([t]))
    p1, p2 = doc["peers"]
    assert p1 == {
        "peerId": "p1",
        "lastHeartbeat": "2026-11-22T12:00:00.000Z",
        "isHealthy": True,
        "activeAssignments": 1,
        "pendingReassignments": 0,
        "activeLeases": [{"sequenceId": 1, "attempt": 0, "leaseId": "lease-a"}],
        "metadata": {"resource.type": "shard", "resource.id": "x"},
    }
    assert "lastHeartbeat" not in p2 and p2["lastDisconnect"] == "2026-11-22T12:00:00.000Z"
    assert doc["summary"] == {"eligiblePeers": 1, "unhealthyPeers": 1, "pendingReassignments": 0}
    assert lease_health_json(merge_snapshots([])) == {
        "peers": [],
        "summary": {"eligiblePeers": 0, "unhealthyPeers": 0, "pendingReassignments": 0},
    }


class StaticProvider:
    def __init__(self, name: str, peers: Sequence[PeerHealth]) -> None:
        self.name = name
        self.peers = peers

    def peer_health_snapshot(self) -> Sequence[PeerHealth]:
        return self.peers


class Broken:
    name = "transport"

    def peer_health_snapshot(self) -> Sequence[PeerHealth]:
        raise RuntimeError("socket table unavailable")


def test_providers_merge_deterministically_and_a_raising_one_is_reported() -> None:
    t = tracker(FakeTime())
    t.record_lease_assigned("p", H1)
    t.record_gossip("p", {"mesh.role": "worker"})
    transport = StaticProvider(
        "transport",
        [
            PeerHealth("p", is_healthy=False, metadata={"Mesh.Role": "ignored", "rtt.ms": "3"}),
            PeerHealth("q", active_leases=(H2,)),
        ],
    )
    a = merge_snapshots([t, transport, Broken()])
    b = merge_snapshots([t, transport, Broken()])
    assert lease_health_json(a)["peers"] == lease_health_json(b)["peers"]
    p = a.peer("p")
    assert p is not None and not p.is_healthy and p.active_leases == (H1,)
    assert dict(p.metadata) == {
        "mesh.role": "worker",
        "rtt.ms": "3",
    }  # the first provider wins a key
    assert [x.peer_id for x in a.peers] == ["p", "q"]
    assert lease_health_json(a)["providerErrors"] == [
        {"provider": "transport", "error": "RuntimeError: socket table unavailable"}
    ]


def test_twenty_thousand_peers() -> None:
    t = tracker(FakeTime())
    for i in range(20_000):
        t.record_heartbeat(f"peer-{i}")
        if i % 4 == 0:
            t.record_disconnect(f"peer-{i}", "dead")
    doc = lease_health_json(t.snapshot())
    assert len(doc["peers"]) == 20_000
    assert doc["summary"] == {
        "eligiblePeers": 15_000,
        "unhealthyPeers": 5_000,
        "pendingReassignments": 0,
    }


def _hammer(t: PeerLeaseHealthTracker, worker: int, rounds: int) -> None:
    for i in range(rounds):
        handle = PeerLeaseHandle(i, 0, f"{worker}-{i}")
        peer = f"peer-{i % 7}"
        t.record_lease_assigned(peer, handle)
        t.record_heartbeat(peer)
        t.record_lease_released(peer, handle, requeued=False)


def _consistent(t: PeerLeaseHealthTracker) -> None:
    snap = t.snapshot()
    for p in snap.peers:
        assert p.active_assignments == len(p.active_leases)  # both move in one atomic update
    s = snap.summary
    assert s.eligible_peers + s.unhealthy_peers == len(snap.peers)


class Threads:
    """Threads whose exceptions reach the test: ``join`` re-raises the first one (an assert in a
    plain thread only prints a warning under pytest and the test passes)."""

    def __init__(self) -> None:
        self.threads: list[threading.Thread] = []
        self.errors: list[BaseException] = []

    def start(self, target: Callable[..., None], *args: object) -> None:
        def run() -> None:
            try:
                target(*args)
            except BaseException as exc:
                self.errors.append(exc)

        thread = threading.Thread(target=run, daemon=True)
        self.threads.append(thread)
        thread.start()

    def join(self, timeout: float = 60.0) -> None:
        for thread in self.threads:
            thread.join(timeout)
            assert not thread.is_alive(), "a thread did not finish in time"
        if self.errors:
            raise self.errors[0]


def test_a_failure_inside_a_thread_fails_the_test() -> None:
    threads = Threads()

    def broken() -> None:
        raise AssertionError("seen in the thread")

    threads.start(broken)
    with pytest.raises(AssertionError, match="seen in the thread"):
        threads.join()


@pytest.fixture
def fast_thread_switching() -> Iterator[None]:
    """Switch threads every microsecond (default 5 ms) so that races show up in a short test."""
    before = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)
    try:
        yield
    finally:
        sys.setswitchinterval(before)


def test_counters_are_exact_under_threads(fast_thread_switching: None) -> None:
    t = PeerLeaseHealthTracker()
    threads = Threads()
    workers, rounds = 8, 3000

    def work(worker: int) -> None:
        for i in range(rounds):
            handle = PeerLeaseHandle(i, 0, f"{worker}-{i}")
            peer = f"peer-{i % 5}"
            t.record_lease_assigned(peer, handle)
            t.record_heartbeat(peer)
            t.record_disconnect(peer, f"reason-{i}")  # a reason every thread counts at once
            t.record_lease_released(peer, handle, requeued=i % 2 == 0)

    for w in range(workers):
        threads.start(work, w)
    threads.join()
    total = workers * rounds
    assert (t.assignments, t.releases, t.heartbeats) == (total, total, total)
    assert t.disconnects == {f"reason-{i}": workers for i in range(rounds)}
    assert all(p.active_assignments == 0 and not p.active_leases for p in t.snapshot().peers)


async def test_concurrent_recording_from_tasks_and_threads_keeps_snapshots_consistent() -> None:
    t = PeerLeaseHealthTracker()
    stop = threading.Event()
    threads = Threads()

    def snapshotter() -> None:
        while not stop.is_set():
            _consistent(t)

    threads.start(snapshotter)
    for w in range(4):
        threads.start(_hammer, t, w, 2000)

    async def task(worker: int) -> None:
        for i in range(500):
            handle = PeerLeaseHandle(i, 1, f"task{worker}-{i}")
            t.record_lease_assigned(f"peer-{i % 7}", handle)
            if i % 50 == 0:
                _consistent(t)
                await trio.lowlevel.checkpoint()
            t.record_lease_released(f"peer-{i % 7}", handle, requeued=False)

    async with trio.open_nursery() as nursery:
        for w in range(8):
            nursery.start_soon(task, w)
    for thread in threads.threads[1:]:
        await trio.to_thread.run_sync(thread.join, 60.0)
    stop.set()
    await trio.to_thread.run_sync(threads.join)
    _consistent(t)
    assert t.assignments == 4 * 2000 + 8 * 500 == t.releases
    assert all(p.active_assignments == 0 for p in t.snapshot().peers)


def test_concurrent_snapshots_from_threads_do_not_trip_over_each_other(
    fast_thread_switching: None,
) -> None:
    t = PeerLeaseHealthTracker()

    def churn() -> None:
        for i in range(40_000):
            t.record_heartbeat(f"peer-{i % 500}")
            if i % 3 == 0:
                t.forget(f"peer-{(i + 7) % 500}")

    def snapshots() -> None:
        for _ in range(600):
            _consistent(t)

    for _ in range(3):  # three rounds: a single one catches the old race two times in three
        threads = Threads()
        threads.start(churn)
        for _ in range(4):
            threads.start(snapshots)
        threads.join()


# -- backpressure ------------------------------------------------------------------------------


def test_low_watermark_resolution() -> None:
    assert resolve_low_watermark(512, None) == 256
    assert resolve_low_watermark(512, 0) == 256 and resolve_low_watermark(512, -3) == 256
    assert resolve_low_watermark(512, 600) == 256 and resolve_low_watermark(512, 512) == 256
    assert resolve_low_watermark(1, None) == 1 and resolve_low_watermark(512, 100) == 100


def test_hysteresis_cooldown_latest_and_history() -> None:
    clock = FakeTime()
    m = BackpressureMonitor(10, 4, cooldown=5.0, monotonic=clock.mono, wall=clock.wall)
    diag = BackpressureDiagnostics(capacity=2)
    m.observe(0)  # first observation is announced (inactive)
    m.add_listener(diag)
    assert diag.latest is not None and not diag.latest.is_active  # current signal at once
    assert m.observe(9) is None and not m.is_active
    clock.t += 6
    signal = m.observe(10)
    assert signal is not None and signal.is_active and signal.pending_count == 10
    assert m.observe(5) is None and m.is_active  # hysteresis: above the low watermark
    clock.t += 1
    assert m.observe(4) is None and not m.is_active  # state flips during the cooldown...
    assert diag.latest.is_active  # ...but the notification is held back
    clock.t += 5
    held = m.observe(3)
    assert held is not None and not held.is_active and diag.latest == held
    clock.t += 6
    m.observe(50)
    assert len(diag.history) == 2 and diag.dropped == 2  # 4 signals, capacity 2: oldest dropped
    m2 = BackpressureMonitor(10, 4, cooldown=5.0, monotonic=clock.mono, wall=clock.wall)
    m2.observe(0)
    clock.t += 6
    m2.observe(20)
    clock.t += 1
    m2.observe(0)
    m2.observe(20)  # flipped and flipped back during the cooldown
    clock.t += 5
    assert m2.observe(15) is None  # nothing to announce: still active, as announced


async def test_drain_waiters_and_monitored_channel(autojump_clock: trio.testing.MockClock) -> None:
    m = BackpressureMonitor(3, 1, cooldown=0)
    send, receive = monitored_memory_channel(10, m)
    for i in range(3):
        await send.send(i)
    assert m.is_active
    drained = trio.Event()

    async def waiter() -> None:
        await m.wait_for_draining()
        drained.set()

    async with trio.open_nursery() as nursery:
        nursery.start_soon(waiter)
        await trio.sleep(1)
        assert not drained.is_set()
        await receive.receive()
        assert m.is_active  # depth 2 > low 1
        await receive.receive()
        with trio.fail_after(1):
            await drained.wait()
    await m.wait_for_draining()  # returns at once when inactive


# -- replication -------------------------------------------------------------------------------


async def test_replication_sequences_skip_and_lag(autojump_clock: trio.testing.MockClock) -> None:
    clock = FakeTime()
    source = ReplicationSource(wall=clock.wall)
    applied: list[int] = []
    sink = CheckpointingSink(
        lambda e: applied.append(e.sequence),
        checkpoint=2,
        peer_checkpoints={"p1": 4},
        wall=clock.wall,
    )
    events = [
        source.publish(ReplicationEventKind.ENQUEUED, peer)
        for peer in ("p1", "p2", "p1", "p1", "p2", "p1")
    ]
    assert [e.sequence for e in events] == [1, 2, 3, 4, 5, 6]
    assert sink.sequence_lag(source) == 4
    for e in events:
        await sink.handle(e)
    assert applied == [5, 6]  # 1-2 under the global checkpoint, 3-4 under p1's own
    assert sink.skipped == 4 and sink.sequence_lag(source) == 0
    clock.t += 7
    assert sink.wall_lag() == 7.0
    for e in events:
        await sink.handle(e)  # a replay after a restart applies nothing twice
    assert applied == [5, 6]

    async with trio.open_nursery() as nursery:
        nursery.start_soon(sink.run, source)
        source.publish(ReplicationEventKind.COMPLETED, "p2")
        with trio.fail_after(1):
            while applied[-1] != 7:
                await trio.sleep(0.01)
        nursery.cancel_scope.cancel()


def test_the_caching_renderer_writes_exactly_the_reference_json() -> None:
    clock = FakeTime()
    t = tracker(clock)
    t.record_heartbeat("p1")
    t.record_gossip("p1", {"Mesh.Role": 'wor"ker\\', "label.\u00fcml": "\u2603\n"})
    t.record_lease_assigned("p1", H1, "shard", "x")
    t.record_lease_assigned("p1", H2)
    t.record_disconnect("p2", "left")
    t.record_gossip('odd"peer\\', {})
    renderer = LeaseHealthRenderer()
    for _ in range(2):  # cold, then from the cache
        body = renderer.render(merge_snapshots([t, Broken()]))
        assert json.loads(body) == lease_health_json(merge_snapshots([t, Broken()]))
    clock.t += 31  # health changes with time: a cached fragment must not be reused
    body = renderer.render(merge_snapshots([t]))
    assert json.loads(body) == lease_health_json(merge_snapshots([t]))
    assert json.loads(body)["summary"]["unhealthyPeers"] == 2


# -- never exercised before: forget, watch_depth, the collector's OmniRelay names ---------------


def test_forget_drops_a_peer_from_snapshots_and_makes_it_unknown_again() -> None:
    clock = FakeTime()
    t = tracker(clock)
    t.record_disconnect("gone", "left")
    t.record_heartbeat("stays")
    assert not t.is_peer_eligible("gone")
    t.forget("gone")
    assert [p.peer_id for p in t.snapshot().peers] == ["stays"]
    assert t.is_peer_eligible("gone")  # unknown peers are eligible
    t.forget("never-seen")  # forgetting a stranger is no error


async def test_watch_depth_samples_the_queue_into_the_monitor(
    autojump_clock: trio.testing.MockClock,
) -> None:
    from peerhealth import watch_depth

    monitor = BackpressureMonitor(3, 1, cooldown=0)
    queue: list[int] = []
    async with trio.open_nursery() as nursery:
        nursery.start_soon(watch_depth, monitor, queue, 0.5)
        await trio.sleep(0.1)
        assert not monitor.is_active
        queue.extend(range(5))
        await trio.sleep(0.5)  # the next sample, half a second after the first
        assert monitor.is_active
        del queue[:]
        await trio.sleep(0.5)
        assert not monitor.is_active
        nursery.cancel_scope.cancel()


def test_the_collector_exports_omnirelay_metric_names() -> None:
    from prometheus_client import CollectorRegistry, generate_latest

    from peerhealth import PeerHealthCollector

    clock = FakeTime()
    t = tracker(clock)
    t.record_heartbeat("a")
    t.record_lease_assigned("a", H1)
    t.record_disconnect("b", "dead")
    t.record_lease_released("c", H2, requeued=True)
    monitor = BackpressureMonitor(2, 1, cooldown=0, monotonic=clock.mono, wall=clock.wall)
    monitor.observe(5)
    registry = CollectorRegistry()
    registry.register(PeerHealthCollector(t, backpressure=monitor))
    samples = {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in registry.collect()
        for s in family.samples
    }
    assert samples[("omnirelay_peer_lease_healthy", ())] == 2  # a and c
    assert samples[("omnirelay_peer_lease_unhealthy", ())] == 1
    assert samples[("omnirelay_peer_lease_pending_reassignments", ())] == 1
    assert samples[("omnirelay_peer_lease_assignments_total", ())] == 1
    assert samples[("omnirelay_peer_lease_releases_total", ())] == 1
    assert samples[("omnirelay_peer_lease_heartbeats_total", ())] == 1
    assert samples[("omnirelay_peer_lease_disconnects_total", (("reason", "dead"),))] == 1
    assert samples[("omnirelay_backpressure_active", ())] == 1
    text = generate_latest(registry).decode()
    assert "# TYPE omnirelay_peer_lease_healthy gauge" in text


def test_one_rfc3339_helper_for_datetimes_and_timestamps() -> None:
    from datetime import timezone

    from peerhealth.timefmt import rfc3339

    moment = datetime(2026, 11, 22, 12, 0, 1, 987_654, tzinfo=UTC)
    assert rfc3339(moment) == "2026-11-22T12:00:01.987Z"  # milliseconds, truncated
    assert rfc3339(moment.timestamp()) == "2026-11-22T12:00:01.987Z"
    east = moment.astimezone(timezone(timedelta(hours=2)))
    assert rfc3339(east) == "2026-11-22T12:00:01.987Z"  # any zone is written in UTC


def test_leadership_events_mark_leaders_and_followers_in_the_tracker() -> None:
    from datetime import UTC, datetime

    from leadership import EventKind, LeadershipEvent, LeadershipEventHub
    from swimmesh.peer_health import record_leadership

    hub, tracker = LeadershipEventHub(64), PeerLeaseHealthTracker()
    record_leadership(hub, tracker, local="me")
    now = datetime.now(UTC)

    def publish(kind: EventKind, leader: str, scope: str = "global-control") -> None:
        hub.publish(LeadershipEvent(kind, scope, leader, None, "", "cid", now))

    def role(peer: str, scope: str = "global-control") -> str | None:
        (found,) = [p for p in tracker.peer_health_snapshot() if p.peer_id == peer]
        return found.metadata.get(f"mesh.leader.scope.{scope}")

    publish(EventKind.OBSERVED, "b")
    assert role("b") == "leader"
    publish(EventKind.ELECTED, "c")
    assert (role("b"), role("c")) == ("follower", "leader")
    publish(EventKind.STEPPED_DOWN, "c")
    assert role("c") == "follower"
    publish(EventKind.ELECTED, "me", "shard/a/1")  # the local node is not a peer
    assert all(p.peer_id != "me" for p in tracker.peer_health_snapshot())
