"""What every handler needs, built lazily once per container: clients, settings, policy, publisher, replay safety.

Nothing here runs at import (moto must be active before a client exists, and a cold start
pays only for what it uses). A handler keeps one :class:`Runtime` at module level and asks
it, per invocation, for a fresh :class:`~stage_policy.executor.Executor` (caps count per
invocation) and for :meth:`Runtime.once` (replay safety through Powertools Idempotency on
the state table: one mechanism for every function).
"""

from __future__ import annotations

from functools import cache, cached_property
from typing import TYPE_CHECKING, Any, Callable, TypeVar

from stage_policy import keys

if TYPE_CHECKING:
    from stage_policy.executor import Executor
    from stage_policy.findings import Finding
    from stage_policy.model import Policy
    from stage_policy.publish import FindingPublisher, PublishResult
    from stage_policy.settings import Settings
    from stage_policy.store import PolicyStore
    from stage_policy.tags import BucketTags

T = TypeVar("T")
#: How long a processed event is remembered: longer than SQS retention of the source queues (4 days)
#: plus a DLQ redrive after a fix.
REPLAY_WINDOW_SECONDS = 7 * 24 * 3600



class ReplaySafety:
    """Declares the IAM actions of :meth:`Runtime.once` (Powertools Idempotency's DynamoDB persistence layer)."""

    permissions = ("dynamodb:GetItem", "dynamodb:PutItem", "dynamodb:UpdateItem", "dynamodb:DeleteItem")


IDEMPOTENCY_PERMISSIONS = ReplaySafety.permissions


@cache
def client(service: str) -> Any:
    """One boto3 client per service per container (creating one costs tens of milliseconds)."""
    import boto3

    return boto3.client(service)


class Runtime:
    """The per-container services of one function. Create at module level; nothing is built until asked."""

    def __init__(self, clients: Callable[[str], Any] = client):
        self.clients = clients

    @cached_property
    def settings(self) -> Settings:
        from stage_policy.settings import Settings

        return Settings.from_env()

    @cached_property
    def store(self) -> PolicyStore:
        from stage_policy.store import PolicyStore

        return PolicyStore(self.clients("s3"))

    @cached_property
    def publisher(self) -> FindingPublisher:
        from stage_policy.observability import count_finding
        from stage_policy.publish import FindingPublisher

        return FindingPublisher(self.clients("sns"), self.settings.alerts_topic_arn, self.clients("dynamodb"),
                                self.settings.state_table, on_finding=count_finding)

    @cached_property
    def bucket_tags(self) -> BucketTags:
        from stage_policy.tags import BucketTags

        return BucketTags(self.clients("s3"))

    def policy(self) -> Policy:
        """The current policy (cached, refreshed every few minutes). An unusable one raises PolicyError."""
        return self.store.load(self.settings.policy_location)

    def executor(self, policy: Policy) -> Executor:
        """A fresh executor: build one per invocation, so caps count across the whole batch."""
        from stage_policy.executor import AuditLedger, Executor

        ledger = AuditLedger(self.clients("dynamodb"), self.settings.audit_table, self.settings.function_name)
        return Executor(self.clients, policy, self.settings.default_mode, ledger)

    def publish(self, policy: Policy) -> Callable[[Finding], PublishResult]:
        """``publish(finding)`` honouring the policy's ``alerts`` section; first publishes what an earlier run kept
        in the outbox (a failure raises: the record is retried)."""
        from stage_policy.publish import Outbox, Publish

        outbox = Outbox(self.clients("dynamodb"), self.settings.state_table, self.settings.function_name)
        publish = Publish(self.publisher, policy.alerts, outbox)
        outbox.flush(publish)
        return publish

    @cached_property
    def _batch_processor(self) -> Any:
        from aws_lambda_powertools.utilities.batch import BatchProcessor, EventType

        # a batch whose records all fail is reported record by record too (SQS retries exactly those), not raised
        return BatchProcessor(event_type=EventType.SQS, raise_on_entire_batch_failure=False)

    def process_sqs(self, event: dict[str, Any], record_handler: Callable[[Any], Any], context: Any) -> dict[str, Any]:
        """Powertools partial-batch failure over an SQS event: one bad record fails alone.

        The batch utility (asyncio and every event data class) is imported on the first batch,
        not at handler import: it is a third of a handler's import time otherwise.
        """
        from aws_lambda_powertools.utilities.batch import process_partial_response

        from stage_policy.events import check_sqs_batch

        check_sqs_batch(event)  # a broken envelope: EventError naming the part, not a KeyError in the batch utility
        return process_partial_response(event=event, record_handler=record_handler, processor=self._batch_processor,
                                        context=context)

    @cached_property
    def _idempotency(self) -> tuple[Any, Any, Any]:
        from aws_lambda_powertools.utilities.idempotency import (
            DynamoDBPersistenceLayer,
            IdempotencyConfig,
            idempotent_function,
        )

        persistence = DynamoDBPersistenceLayer(
            table_name=self.settings.state_table, key_attr="pk", sort_key_attr="sk",
            static_pk_value=keys.idempotency_pk(self.settings.function_name), expiry_attr=keys.EXPIRES_AT,
            boto3_client=self.clients("dynamodb"),
        )
        config = IdempotencyConfig(event_key_jmespath="key", raise_on_no_idempotency_key=True,
                                   expires_after_seconds=REPLAY_WINDOW_SECONDS)
        return idempotent_function, config, persistence

    def register_context(self, context: Any) -> None:
        """Lets an in-progress replay record expire with the invocation (Powertools needs the remaining time)."""
        if context is not None and hasattr(context, "get_remaining_time_in_millis"):
            self._idempotency[1].register_lambda_context(context)

    def once(self, key: str, work: Callable[[], T]) -> T:
        """Run ``work`` once per ``key``: a redelivered event returns the first run's (JSON) result.

        A run that raises leaves no record, so the retry runs again. A duplicate arriving while
        the first is still running fails its record (IdempotencyAlreadyInProgressError) and is
        retried by SQS, by which time the first has finished.
        """
        idempotent_function, config, persistence = self._idempotency

        @idempotent_function(data_keyword_argument="event", config=config, persistence_store=persistence)
        def guarded(event: dict[str, str]) -> Any:
            return work()

        return guarded(event={"key": key})
