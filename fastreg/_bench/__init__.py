"""The benchmark case table and runner behind ``python -m fastreg bench`` and ``bench/``."""
