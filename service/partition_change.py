"""Leader election and ISR rules for one partition (Kafka's ``PartitionChangeBuilder``).

Pure functions: the controller applies their result inside its write transaction on
controller.db, bumping the leader epoch when the leader changes and the partition epoch on
any change.
"""
from __future__ import annotations

from typing import Collection, NamedTuple, Sequence

from service.types import NO_LEADER


class Election(NamedTuple):
    leader: int
    isr: tuple[int, ...]
    unclean: bool


def elect_leader(replicas: Sequence[int], isr: Sequence[int], leader: int, live: Collection[int],
                 unclean_allowed: bool) -> Election:
    """The leader and ISR a partition should have given which brokers are live.

    * A live leader stays.
    * Otherwise the first replica, in assignment order, that is in the ISR and live leads;
      the ISR loses the dead leader (1.23).
    * With no live ISR member, and unclean election allowed, the first live replica leads
      with ISR = {it} (1.24); records only the old ISR had may be lost.
    * Otherwise there is no leader; the ISR keeps its members (it never becomes empty, 1.11).
    """
    if leader != NO_LEADER and leader in live:
        return Election(leader, tuple(isr), False)
    remaining_isr = tuple(b for b in isr if b != leader) or tuple(isr)
    for b in replicas:
        if b in remaining_isr and b in live:
            return Election(b, remaining_isr, False)
    if unclean_allowed:
        for b in replicas:
            if b in live:
                return Election(b, (b,), True)
    return Election(NO_LEADER, remaining_isr, False)
