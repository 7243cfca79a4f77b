"""The index tests use the shared `sample_catalog`, `tiny_client` and `tiny_index` of tests/conftest.py."""
