"""Customer success after the signature: hand-offs, onboarding, churns and success stories."""
