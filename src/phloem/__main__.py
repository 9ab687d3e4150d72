"""``python -m phloem`` is the ``phloem`` command."""

from phloem.cli.main import main

main()
