"""Notifiers: one module per channel type, the shared contract in ``base``."""
