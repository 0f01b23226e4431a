"""Every write of the rollouts app, one module per concept.

- lifecycle: a rollout's creation, its transitions (start, promote, pause, resume, rollback) and
  the judgements they stand on.
- plans: rollout plans and the presets.
- releases, incidents: the catalogue.
- emergency: the fleet-wide stop.
- deployments: what a device is asked to run, and its reports.
- cohorts: the rule rollouts put on cohorts.

Each state change locks its row, writes one audit event in the same transaction, and leaves the
live pages to hear of it after commit.
"""
