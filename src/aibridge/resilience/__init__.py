"""Protecting users and upstreams: rate and concurrency limits, circuit breaking."""
