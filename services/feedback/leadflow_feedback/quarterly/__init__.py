"""The quarterly review: the commitments against their targets quarter by quarter, and the
policy versions published within each quarter."""
