"""FreeBSD's command surface, emulated to the letter of shared/reference/freebsd-carp.md.

Standard library only, Python 3.11 compatible: it runs under the host's system python3 inside
each lab host's namespaces, for root and for unprivileged users alike.
"""
