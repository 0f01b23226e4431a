"""What the rollouts app announces, for the layers above it (the portal's live updates)."""

from django.dispatch import Signal

# The autopilot stored a judgement of a rollout. Argument: evaluation (Evaluation).
evaluation_stored = Signal()

# An autopilot round began: ring health and the autopilot's heartbeat changed. No arguments.
autopilot_round_began = Signal()
