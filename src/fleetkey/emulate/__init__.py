"""An emulator of many phones: the device engine on real sockets (HTTP, SIP) and a virtual clock."""
