"""An emulator of many phones: the device engine on real sockets (HTTP, TFTP, FTP, SIP), a clock
of its own."""
