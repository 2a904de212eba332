"""The reliability suite is a package so that its conftest is `reliability.conftest`: as a plain module
named `conftest` it would shadow tests/conftest.py for every later `from conftest import write_dataset`."""
