"""The incident workflow: status transitions, tier history, roles, playbook tasks with
reminders, notes, merging, evidence (mentions, sentiment mix, heat curve) and the
post-incident report."""
