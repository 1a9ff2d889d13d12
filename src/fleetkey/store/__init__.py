"""The store: sites, phones, license keys, fetch records and the audit trail (SQLAlchemy 2).

SQLite (WAL) is the embedded default; PostgreSQL lets several servers share one fleet. The core
never imports this package; the CLI and the servers do, through the repository modules.
"""
