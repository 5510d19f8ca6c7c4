"""Pure decisions of ingest: what platforms send, the lead after an input, who may write it."""
