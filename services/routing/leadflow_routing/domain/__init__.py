"""Routing's pure decisions: rule matching, rep eligibility and the routing strategies."""
