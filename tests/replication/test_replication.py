"""Replication, high watermark, ISR, acks=all and leader failover (kafka-semantics.md section 1
and the scenarios of section 7), driven step by step in one process."""
from __future__ import annotations

import pytest

from service import log as unified_log
from service.errors import Errors, KafkaError
from service.log import LogAppendInfo
from service.types import Acks


def _make(cluster, rf=3, min_isr=2, unclean=False):
    configs = [("min.insync.replicas", str(min_isr))]
    if unclean:
        configs.append(("unclean.leader.election.enable", "true"))
    cluster.controller.create_topic("t", 1, rf, configs)
    state = cluster.state()
    followers = [b for b in state.replicas if b != state.leader]
    return state.leader, followers


def test_new_partition_has_every_replica_in_the_isr(cluster):
    leader, followers = _make(cluster)
    state = cluster.state()
    assert set(state.isr) == {leader, *followers} and state.leader == state.replicas[0]


def test_followers_copy_and_hw_is_min_leo_over_isr(cluster):
    leader, (f1, f2) = _make(cluster)
    for i in range(5):
        assert isinstance(cluster.produce(b"r%d" % i), LogAppendInfo)
    # Nothing replicated yet: the records are in the leader's log, invisible to readers.
    assert cluster.leader_offsets().log_end_offset == 5
    assert cluster.leader_offsets().high_watermark == 0
    assert cluster.rm.fetch(cluster.topic(), 0, 0, 1 << 20).records == []
    # One follower copies: the HW still waits for the other ISR member.
    cluster.rm.fetcher.fetch_step(cluster.topic(), cluster.state(), f1)
    assert cluster.values(f1) == [(i, b"r%d" % i) for i in range(5)]
    assert cluster.leader_offsets().high_watermark == 0
    cluster.rm.fetcher.fetch_step(cluster.topic(), cluster.state(), f2)
    assert cluster.leader_offsets().high_watermark == 5
    assert [r.value for r in cluster.rm.fetch(cluster.topic(), 0, 0, 1 << 20).records] == [b"r%d" % i for i in range(5)]


def test_repeated_fetch_step_writes_nothing(cluster):
    leader, (f1, _f2) = _make(cluster)
    cluster.produce(b"a")
    first = cluster.rm.fetcher.fetch_step(cluster.topic(), cluster.state(), f1)
    again = cluster.rm.fetcher.fetch_step(cluster.topic(), cluster.state(), f1)
    assert first.copied == 1 and again.copied == 0
    assert cluster.values(f1) == [(0, b"a")]


def _stale_plan(cluster, follower):
    """What a round of another process read of the leader for ``follower``, before it steps."""
    fetcher, state = cluster.rm.fetcher, cluster.state()
    positions = {follower: fetcher._follower_position(state, follower)}
    lstate, _followers, plans = fetcher._read_leader(state, positions, 5000)
    return state, positions[follower], lstate, plans[follower]


def test_a_step_that_lost_the_race_copies_what_the_winner_did_not(cluster):
    """Two processes' rounds read the leader at different times; the one that read more but
    reached the follower second copies the records beyond the winner's end, not nothing."""
    leader, (f1, _f2) = _make(cluster)
    for i in range(3):
        cluster.produce(b"a%d" % i)
    early = _stale_plan(cluster, f1)  # reads offsets 0..2
    for i in range(3, 7):
        cluster.produce(b"a%d" % i)
    late = _stale_plan(cluster, f1)  # reads offsets 0..6
    state, position, lstate, plan = early
    assert cluster.rm.fetcher._step(state, f1, position, lstate, plan) == (3, 3)  # the winner: 0..2
    state, position, lstate, plan = late
    assert cluster.rm.fetcher._step(state, f1, position, lstate, plan) == (7, 4)  # the rest: 3..6
    assert cluster.values(f1) == [(i, b"a%d" % i) for i in range(7)]
    # the same plan again writes nothing
    result = cluster.rm.fetcher._step(state, f1, position, lstate, plan)
    assert result.raced and result.copied == 0 and result.follower_leo == 7
    assert cluster.values(f1) == [(i, b"a%d" % i) for i in range(7)]


def test_a_step_that_lost_the_race_to_another_history_copies_nothing(cluster):
    """If the follower's last record is not the stale plan's record at that offset (another
    leader epoch wrote it), the stale rows are not appended: the next round truncates."""
    leader, (f1, _f2) = _make(cluster)
    cluster.produce(b"a0")
    cluster.produce(b"a1")
    state, position, lstate, plan = _stale_plan(cluster, f1)  # offsets 0..1 of the leader's epoch
    db = cluster.server.db
    with db.write(db.broker(f1)) as conn:  # meanwhile offset 0 arrived from a later epoch's leader
        current = unified_log.load(conn, state.topic_id, 0)
        other = [(0, 1, None, b"other", None, state.leader_epoch + 1, -1, -1, -1, False, False)]
        unified_log.append_as_follower(conn, current, other, 0)
    result = cluster.rm.fetcher._step(state, f1, position, lstate, plan)
    assert result.raced and result.copied == 0
    assert cluster.values(f1) == [(0, b"other")]


def test_acks_all_answers_without_sleeping_when_its_round_only_had_positions_to_record(cluster, monkeypatch):
    """Another process's step copied the batch to both followers but has not recorded their
    positions yet: the waiting produce's round records them, which moves the HW; the produce
    then answers at once instead of backing off as if the followers were stuck."""
    leader, followers = _make(cluster)
    info = cluster.produce(b"x")
    for f in followers:  # the other process: steps 1 and 2 only
        state, position, lstate, plan = _stale_plan(cluster, f)
        assert cluster.rm.fetcher._step(state, f, position, lstate, plan) == (1, 1)
    assert cluster.leader_offsets().high_watermark == 0
    sleeps = []
    monkeypatch.setattr(cluster.clock, "sleep", lambda s: sleeps.append(s))
    cluster.rm._await_high_watermark(cluster.topic(), cluster.state(), info.last_offset + 1,
                                     cluster.clock.monotonic() + 5)
    assert cluster.leader_offsets().high_watermark == 1
    assert sleeps == []


def test_acks_all_waits_for_the_isr(cluster):
    _make(cluster)
    info = cluster.produce(b"x", Acks.ALL)
    assert isinstance(info, LogAppendInfo) and info.first_offset == 0
    assert cluster.leader_offsets().high_watermark == 1
    for b in cluster.state().replicas:
        assert cluster.values(b) == [(0, b"x")]


def test_reads_between_hw_and_leo_are_empty_and_beyond_leo_out_of_range(cluster):
    leader, followers = _make(cluster)
    for f in followers:
        cluster.controller.stop_broker(f)  # their fetches are held back; they stay in the ISR for now
    cluster.produce(b"r")
    topic = cluster.topic()
    assert cluster.rm.fetch(topic, 0, 0, 1 << 20).records == []  # HW 0 < LEO 1: empty, no error
    assert cluster.rm.fetch(topic, 0, 1, 1 << 20).records == []
    with pytest.raises(KafkaError) as err:
        cluster.rm.fetch(topic, 0, 2, 1 << 20)
    assert err.value.error is Errors.OFFSET_OUT_OF_RANGE


def test_not_enough_replicas_writes_nothing(cluster):
    """7.3: with the ISR shrunk to the leader, acks=all is refused before the append."""
    leader, followers = _make(cluster)
    for f in followers:
        cluster.controller.stop_broker(f)
    cluster.clock.advance(10_001)
    assert cluster.rm.maybe_shrink_isr() == 1
    assert cluster.state().isr == (leader,)
    before = cluster.leader_offsets().log_end_offset
    result = cluster.produce(b"refused", Acks.ALL)
    assert isinstance(result, KafkaError) and result.error is Errors.NOT_ENOUGH_REPLICAS
    assert cluster.leader_offsets().log_end_offset == before
    # acks=1 is accepted, but the HW does not move while the ISR is below min.insync.replicas.
    assert isinstance(cluster.produce(b"one", Acks.LEADER), LogAppendInfo)
    assert cluster.leader_offsets().high_watermark == before


def test_acks_all_times_out_when_followers_do_not_fetch(cluster):
    """7.4: the write is in the leader's log; the answer is an unknown outcome, not a failure."""
    _make(cluster)
    for f in [b for b in cluster.state().replicas if b != cluster.state().leader]:
        cluster.controller.stop_broker(f)
    result = cluster.produce(b"maybe", Acks.ALL, timeout_ms=200)
    assert isinstance(result, KafkaError) and result.error is Errors.REQUEST_TIMED_OUT
    assert cluster.leader_offsets().log_end_offset == 1


def test_acks_one_record_lost_on_failover_and_truncated_on_return(cluster):
    """7.1, the textbook case: an acknowledged acks=1 record disappears after failover."""
    leader, (f1, f2) = _make(cluster)
    assert isinstance(cluster.produce(b"kept", Acks.ALL), LogAppendInfo)
    cluster.controller.stop_broker(f1)
    cluster.controller.stop_broker(f2)
    lost = cluster.produce(b"acked-then-lost", Acks.LEADER)
    assert isinstance(lost, LogAppendInfo) and lost.first_offset == 1
    cluster.controller.stop_broker(leader)
    assert cluster.state().leader == -1  # no live ISR member
    cluster.controller.start_broker(f1)
    state = cluster.state()
    assert state.leader == f1 and state.leader_epoch >= 2
    assert cluster.values(f1) == [(0, b"kept")]
    cluster.controller.start_broker(f2)
    assert isinstance(cluster.produce(b"new", Acks.ALL), LogAppendInfo)
    cluster.controller.start_broker(leader)
    cluster.replicate()
    for b in (leader, f1, f2):
        assert cluster.values(b) == [(0, b"kept"), (1, b"new")], b
    assert leader in cluster.state().isr


def test_acks_all_record_survives_failover(cluster):
    """7.2: an acks=all record is on every ISR member, so any new leader has it."""
    leader, (f1, f2) = _make(cluster)
    for i in range(3):
        assert isinstance(cluster.produce(b"v%d" % i, Acks.ALL), LogAppendInfo)
    cluster.controller.stop_broker(leader)
    new_leader = cluster.state().leader
    assert new_leader in (f1, f2)
    assert cluster.values(new_leader) == [(0, b"v0"), (1, b"v1"), (2, b"v2")]
    # The new leader's HW catches up once the remaining ISR follower fetches in the new epoch.
    cluster.replicate()
    assert [r.value for r in cluster.rm.fetch(cluster.topic(), 0, 0, 1 << 20).records] == [b"v0", b"v1", b"v2"]


def test_follower_truncates_where_it_diverges_by_leader_epoch(cluster):
    """7.7: the old leader's uncommitted suffix is replaced by the new leader's records."""
    leader, (f1, f2) = _make(cluster, min_isr=1)
    for i in range(8):
        cluster.produce(b"c%d" % i)
    cluster.replicate()
    cluster.controller.stop_broker(f1)
    cluster.controller.stop_broker(f2)
    cluster.produce(b"x8")
    cluster.produce(b"x9")
    cluster.controller.start_broker(f1)
    cluster.controller.start_broker(f2)
    cluster.controller.stop_broker(leader)
    new_leader = cluster.state().leader
    assert new_leader in (f1, f2)
    cluster.produce(b"n8")
    cluster.produce(b"n9")
    cluster.controller.start_broker(leader)
    cluster.replicate()
    expected = [(i, b"c%d" % i) for i in range(8)] + [(8, b"n8"), (9, b"n9")]
    for b in (leader, f1, f2):
        assert cluster.values(b) == expected, b


def test_clean_election_refuses_an_out_of_sync_replica(cluster):
    """7.8, unclean off: with only the leader in the ISR, its death leaves no leader."""
    leader, (f1, f2) = _make(cluster, min_isr=1)
    cluster.controller.stop_broker(f1)
    cluster.controller.stop_broker(f2)
    cluster.clock.advance(10_001)
    cluster.rm.maybe_shrink_isr()
    cluster.produce(b"only-on-leader")
    cluster.controller.stop_broker(leader)
    cluster.controller.start_broker(f1)
    state = cluster.state()
    assert state.leader == -1 and state.isr == (leader,)
    result = cluster.produce(b"nope")
    assert isinstance(result, KafkaError) and result.error is Errors.LEADER_NOT_AVAILABLE
    cluster.controller.start_broker(leader)
    assert cluster.state().leader == leader
    assert cluster.values(leader) == [(0, b"only-on-leader")]


def test_unclean_election_loses_records_and_truncates_the_old_leader(cluster):
    """7.8, unclean on: a lagging replica leads, the old leader's extra records are truncated,
    never merged."""
    leader, (f1, f2) = _make(cluster, min_isr=1, unclean=True)
    cluster.produce(b"a")
    cluster.replicate()
    cluster.controller.stop_broker(f1)
    cluster.controller.stop_broker(f2)
    cluster.produce(b"b")  # only on the leader
    # Followers at the leader's LEO count as caught up (1.10); once behind, lag removes them.
    cluster.clock.advance(10_001)
    assert cluster.rm.maybe_shrink_isr() == 1 and cluster.state().isr == (leader,)
    cluster.controller.stop_broker(leader)
    cluster.controller.start_broker(f1)
    state = cluster.state()
    assert state.leader == f1 and state.isr == (f1,)
    cluster.produce(b"c")  # reuses offset 1
    cluster.controller.start_broker(leader)
    cluster.controller.start_broker(f2)
    cluster.replicate()
    for b in (leader, f1, f2):
        assert cluster.values(b) == [(0, b"a"), (1, b"c")], b


def test_isr_shrinks_by_lag_and_expands_on_catch_up(cluster):
    """7.5."""
    leader, (f1, f2) = _make(cluster)
    cluster.controller.stop_broker(f2)
    for i in range(3):
        cluster.produce(b"v%d" % i)
        cluster.replicate()
    cluster.clock.advance(10_001)
    cluster.produce(b"v3")
    cluster.rm.fetcher.fetch_step(cluster.topic(), cluster.state(), f1)
    assert cluster.rm.maybe_shrink_isr() == 1
    assert set(cluster.state().isr) == {leader, f1}
    assert cluster.state().partition_epoch >= 1
    cluster.controller.start_broker(f2)
    cluster.replicate()
    assert set(cluster.state().isr) == {leader, f1, f2}
    assert cluster.values(f2) == cluster.values(leader)


def test_an_idle_follower_stopped_for_the_lag_time_leaves_the_isr(cluster):
    """1.11: a caught-up follower whose broker stopped leaves the ISR once it has been stopped
    for replica.lag.time.max.ms, although nothing was written; so the next acks=all produce
    does not wait for it. It rejoins after its broker starts and catches up."""
    leader, (f1, f2) = _make(cluster)
    cluster.produce(b"a")
    cluster.replicate()
    cluster.controller.stop_broker(f2)
    cluster.clock.advance(10_000)
    assert cluster.rm.maybe_shrink_isr() == 0  # not stopped for longer than the lag time yet
    assert set(cluster.state().isr) == {leader, f1, f2}
    cluster.clock.advance(2)
    assert cluster.rm.maybe_shrink_isr() == 1
    assert set(cluster.state().isr) == {leader, f1}
    assert cluster.produce(b"b", acks=Acks.ALL, timeout_ms=2000).last_offset == 1  # HW passes without f2
    cluster.controller.start_broker(f2)
    cluster.replicate()
    assert set(cluster.state().isr) == {leader, f1, f2}
    assert cluster.values(f2) == [(0, b"a"), (1, b"b")]


def test_stopped_broker_does_not_fetch(cluster):
    leader, (f1, _f2) = _make(cluster)
    cluster.controller.stop_broker(f1)
    cluster.produce(b"a")
    assert cluster.rm.fetcher.fetch_step(cluster.topic(), cluster.state(), f1) is None
    assert cluster.values(f1) == []
