"""The admin API (FastAPI), served by `fleetkey serve` under /api/."""
