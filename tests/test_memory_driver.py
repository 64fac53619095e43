"""The in-memory network's driver: datagrams and timers handed to driven endpoints on time,
in order, never ahead of the other tasks of the run; failures reach the node that owns them.
Also the push-pull decode cache the simulations lean on."""

from __future__ import annotations

import math

import cbor2
import pytest
import trio
import trio.testing

from swimmesh import MeshConfig, MeshNode, codec
from swimmesh.member import Claim, MemberStatus
from swimmesh.messages import MessageType, PushPull
from swimmesh.testing import Cluster, MemoryNetwork, MemoryTransport, wait_for


def record(
    ep: MemoryTransport,
) -> tuple[list[tuple[float, bytes]], list[float], list[BaseException]]:
    """Drive ``ep`` with callbacks that note (time, data), timer times and failures."""
    got: list[tuple[float, bytes]] = []
    timers: list[float] = []
    failures: list[BaseException] = []
    ep.drive(
        lambda src, data: got.append((trio.current_time(), data)),
        lambda: timers.append(trio.current_time()),
        failures.append,
    )
    return got, timers, failures


async def test_driven_datagrams_arrive_when_due_in_due_order_and_not_ahead_of_other_tasks(
    sim_clock: trio.testing.MockClock,
) -> None:
    net = MemoryNetwork(seed=1)
    a, b = net.endpoint("a:1"), net.endpoint("b:1")
    got, _, _ = record(b)
    t0 = trio.current_time()
    for ms in (5, 1, 3, 2, 4, 10, 7):
        net.set_latency(ms / 1000)
        await a.send(("b", 1), str(ms).encode())
    # Another task's deadline between two arrivals: the driver must not have run past it.
    await trio.sleep_until(t0 + 0.0045)
    assert trio.current_time() == t0 + 0.0045
    assert [d for _, d in got] == [b"1", b"2", b"3", b"4"]
    await trio.sleep(0.01)
    assert [d for _, d in got] == [b"1", b"2", b"3", b"4", b"5", b"7", b"10"]
    assert [round(t - t0, 6) for t, _ in got] == [0.001, 0.002, 0.003, 0.004, 0.005, 0.007, 0.01]
    assert net.stats("b:1").packets_received == 7


async def test_equal_due_times_keep_the_order_they_were_sent_in(
    sim_clock: trio.testing.MockClock,
) -> None:
    net = MemoryNetwork(seed=1, latency=0.002)
    a, b, c = net.endpoint("a:1"), net.endpoint("b:1"), net.endpoint("c:1")
    got, _, _ = record(c)
    for i in range(6):
        await (a if i % 2 else b).send(("c", 1), bytes([i]))
    await trio.sleep(0.01)
    assert [d for _, d in got] == [bytes([i]) for i in range(6)]


async def test_a_timer_fires_at_its_last_arming_only(sim_clock: trio.testing.MockClock) -> None:
    net = MemoryNetwork(seed=1)
    ep = net.endpoint("a:1")
    _, timers, _ = record(ep)
    t0 = trio.current_time()
    ep.arm(t0 + 1.0)
    ep.arm(t0 + 2.0)  # replaces the first arming
    await trio.sleep(3.0)
    assert timers == [t0 + 2.0]
    ep.arm(t0 + 4.0)
    ep.arm(math.inf)  # disarmed
    await trio.sleep(3.0)
    assert timers == [t0 + 2.0]


async def test_a_pause_holds_driven_datagrams_until_it_ends_and_counts_the_stall(
    sim_clock: trio.testing.MockClock,
) -> None:
    net = MemoryNetwork(seed=1, latency=0.001)
    a, b = net.endpoint("a:1"), net.endpoint("b:1")
    got, _, _ = record(b)
    t0 = trio.current_time()
    net.pause("b:1", 0.5)
    await a.send(("b", 1), b"x")
    await a.send(("b", 1), b"y")
    await trio.sleep(1.0)
    assert [(round(t - t0, 6), d) for t, d in got] == [(0.5, b"x"), (0.5, b"y")]
    stats = net.stats("b:1")
    assert stats.stalls == 1
    assert stats.stalled_seconds == pytest.approx(0.499)


async def test_a_failing_callback_stops_the_endpoint_and_is_reported(
    sim_clock: trio.testing.MockClock,
) -> None:
    net = MemoryNetwork(seed=1, latency=0.001)
    a, b = net.endpoint("a:1"), net.endpoint("b:1")
    failures: list[BaseException] = []
    seen: list[bytes] = []

    def on_datagram(src: tuple[str, int], data: bytes) -> None:
        seen.append(data)
        raise RuntimeError("handler broke")

    b.drive(on_datagram, lambda: None, failures.append)
    await a.send(("b", 1), b"1")
    await a.send(("b", 1), b"2")
    await trio.sleep(0.01)
    assert seen == [b"1"]
    assert [str(f) for f in failures] == ["handler broke"]


async def test_an_exception_in_a_driven_node_ends_that_node_with_it(
    sim_clock: trio.testing.MockClock,
) -> None:
    net = MemoryNetwork(seed=1, latency=0.001)

    def broken(member: str) -> None:
        raise RuntimeError(f"listener broke on {member}")

    with pytest.RaisesGroup(
        pytest.RaisesExc(RuntimeError, match="listener broke"), flatten_subgroups=True
    ):
        async with trio.open_nursery() as nursery:
            peer_cfg = MeshConfig.from_preset("lan", name="p", bind=("p", 1), seed=2)
            cfg = MeshConfig.from_preset("lan", name="x", bind=("x", 1), seed=1)

            async def peer() -> None:
                async with MeshNode.open(peer_cfg, net.endpoint(peer_cfg.bind)):
                    await trio.sleep_forever()

            nursery.start_soon(peer)
            async with MeshNode.open(cfg, net.endpoint(cfg.bind)) as node:
                node.on_ack(broken)
                await node.join([("p", 1)])
                await trio.sleep(30)  # the first acked probe raises in the driver
            pytest.fail("the node's failure did not end its block")


async def test_a_crashed_node_handles_no_datagram_after_the_crash(
    sim_clock: trio.testing.MockClock,
) -> None:
    net = MemoryNetwork(seed=1, latency=0.002, jitter=0.001)
    async with Cluster.open("lan", network=net, seed=1) as cluster:
        await cluster.start_many(["a", "b", "c"])
        await wait_for(lambda: all(len(n.alive_members()) == 3 for n in cluster.live()), timeout=10)
        victim = cluster.nodes["c"]
        cluster.crash("c")
        received = victim.stats.packets_received
        await trio.sleep(5)
        assert victim.stats.packets_received == received


# -- the push-pull decode cache -------------------------------------------------------------


def _frame(*claims: Claim) -> bytes:
    return codec.encode_frame("", PushPull(False, tuple(claims)))


def _alive(name: str, port: int = 7946, **meta: str) -> Claim:
    return Claim(name, 3, MemberStatus.ALIVE, (name, port), meta_version=1, metadata=meta)


def test_an_unchanged_push_pull_entry_decodes_to_the_same_claim_object() -> None:
    one = codec.decode_frame(_frame(_alive("cache-a"), _alive("cache-b")))
    two = codec.decode_frame(_frame(_alive("cache-b"), _alive("cache-a")))
    assert isinstance(one, PushPull) and isinstance(two, PushPull)
    assert one.states[0] is two.states[1] and one.states[1] is two.states[0]
    assert one.states[0] == _alive("cache-a")


def test_the_cache_never_aliases_entries_that_differ_in_metadata_or_field_types() -> None:
    codec.decode_frame(_frame(_alive("cache-m", role="a")))
    other = codec.decode_frame(_frame(_alive("cache-m", role="b")))
    assert isinstance(other, PushPull) and dict(other.states[0].metadata) == {"role": "b"}
    # A boolean where the port goes equals 1 as a dict key; it must still be refused.
    codec.decode_frame(_frame(_alive("cache-t", port=1)))
    forged = cbor2.dumps(
        [1, "", [MessageType.PUSH_PULL, False, [["cache-t", "cache-t", True, 3, 0, 1, {}]]]]
    )
    with pytest.raises(codec.DecodeError):
        codec.decode_frame(forged)


# -- a formed start -------------------------------------------------------------------------


async def test_a_formed_mesh_starts_converged_detects_a_crash_and_spreads_an_update(
    sim_clock: trio.testing.MockClock,
) -> None:
    net = MemoryNetwork(seed=3, latency=0.002, jitter=0.001)
    names = [f"f{i:02d}" for i in range(40)]
    async with Cluster.open("lan", network=net, seed=3) as cluster:
        await cluster.start_formed(names)
        assert cluster.views_agree(MemberStatus.ALIVE)
        assert all(len(n.members()) == 40 and n.instance.live_count() == 40 for n in cluster.live())
        cluster.crash("f07")
        await wait_for(
            lambda: cluster.views_agree(MemberStatus.DEAD, about=["f07"]), timeout=30, what="dead"
        )
        await cluster.nodes["f20"].update_metadata({"v": "2"})
        await wait_for(
            lambda: all(
                n.member("f20").metadata.get("v") == "2"  # type: ignore[union-attr]
                for n in cluster.live()
            ),
            timeout=10,
            what="update everywhere",
        )
        # Nobody but the crashed node was ever suspected, and every live node probed others.
        assert cluster.views_agree(MemberStatus.ALIVE, about=[n for n in names if n != "f07"])
        assert all(n.stats.probes > 0 for n in cluster.live())


def test_tables_of_a_formed_mesh_share_records_but_never_each_others_changes() -> None:
    import random

    from swimmesh.member import MemberState
    from swimmesh.protocol.table import FormedMesh, MemberTable

    claims = [Claim(x, 0, MemberStatus.ALIVE, (x, 1)) for x in "abcde"]
    formed = FormedMesh(claims, 0.0)

    def table(me: str) -> MemberTable:
        local = MemberState.from_claim(claims["abcde".index(me)], 0.0)
        return MemberTable(local, random.Random(me), formed)

    a, b = table("a"), table("b")
    assert len(a) == 5 and a.live == 5 and len(a.alive) == 4 and "a" not in a.alive
    assert sorted(a.alive) == ["b", "c", "d", "e"] and sorted(b.alive) == ["a", "c", "d", "e"]
    assert all("a" not in a.alive.sample(random.Random(i), 3) for i in range(50))
    assert a.peek("c") is b.peek("c")  # shared until read for a change

    a.get("c").rtt_ms = 5.0  # type: ignore[union-attr]
    assert b.peek("c").rtt_ms is None  # type: ignore[union-attr]
    state, status_changed, _ = a.merge(a.peek("d"), Claim("d", 0, MemberStatus.DEAD, ("d", 1)), 1.0)  # type: ignore[arg-type]
    assert status_changed and state.status is MemberStatus.DEAD
    assert a.status_of("d") is MemberStatus.DEAD and b.status_of("d") is MemberStatus.ALIVE
    assert "d" not in a.alive and "d" in b.alive and len(b.alive) == 4 and b.live == 5
    assert a.reap("d", 1.0) and "d" not in a and len(a) == 4
    assert "d" in b and len(b) == 5
    assert sorted(m.name for m in a.members()) == ["a", "b", "c", "e"]
    assert sorted(m.name for m in b.members()) == ["a", "b", "c", "d", "e"]
