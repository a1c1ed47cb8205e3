"""``python -m bridge`` runs the same CLI as the ``asiou-bridge`` command."""

from bridge.cli import main

raise SystemExit(main())
