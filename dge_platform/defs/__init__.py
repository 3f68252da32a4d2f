"""Dagster definitions: thin assets, checks, sensors and schedules over the pure modules."""
