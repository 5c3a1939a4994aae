"""Shared fixtures: the lab (one per session) and Django's test database."""

pytest_plugins = ["lab.pytest_plugin"]
