"""The reference portal: a separate program that implements the reference diary import API
(``docs/portal-api.md``) over HTTP, its store (the portal's rules, in memory or in SQLite) and
fault injection. It stands for the regional diary in the demo and the tests.

Modules: ``server`` (the program: ``python -m bridge.refportal.server``), ``portal`` (the
:class:`ReferencePortal` object), ``handler`` (HTTP), ``service`` (the API without sockets),
``auth`` (clients and tokens), ``inspection`` (``/_portal``), ``wire`` (requests, replies,
bodies), ``faults``; the store: ``store`` (its public names), ``rules``, ``records``, ``checks``,
``model``, ``duplicates``, ``datafile``.

It may import the core's errors and model, the ports and ``bridge.logs``; nothing of the
service, the adapters or the CLI.
"""
