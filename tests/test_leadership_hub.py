"""The event hub and the audit stream: sequencing, filters, resume, gaps, slow subscribers."""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from pathlib import Path

import trio
import trio.testing

from leadership import (
    AuditLog,
    EventKind,
    LeadershipEvent,
    LeadershipEventHub,
    LeadershipToken,
    event_json,
)

NOW = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)


def tok(scope: str, leader: str, fence: int) -> LeadershipToken:
    return LeadershipToken(scope, "custom", leader, fence, fence, NOW, NOW, {"k": "v"})


def ev(kind: EventKind, scope: str, leader: str, fence: int) -> LeadershipEvent:
    return LeadershipEvent(kind, scope, leader, tok(scope, leader, fence), "r", "c1", NOW)


def drain(sub: object) -> list[LeadershipEvent]:
    out = []
    while (event := sub.next_nowait()) is not None:  # type: ignore[attr-defined]
        out.append(event)
    return out


def test_sequence_numbers_and_current_tokens() -> None:
    hub = LeadershipEventHub()
    first = hub.publish(ev(EventKind.ELECTED, "a", "n1", 1))
    hub.publish(ev(EventKind.OBSERVED, "B", "n2", 4))
    assert (first.sequence, hub.sequence) == (1, 2)
    assert [t.scope for t in hub.tokens()] == ["a", "B"]
    assert hub.tokens("b")[0].leader_id == "n2"
    # An ending event for an older fence does not remove a newer token.
    hub.publish(ev(EventKind.EXPIRED, "b", "n2", 3))
    assert hub.token("b") is not None
    hub.publish(ev(EventKind.STEPPED_DOWN, "b", "n2", 4))
    assert hub.token("b") is None and hub.sequence == 4


def test_snapshot_first_then_live_events_with_filters() -> None:
    hub = LeadershipEventHub()
    hub.publish(ev(EventKind.ELECTED, "shard/o/1", "n1", 1))
    hub.publish(ev(EventKind.ELECTED, "shard/p/1", "n2", 1))
    everything = hub.subscribe()
    orders = hub.subscribe("SHARD/o/*")
    by_n2 = hub.subscribe(leader="n2")
    only_lost = hub.subscribe(kinds=["lost"])
    snap = drain(everything)
    assert [(e.kind, e.scope, e.sequence) for e in snap] == [
        (EventKind.SNAPSHOT, "shard/o/1", 2),
        (EventKind.SNAPSHOT, "shard/p/1", 2),
    ]
    hub.publish(ev(EventKind.RENEWED, "shard/o/1", "n1", 1))
    hub.publish(ev(EventKind.LOST, "shard/p/1", "n2", 1))
    assert [e.kind for e in drain(everything)] == [EventKind.RENEWED, EventKind.LOST]
    assert [(e.kind, e.scope) for e in drain(orders)] == [
        (EventKind.SNAPSHOT, "shard/o/1"),
        (EventKind.RENEWED, "shard/o/1"),
    ]
    assert [e.kind for e in drain(by_n2)] == [EventKind.SNAPSHOT, EventKind.LOST]
    assert [e.sequence for e in drain(only_lost)] == [4]


def test_resume_from_a_sequence_has_no_gap() -> None:
    hub = LeadershipEventHub(history_size=16)
    for i in range(10):
        hub.publish(ev(EventKind.RENEWED, "a", "n1", 1 + i))
    resumed = hub.subscribe(after_sequence=6)
    assert [e.sequence for e in drain(resumed)] == [7, 8, 9, 10]
    hub.publish(ev(EventKind.RENEWED, "a", "n1", 11))
    assert [e.sequence for e in drain(resumed)] == [11]


def test_falling_behind_the_history_gives_a_gap_then_a_snapshot() -> None:
    hub = LeadershipEventHub(history_size=16)
    slow = hub.subscribe()
    drain(slow)
    for i in range(40):
        hub.publish(ev(EventKind.ELECTED, f"s{i % 3}", "n1", 1 + i))
    got = drain(slow)
    assert got[0].kind is EventKind.GAP
    assert got[0].reason == "missed events 1..24" and got[0].sequence == 40
    assert [e.kind for e in got[1:]] == [EventKind.SNAPSHOT] * 3
    assert {e.token.fence_token for e in got[1:] if e.token} == {38, 39, 40}
    assert slow.gaps == 1
    # Resuming from a sequence the hub no longer has, or never had, is a gap too.
    assert drain(hub.subscribe(after_sequence=3))[0].kind is EventKind.GAP
    ahead = drain(hub.subscribe(after_sequence=999))
    assert ahead[0].kind is EventKind.GAP and "ahead of this hub" in ahead[0].reason


async def _fast_and_slow(
    fast: Callable[[], Awaitable[None]],
    slow: Callable[[], Awaitable[None]],
    hub: LeadershipEventHub,
) -> None:
    """Run both subscribers while 200 events are published, one every millisecond."""
    async with trio.open_nursery() as nursery:
        nursery.start_soon(fast)
        nursery.start_soon(slow)
        await trio.sleep(0.1)
        for _ in range(200):
            hub.publish(ev(EventKind.RENEWED, "a", "n1", 1))  # publish never awaits
            await trio.sleep(0.001)


async def test_a_slow_subscriber_never_blocks_the_publisher_or_others(
    autojump_clock: trio.testing.MockClock,
) -> None:
    hub = LeadershipEventHub(history_size=32)
    fast_seen: list[int] = []
    slow_seen: list[LeadershipEvent] = []

    async def fast() -> None:
        async with hub.subscribe() as events:
            async for event in events:
                fast_seen.append(event.sequence)
                if event.sequence == 200:
                    return

    async def slow() -> None:
        async for event in hub.subscribe():
            slow_seen.append(event)
            await trio.sleep(1.0)  # a consumer that takes a second per event
            if len(slow_seen) == 3:
                return

    with trio.fail_after(30):
        await _fast_and_slow(fast, slow, hub)
    assert fast_seen == list(range(1, 201))
    assert slow_seen[0].sequence == 1
    assert slow_seen[1].kind is EventKind.GAP  # told, not silently dropped
    assert slow_seen[2].kind is EventKind.SNAPSHOT and slow_seen[2].sequence == 200


def test_event_json_shape() -> None:
    body = event_json(hub_event := ev(EventKind.STEPPED_DOWN, "a", "n1", 3))
    assert body == {
        "eventKind": "steppedDown",
        "scope": "a",
        "leaderId": "n1",
        "token": {
            "scope": "a",
            "scopeKind": "custom",
            "leaderId": "n1",
            "term": 3,
            "fenceToken": 3,
            "issuedAt": "2026-01-02T03:04:05.000Z",
            "expiresAt": "2026-01-02T03:04:05.000Z",
            "labels": {"k": "v"},
        },
        "reason": "r",
        "correlationId": "c1",
        "occurredAt": "2026-01-02T03:04:05.000Z",
        "sequence": 0,
    }
    assert hub_event.kind == "steppedDown"


async def test_audit_keeps_changes_in_memory_and_in_a_file(
    tmp_path: Path, autojump_clock: trio.testing.MockClock
) -> None:
    path = tmp_path / "audit" / "leadership.jsonl"
    audit = AuditLog(capacity=3, path=path)
    audit.open()
    audit.append(ev(EventKind.RENEWED, "a", "n1", 1))  # not a change: not audited
    for i, kind in enumerate([EventKind.ELECTED, EventKind.EXPIRED, EventKind.OBSERVED]):
        audit.append(ev(kind, "a", "n1", i + 1))
    audit.append(ev(EventKind.SPLIT_BRAIN, "a", "n1", 4))
    audit.close()
    assert audit.count == 4 and next(e.kind for e in audit.records()) is EventKind.EXPIRED
    lines = [json.loads(line) for line in path.read_text().splitlines()]
    assert [line["eventKind"] for line in lines] == ["elected", "expired", "observed", "splitBrain"]

    seen: list[EventKind] = []

    async def follow() -> None:
        async for event in audit.follow(after=0):
            seen.append(event.kind)
            if len(seen) == 4:
                return

    with trio.fail_after(10):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(follow)
            await trio.sleep(0.1)
            audit.append(ev(EventKind.LOST, "a", "n1", 5))
    # Records 1 fell out of memory; the follower starts at the oldest it still holds.
    assert seen == [EventKind.EXPIRED, EventKind.OBSERVED, EventKind.SPLIT_BRAIN, EventKind.LOST]
