"""The phone side of spec §3: configuration, schedules and the license engine (R1-R9)."""
