"""Response templates with legal review: models, workflow, sandboxed rendering, seeds."""
