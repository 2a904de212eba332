"""Bridges to other tools, each importing its tool lazily so the core install does not need it.

| module | owns |
|---|---|
| lmms_eval.py | the lmms-eval model backend (`--model superneurons`) and its `lmms_eval.models` entry point |
"""
