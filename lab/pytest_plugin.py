"""pytest fixtures for the lab: one lab per test session, skipped (or failed in CI) without root."""

from __future__ import annotations

import base64
import os
from collections.abc import Iterator

import paramiko
import pytest

from .topology import LabConfig
from .world import Lab, lab_available

# CARPLAB_TEST_NAME/CARPLAB_TEST_PORT let a second test session run beside another (a developer's beside CI's).
TEST_LAB = LabConfig(name=os.environ.get("CARPLAB_TEST_NAME", "carptest"),
                     base_port=int(os.environ.get("CARPLAB_TEST_PORT", "23000")))
NATIVE_LAB = LabConfig(name="carpnat", base_port=24000, speaker="native")


def require_lab() -> None:
    ok, why = lab_available()
    if ok:
        return
    if os.environ.get("CARPWEB_REQUIRE_LAB") == "1":
        pytest.fail("CARPWEB_REQUIRE_LAB=1 but the lab cannot run here: " + why)
    pytest.skip("lab tests need the lab: " + why)


@pytest.fixture(scope="session")
def lab() -> Iterator[Lab]:
    require_lab()
    world = Lab(TEST_LAB)
    world.up()
    yield world
    world.down()


@pytest.fixture(scope="session")
def native_lab(lab: Lab) -> Iterator[Lab]:
    """A lab whose CARP speaker is the lab's own (speaker.py): the session lab, unless CARPLAB_SPEAKER=ucarp made
    that one speak ucarp."""
    if lab.config.speaker == "native":
        yield lab
        return
    world = Lab(NATIVE_LAB)
    world.up()
    yield world
    world.down()


@pytest.fixture
def fresh_native_lab(native_lab: Lab) -> Lab:
    for info in native_lab.status():
        native_lab.reset_host(info.name)
    return native_lab


@pytest.fixture
def fresh_lab(lab: Lab) -> Lab:
    """The session lab with both servers back to a fresh install (no carp, no faults, empty logs)."""
    for info in lab.status():
        lab.reset_host(info.name)
    return lab


class Shell:
    """A paramiko session to one lab host, for tests: run(cmd) -> (exit code, stdout, stderr)."""

    def __init__(self, lab: Lab, host: str, user: str = "root", password: str | None = None) -> None:
        info = lab.host(host)
        self.client = paramiko.SSHClient()
        pub = os.path.join(lab.hostdir(host), "ssh_host_ed25519_key.pub")
        with open(pub) as f:
            kind, blob = f.read().split()[:2]
        self.client.get_host_keys().add("[127.0.0.1]:%d" % info.ssh_port, kind,
                                        paramiko.Ed25519Key(data=base64.b64decode(blob)))
        self.client.connect("127.0.0.1", port=info.ssh_port, username=user, timeout=10, auth_timeout=10,
                            banner_timeout=10, look_for_keys=False, allow_agent=False, password=password,
                            key_filename=None if password else lab.key_path)

    def run(self, command: str, timeout: float = 30) -> tuple[int, str, str]:
        _, stdout, stderr = self.client.exec_command(command, timeout=timeout)
        out, err = stdout.read().decode(), stderr.read().decode()
        return stdout.channel.recv_exit_status(), out, err

    def close(self) -> None:
        self.client.close()
