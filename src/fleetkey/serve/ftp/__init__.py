"""FTP and explicit FTPS framing of the fetch pipeline (pyftpdlib, on a thread of its own)."""
