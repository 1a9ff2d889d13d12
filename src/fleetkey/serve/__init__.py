"""Provisioning: what phones are served (HTTP, TFTP and FTP share one fetch pipeline)."""
