"""The merge rule: order-independent, duplicate-proof, and a node always wins about itself."""

from __future__ import annotations

import random

from hypothesis import given, settings
from hypothesis import strategies as st

from swimmesh.config import MeshConfig
from swimmesh.member import Claim, MemberState, MemberStatus, merge_claims
from swimmesh.protocol import SwimInstance

NAMES = ["a", "b", "c"]

claims = st.builds(
    Claim,
    name=st.sampled_from(NAMES),
    incarnation=st.integers(0, 4),
    status=st.sampled_from(list(MemberStatus)),
    address=st.tuples(st.sampled_from(["h1", "h2"]), st.integers(1, 3)),
    meta_version=st.integers(0, 3),
    metadata=st.dictionaries(
        st.sampled_from(["role", "zone"]), st.sampled_from(["x", "y"]), max_size=2
    ),
    source=st.sampled_from(["", "p", "q"]),
)


def snapshot(table: dict[str, MemberState]) -> dict[str, tuple[object, ...]]:
    return {
        name: (s.incarnation, s.status, s.address, s.meta_version, dict(s.metadata))
        for name, s in table.items()
    }


@settings(max_examples=300)
@given(st.lists(claims, max_size=25), st.randoms(use_true_random=False))
def test_any_permutation_and_duplication_gives_same_table(
    items: list[Claim], rnd: random.Random
) -> None:
    reference = snapshot(merge_claims({}, list(items)))
    shuffled = list(items) + rnd.sample(items, k=len(items) // 2)  # duplicates
    rnd.shuffle(shuffled)
    assert snapshot(merge_claims({}, shuffled)) == reference


@given(st.lists(claims, max_size=12), st.lists(claims, max_size=12))
def test_reapplying_a_prefix_changes_nothing(x: list[Claim], y: list[Claim]) -> None:
    # Idempotence across gossip rounds: hearing old claims again after newer ones is a no-op.
    once = snapshot(merge_claims({}, x + y))
    assert snapshot(merge_claims({}, x + y + x)) == once
    assert snapshot(merge_claims({}, y + x + y + x)) == once


@given(st.lists(claims, max_size=20))
def test_status_precedence_at_equal_incarnation(items: list[Claim]) -> None:
    table = merge_claims({}, items)
    for name, state in table.items():
        about = [c for c in items if c.name == name]
        top = max(c.incarnation for c in about)
        assert state.incarnation == top
        assert state.status == max(c.status for c in about if c.incarnation == top)


@settings(max_examples=200)
@given(
    st.lists(
        claims.map(
            lambda c: Claim(
                "self", c.incarnation, c.status, c.address, c.meta_version, c.metadata, c.source
            )
        ),
        max_size=15,
    )
)
def test_a_node_always_wins_a_refutation_about_itself(about_self: list[Claim]) -> None:
    node = SwimInstance(MeshConfig.lan(name="self", bind=("self", 1), seed=1), now=0.0)
    for claim in about_self:
        node.receive_messages(("peer", 1), [_claim_message(claim)], now=1.0)
    me = node.local_member()
    assert me.status is MemberStatus.ALIVE
    # Any other node that heard every one of those claims, in any order, then hears the
    # node's current alive claim, ends with the node ALIVE.
    observer = merge_claims({}, [*about_self, node._table["self"].to_claim()])
    assert observer["self"].status is MemberStatus.ALIVE
    assert observer["self"].incarnation == me.incarnation


def _claim_message(claim: Claim):  # type: ignore[no-untyped-def]
    from swimmesh.messages import ClaimMessage

    return ClaimMessage(claim)
