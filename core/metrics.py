"""Every Prometheus metric crisiswatch exports, in one registry per process.

Nothing registers at import time: ``Metrics()`` builds a fresh registry, so tests and
several apps in one process never collide. Stages receive the object they need.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

_LATENCY_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 30, 60, 120, 300, 600, 1800)
_STAGE_BUCKETS = (0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10)
_ACK_BUCKETS = (30, 60, 120, 300, 600, 900, 1800, 3600, 7200, 14400, 43200, 86400)


def drill_label(drill: bool) -> str:
    """The ``drill`` label of the incident-level alert metrics: a drill's own series."""
    return "true" if drill else "false"


class Metrics:
    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry()
        r = self.registry
        # listener
        self.mentions_ingested = Counter(
            "crisiswatch_mentions_ingested", "Mentions taken in, by source", ["source"], registry=r
        )
        self.mentions_rejected = Counter(
            "crisiswatch_mentions_rejected",
            "Mentions refused at the door, by source and reason",
            ["source", "reason"],
            registry=r,
        )
        self.mentions_duplicate = Counter(
            "crisiswatch_mentions_duplicate",
            "Mentions dropped as already seen",
            ["source"],
            registry=r,
        )
        self.mentions_matched = Counter(
            "crisiswatch_mentions_matched", "Mentions matching a watch", ["watch"], registry=r
        )
        self.source_errors = Counter(
            "crisiswatch_source_errors", "Errors raised by a source", ["source"], registry=r
        )
        self.source_up = Gauge(
            "crisiswatch_source_up", "1 while a source is connected/polling", ["source"], registry=r
        )
        self.source_last_event = Gauge(
            "crisiswatch_source_last_event_timestamp_seconds",
            "Wall time of the last event a source delivered",
            ["source"],
            registry=r,
        )
        self.source_lag = Gauge(
            "crisiswatch_source_lag_seconds",
            "Received minus created time of the last event a source delivered",
            ["source"],
            registry=r,
        )
        self.source_reconnects = Counter(
            "crisiswatch_source_reconnects",
            "Reconnections (or poll retries) after an error",
            ["source"],
            registry=r,
        )
        self.source_rate_limited = Counter(
            "crisiswatch_source_rate_limited",
            "HTTP 429 / rate-limit waits, by source",
            ["source"],
            registry=r,
        )
        self.source_targets_failing = Gauge(
            "crisiswatch_source_targets_failing",
            "Targets of a source (feeds, videos, listings) skipped after errors, retried later",
            ["source"],
            registry=r,
        )
        self.source_future_dated = Counter(
            "crisiswatch_source_future_dated",
            "Mentions dated more than the allowed skew ahead of the clock, re-dated to now",
            ["source"],
            registry=r,
        )
        self.source_page_caps = Counter(
            "crisiswatch_source_page_caps",
            "Polls that stopped at their page cap (older new items may be skipped)",
            ["source"],
            registry=r,
        )
        self.source_window_cuts = Counter(
            "crisiswatch_source_window_cuts",
            "Polls or searches that could not fetch part of their window however many "
            "pages they read (a platform limit): items in it were missed",
            ["source"],
            registry=r,
        )
        self.cascade_db_errors = Counter(
            "crisiswatch_listener_cascade_db_errors",
            "Cascade index loads, saves and prunes the database refused (tried again later; "
            "ingesting goes on), by operation",
            ["operation"],
            registry=r,
        )
        self.cascade_unsaved = Gauge(
            "crisiswatch_listener_cascade_unsaved",
            "Cascade entries (matched mentions) learned but not yet written to the database",
            registry=r,
        )
        self.cascade_dropped = Counter(
            "crisiswatch_listener_cascade_dropped",
            "Cascade entries never written to the database (overflow: more than "
            "cascade_capacity waited during an outage; stop: the last save failed), by reason",
            ["reason"],
            registry=r,
        )
        self.cascade_restored = Counter(
            "crisiswatch_listener_cascade_restored",
            "Cascade entries loaded from the database at start",
            registry=r,
        )
        self.cascade_pruned = Counter(
            "crisiswatch_listener_cascade_pruned",
            "Cascade rows deleted from the database, by reason (age: unused for "
            "cascade_keep_days; capacity: beyond cascade_capacity)",
            ["reason"],
            registry=r,
        )
        # sentiment / detector
        self.mentions_scored = Counter(
            "crisiswatch_mentions_scored", "Mentions scored, by label", ["label"], registry=r
        )
        self.mentions_embedded = Counter(
            "crisiswatch_mentions_embedded",
            "Mentions given a sentence embedding (paraphrase joining)",
            registry=r,
        )
        self.classifier_restarts = Counter(
            "crisiswatch_classifier_process_restarts",
            "Times the sentiment classifier's child process died, or hung past "
            "scorer.classifier.timeout_s and was killed, and was started again "
            "(scorer.classifier.process)",
            registry=r,
        )
        self.stage_latency = Histogram(
            "crisiswatch_stage_latency_seconds",
            "Time a stage spends on one batch of events",
            ["stage"],
            buckets=_STAGE_BUCKETS,
            registry=r,
        )
        self.signals_emitted = Counter(
            "crisiswatch_signals_emitted", "Signals emitted, by new tier", ["tier"], registry=r
        )
        self.stories_joined = Counter(
            "crisiswatch_detector_stories_joined",
            "Stories joined to another after arriving out of order: folded (young, taken in "
            "again) or merged (heat and all; an incident follows)",
            ["how"],
            registry=r,
        )
        self.mentions_future_dated = Counter(
            "crisiswatch_detector_future_dated_mentions",
            "Mentions dated far ahead of their watch's event time that the next mention did "
            "not follow: counted at the watch's event time (bad timestamps)",
            registry=r,
        )
        self.stories_active = Gauge(
            "crisiswatch_stories_active", "Stories held in detector memory", registry=r
        )
        self.detector_snapshot_save = Histogram(
            "crisiswatch_detector_snapshot_save_seconds",
            "Time to serialise and save the state of the watches one batch touched",
            buckets=_STAGE_BUCKETS,
            registry=r,
        )
        self.detector_snapshot_bytes = Histogram(
            "crisiswatch_detector_snapshot_bytes",
            "Bytes one save writes for one watch: its watch row and the rows of the "
            "stories changed since its last save (compressed)",
            buckets=(1e3, 1e4, 1e5, 3e5, 1e6, 3e6, 1e7, 3e7),
            registry=r,
        )
        self.detector_restores = Counter(
            "crisiswatch_detector_restores",
            "Watch states the detector looked up in its store, by outcome "
            "(loaded, fresh: none stored, failed: unreadable, started afresh)",
            ["outcome"],
            registry=r,
        )
        self.detector_state_db_retries = Counter(
            "crisiswatch_detector_state_db_retries",
            "Detector state saves and loads that found the database unavailable and were "
            "retried (the batch waits, it is never dead-lettered for it), by operation",
            ["operation"],
            registry=r,
        )
        self.detector_state_db_waiting = Gauge(
            "crisiswatch_detector_state_db_waiting",
            "1 while the detector waits for the database to save or load its state",
            registry=r,
        )
        self.detector_state_fenced = Counter(
            "crisiswatch_detector_state_fenced",
            "Watch state saves the detector refused because another detector process "
            "claimed the watch since (it lost its partitions while stuck); the watch is "
            "dropped and its batch tried again",
            registry=r,
        )
        # alerts
        self.incidents_open = Gauge(
            "crisiswatch_incidents_open",
            "Open (unresolved) incidents by tier and drill (true: a drill)",
            ["tier", "drill"],
            registry=r,
        )
        self.incidents_opened = Counter(
            "crisiswatch_incidents_opened",
            "Incidents opened, by tier and drill (true: a drill)",
            ["tier", "drill"],
            registry=r,
        )
        self.deliveries = Counter(
            "crisiswatch_deliveries",
            "Alert delivery attempts by channel type and outcome",
            ["channel", "outcome"],
            registry=r,
        )
        self.outbox_pending = Gauge(
            "crisiswatch_outbox_pending", "Deliveries waiting in the outbox", registry=r
        )
        self.deliveries_retrying = Gauge(
            "crisiswatch_alert_deliveries_retrying",
            "Deliveries that failed and are still being retried, by channel (name)",
            ["channel"],
            registry=r,
        )
        self.delivery_retrying_seconds = Gauge(
            "crisiswatch_alert_delivery_retrying_seconds",
            "How long the oldest delivery still retrying on a channel (name) has been "
            "failing (0: none)",
            ["channel"],
            registry=r,
        )
        self.escalations = Counter(
            "crisiswatch_escalations",
            "Escalations after an ack deadline passed, by tier and drill (true: a drill)",
            ["tier", "drill"],
            registry=r,
        )
        self.alert_latency = Histogram(
            "crisiswatch_alert_latency_seconds",
            "Mention received -> first alert for it delivered, by tier and drill (true: a drill)",
            ["tier", "drill"],
            buckets=_LATENCY_BUCKETS,
            registry=r,
        )
        self.time_to_ack = Histogram(
            "crisiswatch_time_to_ack_seconds",
            "Incident opened -> acknowledged, by tier and drill (true: a drill)",
            ["tier", "drill"],
            buckets=_ACK_BUCKETS,
            registry=r,
        )
        self.inbound_refused = Counter(
            "crisiswatch_inbound_refused",
            "Ack-link, Slack-button and webhook-ingest requests refused, and bodies over the "
            "cap on any route (reason too_large), by endpoint and reason",
            ["endpoint", "reason"],
            registry=r,
        )
        # alert routing, escalation and SLA clocks (issue 4)
        self.time_to_statement = Histogram(
            "crisiswatch_time_to_statement_seconds",
            "Incident alerted -> response recorded (private reply, statement), by tier and "
            "drill (true: a drill)",
            ["tier", "drill"],
            buckets=_ACK_BUCKETS,
            registry=r,
        )
        self.sla_warnings = Counter(
            "crisiswatch_sla_warnings",
            "SLA clock warnings (a share of the deadline used), by tier and drill (true: a drill)",
            ["tier", "drill"],
            registry=r,
        )
        self.sla_breaches = Counter(
            "crisiswatch_sla_breaches",
            "SLA deadlines missed, by tier and drill (true: a drill)",
            ["tier", "drill"],
            registry=r,
        )
        self.alerts_suppressed = Counter(
            "crisiswatch_alerts_suppressed",
            "Alerts not sent because of a silence or an inhibition",
            ["reason"],
            registry=r,
        )
        self.alerts_unsilenced = Counter(
            "crisiswatch_alerts_unsilenced",
            "Incidents alerted after the silence that muted them ended, by tier",
            ["tier"],
            registry=r,
        )
        self.alerts_uninhibited = Counter(
            "crisiswatch_alerts_uninhibited",
            "Incidents alerted after the incident that inhibited them ended, by tier",
            ["tier"],
            registry=r,
        )
        self.alert_tick_errors = Counter(
            "crisiswatch_alert_tick_errors",
            "Alert tick steps that raised (the other steps still ran), by step",
            ["step"],
            registry=r,
        )
        self.alert_item_errors = Counter(
            "crisiswatch_alert_item_errors",
            "Items of an alert tick step that raised (an incident's escalation step, a "
            "silence's release, ...): logged with the item's id and retried later, the "
            "step went on with the other items; by step",
            ["step"],
            registry=r,
        )
        self.alert_digests = Counter(
            "crisiswatch_alert_digests",
            "Digest messages (several alerts merged under a rate limit or quiet hours)",
            ["channel"],
            registry=r,
        )
        self.channel_fallbacks = Counter(
            "crisiswatch_channel_fallbacks",
            "Deliveries moved to the next channel after failing on one",
            ["channel"],
            registry=r,
        )
        # incident workflow (issue 6)
        self.task_reminders = Counter(
            "crisiswatch_task_reminders",
            "Playbook task reminders queued, by tier and kind (before, overdue)",
            ["tier", "kind"],
            registry=r,
        )
        self.incidents_merged = Counter(
            "crisiswatch_incidents_merged", "Incidents merged into another", registry=r
        )
        # response templates
        self.template_renders_refused = Counter(
            "crisiswatch_template_renders_refused",
            "Template renders refused (503) because every render slot stayed taken for the "
            "whole wait, by operation (preview, use; save: a body's check)",
            ["operation"],
            registry=r,
        )
        # api access
        self.auth_failures = Counter(
            "crisiswatch_auth_failures",
            "Refused authentications by reason (missing, unknown_key, wrong_metrics_token, "
            "throttled)",
            ["reason"],
            registry=r,
        )
        self.auth_throttle_db_errors = Counter(
            "crisiswatch_auth_throttle_db_errors",
            "Failed-authentication lockout checks and counts the database did not answer "
            "(check, count): the process counted on its own meanwhile",
            ["operation"],
            registry=r,
        )
        # bus
        self.bus_handler_errors = Counter(
            "crisiswatch_bus_handler_errors",
            "Handler failures, and dead letters the transport refused (retried)",
            ["topic", "group"],
            registry=r,
        )
        self.bus_dead_letters = Counter(
            "crisiswatch_bus_dead_letters",
            "Events sent to a dead-letter topic",
            ["topic", "group"],
            registry=r,
        )
        self.bus_published = Counter(
            "crisiswatch_bus_published", "Events published, by topic", ["topic"], registry=r
        )
        self.bus_publish_failures = Counter(
            "crisiswatch_bus_publish_failures",
            "Kafka: events the broker did not acknowledge, or the producer did not take (the "
            "publisher's caller retries or fails; a stage's batch is delivered again)",
            ["topic"],
            registry=r,
        )
        self.bus_fetch_failures = Counter(
            "crisiswatch_bus_fetch_failures",
            "Kafka: fetches that failed (retried after a second: the group reads nothing "
            "meanwhile)",
            ["topic", "group"],
            registry=r,
        )
        self.bus_commit_failures = Counter(
            "crisiswatch_bus_commit_failures",
            "Kafka: offset commits that failed (the records handled since the last commit "
            "are delivered again)",
            ["topic", "group"],
            registry=r,
        )
        # bus hardening (issue 8)
        self.bus_consumer_halted = Gauge(
            "crisiswatch_bus_consumer_halted",
            "1 when a subscription stopped after too many dead letters per minute",
            ["topic", "group"],
            registry=r,
        )
        self.bus_unread_discarded = Counter(
            "crisiswatch_bus_unread_discarded",
            "Memory bus: events of a topic no group reads, beyond its capacity, let go",
            ["topic"],
            registry=r,
        )
        self.bus_consumer_lag = Gauge(
            "crisiswatch_bus_consumer_lag",
            "Events of a topic not yet handled by a group (this process's partitions)",
            ["topic", "group"],
            registry=r,
        )
        self.bus_journal_errors = Counter(
            "crisiswatch_bus_journal_errors",
            "Memory bus: journal writes that failed (append: the publish failed and is "
            "retried by its caller; commit: those events are delivered again after a restart; "
            "dead_letter: the batch is not committed and is handled again; trim: records of "
            "a topic nobody reads are let go later)",
            ["op"],
            registry=r,
        )
        self.bus_journal_recovered = Counter(
            "crisiswatch_bus_journal_recovered",
            "Memory bus: events taken back from the journal at start, not yet handled by a "
            "group (summed over groups)",
            ["topic"],
            registry=r,
        )
        # label values known in advance start at 0, so increase() sees the first error
        for op in ("append", "commit", "dead_letter", "trim"):
            self.bus_journal_errors.labels(op)
        for operation in ("load", "save", "prune"):
            self.cascade_db_errors.labels(operation)
        for operation in ("preview", "use", "save"):
            self.template_renders_refused.labels(operation)
