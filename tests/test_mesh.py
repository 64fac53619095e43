"""Whole meshes on the in-memory network, in virtual time (MockClock with autojump)."""

from __future__ import annotations

import inspect
import statistics

import pytest
import trio
import trio.testing

from swimmesh import (
    JoinError,
    MemberEventKind,
    MemberStatus,
    MeshConfig,
    MeshNode,
    MessageTooLarge,
    RequestError,
    codec,
    runtime,
)
from swimmesh.crypto import OVERHEAD, Keyring, Sealer, generate_key
from swimmesh.messages import Ping
from swimmesh.metrics import node_registry
from swimmesh.protocol import suspicion_bounds
from swimmesh.testing import Cluster, EventLog, MemoryNetwork, wait_for
from swimmesh.transport.sealed import SealedTransport

ALIVE, SUSPECT, DEAD, LEFT = MemberStatus
N = 50


def names(n: int) -> list[str]:
    return [f"n{i:03d}" for i in range(n)]


def any_pending(cluster: Cluster, key: object) -> bool:
    """True while some node still has the broadcast ``key`` in its queue."""
    return any(node.instance.pending_broadcast(key) for node in cluster.live())


def assert_no_malformed(cluster: Cluster) -> None:
    """Nodes only ever send what their peers accept."""
    assert sum(n.stats.dropped["malformed"] for n in cluster.live()) == 0


async def test_fifty_nodes_join_through_one_seed_and_metadata_reaches_all(
    sim_clock: trio.testing.MockClock,
) -> None:
    net = MemoryNetwork(seed=1)
    net.set_latency(0.002, 0.001)
    async with Cluster.open("lan", network=net, seed=1) as cluster:
        await cluster.start_many(names(N))
        took = await wait_for(lambda: cluster.views_agree(ALIVE), timeout=30, what="50 alive")
        assert all(len(n.alive_members()) == N for n in cluster.live())
        await cluster.nodes["n007"].update_metadata({"role": "leader-candidate", "zone": "b"})
        await wait_for(
            lambda: all(
                n.member("n007").metadata.get("role") == "leader-candidate"  # type: ignore[union-attr]
                for n in cluster.live()
            ),
            timeout=10,
            what="metadata everywhere",
        )
        assert {n.member("n007").meta_version for n in cluster.live()} == {1}  # type: ignore[union-attr]
        print(f"50-node join converged in {took:.2f} virtual s")
        assert_no_malformed(cluster)


async def test_crashed_node_is_dead_everywhere_within_the_suspicion_bounds(
    sim_clock: trio.testing.MockClock,
) -> None:
    net = MemoryNetwork(seed=2)
    net.set_latency(0.002, 0.001)
    log = EventLog()
    async with Cluster.open("lan", network=net, seed=2) as cluster, trio.open_nursery() as watchers:
        await cluster.start_many(names(N))
        await wait_for(lambda: cluster.views_agree(ALIVE), timeout=30)
        await trio.sleep(5)  # past the join: health scores settle
        for node in cluster.live():
            await watchers.start(log.follow, node)
        victim = "n031"
        cfg = cluster.nodes[victim].config
        cluster.crash(victim)
        crashed_at = trio.current_time()
        others = [n for n in names(N) if n != victim]
        await wait_for(
            lambda: cluster.views_agree(DEAD, about=[victim]), timeout=120, what="dead everywhere"
        )

        minimum, maximum = suspicion_bounds(
            cfg.suspicion_mult, cfg.suspicion_max_timeout_mult, N, cfg.probe_interval
        )
        suspects = log.of(MemberEventKind.SUSPECT, victim)
        deaths = {observer: t for t, observer, _ in log.of(MemberEventKind.DEAD, victim)}
        assert set(deaths) == set(others)
        first_suspicion = min(t for t, _, _ in suspects)
        # Every node probes every member once per round of n-1 probes, and the first failed
        # probe ends one probe interval after it started.
        assert first_suspicion - crashed_at <= (N - 1) * cfg.probe_interval + cfg.probe_interval
        # No node can declare death before the minimum suspicion timeout has run...
        assert min(deaths.values()) >= first_suspicion + minimum - 1e-9
        # ...and none waits longer than the maximum plus the gossip of the verdict.
        gossip_slack = cfg.gossip_interval * cfg.retransmit_mult * 2
        assert max(deaths.values()) <= first_suspicion + maximum + gossip_slack
        med = statistics.median(deaths.values()) - crashed_at
        print(
            f"first suspicion {first_suspicion - crashed_at:.2f}s, median dead {med:.2f}s, "
            f"min/max timeout {minimum:.2f}/{maximum:.2f}s"
        )
        watchers.cancel_scope.cancel()


async def test_graceful_leave_is_left_everywhere_and_never_a_failure(
    sim_clock: trio.testing.MockClock,
) -> None:
    net = MemoryNetwork(seed=3)
    net.set_latency(0.002, 0.001)
    net.set_loss(0.01)
    log = EventLog()
    async with Cluster.open("lan", network=net, seed=3) as cluster, trio.open_nursery() as watchers:
        await cluster.start_many(names(N))
        await wait_for(lambda: cluster.views_agree(ALIVE), timeout=30)
        for node in cluster.live():
            await watchers.start(log.follow, node)
        await cluster.stop("n010")
        took = await wait_for(lambda: cluster.views_agree(LEFT, about=["n010"]), timeout=10)
        await trio.sleep(60)  # long after: nobody turned it into a failure
        assert cluster.views_agree(LEFT, about=["n010"]) or all(
            n.member("n010") is None
            for n in cluster.live()  # reaped after gossip_to_the_dead
        )
        assert log.of(MemberEventKind.DEAD, "n010") == []
        assert log.of(MemberEventKind.SUSPECT, "n010") == []
        assert len(log.of(MemberEventKind.LEAVE, "n010")) == N - 1
        assert_no_malformed(cluster)
        print(f"leave seen as Left everywhere after {took:.2f} virtual s")
        watchers.cancel_scope.cancel()


async def test_restarted_node_refutes_its_death_and_is_alive_everywhere(
    sim_clock: trio.testing.MockClock,
) -> None:
    net = MemoryNetwork(seed=4)
    net.set_latency(0.002, 0.001)
    async with Cluster.open("lan", network=net, seed=4) as cluster:
        await cluster.start_many(names(20))
        await wait_for(lambda: cluster.views_agree(ALIVE), timeout=30)
        cluster.crash("n005")
        await wait_for(lambda: cluster.views_agree(DEAD, about=["n005"]), timeout=120)
        dead_inc = cluster.nodes["n000"].member("n005").incarnation  # type: ignore[union-attr]
        node = await cluster.start("n005")  # same name, same address, fresh process state
        assert node.local_member.incarnation == 0
        await node.join([("n000", 7946)])
        await wait_for(lambda: cluster.views_agree(ALIVE), timeout=30, what="restarted node alive")
        assert node.local_member.incarnation > dead_inc
        assert len(node.alive_members()) == 20


async def test_partition_each_side_declares_the_other_dead_then_heals(
    sim_clock: trio.testing.MockClock,
) -> None:
    net = MemoryNetwork(seed=5)
    net.set_latency(0.002, 0.001)
    all_names = names(N)
    side_a, side_b = all_names[:30], all_names[30:]
    log = EventLog()

    def declared_dead() -> set[tuple[str, str]]:
        return {(observer, ev.member.name) for _, observer, ev in log.of(MemberEventKind.DEAD)}

    cross = {(o, m) for o in side_a for m in side_b} | {(o, m) for o in side_b for m in side_a}
    async with Cluster.open("lan", network=net, seed=5) as cluster, trio.open_nursery() as watchers:
        await cluster.start_many(all_names)
        await wait_for(lambda: cluster.views_agree(ALIVE), timeout=30)
        for node in cluster.live():
            await watchers.start(log.follow, node)
        net.partition([(n, 7946) for n in side_a], [(n, 7946) for n in side_b])
        await wait_for(
            lambda: cross <= declared_dead(), timeout=180, what="each side declares the other dead"
        )
        assert {(o, m) for o, m in declared_dead() if (o in side_a) == (m in side_a)} == set()
        assert cluster.views_agree(ALIVE, about=side_a, observers=side_a)
        assert cluster.views_agree(ALIVE, about=side_b, observers=side_b)
        net.heal()
        took = await wait_for(lambda: cluster.views_agree(ALIVE), timeout=180, what="healed")
        print(f"healed in {took:.1f} virtual s")
        assert_no_malformed(cluster)
        watchers.cancel_scope.cancel()


async def test_partition_longer_than_tombstones_still_merges_by_reconnect(
    sim_clock: trio.testing.MockClock,
) -> None:
    net = MemoryNetwork(seed=6)
    net.set_latency(0.002, 0.001)
    all_names = names(20)
    side_a, side_b = all_names[:12], all_names[12:]
    async with Cluster.open("lan", network=net, seed=6) as cluster:
        await cluster.start_many(all_names)
        await wait_for(lambda: cluster.views_agree(ALIVE), timeout=30)
        net.partition([(n, 7946) for n in side_a], [(n, 7946) for n in side_b])
        cfg = cluster.nodes["n000"].config
        # Wait until every tombstone of the other side is reaped.
        await wait_for(
            lambda: all(
                n.member(o) is None
                for n in cluster.live()
                for o in (side_b if n.name in side_a else side_a)
            ),
            timeout=300,
            what="tombstones reaped",
        )
        net.heal()
        took = await wait_for(
            lambda: cluster.views_agree(ALIVE),
            timeout=10 * cfg.reconnect_interval,
            what="merged after long partition",
        )
        print(f"merged by reconnect in {took:.1f} virtual s")
        assert_no_malformed(cluster)


async def test_join_with_no_reachable_seed_is_a_clear_error(
    sim_clock: trio.testing.MockClock,
) -> None:
    net = MemoryNetwork(seed=7)
    cfg = MeshConfig.lan(name="lonely", bind=("lonely", 1), join_timeout=3)
    async with MeshNode.open(cfg, net.endpoint(cfg.bind)) as node:
        start = trio.current_time()
        with pytest.raises(JoinError, match=r"no seed answered.*ghost:7946"):
            await node.join(["ghost:7946"])
        assert trio.current_time() - start <= 3 + 1e-6
        assert await node.join([]) == 0


async def test_overlay_broadcast_datagram_and_request(sim_clock: trio.testing.MockClock) -> None:
    net = MemoryNetwork(seed=8)
    net.set_latency(0.002, 0.001)
    got: dict[str, list[bytes]] = {}
    async with Cluster.open("lan", network=net, seed=8) as cluster:
        await cluster.start_many(names(10))
        await wait_for(lambda: cluster.views_agree(ALIVE), timeout=30)
        for node in cluster.live():
            node.register_handler(
                "votes", lambda src, payload, n=node.name: got.setdefault(n, []).append(payload)
            )

            async def echo(src: tuple[str, int], payload: bytes, n: str = node.name) -> bytes:
                return n.encode() + b":" + payload

            node.register_request_handler("echo", echo)
        await cluster.nodes["n000"].broadcast("votes", b"term-7", key="scope-a")
        await wait_for(lambda: all(b"term-7" in got.get(n, []) for n in names(10)[1:]), timeout=10)
        # Once every node has retired it, each handler has seen it exactly once (epidemic
        # gossip brings it to most nodes several times), and the origin never.
        await wait_for(lambda: not any_pending(cluster, ("u", "votes", "scope-a")), timeout=30)
        assert {n: got.get(n, []).count(b"term-7") for n in names(10)} == {
            n: int(n != "n000") for n in names(10)
        }
        await cluster.nodes["n001"].send("n002", "votes", b"direct")
        await wait_for(lambda: b"direct" in got.get("n002", []), timeout=1)
        # A datagram that would not fit is refused, not put on the wire oversized.
        with pytest.raises(MessageTooLarge, match="udp_buffer_size 1400"):
            await cluster.nodes["n001"].send("n002", "votes", b"x" * 1400)
        assert await cluster.nodes["n003"].request("n004", "echo", b"hi") == b"n004:hi"
        with pytest.raises(RequestError, match="no handler"):
            await cluster.nodes["n003"].request("n004", "nope", b"")
        with pytest.raises(RequestError, match="unknown member"):
            await cluster.nodes["n003"].request("zzz", "echo", b"")


async def test_events_follow_a_member_lifecycle(sim_clock: trio.testing.MockClock) -> None:
    net = MemoryNetwork(seed=9)
    async with Cluster.open("lan", network=net, seed=9) as cluster:
        await cluster.start_many(names(5))
        await wait_for(lambda: cluster.views_agree(ALIVE), timeout=30)
        watcher = cluster.nodes["n000"]
        async with watcher.events() as events:
            await cluster.nodes["n001"].update_metadata({"v": "2"})
            cluster.crash("n002")
            await cluster.start("n009")
            await cluster.nodes["n009"].join([("n000", 7946)])
            seen: list[tuple[MemberEventKind, str]] = []
            with trio.fail_after(120):
                async for ev in events:
                    seen.append((ev.kind, ev.member.name))
                    if (
                        (MemberEventKind.DEAD, "n002") in seen
                        and (MemberEventKind.JOIN, "n009") in seen
                        and (MemberEventKind.UPDATE, "n001") in seen
                    ):
                        break
        assert seen.index((MemberEventKind.SUSPECT, "n002")) < seen.index(
            (MemberEventKind.DEAD, "n002")
        )


async def test_nodes_with_different_cluster_labels_never_merge(
    sim_clock: trio.testing.MockClock,
) -> None:
    net = MemoryNetwork(seed=10)
    blue = MeshConfig.lan(name="blue", bind=("blue", 1), cluster_label="blue", join_timeout=2)
    green = MeshConfig.lan(name="green", bind=("green", 1), cluster_label="green")
    async with (
        MeshNode.open(blue, net.endpoint(blue.bind)) as b,
        MeshNode.open(green, net.endpoint(green.bind)) as g,
    ):
        with pytest.raises(JoinError):
            await b.join([("green", 1)])
        assert g.member("blue") is None and b.member("green") is None
        assert g.stats.dropped["label"] >= 1


async def test_sealed_datagrams_stay_within_udp_buffer_size_on_the_wire(
    sim_clock: trio.testing.MockClock,
) -> None:
    """Under a full gossip load (more queued broadcasts than fit in a packet), what a sealed
    node puts on the wire, seal included, never exceeds ``udp_buffer_size``."""
    net = MemoryNetwork(seed=11)
    net.set_latency(0.002, 0.001)
    ring = Keyring([generate_key()])
    cfgs = [MeshConfig.lan(name=n, bind=(n, 7946), seed=i) for i, n in enumerate(names(4))]
    async with trio.open_nursery() as nursery:
        nodes: list[MeshNode] = []

        async def run(cfg: MeshConfig, task_status: trio.TaskStatus[MeshNode]) -> None:
            sealed = SealedTransport(net.endpoint(cfg.bind), Sealer(ring), Sealer(ring))
            assert sealed.packet_overhead == OVERHEAD
            async with MeshNode.open(cfg, sealed) as node:
                task_status.started(node)
                await trio.sleep_forever()

        for cfg in cfgs:
            nodes.append(await nursery.start(run, cfg))
        for node in nodes[1:]:
            await node.join([cfgs[0].bind])
        for node in nodes:
            for i in range(40):
                await node.broadcast("load", bytes(150), key=f"{node.name}/{i}")
        await trio.sleep(10)
        budget = cfgs[0].udp_buffer_size
        largest = [net.stats(c.bind).largest_datagram for c in cfgs]
        assert max(largest) <= budget, largest
        assert max(largest) > budget - 160  # the packets were full: the load was real
        nursery.cancel_scope.cancel()


def test_open_requires_a_transport() -> None:
    param = inspect.signature(MeshNode.open).parameters["transport"]
    assert param.default is inspect.Parameter.empty


async def test_memory_network_takes_both_address_forms_and_refuses_unknown_ones(
    sim_clock: trio.testing.MockClock,
) -> None:
    net = MemoryNetwork(seed=12)
    a, b, c = net.endpoint("a:1"), net.endpoint(("b", 1)), net.endpoint("c:1")

    async def delivered(src: object, dst: tuple[str, int]) -> bool:
        await src.send(dst, b"x")  # type: ignore[attr-defined]
        with trio.move_on_after(1):
            await {("a", 1): a, ("b", 1): b, ("c", 1): c}[dst].receive()
            return True
        return False

    net.partition(["a:1"], [("b", 1), "c:1"])
    assert not net.reachable("a:1", ("b", 1))
    assert not await delivered(a, ("b", 1))
    assert await delivered(b, ("c", 1))
    net.heal()
    assert await delivered(a, ("b", 1))
    net.set_loss(1.0, between=("a:1", "c:1"))
    assert not await delivered(a, ("c", 1))
    assert await delivered(a, ("b", 1))
    net.heal()
    net.set_loss(1.0, between=("a:1", "c:1"), one_way=True)  # an asymmetric link
    assert not await delivered(a, ("c", 1))
    assert await delivered(c, ("a", 1))
    net.heal()
    assert await delivered(a, ("c", 1))
    with pytest.raises(ValueError, match="one_way needs between"):
        net.set_loss(0.5, one_way=True)
    net.pause("b:1", 5.0)
    start = trio.current_time()
    assert await a.send(("b", 1), b"y") is None
    with trio.fail_after(10):
        await b.receive()
    assert trio.current_time() - start == pytest.approx(5.0)
    assert net.stats("b:1").stalls == 1
    assert net.stats(("b", 1)).stalled_seconds == pytest.approx(5.0)
    for fault in (
        lambda: net.partition(["a:1"], ["ghost:1"]),
        lambda: net.set_loss(0.5, between=("a:1", ("ghost", 1))),
        lambda: net.pause("ghost:1", 1.0),
        lambda: net.stats("ghost:1"),
        lambda: net.reachable("a:1", "ghost:1"),
    ):
        with pytest.raises(ValueError, match=r"no endpoint at ghost:1"):
            fault()
    with pytest.raises(ValueError, match="two groups"):
        net.partition(["a:1"], ["a:1"])


async def test_accepted_counts_the_datagrams_that_decoded(
    sim_clock: trio.testing.MockClock,
) -> None:
    """``mesh_gossip_messages_total{direction="in"}`` counts datagrams: a refused one is
    dropped, and neither a dropped message inside a good datagram, nor an outbound send
    error, nor a refused stream frame takes anything off the accepted count."""
    net = MemoryNetwork(seed=13)
    cfg = MeshConfig.lan(name="a", bind=("a", 1))
    raw = net.endpoint("x:1")
    transport_drops = {"decrypt": 2, "stream_decrypt": 5, "udp_error": 1}
    async with MeshNode.open(cfg, net.endpoint(cfg.bind)) as node:
        registry = node_registry(node, lambda: transport_drops)
        await raw.send(cfg.bind, codec.encode_packet("", [codec.encode_message(Ping(1, "a", "x"))]))
        await raw.send(cfg.bind, b"garbage")
        misdirected = codec.encode_message(Ping(2, "nobody", "x"))
        await raw.send(cfg.bind, codec.encode_packet("", [misdirected]))
        await wait_for(lambda: node.stats.packets_received == 3, timeout=1)
        node.stats.dropped["send_error"] += 4  # as the driver counts a failed send

        def sample(outcome: str) -> float | None:
            labels = {"direction": "in", "outcome": outcome}
            return registry.get_sample_value("mesh_gossip_messages_total", labels)

        assert node.stats.dropped["misdirected"] == 1
        assert sample("accepted") == 2
        assert sample("dropped") == 1 + 2  # the garbage datagram, and two that did not open
        # A full broadcast queue pushes the oldest out, and says so.
        assert registry.get_sample_value("swimmesh_broadcasts_dropped_total") == 0
        for i in range(8192 + 3):
            node.instance.broadcast_user("k", b"", f"key-{i}", 0.0)
        assert registry.get_sample_value("swimmesh_broadcasts_dropped_total") == 3


async def test_a_newer_broadcast_replaces_the_older_one_under_its_key_across_the_mesh(
    sim_clock: trio.testing.MockClock,
) -> None:
    net = MemoryNetwork(seed=14)
    net.set_latency(0.002, 0.001)
    got: dict[str, list[bytes]] = {n: [] for n in names(12)}
    async with Cluster.open("lan", network=net, seed=14) as cluster:
        await cluster.start_many(names(12))
        await wait_for(lambda: cluster.views_agree(ALIVE), timeout=30)
        for node in cluster.live():
            node.register_handler("lease", lambda src, p, n=node.name: got[n].append(p))
        origin = cluster.nodes["n000"]
        key = ("u", "lease", "scope-a")
        # Superseded before it ever left the queue: nobody hears v1.
        await origin.broadcast("lease", b"v1", key="scope-a")
        await origin.broadcast("lease", b"v2", key="scope-a")
        await wait_for(lambda: not any_pending(cluster, key), timeout=30)
        # Superseding news that has already spread: every node moves on to v3.
        await origin.broadcast("lease", b"v3", key="scope-a")
        await wait_for(lambda: not any_pending(cluster, key), timeout=30)
        # Another key is independent of this one.
        await cluster.nodes["n005"].broadcast("lease", b"w1", key="scope-b")
        await wait_for(lambda: not any_pending(cluster, ("u", "lease", "scope-b")), timeout=30)
    expected = {n: [b"v2", b"v3", b"w1"] for n in names(12)}
    expected["n000"] = [b"w1"]
    expected["n005"] = [b"v2", b"v3"]
    assert got == expected


async def test_on_ack_reports_direct_and_relayed_acks_until_removed(
    sim_clock: trio.testing.MockClock,
) -> None:
    net = MemoryNetwork(seed=15)
    net.set_latency(0.002, 0.001)
    acked: list[tuple[float, str]] = []
    async with Cluster.open("lan", network=net, seed=15) as cluster:
        await cluster.start_many(names(5))
        await wait_for(lambda: cluster.views_agree(ALIVE), timeout=30)
        watcher = cluster.nodes["n000"]
        watcher.on_ack(lambda name: acked.append((trio.current_time(), name)))
        await wait_for(lambda: {n for _, n in acked} == set(names(5)[1:]), timeout=30)
        # Cut n000 <-> n001 only: n001 can answer n000's probes through relays alone.
        net.set_loss(1.0, between=("n000:7946", ("n001", 7946)))
        cut = trio.current_time()
        relayed_before = watcher.stats.indirect_probes
        await wait_for(lambda: any(t > cut + 1 and n == "n001" for t, n in acked), timeout=30)
        assert watcher.stats.indirect_probes > relayed_before
        assert watcher.status_of("n001") is ALIVE
        watcher.on_ack(None)
        count = len(acked)
        await trio.sleep(10)
        assert watcher.stats.probes > 0 and len(acked) == count


async def test_a_slow_event_subscriber_loses_events_visibly_and_blocks_nobody(
    sim_clock: trio.testing.MockClock,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    monkeypatch.setattr(runtime, "EVENT_BUFFER", 3)
    net = MemoryNetwork(seed=16)
    async with Cluster.open("lan", network=net, seed=16) as cluster:
        await cluster.start("n000")
        node = cluster.nodes["n000"]
        slow = node.events()
        fast_seen: list[str] = []

        async def follow_fast(task_status: trio.TaskStatus[None]) -> None:
            async with node.events() as fast:
                task_status.started()
                async for event in fast:
                    fast_seen.append(event.member.name)

        async with trio.open_nursery() as nursery:
            await nursery.start(follow_fast)
            for name in names(7)[1:]:
                await cluster.start(name)
                await cluster.nodes[name].join(["n000:7946"])
            await wait_for(lambda: len(fast_seen) == 6, timeout=30)
            nursery.cancel_scope.cancel()
        assert sorted(fast_seen) == names(7)[1:]
        assert slow.dropped == 3
        assert "event subscriber is not keeping up" in caplog.text
        with trio.fail_after(1):
            kept = [(await slow.__anext__()).member.name for _ in range(3)]
        assert kept == fast_seen[:3]  # the oldest are kept, the overflow is dropped


async def test_a_stream_request_to_a_node_that_stops_while_paused_is_refused(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """The request waits out the pause; if the node stopped meanwhile it is refused like a
    closed port (it once called the cleared handler and crashed the requester's task)."""
    from swimmesh.transport.base import TransportError

    net = MemoryNetwork(seed=9)
    a, b = net.endpoint("a:1"), net.endpoint("b:1")

    async def echo(source: object, data: bytes) -> bytes:
        return data

    b.serve_streams(echo)
    assert await a.request(("b", 1), b"x") == b"x"
    net.pause("b:1", 2.0)
    async with trio.open_nursery() as nursery:
        nursery.start_soon(trio.sleep, 1.0)
        outcome: list[BaseException] = []

        async def ask() -> None:
            try:
                await a.request(("b", 1), b"y")
            except TransportError as exc:
                outcome.append(exc)

        nursery.start_soon(ask)
        await trio.sleep(1.0)
        await b.aclose()
    assert len(outcome) == 1 and "refused" in str(outcome[0])
