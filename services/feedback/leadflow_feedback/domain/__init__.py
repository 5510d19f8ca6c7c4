"""Feedback's pure decisions: the lifecycle, the read model's facts, reports, planning and pages."""
