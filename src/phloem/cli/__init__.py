"""The ``phloem`` command: a thin layer over :mod:`phloem.api` and the store.

Importing this package is cheap; rich, SQLAlchemy and the API load when a command needs them.
"""
