"""Provisioning: what phones are served (HTTP and TFTP share the content resolver)."""
