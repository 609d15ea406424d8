"""Shared contracts and plumbing: event schemas, the bus, the clock, settings, database."""
