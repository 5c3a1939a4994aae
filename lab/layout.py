"""Where a lab's things are: its folder, each host's folder and namespace, the client key."""

from __future__ import annotations

import os
from dataclasses import dataclass

from .topology import LabConfig


@dataclass(frozen=True)
class Layout:
    config: LabConfig
    key_store: str | None = None  # a folder keeping the SSH keys across rebuilds (scripts/start --lab)

    @property
    def dir(self) -> str:
        return self.config.dir

    @property
    def state_path(self) -> str:
        return os.path.join(self.dir, "lab.json")

    @property
    def key_path(self) -> str:
        return os.path.join(self.dir, "keys", "id_ed25519")

    @property
    def switch_ns(self) -> str:
        return "%s-switch" % self.config.name

    def ns(self, host: str) -> str:
        return "%s-%s" % (self.config.name, host)

    def hostdir(self, host: str) -> str:
        return os.path.join(self.dir, "hosts", host)
