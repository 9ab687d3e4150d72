"""Alerts: rules that watch a pipeline's runs, and the channels that carry what they see.

::

    from phloem.alerts import on_failure, on_duration, email, webhook

    @pipeline(alerts=[on_failure(email("ml@example.org"), webhook(SLACK_URL)),
                      on_duration(webhook(SLACK_URL), factor=2.0, last=20)])
    def train(): ...

Declaring a rule connects nowhere. Wherever a run is driven (``phloem run``, the scheduler,
the server) its rules are checked as its state changes; an alert becomes a delivery record in
the store, sent once by whichever process gets to it first, with retries (``phloem.alerting``).
"""

from phloem.alerts.channels import Channel, call, email, webhook
from phloem.alerts.rules import (
    Alert,
    Rule,
    on_deadline,
    on_duration,
    on_failure,
    on_metric,
    on_retry,
    on_success,
)

__all__ = [
    "Alert",
    "Channel",
    "Rule",
    "call",
    "email",
    "on_deadline",
    "on_duration",
    "on_failure",
    "on_metric",
    "on_retry",
    "on_success",
    "webhook",
]
