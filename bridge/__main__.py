"""``python -m bridge`` runs the same CLI as the ``asiou-bridge`` command."""

from bridge.cli.main import main

raise SystemExit(main())
