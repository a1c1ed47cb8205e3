"""Adapters: the ports of ``bridge.ports`` on real systems, the SQL source (ASIOU through
SQLAlchemy: SQLite, MariaDB over pyodbc, PostgreSQL), the SQL state stores (SQLite,
PostgreSQL) and the HTTP client of the reference portal API.

Adapters may import the core and the ports, never the service or the CLI.
"""
