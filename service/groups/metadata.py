"""Group states and the range assignor (Kafka's ``GroupMetadata`` and ``RangeAssignor``)."""
from __future__ import annotations

from enum import Enum
from typing import Mapping, Sequence

from service.errors import Errors, KafkaError


class GroupState(str, Enum):
    """transition: PreparingRebalance <- Stable, CompletingRebalance, Empty
    transition: CompletingRebalance <- PreparingRebalance
    transition: Stable <- CompletingRebalance
    transition: Empty <- PreparingRebalance
    transition: Dead <- any

    dlog's coordinator computes the assignment itself (the consumers are REST instances it
    hosts), so a rebalance goes PreparingRebalance -> CompletingRebalance -> Stable (or
    Empty) inside one transaction on controller.db; only Empty and Stable are ever stored.
    """

    EMPTY = "Empty"
    PREPARING_REBALANCE = "PreparingRebalance"
    COMPLETING_REBALANCE = "CompletingRebalance"
    STABLE = "Stable"
    DEAD = "Dead"

    def check_transition(self, target: "GroupState") -> None:
        if target is not GroupState.DEAD and self not in _PREVIOUS[target]:
            raise KafkaError(Errors.REBALANCE_IN_PROGRESS, f"A group cannot go from {self.value} to {target.value}.")

    @property
    def rest_name(self) -> str:
        """The REST Proxy v3 spelling: STABLE, EMPTY, PREPARING_REBALANCE, ..."""
        return {"PreparingRebalance": "PREPARING_REBALANCE", "CompletingRebalance": "COMPLETING_REBALANCE"}.get(
            self.value, self.value.upper())


_PREVIOUS = {
    GroupState.PREPARING_REBALANCE: frozenset({GroupState.STABLE, GroupState.COMPLETING_REBALANCE, GroupState.EMPTY}),
    GroupState.COMPLETING_REBALANCE: frozenset({GroupState.PREPARING_REBALANCE}),
    GroupState.STABLE: frozenset({GroupState.COMPLETING_REBALANCE}),
    GroupState.EMPTY: frozenset({GroupState.PREPARING_REBALANCE}),
}


def rebalance_states(current: GroupState, has_members: bool) -> GroupState:
    """Walk the legal transitions of one rebalance and return the state it ends in."""
    current.check_transition(GroupState.PREPARING_REBALANCE)
    if not has_members:
        GroupState.PREPARING_REBALANCE.check_transition(GroupState.EMPTY)
        return GroupState.EMPTY
    GroupState.PREPARING_REBALANCE.check_transition(GroupState.COMPLETING_REBALANCE)
    GroupState.COMPLETING_REBALANCE.check_transition(GroupState.STABLE)
    return GroupState.STABLE


def range_assign(subscriptions: Mapping[str, Sequence[str]], partitions_per_topic: Mapping[str, int]
                 ) -> dict[str, list[tuple[str, int]]]:
    """Kafka's RangeAssignor: per topic, members (sorted by member id) subscribed to it get
    consecutive ranges; the first ``n % m`` members get one partition more."""
    assignment: dict[str, list[tuple[str, int]]] = {m: [] for m in subscriptions}
    topics = sorted({t for ts in subscriptions.values() for t in ts})
    for topic in topics:
        count = partitions_per_topic.get(topic, 0)
        members = sorted(m for m, ts in subscriptions.items() if topic in ts)
        if not members or not count:
            continue
        per, extra = divmod(count, len(members))
        start = 0
        for i, member in enumerate(members):
            n = per + (1 if i < extra else 0)
            assignment[member].extend((topic, p) for p in range(start, start + n))
            start += n
    return assignment
