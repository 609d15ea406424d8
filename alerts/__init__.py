"""Alerting: incidents, routing, notifiers, durable delivery and escalation.

Modules: ``config`` (the ``alerts`` section), ``models`` (tables), ``incidents`` (signal
intake, queries and commands for the API), ``routing`` (tier -> teams -> channels),
``outbox`` (queue and deliver, at least once), ``escalation`` (unacknowledged alerts go
further), ``messages`` (what an alert says), ``timeline``, ``service`` (the stage), and
``notifiers/`` (one module per channel type behind ``notifiers.base.Notifier``).
"""
