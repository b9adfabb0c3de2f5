"""``python -m ebmlab`` (and ``torchrun ... -m ebmlab train``): the ``ebmlab`` command."""

from ebmlab.cli import main

raise SystemExit(main())
