"""The pure core: license model, codec, terms, feature catalog, signing, effective-license rules.

No I/O, no database, no web or CLI framework: a test imports this package in a fresh
interpreter and checks that no SQLAlchemy, Starlette or click module got loaded.
"""
