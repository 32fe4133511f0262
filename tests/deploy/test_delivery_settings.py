"""The local stack's trigger subscriptions use the settings production uses: one place
(oddsbatch/local/delivery.py) held equal to deploy.sh's defaults and Terraform's dead-letter names."""

from __future__ import annotations

import re
from pathlib import Path

from oddsbatch.local import delivery

ROOT = Path(__file__).resolve().parents[2]


def _deploy_sh() -> str:
    return (ROOT / "deploy.sh").read_text()


def test_max_delivery_attempts_and_its_bounds_are_deploy_sh_s():
    text = _deploy_sh()
    assert re.search(r'^max_delivery_attempts="(\d+)"$', text, re.M).group(1) == str(delivery.MAX_DELIVERY_ATTEMPTS)
    assert re.search(r"^readonly MIN_DELIVERY_ATTEMPTS=(\d+)$", text, re.M).group(1) == str(delivery.MIN_DELIVERY_ATTEMPTS)


def test_the_dead_letter_topic_is_deploy_sh_s_default_and_terraform_s():
    assert f"projects/${{project}}/topics/{delivery.DEAD_LETTER_TOPIC}}}" in _deploy_sh()
    variables = (ROOT / "terraform" / "variables.tf").read_text()
    assert f'subscription_name     = optional(string, "{delivery.DEAD_LETTER_SUBSCRIPTION}")' in variables
    assert f'topic_name            = optional(string, "{delivery.DEAD_LETTER_TOPIC}")' in variables


def test_the_ack_deadline_outlasts_the_functions_timeout_and_is_within_pubsub_s_bounds():
    ceiling = int(re.search(r"^readonly MAX_EVENT_TIMEOUT=(\d+)", _deploy_sh(), re.M).group(1))
    assert ceiling < delivery.ACK_DEADLINE_SECONDS <= 600
