"""Build one notifier per configured channel; an unknown channel type stops start-up.

Registration is explicit: a channel type is known when it has a factory in ``FACTORIES``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import httpx

from alerts.config import AlertsConfig
from alerts.notifiers.base import Notifier
from alerts.notifiers.console import ConsoleNotifier
from alerts.notifiers.dingtalk import DingTalkNotifier
from alerts.notifiers.email import EmailNotifier
from alerts.notifiers.feishu import FeishuNotifier
from alerts.notifiers.pagerduty import PagerDutyNotifier
from alerts.notifiers.slack import SlackNotifier
from alerts.notifiers.teams import TeamsNotifier
from alerts.notifiers.webhook import WebhookNotifier
from alerts.notifiers.wecom import WeComNotifier
from core.clock import Clock

Factory = Callable[[str, Any, httpx.AsyncClient, Clock], Notifier]

FACTORIES: dict[str, Factory] = {
    "console": lambda name, config, http, clock: ConsoleNotifier(name, config),
    "webhook": lambda name, config, http, clock: WebhookNotifier(name, config, http, clock),
    "slack": lambda name, config, http, clock: SlackNotifier(name, config, http),
    "teams": lambda name, config, http, clock: TeamsNotifier(name, config, http),
    "feishu": lambda name, config, http, clock: FeishuNotifier(name, config, http, clock),
    "dingtalk": lambda name, config, http, clock: DingTalkNotifier(name, config, http, clock),
    "wecom": lambda name, config, http, clock: WeComNotifier(name, config, http),
    "email": lambda name, config, http, clock: EmailNotifier(name, config, clock),
    "pagerduty": lambda name, config, http, clock: PagerDutyNotifier(name, config, http),
}


class UnknownChannelType(ValueError):
    pass


def build_notifier(name: str, config: Any, http: httpx.AsyncClient, clock: Clock) -> Notifier:
    kind = getattr(config, "type", None)
    factory = FACTORIES.get(kind) if isinstance(kind, str) else None
    if factory is None:
        raise UnknownChannelType(
            f"channel {name!r}: no notifier for channel type {kind!r} "
            f"(known: {', '.join(sorted(FACTORIES))})"
        )
    return factory(name, config, http, clock)


def build_notifiers(
    config: AlertsConfig, http: httpx.AsyncClient, clock: Clock
) -> dict[str, Notifier]:
    return {name: build_notifier(name, ch, http, clock) for name, ch in config.channels.items()}
