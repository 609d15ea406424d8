"""Listening: sources, watches (queries), dedup, and the listener stage."""
