"""Rollout planning: maintenance windows in UTC, and waves of check-syncs under a capacity."""
