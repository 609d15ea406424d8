"""Alerting: incidents, routing, notifiers, durable delivery and escalation."""
