"""The sans-IO core driven by plain function calls: no Trio, no sockets, exact times."""

from __future__ import annotations

import math

import pytest

from swimmesh import codec
from swimmesh.config import MeshConfig
from swimmesh.events import MemberEventKind
from swimmesh.member import Claim, MemberStatus
from swimmesh.messages import Ack, ClaimMessage, Nack, Ping, PingReq, PushPull, StreamPing
from swimmesh.protocol import (
    EmitEvent,
    MetadataTooLarge,
    Output,
    SendPacket,
    StartStream,
    SwimInstance,
    push_pull_scale,
    suspicion_bounds,
)

ALIVE, SUSPECT, DEAD, LEFT = MemberStatus


def make(name: str = "a", peers: tuple[str, ...] = (), **overrides: object) -> SwimInstance:
    inst = SwimInstance(MeshConfig.lan(name=name, bind=(name, 1), seed=7, **overrides), now=0.0)
    for peer in peers:
        inst.receive_messages((peer, 1), [ClaimMessage(Claim(peer, 0, ALIVE, (peer, 1)))], 0.0)
    inst.drain()
    return inst


def run_until(inst: SwimInstance, t: float) -> list[Output]:
    out: list[Output] = []
    while inst.next_deadline() <= t:
        inst.tick(inst.next_deadline())
        out.extend(inst.drain())
    return out


def packets(outputs: list[Output]) -> list[tuple[tuple[str, int], list[object]]]:
    return [(o.address, codec.decode_packet(o.data)) for o in outputs if isinstance(o, SendPacket)]


def events(outputs: list[Output]) -> list[tuple[MemberEventKind, str]]:
    return [(o.event.kind, o.event.member.name) for o in outputs if isinstance(o, EmitEvent)]


def test_ping_is_acked_to_its_source() -> None:
    inst = make()
    inst.receive_messages(("x", 9), [Ping(42, "a", "x")], 1.0)
    [(addr, msgs)] = packets(inst.drain())
    assert addr == ("x", 9) and msgs[0] == Ack(42)


def test_misdirected_ping_is_dropped_and_counted() -> None:
    inst = make()
    inst.receive_messages(("x", 9), [Ping(1, "someone-else", "x")], 1.0)
    assert packets(inst.drain()) == []
    assert inst.stats.dropped["misdirected"] == 1


def test_garbage_is_counted_and_changes_nothing() -> None:
    inst = make(peers=("b",))
    before = inst.members()
    inst.receive_datagram(("x", 1), b"\xff\x00garbage", 1.0)
    assert inst.drain() == []
    assert inst.members() == before
    assert inst.stats.dropped["malformed"] == 1


def _first_probe(inst: SwimInstance) -> tuple[float, tuple[str, int], Ping]:
    while True:
        t = inst.next_deadline()
        inst.tick(t)
        for addr, msgs in packets(inst.drain()):
            for m in msgs:
                if isinstance(m, Ping):
                    return t, addr, m


def test_failed_probe_goes_indirect_then_suspects_then_dead_at_max_timeout() -> None:
    inst = make(peers=("b", "c", "d"))
    t0, addr, ping = _first_probe(inst)
    target = ping.target
    cfg = inst.config
    # No ack: at the probe timeout, ping-req through the other alive peers.
    out = run_until(inst, t0 + cfg.probe_timeout)
    reqs = [(a, m) for a, ms in packets(out) for m in ms if isinstance(m, PingReq)]
    assert len(reqs) == min(cfg.indirect_checks, 2)
    assert {a for a, _ in reqs}.isdisjoint({addr}) and all(m.target == target for _, m in reqs)
    # No ack and no nack by the end of the probe interval: suspect, and health worsens by the
    # number of missed nacks.
    out = run_until(inst, t0 + cfg.probe_interval)
    assert (MemberEventKind.SUSPECT, target) in events(out)
    assert inst.health_score == len(reqs)
    # Nobody confirms: the suspicion lasts its maximum (k = 2 expected confirmations at n=4).
    _, maximum = suspicion_bounds(
        cfg.suspicion_mult, cfg.suspicion_max_timeout_mult, 4, cfg.probe_interval
    )
    suspected_at = t0 + cfg.probe_interval
    out = run_until(inst, suspected_at + maximum - 1e-6)
    assert inst.member(target).status is SUSPECT  # type: ignore[union-attr]
    out = run_until(inst, suspected_at + maximum)
    assert (MemberEventKind.DEAD, target) in events(out)


def test_independent_confirmations_shrink_the_timeout_to_the_minimum() -> None:
    inst = make(peers=("b", "c", "d", "e"))
    inst.receive_messages(
        ("c", 1), [ClaimMessage(Claim("b", 0, SUSPECT, ("b", 1), source="c"))], 10.0
    )
    inst.receive_messages(
        ("d", 1), [ClaimMessage(Claim("b", 0, SUSPECT, ("b", 1), source="d"))], 10.5
    )
    inst.receive_messages(
        ("e", 1), [ClaimMessage(Claim("b", 0, SUSPECT, ("b", 1), source="e"))], 11.0
    )
    inst.drain()
    minimum, _ = inst.suspicion_bounds()
    out = run_until(inst, 10.0 + minimum - 1e-6)
    assert (MemberEventKind.DEAD, "b") not in events(out)
    out = run_until(inst, 10.0 + minimum)
    assert (MemberEventKind.DEAD, "b") in events(out)


def test_suspicion_formula_matches_memberlist() -> None:
    lo, hi = suspicion_bounds(4, 6, 50, 1.0)
    assert lo == pytest.approx(4 * math.log10(50)) and hi == pytest.approx(6 * lo)
    assert suspicion_bounds(4, 6, 5, 1.0) == (4.0, 24.0)  # log10(n) floored at 1


def test_refutation_raises_incarnation_and_gossips_alive() -> None:
    inst = make(peers=("b",))
    inst.receive_messages(
        ("b", 1), [ClaimMessage(Claim("a", 0, SUSPECT, ("a", 1), source="b"))], 1.0
    )
    assert inst.incarnation == 1 and inst.stats.refutations == 1
    assert inst.health_score == 1  # Lifeguard: refuting about self lowers our own health
    # The refutation rides on the next packet.
    inst.receive_messages(("b", 1), [Ping(5, "a", "b")], 1.1)
    [(_, msgs)] = packets(inst.drain())
    assert ClaimMessage(Claim("a", 1, ALIVE, ("a", 1))) in msgs
    # A stale claim (older incarnation) is ignored.
    inst.receive_messages(("b", 1), [ClaimMessage(Claim("a", 0, DEAD, ("a", 1), source="b"))], 1.2)
    assert inst.incarnation == 1


def test_direct_ack_records_rtt_and_improves_health() -> None:
    inst = make(peers=("b",))
    inst._awareness.apply(3)
    t0, addr, ping = _first_probe(inst)
    inst.receive_messages(addr, [Ack(ping.seq)], t0 + 0.004)
    m = inst.member("b")
    assert m is not None and m.last_rtt_ms == pytest.approx(4.0) and m.rtt_ms == pytest.approx(4.0)
    assert inst.health_score == 2


def test_nacks_spare_our_health_score() -> None:
    inst = make(peers=("b", "c", "d", "e"))
    t0, _, ping = _first_probe(inst)
    reqs = [
        m
        for _, ms in packets(run_until(inst, t0 + inst.config.probe_timeout))
        for m in ms
        if isinstance(m, PingReq)
    ]
    for _ in reqs:
        inst.receive_messages(("c", 1), [Nack(ping.seq)], t0 + 0.6)
    run_until(inst, t0 + inst.config.probe_interval)
    assert inst.health_score == 0  # the relays answered: the target, not we, is the problem


def test_relay_forwards_ack_or_sends_nack_at_80_percent() -> None:
    inst = make(peers=("b",))
    inst.receive_messages(("r", 1), [PingReq(77, "b", ("b", 1), "r", True)], 1.0)
    [(addr, msgs)] = packets(inst.drain())
    assert addr == ("b", 1)
    relay_ping = next(m for m in msgs if isinstance(m, Ping))
    out = run_until(inst, 1.0 + 0.8 * inst.config.probe_timeout)
    assert any(a == ("r", 1) and Nack(77) in ms for a, ms in packets(out))
    inst.receive_messages(("b", 1), [Ack(relay_ping.seq)], 1.45)
    assert any(a == ("r", 1) and Ack(77) in ms for a, ms in packets(inst.drain()))


def test_buddy_ping_carries_the_suspicion() -> None:
    inst = make(peers=("b",))
    inst.receive_messages(
        ("c", 1), [ClaimMessage(Claim("b", 0, SUSPECT, ("b", 1), source="c"))], 0.0
    )
    inst.drain()
    inst.tick(inst.next_deadline())
    while True:
        sent = packets(inst.drain())
        pings = [(a, ms) for a, ms in sent if any(isinstance(m, Ping) for m in ms)]
        if pings:
            break
        inst.tick(inst.next_deadline())
    [(addr, msgs)] = pings
    assert addr == ("b", 1)
    assert ClaimMessage(Claim("b", 0, SUSPECT, ("b", 1), source="a")) in msgs


def timed_packets(
    inst: SwimInstance, until: float, acking: tuple[str, int] | None = None
) -> list[tuple[float, tuple[str, int], list[object]]]:
    """Run the timers up to ``until``; every packet sent, with the time it was sent. Pings to
    ``acking`` are acked at once (a live peer)."""
    sent = []
    while inst.next_deadline() <= until:
        t = inst.next_deadline()
        inst.tick(t)
        for addr, msgs in packets(inst.drain()):
            sent.append((t, addr, msgs))
            for m in msgs:
                if addr == acking and isinstance(m, Ping):
                    inst.receive_messages(addr, [Ack(m.seq)], t)
                    sent.extend((t, a, ms) for a, ms in packets(inst.drain()))
    return sent


def _suspect_b_from_c(inst: SwimInstance, now: float = 0.0) -> None:
    inst.receive_messages(
        ("c", 1), [ClaimMessage(Claim("b", 0, SUSPECT, ("b", 1), source="c"))], now
    )
    inst.drain()


def test_plain_swim_has_no_buddy_no_nack_no_nudge_and_a_fixed_timeout() -> None:
    inst = make(peers=("b", "c", "d", "e"), lifeguard=False)
    _suspect_b_from_c(inst)
    # A confirmation changes nothing without Lifeguard (with it, the timeout would start at
    # the maximum and shrink only part way with one confirmation).
    claim = Claim("b", 0, SUSPECT, ("b", 1), source="d")
    inst.receive_messages(("d", 1), [ClaimMessage(claim)], 0.5)
    minimum, _ = inst.suspicion_bounds()
    sent = timed_packets(inst, minimum - 1e-6, acking=("b", 1))
    assert inst.member("b").status is SUSPECT  # type: ignore[union-attr]
    pings_to_b = [ms for _, a, ms in sent if a == ("b", 1) and any(isinstance(m, Ping) for m in ms)]
    assert pings_to_b, "b was probed while suspected"
    # Neither a buddy claim on the probes nor a last-call nudge: nothing from "a" tells b.
    mine = ClaimMessage(Claim("b", 0, SUSPECT, ("b", 1), source="a"))
    assert all(mine not in ms for _, _, ms in sent)
    assert all(not (isinstance(m, PingReq) and m.nack) for _, _, ms in sent for m in ms)
    out = run_until(inst, minimum)  # exactly the minimum, never the Lifeguard maximum
    assert (MemberEventKind.DEAD, "b") in events(out)
    assert inst.health_score == 0  # and no Local Health Multiplier


def test_last_call_nudges_reach_the_suspect_before_the_deadline() -> None:
    inst = make(peers=("b", "c", "d", "e"))
    _suspect_b_from_c(inst)
    # b answers our probes (so we never confirm) but missed the suspicion: nobody confirms,
    # the deadline stays at the maximum.
    _, maximum = inst.suspicion_bounds()
    cfg = inst.config
    sent = timed_packets(inst, maximum - 1e-6, acking=("b", 1))
    nudge = ClaimMessage(Claim("b", 0, SUSPECT, ("b", 1), source="a"))
    nudges = [
        t
        for t, a, ms in sent
        if a == ("b", 1) and nudge in ms and not any(isinstance(m, Ping) for m in ms)
    ]
    assert nudges == [maximum - 2 * cfg.probe_interval, maximum - cfg.probe_timeout]


def test_a_refuted_suspicion_sends_no_more_nudges() -> None:
    inst = make(peers=("b", "c", "d", "e"))
    _suspect_b_from_c(inst)
    _, maximum = inst.suspicion_bounds()
    first = maximum - 2 * inst.config.probe_interval
    timed_packets(inst, first, acking=("b", 1))
    inst.receive_messages(("b", 1), [ClaimMessage(Claim("b", 1, ALIVE, ("b", 1)))], first + 0.1)
    inst.drain()
    nudge = ClaimMessage(Claim("b", 0, SUSPECT, ("b", 1), source="a"))
    assert all(nudge not in ms for _, _, ms in timed_packets(inst, maximum + 1, acking=("b", 1)))
    assert inst.member("b").status is ALIVE  # type: ignore[union-attr]


def test_local_health_stretches_the_probe_interval_and_timeout() -> None:
    inst = make(peers=("b", "c"))
    inst._awareness.apply(2)  # as after two failed probes
    cfg = inst.config
    t0, addr, ping = _first_probe(inst)
    inst.receive_messages(addr, [Ack(ping.seq)], t0 + 0.001)  # health 2 -> 1
    inst.drain()
    t1, _, ping = _first_probe(inst)
    assert t1 - t0 == pytest.approx(3 * cfg.probe_interval)  # scaled at 2 when it was armed
    sent = timed_packets(inst, t1 + 2 * cfg.probe_timeout)
    [t_req] = [t for t, _, ms in sent if any(isinstance(m, PingReq) for m in ms)]
    assert t_req == pytest.approx(t1 + 2 * cfg.probe_timeout)  # health 1: timeout x2


def test_leave_tells_every_live_peer_directly() -> None:
    inst = make(peers=("b", "c", "d"))
    inst.leave(5.0)
    sent = packets(inst.drain())
    told = {a for a, msgs in sent if ClaimMessage(Claim("a", 0, LEFT, ("a", 1))) in msgs}
    assert told == {("b", 1), ("c", 1), ("d", 1)}
    assert inst.local_member().status is LEFT
    # A leaving node does not refute, and stops probing.
    inst.receive_messages(("b", 1), [ClaimMessage(Claim("a", 0, DEAD, ("a", 1), source="b"))], 5.1)
    assert inst.incarnation == 0
    assert not any(isinstance(m, Ping) for _, ms in packets(run_until(inst, 20.0)) for m in ms)


def test_left_is_never_reported_as_dead() -> None:
    inst = make(peers=("b", "c"))
    inst.receive_messages(("b", 1), [ClaimMessage(Claim("b", 0, LEFT, ("b", 1)))], 1.0)
    out = inst.drain()
    assert events(out) == [(MemberEventKind.LEAVE, "b")]
    inst.receive_messages(("c", 1), [ClaimMessage(Claim("b", 0, DEAD, ("b", 1), source="c"))], 1.1)
    assert inst.member("b").status is LEFT  # type: ignore[union-attr]


def test_tombstones_are_reaped_after_gossip_to_the_dead() -> None:
    inst = make(peers=("b",))
    inst.receive_messages(("b", 1), [ClaimMessage(Claim("b", 0, DEAD, ("b", 1), source="c"))], 1.0)
    run_until(inst, 1.0 + inst.config.gossip_to_the_dead - 0.01)
    assert inst.member("b") is not None
    run_until(inst, 1.0 + inst.config.gossip_to_the_dead)
    assert inst.member("b") is None


def test_metadata_update_bumps_incarnation_and_limit_is_enforced() -> None:
    inst = make()
    inst.update_metadata({"role": "worker"}, 1.0)
    me = inst.local_member()
    assert me.incarnation == 1 and me.meta_version == 1 and me.metadata == {"role": "worker"}
    with pytest.raises(MetadataTooLarge, match="max_metadata_bytes=512"):
        inst.update_metadata({"k": "x" * 600}, 2.0)
    assert inst.local_member().metadata == {"role": "worker"}


def test_packets_stay_within_udp_buffer_size() -> None:
    inst = make(peers=("b",))
    for i in range(300):
        inst.receive_messages(
            ("b", 1),
            [ClaimMessage(Claim(f"m{i}", 0, ALIVE, (f"m{i}", 1), 0, {"k": "v" * 50}))],
            0.0,
        )
    out = run_until(inst, 3.0)
    sizes = [len(o.data) for o in out if isinstance(o, SendPacket)]
    assert sizes and max(sizes) <= inst.config.udp_buffer_size
    assert max(sizes) > inst.config.udp_buffer_size * 0.8  # and they are actually filled


def test_push_pull_merges_and_turns_remote_dead_into_suspect() -> None:
    inst = make(peers=("b",))
    remote = PushPull(
        False, (Claim("b", 0, DEAD, ("b", 1)), Claim("c", 3, ALIVE, ("c", 1), 1, {"r": "x"}))
    )
    reply = inst.handle_stream_request(("b", 1), remote, 1.0)
    assert isinstance(reply, PushPull) and {c.name for c in reply.states} >= {"a", "b", "c"}
    assert inst.member("b").status is SUSPECT  # type: ignore[union-attr]
    c = inst.member("c")
    assert c is not None and c.status is ALIVE and c.metadata == {"r": "x"}


def test_push_pull_interval_scales_above_32_nodes() -> None:
    assert push_pull_scale(30, 32) == 30
    assert push_pull_scale(30, 64) == 60
    assert push_pull_scale(30, 1000) == 30 * (math.ceil(math.log2(1000) - 5) + 1)


def test_reconnect_retries_a_failed_member() -> None:
    inst = make(peers=("b",))
    inst.receive_messages(("c", 1), [ClaimMessage(Claim("b", 0, DEAD, ("b", 1), source="c"))], 1.0)
    out = run_until(inst, 1.0 + 2 * inst.config.reconnect_interval)
    streams = [o for o in out if isinstance(o, StartStream) and o.address == ("b", 1)]
    assert streams and isinstance(streams[0].message, PushPull)
    assert inst.stats.reconnect_attempts >= 1


def test_same_seed_same_trace() -> None:
    def trace() -> list[bytes]:
        inst = make(peers=("b", "c", "d", "e"))
        return [o.data for o in run_until(inst, 30.0) if isinstance(o, SendPacket)]

    assert trace() == trace()


def test_stream_fallback_ping_saves_a_peer_whose_udp_is_blocked(
    caplog: pytest.LogCaptureFixture,
) -> None:
    inst = make(peers=("b", "c", "d"))
    t0, _, ping = _first_probe(inst)
    out = run_until(inst, t0 + inst.config.probe_timeout)
    [stream] = [o for o in out if isinstance(o, StartStream) and isinstance(o.message, StreamPing)]
    assert stream.message == StreamPing(ping.seq, ping.target)
    # The target answers the stream ping by echoing it (as handle_stream_request does).
    target = make(name=ping.target)
    assert target.handle_stream_request(("a", 1), stream.message, 0.0) == stream.message
    inst.stream_reply(stream.request_id, stream.message, t0 + 0.6)
    with caplog.at_level("WARNING", logger="swimmesh.protocol"):
        out = run_until(inst, t0 + inst.config.probe_interval)
    assert (MemberEventKind.SUSPECT, ping.target) not in events(out)
    assert inst.stats.stream_fallbacks == 1
    assert "UDP blocked?" in caplog.text


def test_without_the_stream_answer_the_probe_still_fails() -> None:
    inst = make(peers=("b", "c", "d"))
    t0, _, ping = _first_probe(inst)
    out = run_until(inst, t0 + inst.config.probe_timeout)
    [stream] = [o for o in out if isinstance(o, StartStream) and isinstance(o.message, StreamPing)]
    inst.stream_reply(stream.request_id, None, t0 + 0.6)  # connection refused
    out = run_until(inst, t0 + inst.config.probe_interval)
    assert (MemberEventKind.SUSPECT, ping.target) in events(out)


def test_plain_swim_declares_an_unconfirmed_suspect_dead_at_the_minimum() -> None:
    inst = make(peers=("b", "c", "d", "e"), lifeguard=False)
    _suspect_b_from_c(inst)
    minimum, maximum = inst.suspicion_bounds()
    assert minimum < maximum
    timed_packets(inst, minimum - 1e-6, acking=("b", 1))
    assert inst.member("b").status is SUSPECT  # type: ignore[union-attr]
    out = run_until(inst, minimum)  # no confirmation at all: still the fixed minimum
    assert (MemberEventKind.DEAD, "b") in events(out)


def test_lifeguard_expects_no_confirmations_when_too_few_members_could_give_them() -> None:
    # 3 members: at most one other could confirm, fewer than suspicion_mult - 2 = 2, so the
    # timeout is the minimum from the start instead of a maximum nobody can shorten.
    inst = make(peers=("b", "c"))
    assert inst.config.suspicion_mult - 2 > 1
    _suspect_b_from_c(inst)
    minimum, _ = inst.suspicion_bounds()
    timed_packets(inst, minimum - 1e-6, acking=("b", 1))
    assert inst.member("b").status is SUSPECT  # type: ignore[union-attr]
    assert (MemberEventKind.DEAD, "b") in events(run_until(inst, minimum))


def test_an_impostor_alive_claim_at_our_incarnation_is_refuted() -> None:
    inst = make(peers=("b",))
    same = ClaimMessage(Claim("a", 0, ALIVE, inst.config.advertise_address))
    inst.receive_messages(("b", 1), [same], 1.0)
    inst.drain()
    assert inst.incarnation == 0 and inst.stats.refutations == 0  # our own claim: nothing to do
    impostor = ClaimMessage(Claim("a", 0, ALIVE, ("elsewhere", 9)))
    inst.receive_messages(("b", 1), [impostor], 2.0)
    inst.drain()
    assert inst.incarnation == 1 and inst.stats.refutations == 1


def test_a_peer_repeating_a_refuted_suspicion_is_told_our_incarnation_once_per_interval() -> None:
    inst = make(peers=("b", "c"))
    suspicion = ClaimMessage(Claim("a", 0, SUSPECT, ("a", 1), source="b"))
    inst.receive_messages(("b", 1), [suspicion], 1.0)
    inst.drain()
    assert inst.incarnation == 1
    mine = ClaimMessage(Claim("a", 1, ALIVE, inst.config.advertise_address))

    def told_c(now: float, status: MemberStatus) -> bool:
        stale = ClaimMessage(Claim("a", 0, status, ("a", 1), source="c"))
        inst.receive_messages(("c", 1), [stale], now)
        return any(a == ("c", 1) and mine in ms for a, ms in packets(inst.drain()))

    assert not told_c(2.0, ALIVE)  # a stale alive claim needs no answer
    assert told_c(2.5, SUSPECT)  # a stale suspicion: c missed the refutation
    assert not told_c(2.6, SUSPECT)  # at most once per probe interval
    assert told_c(2.5 + inst.config.probe_interval + 0.01, DEAD)


def test_a_failed_probe_with_no_relay_to_ask_still_costs_local_health() -> None:
    # Two members: no one to ping-req, so no nacks were expected; each failure counts 1.
    inst = make(peers=("b",))
    t0, _, _ = _first_probe(inst)
    run_until(inst, t0 + inst.config.probe_interval)
    assert inst.stats.probe_failures == 1 and inst.health_score == 1
    t1, _, _ = _first_probe(inst)
    run_until(inst, t1 + inst.config.probe_timeout * 2 + 1e-6)
    assert inst.stats.probe_failures == 2 and inst.health_score == 2


def test_a_refuted_suspicions_timer_does_not_end_a_later_suspicion() -> None:
    inst = make(peers=("b", "c", "d", "e"))
    _, maximum = inst.suspicion_bounds()
    _suspect_b_from_c(inst, 0.0)
    inst.receive_messages(("b", 1), [ClaimMessage(Claim("b", 1, ALIVE, ("b", 1)))], 1.0)
    assert (MemberEventKind.ALIVE, "b") in events(inst.drain())
    again = ClaimMessage(Claim("b", 1, SUSPECT, ("b", 1), source="d"))
    inst.receive_messages(("d", 1), [again], 2.0)
    inst.drain()
    # the first suspicion's deadline passes: the second one (2 s younger) still runs
    timed_packets(inst, maximum + 1.0, acking=("b", 1))
    assert inst.member("b").status is SUSPECT  # type: ignore[union-attr]
    assert (MemberEventKind.DEAD, "b") in events(run_until(inst, 2.0 + maximum))


def test_a_suspicion_at_a_newer_incarnation_restarts_the_timer_and_still_ends_in_death() -> None:
    inst = make(peers=("b", "c", "d", "e"))
    _, maximum = inst.suspicion_bounds()
    _suspect_b_from_c(inst, 0.0)
    newer = ClaimMessage(Claim("b", 1, SUSPECT, ("b", 1), source="d"))
    inst.receive_messages(("d", 1), [newer], 1.0)
    inst.drain()
    timed_packets(inst, 1.0 + maximum - 1e-6, acking=("b", 1))
    assert inst.member("b").status is SUSPECT  # type: ignore[union-attr]
    assert (MemberEventKind.DEAD, "b") in events(run_until(inst, 1.0 + maximum))


def test_metadata_must_be_strings_keys_and_values_alike() -> None:
    inst = make()
    for bad in ({"port": 8080}, {7: "x"}):
        with pytest.raises(TypeError, match="must be strings"):
            inst.update_metadata(bad, 1.0)  # type: ignore[arg-type]
    inst.update_metadata({"a": "1"}, 2.0)
    inst.update_metadata({"a": "2"}, 3.0)
    assert inst.local_member().meta_version == 2  # each update is newer than the last


def test_sequence_numbers_are_fresh_and_wrap_at_32_bits() -> None:
    inst = make()
    first, second = inst.next_seq(), inst.next_seq()
    assert first != second
    inst._seq = 0xFFFF_FFFF
    assert inst.next_seq() == 0


def test_push_pull_interval_steps_up_just_above_32_nodes() -> None:
    assert push_pull_scale(30, 33) == 60


def test_the_core_counts_messages_in_and_packets_out() -> None:
    inst = make()
    inst.receive_messages(("x", 9), [Ping(1, "a", "x"), Ping(2, "a", "x")], 1.0)
    sent = packets(inst.drain())
    assert sent and inst.stats.packets_sent == len(sent)
    inst.receive_messages(("x", 9), [Ping(3, "a", "x")], 2.0)
    sent += packets(inst.drain())
    assert inst.stats.messages_received == 3 and inst.stats.packets_sent == len(sent)


def test_anti_entropy_exchanges_state_with_a_live_peer_every_push_pull_interval() -> None:
    inst = make(peers=("b",))
    exchanges: list[tuple[float, StartStream]] = []
    while (t := inst.next_deadline()) <= 2 * inst.config.push_pull_interval:
        inst.tick(t)
        for o in inst.drain():
            if isinstance(o, SendPacket):  # b is alive: it acks every probe
                for m in codec.decode_packet(o.data):
                    if isinstance(m, Ping):
                        inst.receive_messages(o.address, [Ack(m.seq)], t)
            elif isinstance(o, StartStream) and isinstance(o.message, PushPull):
                exchanges.append((t, o))
                inst.stream_reply(o.request_id, None, t)  # the exchange failed; try again later
    assert inst.member("b").status is ALIVE  # type: ignore[union-attr]
    assert len(exchanges) >= 2 and all(o.address == ("b", 1) for _, o in exchanges)


def test_reassertion_memory_is_bounded_and_keeps_working_past_its_size() -> None:
    inst = make(peers=("b",))
    inst.receive_messages(("b", 1), [ClaimMessage(Claim("a", 0, SUSPECT, ("a", 1)))], 1.0)
    inst.drain()
    stale = [ClaimMessage(Claim("a", 0, SUSPECT, ("a", 1), source="x"))]
    for i in range(4200):  # more peers than it remembers, each repeating the old suspicion
        inst.receive_messages((f"peer-{i}", 1), stale, 2.0)
    told = {a for a, _ in packets(inst.drain())}
    later = inst.config.probe_interval + 3.0
    inst.receive_messages(("late", 1), stale, later)
    assert len(told) == 4200 and [a for a, _ in packets(inst.drain())] == [("late", 1)]


def test_the_stream_fallback_ping_gets_the_rest_of_the_probe_interval() -> None:
    inst = make(peers=("b", "c", "d"))
    t0, _, _ = _first_probe(inst)
    cfg = inst.config
    out = run_until(inst, t0 + cfg.probe_timeout)
    [stream] = [o for o in out if isinstance(o, StartStream) and isinstance(o.message, StreamPing)]
    assert stream.timeout == pytest.approx(cfg.probe_interval - cfg.probe_timeout)


def test_gossip_rearmed_on_a_tick_instant_waits_for_the_next_tick():
    """A mock clock lands exactly on a tick, where ``phase + ticks * interval`` can round to
    that very instant: re-arming there ran the gossip tick again and again without time
    moving (a node spinning at full CPU, a simulation that never ended). Every phase and
    instant here is such a case for a 0.2 s interval."""
    inst = make("a", peers=("b", "c"), gossip_interval=0.2)
    gossip = inst._gossip
    for phase, now in ((0.15, 0.35), (0.07, 2.07), (0.1, 4.1), (0.0123456, 4.0123456)):
        gossip._phase = phase
        gossip._timer = None
        gossip.arm(now)
        assert gossip._timer is not None and gossip._timer.deadline > now
        gossip._timer.cancel()
