"""Prefect flows, configuration and the `newsmon` command."""
