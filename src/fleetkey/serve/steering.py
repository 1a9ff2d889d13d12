"""Which worker the kernel gives a phone's connection or datagram to: the same one for every
request of an address (``serve --workers``).

``SO_REUSEPORT`` alone spreads by the 4-tuple: a phone's next connection (a connection per
request, as SoundPoints make them) or next TFTP transfer (a new source port each) lands on
any worker. But the server knows a phone that does not name itself by the MAC its address
named earlier in the boot (spec §6; ``serve/addresses.py``), and that memory is each worker's:
the site license a phone asks for as ``000000000000-license.cfg`` over TFTP would be served
from a worker that never heard the phone's ``<mac>.cfg`` — the tree's default instead of its
site's. So the listeners' reuseport group gets a classic BPF program that picks the socket
from the IPv4 source address (hashed, modulo the workers): every request of an address goes
to one worker, and addresses spread over all. A source in a ``--trusted-proxy`` network is
left to the kernel's own 4-tuple hash (the program answers an index past the last socket):
everything behind a load balancer comes from its few addresses, and the phone's own address
is in ``X-Forwarded-For``, which the kernel does not read. IPv6 listeners keep the kernel's
hash (no program): address memory then holds within a connection only.

One concept, kept apart though under 100 lines: the kernel-side choice of a worker (a BPF
program and its attachment through ctypes), which the supervisor in ``serve/workers.py``
(processes, signals, restarts: 336 lines) only calls; folded in, workers.py would pass 400.
"""

from __future__ import annotations

import ctypes
import ipaddress
import socket
from collections.abc import Iterable
from typing import Final

SO_ATTACH_REUSEPORT_CBPF: Final = 51  # asm-generic/socket.h (Linux 4.5)
SKF_NET_OFF: Final = -0x100000  # linux/filter.h: loads relative to the network header
SOURCE_AT: Final = (SKF_NET_OFF + 12) & 0xFFFFFFFF  # the IPv4 header's source address
GOLDEN: Final = 0x9E3779B1  # Knuth's multiplicative hash: neighbouring addresses spread
# classic BPF opcodes (linux/bpf_common.h, linux/filter.h)
LD_W_ABS: Final = 0x20
TAX: Final = 0x07
TXA: Final = 0x87
AND_K: Final = 0x54
MUL_K: Final = 0x24
RSH_K: Final = 0x74
MOD_K: Final = 0x94
JEQ_K: Final = 0x15
RET_A: Final = 0x16
RET_K: Final = 0x06

Instruction = tuple[int, int, int, int]  # code, jump if true, jump if false, k


class _Filter(ctypes.Structure):
    _fields_ = (  # ctypes' own declaration
        ("code", ctypes.c_uint16),
        ("jt", ctypes.c_uint8),
        ("jf", ctypes.c_uint8),
        ("k", ctypes.c_uint32),
    )


class _Program(ctypes.Structure):
    _fields_ = (  # ctypes' own declaration
        ("len", ctypes.c_uint16),
        ("filter", ctypes.POINTER(_Filter)),
    )


def by_address(workers: int, proxies: Iterable[ipaddress.IPv4Network]) -> list[Instruction]:
    """The program: the source address's hash modulo ``workers``; ``workers`` (no socket:
    the kernel's hash) for a source in one of ``proxies``."""
    networks = list(proxies)
    program: list[Instruction] = [(LD_W_ABS, 0, 0, SOURCE_AT), (TAX, 0, 0, 0)]
    for number, network in enumerate(networks):
        after = 3 * (len(networks) - number - 1) + 5  # from the next instruction to RET_K
        program += [
            (TXA, 0, 0, 0),
            (AND_K, 0, 0, int(network.netmask)),
            (JEQ_K, after, 0, int(network.network_address)),
        ]
    program += [
        (TXA, 0, 0, 0),
        (MUL_K, 0, 0, GOLDEN),
        (RSH_K, 0, 0, 16),
        (MOD_K, 0, 0, workers),
        (RET_A, 0, 0, 0),
        (RET_K, 0, 0, workers),
    ]
    return program


def steer(sock: socket.socket, workers: int, proxies: Iterable[object]) -> bool:
    """Attach :func:`by_address` to the reuseport group of ``sock`` (every socket of the
    group bound); whether it was (IPv4 only, Linux only)."""
    if sock.family != socket.AF_INET:
        return False
    v4 = [p for p in proxies if isinstance(p, ipaddress.IPv4Network)]
    program = by_address(workers, v4)
    codes = (_Filter * len(program))(*(_Filter(*step) for step in program))
    header = _Program(len(program), ctypes.cast(codes, ctypes.POINTER(_Filter)))
    try:
        sock.setsockopt(socket.SOL_SOCKET, SO_ATTACH_REUSEPORT_CBPF, bytes(header))
    except OSError:
        return False
    return True
