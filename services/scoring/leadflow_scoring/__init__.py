"""Leadflow scoring: scores leads and promotes MQLs and PQLs."""
