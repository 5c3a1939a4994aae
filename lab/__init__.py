"""The rehearsal world: FreeBSD-like CARP hosts in network namespaces, reached over real SSH.

Kept import-light on purpose: the emulated FreeBSD commands under ``lab.freebsd`` run inside
every SSH session, and the heavy controller lives in ``lab.world``.
"""
