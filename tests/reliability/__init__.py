"""The reliability suite: a package, so its conftest and test modules do not shadow tests/conftest.py or
tests/unit/ modules of the same name (pytest imports rootdir-less conftests as the one module `conftest`)."""
