"""Quorum lease messages: round trips, and hostile input only ever raises QuorumWireError."""

from __future__ import annotations

import contextlib

import cbor2
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from leadership.quorum import (
    LeaseReply,
    LeaseRequest,
    QuorumWireError,
    ReleaseRequest,
    RoundEntry,
    Verdict,
    VoterConfig,
    decode,
    encode,
)
from leadership.quorum.wire import LeaseNotice, NoticeEntry
from leadership.tokens import Holder

names = st.text(min_size=1, max_size=20)
terms = st.integers(min_value=0, max_value=2**63 - 1)
durations = st.floats(min_value=0, max_value=86_400, allow_nan=False)
holders = st.builds(Holder, names, names)
entries = st.builds(RoundEntry, names, terms, terms, durations)
verdicts = st.builds(Verdict, names, terms, terms, st.booleans(), terms, durations)
configs = st.none() | st.builds(
    VoterConfig, st.integers(1, 2**32), st.frozensets(names, min_size=1, max_size=5)
)
messages = (
    st.builds(
        LeaseRequest,
        holders,
        terms,
        st.lists(entries, max_size=5, unique_by=lambda e: e.scope).map(tuple),
    )
    | st.builds(LeaseReply, names, holders, configs, st.lists(verdicts, max_size=5).map(tuple))
    | st.builds(ReleaseRequest, holders, names, terms)
    | st.builds(
        LeaseNotice,
        st.lists(
            st.builds(
                NoticeEntry,
                st.sampled_from(["acquired", "renewed", "released"]),
                names,
                holders,
                terms,
                durations,
                durations,  # believe: 0 travels as the old five-field entry
            ),
            max_size=5,
        ).map(tuple),
    )
)


@given(messages)
def test_every_message_survives_cbor_and_back(message):
    assert decode(cbor2.loads(cbor2.dumps(encode(message)))) == message


plain = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=5),
    lambda inner: st.lists(inner, max_size=6),
    max_leaves=30,
)


@settings(max_examples=300)
@given(plain)
def test_random_input_raises_only_the_wire_error(data):
    with contextlib.suppress(QuorumWireError):
        decode(data)


@settings(max_examples=300)
@given(messages, st.data())
def test_a_mutated_message_raises_only_the_wire_error(message, data):
    raw = encode(message)
    path: list[int] = []
    node = raw
    while isinstance(node, list) and node and data.draw(st.booleans()):
        i = data.draw(st.integers(0, len(node) - 1))
        path.append(i)
        node = node[i]
    replacement = data.draw(plain)
    if not path:
        raw = replacement
    else:
        target = raw
        for i in path[:-1]:
            target = target[i]
        target[path[-1]] = replacement
    with contextlib.suppress(QuorumWireError):
        decode(raw)


@pytest.mark.parametrize(
    ("data", "words"),
    [
        (["lease-req", ["a", "b"], -1, []], "config epoch"),
        (["lease-req", ["a", "b"], 1, [["s", True, 1, 1.0]]], "term"),
        (["lease-req", ["a"], 1, []], "holder"),
        (["lease-req", ["a", "b"], 1, [["s", 1, 1, float("nan")]]], "duration"),
        (["lease-rep", "v", ["a", "b"], [0, ["v"]], []], "epoch"),
        (["lease-rel", ["a", "b"], "", 1], "scope"),
        (["nope"], "unknown"),
        ({"k": 1}, "non-empty list"),
    ],
)
def test_errors_name_the_bad_field(data, words):
    with pytest.raises(QuorumWireError, match=words):
        decode(data)


def test_too_many_entries_are_refused():
    entry = ["s", 1, 1, 1.0]
    with pytest.raises(QuorumWireError, match="at most"):
        decode(["lease-req", ["a", "b"], 1, [entry] * 5000])


def test_a_request_naming_a_scope_twice_is_refused():
    entry = ["s", 7, 1, 1.0]
    with pytest.raises(QuorumWireError, match="twice"):
        decode(["lease-req", ["a", "b"], 1, [entry, ["s", 6, 2, 1.0]]])
