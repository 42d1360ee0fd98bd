"""Replay safety, per function: the same event twice, N times, in one SQS batch, or in a new EventBridge envelope
acts once and alerts once.

Every function is run from template.yaml as Lambda runs it (tests/hardening/scenarios.py):
SQS-triggered functions take their messages from the template's source queue, each
invocation is a cold start, and replay safety is whatever the handler does (Runtime.once:
Powertools Idempotency on the state table, the publisher's dedup), never bypassed here.
Effects are read back from AWS (inline and trust policies, object versions and tags, bucket
policies and lifecycle rules, Slack posts and Security Hub findings, the audit ledger), alerts
from an SQS queue subscribed to the alerts topic (the Slack sink and Security Hub for the
alert function). The AWS calls each delivery makes are recorded: a replay makes no call that
changes anything outside Stagewarden's own state.
"""

from __future__ import annotations

import json
from contextlib import ExitStack

import pytest

from tests.hardening.scenarios import SCENARIOS, World, wiring

ALL = sorted(SCENARIOS)
FROM_SQS = [name for name in ALL if wiring(name).source_queue]
WITH_CLOUDTRAIL_EVENT = [name for name in ALL if SCENARIOS[name].new_envelope is not None]


@pytest.fixture
def world(request, stack, tmp_path):
    with ExitStack() as exit_stack:
        yield World(stack, SCENARIOS[request.param], tmp_path, exit_stack)


def clean_run(world: World) -> tuple[dict, list, list]:
    """Each event of the scenario delivered once: the effects, the alerts and the changing calls it made."""
    for event in world.events:
        world.deliver(event)
    alerts, mutations = world.alerts(), world.calls.mutations()
    assert alerts, "the clean run alerts (otherwise there is nothing to prove)"
    assert not world.fn.dead_letters()
    world.calls.seen.clear()
    return world.effects(), alerts, mutations


def assert_acted_once(world: World, effects: dict) -> None:
    assert world.effects() == effects, "a replay changed AWS"
    assert world.alerts() == [], "a replay alerted again"
    assert world.calls.mutations(world.scenario.upserts) == [], "a replay called AWS to change something"
    assert not world.fn.dead_letters()


@pytest.mark.parametrize("world", ALL, indirect=True)
def test_the_same_events_delivered_again_and_again_act_once_and_alert_once(world) -> None:
    # Given a clean run of the scenario's events (its function acted: the effects are in AWS, and alerted)
    effects, alerts, mutations = clean_run(world)
    if world.scenario.logical_id != "PolicyGuardFunction":  # the guard only reports
        assert mutations, "the clean run changed something in AWS"
    assert len(alerts) == len(set(alerts)), "one alert per incident in the clean run"

    # When every event is delivered again, in two later invocations each (three deliveries in all)
    for _ in range(2):
        for event in world.events:
            world.deliver(event)

    # Then nothing more happened in AWS and nothing more was alerted
    assert_acted_once(world, effects)


@pytest.mark.parametrize("world", FROM_SQS, indirect=True)
def test_copies_inside_one_sqs_batch_act_once_and_alert_once(world) -> None:
    # Given every event of the scenario five times in one batch (SNS and S3 deliver at least once)
    bodies = [body for body in world.events for _ in range(5)]

    # When the function takes the batch
    result = world.invoke(world.fn.sqs_event(bodies))

    # Then the batch succeeds, each incident is acted on and alerted once, and a redelivery changes nothing
    assert result == {"batchItemFailures": []}
    alerts = world.alerts()
    assert alerts and len(alerts) == len(set(alerts))
    effects = world.effects()
    world.calls.seen.clear()
    world.invoke(world.fn.sqs_event(list(world.events)))
    assert_acted_once(world, effects)


@pytest.mark.parametrize("world", FROM_SQS, indirect=True)
def test_copies_queued_together_act_once_across_batches(world) -> None:
    # Given five copies of every event waiting on the function's source queue
    for event in world.events:
        for _ in range(5):
            world.fn.send(event)

    # When the function drains the queue in its template's batch size
    world.calls.active = True
    try:
        world.fn.poll()
    finally:
        world.calls.active = False

    # Then one alert per incident, and none of the copies was left failing or dead-lettered
    alerts = world.alerts()
    assert alerts and len(alerts) == len(set(alerts))
    assert all(not isinstance(r, Exception) and r["batchItemFailures"] == [] for r in world.fn.results)
    assert not world.fn.dead_letters()


@pytest.mark.parametrize("world", WITH_CLOUDTRAIL_EVENT, indirect=True)
def test_the_same_cloudtrail_event_in_a_new_eventbridge_envelope_acts_once(world) -> None:
    # Given a clean run
    effects, _, _ = clean_run(world)

    # When each CloudTrail event arrives again with a new EventBridge id (a second rule, a replayed archive)
    for event in world.events:
        try:
            again = world.scenario.new_envelope(event)
        except AssertionError:
            continue  # not a CloudTrail event (an S3 object event, a schedule)
        assert (json.loads(again) if isinstance(again, str) else again)["id"] != (
            json.loads(event) if isinstance(event, str) else event)["id"]
        world.deliver(again)

    # Then nothing more happened and nothing more was alerted
    assert_acted_once(world, effects)
