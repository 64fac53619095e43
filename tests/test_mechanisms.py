"""Broadcast queue, probe order, awareness, timers and config validation."""

from __future__ import annotations

import random

import pytest

from swimmesh.config import ConfigError, MeshConfig, parse_address
from swimmesh.protocol.awareness import Awareness
from swimmesh.protocol.broadcasts import BroadcastQueue
from swimmesh.protocol.sampling import ProbeOrder
from swimmesh.protocol.stats import RTT_BUCKETS_MS, RttHistogram
from swimmesh.protocol.suspicion import Suspicion, suspicion_timeout
from swimmesh.protocol.timers import TimerQueue


def test_broadcasts_least_transmitted_first_and_retired_at_limit() -> None:
    q = BroadcastQueue()
    q.queue("old", b"o" * 10)
    assert q.take(100, limit=3) == [b"o" * 10]
    q.queue("new", b"n" * 10)
    # "new" has 0 transmits, "old" has 1: new goes first when only one fits.
    assert q.take(10, limit=3) == [b"n" * 10]
    for _ in range(5):
        q.take(100, limit=3)
    assert len(q) == 0


def test_newer_broadcast_supersedes_same_key() -> None:
    q = BroadcastQueue()
    q.queue(("m", "x"), b"v1")
    q.take(100, limit=5)
    q.queue(("m", "x"), b"v2")
    assert len(q) == 1 and q.take(100, limit=5) == [b"v2"]


def test_broadcast_queue_is_bounded() -> None:
    q = BroadcastQueue(max_items=10)
    for i in range(25):
        q.queue(i, b"x")
    assert len(q) == 10 and q.dropped == 15


def test_probe_order_visits_everyone_once_per_round() -> None:
    order = ProbeOrder(random.Random(1))
    for n in "abcdef":
        order.add(n)
    seen = []
    for _ in range(6):
        target = order.next(lambda _: True)
        seen.append(target)
    assert sorted(seen) == list("abcdef")
    order.remove("c")
    second = [order.next(lambda _: True) for _ in range(5)]
    assert sorted(second) == list("abdef")  # type: ignore[type-var]


def test_awareness_is_clamped() -> None:
    a = Awareness(8)
    assert a.apply(20) == 7 and a.scale(0.5) == 4.0
    assert a.apply(-100) == 0 and a.scale(0.5) == 0.5


def test_suspicion_confirmations_are_counted_once_and_capped() -> None:
    s = Suspicion(0.0, 0, "p", k=2, minimum=4.0, maximum=24.0)
    assert s.deadline() == 24.0
    assert s.confirm("q") and not s.confirm("q") and not s.confirm("p")
    assert 4.0 < s.deadline() < 24.0
    assert s.confirm("r") and s.deadline() == 4.0
    assert not s.confirm("t")


def test_timers_run_in_deadline_order_and_skip_cancelled() -> None:
    q = TimerQueue()
    ran: list[str] = []
    q.schedule(2.0, lambda t: ran.append("b"))
    t = q.schedule(1.0, lambda t: ran.append("x"))
    q.schedule(1.0, lambda t: ran.append("a"))
    t.cancel()
    assert q.next_deadline() == 1.0
    q.run_due(5.0)
    assert ran == ["a", "b"]


def test_presets_carry_memberlist_values() -> None:
    lan, wan, local = MeshConfig.lan(name="n"), MeshConfig.wan(name="n"), MeshConfig.local(name="n")
    assert (lan.probe_interval, lan.probe_timeout, lan.suspicion_mult, lan.retransmit_mult) == (
        1.0,
        0.5,
        4,
        4,
    )
    assert (wan.probe_interval, wan.probe_timeout, wan.suspicion_mult, wan.gossip_nodes) == (
        5.0,
        3.0,
        6,
        4,
    )
    assert (local.probe_timeout, local.indirect_checks, local.gossip_interval) == (0.2, 1, 0.1)
    fast = MeshConfig.fast(name="n")
    assert fast.suspicion_mult * fast.probe_interval < 1.0  # sub-second suspicion minimum


def test_overrides_and_clear_errors() -> None:
    cfg = MeshConfig.lan(name="n", bind="[::1]:7000", probe_interval=2)
    assert cfg.bind == ("::1", 7000) and cfg.probe_interval == 2.0
    with pytest.raises(ConfigError, match="probe_interval"):
        MeshConfig.lan(name="n", probe_interval=0)
    with pytest.raises(ConfigError, match="unknown configuration field"):
        MeshConfig.lan(name="n", probe_intervall=1)
    with pytest.raises(ConfigError, match="probe_timeout"):
        MeshConfig.lan(name="n", probe_timeout=3)
    with pytest.raises(ConfigError, match="bind"):
        MeshConfig.lan(name="n", bind="nohost")
    with pytest.raises(ConfigError, match="out of range"):
        parse_address("h:70000")
    with pytest.raises(ConfigError, match="preset"):
        MeshConfig.from_preset("lann", name="n")


def test_suspicion_timeout_follows_the_formula_at_each_confirmation() -> None:
    # max - (max - min) * log(c + 1) / log(k + 1), floored at min; k = 0 means the minimum.
    assert suspicion_timeout(4.0, 24.0, 0, 0) == 4.0
    assert suspicion_timeout(4.0, 24.0, 0, 1) == 24.0  # one expected, none yet: the maximum
    assert suspicion_timeout(4.0, 24.0, 1, 1) == 4.0
    assert suspicion_timeout(4.0, 24.0, 1, 3) == pytest.approx(14.0)  # log 2 / log 4 = 1/2
    assert suspicion_timeout(4.0, 24.0, 3, 3) == 4.0


def test_due_timers_behind_a_cancelled_one_run_in_the_same_tick() -> None:
    q = TimerQueue()
    ran: list[float] = []
    q.schedule(1.0, ran.append).cancel()
    q.schedule(2.0, ran.append)
    q.schedule(3.0, ran.append)
    assert q.run_due(2.5) == 1 and ran == [2.5]
    assert q.next_deadline() == 3.0


def test_rtt_histogram_counts_each_round_trip_in_its_bucket() -> None:
    h = RttHistogram()
    for rtt in (0.2, 0.7, 0.7, 3000.0):
        h.observe(rtt)
    assert h.counts[0] == 1 and h.counts[1] == 2 and h.counts[len(RTT_BUCKETS_MS)] == 1
    assert sum(h.counts) == 4 and h.total_ms == pytest.approx(3001.6)
