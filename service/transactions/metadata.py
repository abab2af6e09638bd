"""TransactionState and TransactionMetadata: the coordinator's state machine (3.B).

Only ``TransactionState.check_transition`` decides whether a transition is legal; an illegal
one raises the Kafka error the client should see, never a bare exception.
"""
from __future__ import annotations

from dataclasses import dataclass, field, replace
from enum import Enum

from service.errors import Errors, KafkaError

MAX_PRODUCER_EPOCH = 32767


class TransactionState(str, Enum):
    """Kafka's transaction states, with the states each may be entered from.

    transition: Empty <- Empty, CompleteCommit, CompleteAbort       (InitProducerId)
    transition: Ongoing <- Empty, Ongoing, CompleteCommit, CompleteAbort (partitions or offsets added)
    transition: PrepareCommit <- Ongoing                               (EndTxn commit)
    transition: PrepareAbort <- Ongoing, PrepareEpochFence             (EndTxn abort, timeout, fencing)
    transition: CompleteCommit <- PrepareCommit                        (every marker written)
    transition: CompleteAbort <- PrepareAbort                          (every marker written)
    transition: Dead <- Empty, CompleteCommit, CompleteAbort           (transactional id expiry)
    transition: PrepareEpochFence <- Ongoing                           (never stored)
    """

    EMPTY = "Empty"
    ONGOING = "Ongoing"
    PREPARE_COMMIT = "PrepareCommit"
    PREPARE_ABORT = "PrepareAbort"
    COMPLETE_COMMIT = "CompleteCommit"
    COMPLETE_ABORT = "CompleteAbort"
    DEAD = "Dead"
    PREPARE_EPOCH_FENCE = "PrepareEpochFence"

    @property
    def valid_previous_states(self) -> frozenset["TransactionState"]:
        return _PREVIOUS[self]

    @property
    def is_prepare(self) -> bool:
        return self in (TransactionState.PREPARE_COMMIT, TransactionState.PREPARE_ABORT)

    @property
    def is_complete(self) -> bool:
        return self in (TransactionState.COMPLETE_COMMIT, TransactionState.COMPLETE_ABORT)

    def check_transition(self, target: "TransactionState") -> None:
        if self not in target.valid_previous_states:
            raise KafkaError(Errors.INVALID_TXN_STATE,
                             f"A transaction in state {self.value} cannot go to {target.value}.")


S = TransactionState
_PREVIOUS = {
    S.EMPTY: frozenset({S.EMPTY, S.COMPLETE_COMMIT, S.COMPLETE_ABORT}),
    S.ONGOING: frozenset({S.EMPTY, S.ONGOING, S.COMPLETE_COMMIT, S.COMPLETE_ABORT}),
    S.PREPARE_COMMIT: frozenset({S.ONGOING}),
    S.PREPARE_ABORT: frozenset({S.ONGOING, S.PREPARE_EPOCH_FENCE}),
    S.COMPLETE_COMMIT: frozenset({S.PREPARE_COMMIT}),
    S.COMPLETE_ABORT: frozenset({S.PREPARE_ABORT}),
    S.DEAD: frozenset({S.EMPTY, S.COMPLETE_COMMIT, S.COMPLETE_ABORT}),
    S.PREPARE_EPOCH_FENCE: frozenset({S.ONGOING}),
}


@dataclass(frozen=True)
class TransactionMetadata:
    """One transactional id's coordinator state (Kafka's ``TransactionMetadata``)."""

    transactional_id: str
    producer_id: int
    producer_epoch: int
    last_producer_epoch: int
    timeout_ms: int
    state: TransactionState
    start_ms: int | None
    last_update_ms: int
    partitions: frozenset[tuple[str, int]] = field(default_factory=frozenset)
    next_producer_id: int = -1  # set when the epoch is exhausted: the id after this transaction
    previous_producer_id: int = -1  # the id the last transaction ended with, after a rotation

    def transition_to(self, target: TransactionState, now_ms: int, **changes) -> "TransactionMetadata":
        """The metadata after a legal transition (Kafka's ``prepareTransitionTo`` +
        ``completeTransitionTo`` in one step: the caller persists it in the same transaction)."""
        self.state.check_transition(target)
        if target is TransactionState.ONGOING and self.state is not TransactionState.ONGOING:
            changes.setdefault("start_ms", now_ms)
        if target.is_complete or target is TransactionState.EMPTY:
            changes.setdefault("partitions", frozenset())
            changes.setdefault("start_ms", None)
        return replace(self, state=target, last_update_ms=now_ms, **changes)
