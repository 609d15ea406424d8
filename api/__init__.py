"""The composition root: HTTP API, CLI and the wiring of stages for each way of running."""
