"""``python -m ebmlab``: the ``ebmlab`` command."""

from ebmlab.cli import main

raise SystemExit(main())
