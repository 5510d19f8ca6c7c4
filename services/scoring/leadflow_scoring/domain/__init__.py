"""Scoring's pure decisions: scores, promotions and the inputs they are read from, with no I/O."""
