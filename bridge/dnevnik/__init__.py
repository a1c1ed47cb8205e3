"""The dnevnik.ru emulator: a separate program that serves the dnevnik.ru partner API v2 (as
public clients such as ``pydnevnikruapi`` call it) over HTTP, with a contingent the portal owns
(seeded from the demo school's ASIOU tables, with deliberate mismatches), journal writes with a
real diary's validation, and the reference portal's fault injection. It stands for the school's
regional diary in the demo and the tests (``docs/dnevnik-emulator.md``).

Modules: ``server`` (the program: ``python -m bridge.dnevnik.server``), ``emulator`` (the
:class:`~bridge.dnevnik.emulator.DnevnikEmulator` object and its HTTP handler), ``service``
(the API without sockets: auth, faults, statistics, ``/_emulator``), ``routes`` (the ``/v2``
endpoints), ``wire`` (requests, bodies, error envelopes, the HTML error page), ``views`` (the
JSON shapes), ``journal`` (the state and the diary's rules), ``seed`` (the contingent from an
ASIOU SQLite file, with the mismatches), ``store`` (the SQLite file).

It may import the core's errors, ``bridge.logs`` and the reference portal's HTTP layer, wire
helpers and fault plan; nothing of the service, the adapters, the CLI or the fakes.
"""
