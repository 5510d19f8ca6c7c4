"""The policy as numbered versions: written, compared, published and rolled back through feedback's
API (`/v1/policy`), each publication sent to every service as `policy.published`."""
