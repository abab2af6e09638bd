"""TransactionCoordinator: InitProducerId, implicit AddPartitionsToTxn, TxnOffsetCommit and
EndTxn, with timeouts and recovery (kafka-semantics.md section 3).

State lives in controller.db (``transaction``, ``transaction_partition``,
``transaction_offset``); every check runs inside the write transaction that applies the
transition it guards. Ending a transaction is two-phase, as in Kafka, one file at a time:

1. controller.db: Ongoing -> PrepareCommit/PrepareAbort, and the producer epoch goes up by
   one (as in Kafka's transactions V2, KIP-890): the decision is durable;
2. each partition leader's file: a COMMIT/ABORT marker with the new epoch, written at most
   once per (producer id, epoch) and replicated like an acks=all write;
3. controller.db: pending offsets applied (commit) or dropped (abort); CompleteCommit or
   CompleteAbort.

EndTxn answers after step 3 when it can finish; when a marker cannot be written yet it
answers after step 1 (the decision is final and recovery finishes it), saying so in
``state``. Because every end of a transaction bumps the epoch, a stale or duplicated EndTxn,
or a late write of the previous transaction, can never touch the next one.
"""
from __future__ import annotations

import logging
from concurrent.futures import as_completed, wait
from dataclasses import dataclass
from typing import Iterable

from service.clock import Clock
from service.config import Config
from service.db import Database
from service.errors import Errors, KafkaError
from service.faults import crash_point
from service.groups import offsets as group_offsets
from service.producer_id_manager import ProducerIdManager
from service.producer_state import CONTROL_ABORT, CONTROL_COMMIT
from service.thread_pool import LazyThreadPool
from service.transactions import state_manager
from service.transactions.metadata import MAX_PRODUCER_EPOCH, TransactionMetadata, TransactionState

MARKER_THREADS = 8  # a transaction's markers written at once, per process (more wait their turn)
logger = logging.getLogger(__name__)
S = TransactionState
MAX_TRANSACTIONAL_ID_LENGTH = 255
RECOVERY_MARKER_TIMEOUT_MS = 1000


@dataclass(frozen=True)
class InitProducerIdResult:
    producer_id: int
    producer_epoch: int
    transactional_id: str | None = None


@dataclass(frozen=True)
class EndTxnResult:
    transactional_id: str
    producer_id: int
    producer_epoch: int  # the epoch the producer uses next
    state: TransactionState


class TransactionCoordinator:
    """Owns every change of TransactionMetadata; writes markers through the ReplicaManager."""

    def __init__(self, db: Database, config: Config, clock: Clock, producer_id_manager: ProducerIdManager,
                 replica_manager=None) -> None:
        self.db = db
        self.config = config
        self.clock = clock
        self.producer_id_manager = producer_id_manager
        self.replica_manager = replica_manager  # set by DlogServer; markers go through it
        self._marker_pool = LazyThreadPool(MARKER_THREADS, "dlog-marker")  # multi-partition markers

    # ------------------------------------------------------------------ InitProducerId
    def handle_init_producer_id(self, transactional_id: str | None = None,
                                transaction_timeout_ms: int | None = None) -> InitProducerIdResult:
        """InitProducerId. Without a transactional id: a fresh producer id at epoch 0 (2.1).

        With one (3.8-3.11): the first call creates it at epoch 0; later calls bump the epoch,
        fencing older instances, after aborting (or finishing) their open transaction.

        :raises INVALID_REQUEST: empty transactional id.
        :raises INVALID_TRANSACTION_TIMEOUT: timeout <= 0 or > transaction.max.timeout.ms.
        :raises CONCURRENT_TRANSACTIONS: the previous transaction's markers cannot be written yet.
        """
        if transactional_id is None:
            return InitProducerIdResult(self.producer_id_manager.generate_producer_id(), 0, None)
        self._validate_id(transactional_id)
        timeout = self.config.transaction_timeout_ms if transaction_timeout_ms is None else transaction_timeout_ms
        if isinstance(timeout, bool) or not isinstance(timeout, int) or not 0 < timeout <= self.config.transaction_max_timeout_ms:
            raise KafkaError(Errors.INVALID_TRANSACTION_TIMEOUT,
                             f"transaction_timeout_ms must be between 1 and {self.config.transaction_max_timeout_ms}.")
        for _attempt in range(3):
            fresh_pid = None
            with self.db.read(self.db.controller) as conn:
                meta = state_manager.load(conn, transactional_id)
            if meta is None or meta.producer_epoch >= MAX_PRODUCER_EPOCH - 1:
                fresh_pid = self.producer_id_manager.generate_producer_id()
            if meta is not None and meta.state.is_prepare:
                self._complete(transactional_id)  # finish the previous decision first
                continue
            if meta is not None and meta.state is S.ONGOING:
                self._fence_and_abort(transactional_id, meta.producer_epoch)
                continue
            now = self.clock.milliseconds()
            with self.db.write(self.db.controller) as conn:
                current = state_manager.load(conn, transactional_id)
                if current is None:
                    new = TransactionMetadata(transactional_id, fresh_pid, 0, -1, timeout, S.EMPTY, None, now)
                elif current.state in (S.EMPTY, S.COMPLETE_COMMIT, S.COMPLETE_ABORT):
                    if fresh_pid is not None:  # epoch exhausted: a new producer id at epoch 0
                        new = current.transition_to(S.EMPTY, now, producer_id=fresh_pid, producer_epoch=0,
                                                    last_producer_epoch=-1, timeout_ms=timeout)
                    else:
                        new = current.transition_to(S.EMPTY, now, producer_epoch=current.producer_epoch + 1,
                                                    last_producer_epoch=current.producer_epoch, timeout_ms=timeout)
                else:
                    continue  # changed under us: look again
                state_manager.store(conn, new, current)
            logger.info("InitProducerId %s -> producer %s epoch %s", transactional_id, new.producer_id,
                        new.producer_epoch)
            return InitProducerIdResult(new.producer_id, new.producer_epoch, transactional_id)
        raise KafkaError(Errors.CONCURRENT_TRANSACTIONS,
                         f"The previous transaction of {transactional_id} is still being completed; retry.")

    # ------------------------------------------------------------------ AddPartitionsToTxn
    def add_partitions_to_txn(self, transactional_id: str, producer_id: int, producer_epoch: int,
                              partitions: Iterable[tuple[str, int]]) -> None:
        """AddPartitionsToTxn, done implicitly and durably before a transactional produce (3.13).

        :raises INVALID_PRODUCER_ID_MAPPING: unknown transactional id or another producer id.
        :raises INVALID_PRODUCER_EPOCH: an older epoch (the instance was fenced).
        :raises CONCURRENT_TRANSACTIONS: the previous transaction is being completed.
        """
        wanted = frozenset(partitions)
        with self.db.read(self.db.controller) as conn:
            meta = self._checked(state_manager.load(conn, transactional_id), transactional_id, producer_id,
                                 producer_epoch, Errors.INVALID_PRODUCER_EPOCH)
        if meta.state is S.ONGOING and wanted <= meta.partitions:
            return
        now = self.clock.milliseconds()
        with self.db.write(self.db.controller) as conn:
            meta = self._checked(state_manager.load(conn, transactional_id), transactional_id, producer_id,
                                 producer_epoch, Errors.INVALID_PRODUCER_EPOCH)
            self._refuse_if_completing(meta)
            new = meta.transition_to(S.ONGOING, now, partitions=meta.partitions | wanted)
            state_manager.store(conn, new, meta)

    # ------------------------------------------------------------------ TxnOffsetCommit
    def handle_txn_offset_commit(self, transactional_id: str, producer_id: int, producer_epoch: int,
                                 group_id: str, offsets: list[tuple[str, int, int, str | None]],
                                 member_check=None) -> None:
        """AddOffsetsToTxn + TxnOffsetCommit: the offsets wait in the transaction and become the
        group's committed offsets only if it commits (3.14, 3.18-3.19).

        ``member_check(conn)`` (given by the group coordinator) fences a stale group member
        inside the same transaction (ILLEGAL_GENERATION, UNKNOWN_MEMBER_ID).

        :raises PRODUCER_FENCED, INVALID_PRODUCER_ID_MAPPING, CONCURRENT_TRANSACTIONS.
        """
        now = self.clock.milliseconds()
        with self.db.write(self.db.controller) as conn:
            meta = self._checked(state_manager.load(conn, transactional_id), transactional_id, producer_id,
                                 producer_epoch, Errors.PRODUCER_FENCED)
            self._refuse_if_completing(meta)
            if member_check is not None:
                member_check(conn)
            new = meta.transition_to(S.ONGOING, now)
            state_manager.store(conn, new, meta)
            state_manager.put_pending_offsets(conn, transactional_id, group_id, offsets,
                                              group_offsets.append_position(conn))

    # ------------------------------------------------------------------ EndTxn
    def handle_end_transaction(self, transactional_id: str, producer_id: int, producer_epoch: int,
                               commit: bool) -> EndTxnResult:
        """EndTxn (3.21): commit or abort the open transaction of ``producer_epoch``.

        A retry of an EndTxn that already prepared or completed the same decision succeeds
        (so a commit retried after a crash reports success); the other decision with that
        epoch gets INVALID_TXN_STATE (Kafka's transactions V2 table).

        :raises INVALID_PRODUCER_ID_MAPPING, PRODUCER_FENCED, INVALID_TXN_STATE.
        :raises CONCURRENT_TRANSACTIONS: the current epoch while the previous transaction is
            still completing (retriable; never a success that would lose the new data).
        """
        self._validate_id(transactional_id)
        target = S.PREPARE_COMMIT if commit else S.PREPARE_ABORT
        done = S.COMPLETE_COMMIT if commit else S.COMPLETE_ABORT
        # An exhausted epoch rotates the producer id after this transaction (KIP-890); the id
        # is taken before the write transaction (its block comes from controller.db too).
        fresh_pid = self.producer_id_manager.generate_producer_id() \
            if producer_epoch + 1 >= MAX_PRODUCER_EPOCH else -1
        now = self.clock.milliseconds()
        with self.db.write(self.db.controller) as conn:
            meta = state_manager.load(conn, transactional_id)
            rotated_retry = (meta is not None and meta.previous_producer_id == producer_id
                             and producer_epoch == meta.last_producer_epoch)
            if meta is None or (meta.producer_id != producer_id and not rotated_retry):
                raise KafkaError(Errors.INVALID_PRODUCER_ID_MAPPING,
                                 f"Producer {producer_id} does not own transactional id {transactional_id!r}.")
            # The epoch this producer ended its last transaction with (Kafka V2's
            # retryOnEpochBump): the same decision again is a retry; the other decision is
            # INVALID_TXN_STATE, as in Kafka (the producer is not fenced: it owns the id).
            ended_with = producer_epoch == meta.last_producer_epoch and (meta.state.is_prepare or
                                                                         meta.state.is_complete)
            retry = ended_with and meta.state in (target, done)
            if ended_with and not retry:
                raise KafkaError(Errors.INVALID_TXN_STATE,
                                 f"Transaction {transactional_id!r} of epoch {producer_epoch} is "
                                 f"{meta.state.value}: it cannot be {'committed' if commit else 'aborted'}.")
            if not retry:
                if producer_epoch != meta.producer_epoch:
                    raise KafkaError(Errors.PRODUCER_FENCED,
                                     f"Epoch {producer_epoch} of {transactional_id!r} is fenced; the current epoch "
                                     f"is {meta.producer_epoch}.")
                self._refuse_if_completing(meta)  # the previous transaction is still completing
                if meta.state is not S.ONGOING:
                    raise KafkaError(Errors.INVALID_TXN_STATE,
                                     f"Transaction {transactional_id!r} is {meta.state.value}: there is nothing to "
                                     f"{'commit' if commit else 'abort'}.")
                meta_after = meta.transition_to(target, now, producer_epoch=meta.producer_epoch + 1,
                                                last_producer_epoch=meta.producer_epoch,
                                                next_producer_id=fresh_pid if meta.producer_epoch + 1 >= MAX_PRODUCER_EPOCH
                                                else -1)
                state_manager.store(conn, meta_after, meta)
            else:
                meta_after = meta
        crash_point("txn.after_prepare")
        final = self._complete(transactional_id, known=meta_after)
        assert final is not None
        return EndTxnResult(transactional_id, final.producer_id, final.producer_epoch, final.state)

    # ------------------------------------------------------------------ completion and recovery
    def _complete(self, transactional_id: str, timeout_ms: int | None = None,
                  known: TransactionMetadata | None = None) -> TransactionMetadata | None:
        """Phases 2 and 3 for a prepared transaction: markers, then Complete*. Returns the
        metadata reached (still Prepare* if a marker could not be written within ``timeout_ms``
        per partition). ``known``: the metadata this thread just committed (saves a read)."""
        meta = known
        if meta is None:
            with self.db.read(self.db.controller) as conn:
                meta = state_manager.load(conn, transactional_id)
        if meta is None or not meta.state.is_prepare:
            return meta
        commit = meta.state is S.PREPARE_COMMIT
        control = CONTROL_COMMIT if commit else CONTROL_ABORT
        timeout = min(self.config.request_timeout_ms, 10000) if timeout_ms is None else timeout_ms
        if not self._write_markers(transactional_id, meta, control, timeout):
            return meta
        crash_point("txn.before_complete")
        now = self.clock.milliseconds()
        # Not waited onto the disk (one fsync less per transaction): losing this write to a
        # power cut leaves the transaction in its Prepare state, as a crash at
        # txn.before_complete does, and recovery completes it again with the same outcome
        # (markers are written at most once, the offsets are the same). Any later durable
        # write to controller.db (the next AddPartitionsToTxn) makes it durable too.
        with self.db.write(self.db.controller, durable=False) as conn:
            current = state_manager.load(conn, transactional_id)
            if current is None or current.state is not meta.state or current.producer_epoch != meta.producer_epoch:
                return current
            if commit:
                by_group: dict[str, list] = {}
                for r in state_manager.pending_offsets(conn, transactional_id):
                    by_group.setdefault(r.group_id, []).append((r.topic_name, r.partition_id, r.offset, r.metadata,
                                                                r.log_offset))
                for group_id, offsets in by_group.items():
                    group_offsets.promote_pending_offsets(conn, group_id, offsets, now)
            state_manager.clear_pending_offsets(conn, transactional_id)
            rotation = {}
            if current.next_producer_id >= 0:  # the epoch is exhausted: a new producer id at epoch 0
                rotation = {"producer_id": current.next_producer_id, "producer_epoch": 0,
                            "previous_producer_id": current.producer_id, "next_producer_id": -1}
            final = current.transition_to(S.COMPLETE_COMMIT if commit else S.COMPLETE_ABORT, now, **rotation)
            state_manager.store(conn, final, current)
        crash_point("txn.after_complete")
        logger.info("transaction %s of producer %s: %s", transactional_id, meta.producer_id, final.state.value)
        return final

    def _write_markers(self, transactional_id: str, meta: TransactionMetadata, control: int, timeout: int) -> bool:
        """Phase 2: the marker in every partition of the transaction, all at once (as Kafka's
        coordinator sends them), each acknowledged once replicated. True when every partition
        has its marker or needs none (its topic is gone, or it saw a newer epoch); False if
        one could not be written yet (the transaction stays prepared; recovery tries again).

        A crash point after each marker: in a test that "crashes" there, the markers already
        under way finish first, as they might have before a real kill."""
        partitions = sorted(meta.partitions)
        if len(partitions) == 1:
            outcomes = [self._write_marker(transactional_id, meta, control, timeout, partitions[0])]
            futures = []
        else:
            futures = [self._marker_pool.submit(self._write_marker, transactional_id, meta, control, timeout, tp)
                       for tp in partitions]
            outcomes = (future.result() for future in as_completed(futures))
        done = True
        try:
            for written in outcomes:
                if written:
                    crash_point("txn.after_marker")
                elif written is not None:
                    done = False
        except BaseException:
            wait(futures)
            raise
        return done

    def _write_marker(self, transactional_id: str, meta: TransactionMetadata, control: int, timeout: int,
                      partition: tuple[str, int]) -> bool | None:
        """One partition's marker (``_write_markers``): True once written, None if it needs
        none, False if it could not be written yet."""
        topic_name, partition_id = partition
        try:
            self.replica_manager.write_txn_marker(topic_name, partition_id, meta.producer_id, meta.producer_epoch,
                                                  control, timeout)
        except KafkaError as exc:
            if exc.error is Errors.INVALID_PRODUCER_EPOCH:
                logger.warning("marker for %s on %s-%s refused (%s); giving up on it", transactional_id,
                               topic_name, partition_id, exc.message)
                return None
            if exc.error is Errors.UNKNOWN_TOPIC_OR_PARTITION:
                return None  # the topic is gone: nothing to mark
            logger.info("marker for %s on %s-%s not written yet: %s", transactional_id, topic_name, partition_id,
                        exc.message)
            return False
        return True

    def shut_down(self) -> None:
        """Stop the marker pool (after the markers under way)."""
        self._marker_pool.shut_down()

    def _fence_and_abort(self, transactional_id: str, expected_epoch: int) -> None:
        """Zombie fencing (3.11, 3.37): bump the epoch of an Ongoing transaction and abort it."""
        now = self.clock.milliseconds()
        with self.db.write(self.db.controller) as conn:
            meta = state_manager.load(conn, transactional_id)
            if meta is None or meta.state is not S.ONGOING or meta.producer_epoch != expected_epoch:
                return
            fenced = meta.transition_to(S.PREPARE_EPOCH_FENCE, now, producer_epoch=meta.producer_epoch + 1,
                                        last_producer_epoch=-1)
            state_manager.store(conn, fenced.transition_to(S.PREPARE_ABORT, now), meta)
        logger.info("fenced transactional id %s at epoch %s and aborting its transaction", transactional_id,
                    expected_epoch)
        self._complete(transactional_id)

    def complete_prepared_transactions(self) -> int:
        """Recovery (start-up and periodic): finish every transaction found in a Prepare state;
        a prepared decision is never reversed (3.39). Returns how many completed."""
        with self.db.read(self.db.controller) as conn:
            ids = state_manager.ids_in_states(conn, (S.PREPARE_COMMIT, S.PREPARE_ABORT))
        completed = (self._complete(i, RECOVERY_MARKER_TIMEOUT_MS) for i in ids)
        return sum(1 for m in completed if m is not None and m.state.is_complete)

    def abort_timed_out_transactions(self) -> int:
        """Abort every Ongoing transaction older than its timeout, fencing its producer (3.37)."""
        now = self.clock.milliseconds()
        with self.db.read(self.db.controller) as conn:
            expired = [m for m in (state_manager.load(conn, i) for i in state_manager.ids_in_states(conn, (S.ONGOING,)))
                       if m is not None and m.start_ms is not None and m.start_ms + m.timeout_ms < now]
        for meta in expired:
            logger.info("transaction %s timed out after %s ms", meta.transactional_id, meta.timeout_ms)
            self._fence_and_abort(meta.transactional_id, meta.producer_epoch)
        return len(expired)

    # ------------------------------------------------------------------ describe
    def describe(self, transactional_id: str) -> TransactionMetadata:
        with self.db.read(self.db.controller) as conn:
            meta = state_manager.load(conn, transactional_id)
        if meta is None:
            raise KafkaError(Errors.TRANSACTIONAL_ID_NOT_FOUND, f"Transactional id {transactional_id!r} not found.")
        return meta

    def list_transactions(self) -> list[TransactionMetadata]:
        with self.db.read(self.db.controller) as conn:
            return state_manager.all_transactions(conn)

    # ------------------------------------------------------------------ checks
    @staticmethod
    def _validate_id(transactional_id: object) -> None:
        if not isinstance(transactional_id, str) or not transactional_id:
            raise KafkaError(Errors.INVALID_REQUEST, "A transactional id must be a non-empty string.")
        if len(transactional_id) > MAX_TRANSACTIONAL_ID_LENGTH or not transactional_id.isprintable():
            raise KafkaError(Errors.INVALID_REQUEST,
                             f"A transactional id is at most {MAX_TRANSACTIONAL_ID_LENGTH} printable characters.")

    @staticmethod
    def _checked(meta: TransactionMetadata | None, transactional_id: str, producer_id: int, producer_epoch: int,
                 fenced: Errors) -> TransactionMetadata:
        if meta is None or meta.producer_id != producer_id:
            raise KafkaError(Errors.INVALID_PRODUCER_ID_MAPPING,
                             f"Producer {producer_id} does not own transactional id {transactional_id!r}; call "
                             "InitProducerId first.")
        if producer_epoch != meta.producer_epoch:
            raise KafkaError(fenced, f"Epoch {producer_epoch} of {transactional_id!r} is not the current epoch "
                                     f"{meta.producer_epoch}: this producer was fenced or its transaction ended.")
        return meta

    @staticmethod
    def _refuse_if_completing(meta: TransactionMetadata) -> None:
        if meta.state.is_prepare:
            raise KafkaError(Errors.CONCURRENT_TRANSACTIONS,
                             f"Transaction {meta.transactional_id!r} is being completed ({meta.state.value}); retry.")
