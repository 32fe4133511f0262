"""How events are delivered: the trigger subscriptions' settings, in ONE place for the local stack.

Production: Eventarc delivers each Cloud Storage event over a Pub/Sub push subscription it creates
with the trigger ("the retry characteristics of Eventarc Standard match that of its transport
layer, Cloud Pub/Sub", https://cloud.google.com/eventarc/docs/retry-events), and deploy.sh puts
the dead-letter policy on it (`--dead-letter-topic`, `--max-delivery-attempts`). The local stack
creates the same subscriptions on Google's Pub/Sub emulator with the values below;
tests/deploy/test_delivery_settings.py holds them equal to deploy.sh's defaults and Terraform's.

Not reproduced locally: Pub/Sub's push backoff (10 s doubling to 600 s in production, same page)
is the emulator's own, much shorter, so a test sees the configured attempts in seconds.
"""

from __future__ import annotations

# deploy.sh: max_delivery_attempts="50" (Pub/Sub allows 5..100,
# https://cloud.google.com/pubsub/docs/dead-letter-topics)
MAX_DELIVERY_ATTEMPTS = 50
MIN_DELIVERY_ATTEMPTS = 5
# deploy.sh's default --dead-letter-topic projects/P/topics/oddsbatch-dead-letters; Terraform's
# dead_letters.topic_name / subscription_name defaults (terraform/variables.tf)
DEAD_LETTER_TOPIC = "oddsbatch-dead-letters"
DEAD_LETTER_SUBSCRIPTION = "oddsbatch-dead-letters"
# deploy.sh leaves the trigger subscription's ack deadline as Eventarc creates it; a push must be
# answered within it. 600 s is Pub/Sub's maximum and above the functions' 540 s timeout
# (deploy.sh MAX_EVENT_TIMEOUT), so a slow answer is never redelivered while it runs.
ACK_DEADLINE_SECONDS = 600

# The local topics (fake-gcs-server publishes finalize notifications on the first; the bridge's
# sweep timer publishes Cloud Scheduler's message on the second).
GCS_TOPIC = "oddsbatch-gcs-events"
SWEEP_TOPIC = "oddsbatch-sweep"


def trigger_subscription(function: str, kind: str) -> str:
    """Id of the push subscription that delivers `kind` ("storage" or "sweep") events to `function`."""
    return f"eventarc-local-{function.replace('_', '-')}-{kind}"


def push_path(function: str, kind: str) -> str:
    """Path on the bridge a subscription pushes to: the bridge reads function and kind from it."""
    return f"/push/{function}/{kind}"


def create_topology(project: str, bridge_url: str, functions, max_attempts: int = MAX_DELIVERY_ATTEMPTS,
                    ack_deadline: int = ACK_DEADLINE_SECONDS) -> dict[str, str]:
    """On the Pub/Sub emulator (PUBSUB_EMULATOR_HOST): the GCS, sweep and dead-letter topics, the
    dead-letter pull subscription, and per function a push subscription on the GCS topic and one on
    the sweep topic, each pushing to the bridge. Returns {what: full name}."""
    from google.cloud import pubsub_v1

    publisher, subscriber = pubsub_v1.PublisherClient(), pubsub_v1.SubscriberClient()
    topic = lambda name: f"projects/{project}/topics/{name}"  # noqa: E731
    subscription = lambda name: f"projects/{project}/subscriptions/{name}"  # noqa: E731
    for name in (GCS_TOPIC, SWEEP_TOPIC, DEAD_LETTER_TOPIC):
        publisher.create_topic(name=topic(name))
    names = {"gcs_topic": topic(GCS_TOPIC), "sweep_topic": topic(SWEEP_TOPIC),
             "dead_letter_topic": topic(DEAD_LETTER_TOPIC),
             "dead_letter_subscription": subscription(DEAD_LETTER_SUBSCRIPTION)}
    subscriber.create_subscription(request={"name": names["dead_letter_subscription"],
                                            "topic": names["dead_letter_topic"], "ack_deadline_seconds": 60})
    for function in functions:
        for kind, source in (("storage", GCS_TOPIC), ("sweep", SWEEP_TOPIC)):
            name = subscription(trigger_subscription(function, kind))
            request = {"name": name, "topic": topic(source), "ack_deadline_seconds": ack_deadline,
                       "push_config": {"push_endpoint": bridge_url.rstrip("/") + push_path(function, kind)}}
            if kind == "storage":  # deploy.sh puts the dead-letter policy on the storage triggers
                request["dead_letter_policy"] = {"dead_letter_topic": names["dead_letter_topic"],
                                                 "max_delivery_attempts": max_attempts}
            subscriber.create_subscription(request=request)
            names[f"{function}_{kind}"] = name
    return names


def subscriber_client(host: str | None = None):
    """A Pub/Sub subscriber; on the emulator at `host` when given (else PUBSUB_EMULATOR_HOST decides)."""
    from google.cloud import pubsub_v1

    if host is None:
        return pubsub_v1.SubscriberClient()
    import grpc
    from google.pubsub_v1.services.subscriber.transports import SubscriberGrpcTransport

    return pubsub_v1.SubscriberClient(transport=SubscriberGrpcTransport(channel=grpc.insecure_channel(host)))


def peek_dead_letters(subscription: str, max_messages: int = 1000, host: str | None = None) -> list:
    """The messages waiting on a dead-letter subscription, left there: pulled, then handed back at
    once (an ack deadline of 0 makes them available again, https://cloud.google.com/pubsub/docs/pull)."""
    import warnings

    subscriber = subscriber_client(host)
    with warnings.catch_warnings():  # deprecated for streaming consumers; a peek must not block
        warnings.simplefilter("ignore", DeprecationWarning)
        response = subscriber.pull(request={"subscription": subscription, "max_messages": max_messages,
                                            "return_immediately": True}, timeout=10)
    received = list(response.received_messages)
    if received:
        subscriber.modify_ack_deadline(request={"subscription": subscription, "ack_ids": [m.ack_id for m in received],
                                                "ack_deadline_seconds": 0})
    return [m.message for m in received]
