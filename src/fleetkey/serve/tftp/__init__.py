"""TFTP (RFC 1350, 2347-2349, 7440): the same content and records as HTTP."""
