"""The operator's dashboard at ``/ui/``: server-rendered pages over the store
(docs/dashboard.md)."""
