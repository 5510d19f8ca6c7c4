"""Leadflow's shared domain contracts: event payloads, the SLA policy, business calendars,
period commitments and what erasure removes. Every service reads the same definitions."""
