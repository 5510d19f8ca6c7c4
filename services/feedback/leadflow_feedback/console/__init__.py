"""The operations console (`/console`): server-rendered pages over routing's, notify's, ingest's
and feedback's own APIs, for people signed in, each page within their role."""
