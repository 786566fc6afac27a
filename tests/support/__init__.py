"""Test helpers: a recording upstream, raw SMTP, the store contract suite, browser and
Prometheus drivers. Nothing here is collected as tests."""
