"""The HTTP provisioning server: an asyncio protocol on uvloop and httptools (see docs/serve.md)."""
