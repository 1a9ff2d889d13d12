"""FTP and explicit FTPS framing of the fetch pipeline (pyftpdlib, on a thread of its own)."""

import warnings

with warnings.catch_warnings():
    # pyftpdlib builds on asynchat/asyncore on Python 3.11 (deprecated there; it carries its
    # own copies from 3.12): imported once here, quietly, before any module of this package
    warnings.filterwarnings("ignore", category=DeprecationWarning, module="asyn(chat|core)")
    warnings.filterwarnings("ignore", message="The asyn(chat|core) module is deprecated")
    import pyftpdlib.handlers  # noqa: F401
