"""The SSH transport against the lab's real sshd: timeouts and privilege wrapping."""

import time

import pytest

from wizard.ssh import Connection, Endpoint, SSHError, fetch_host_key

pytestmark = pytest.mark.lab


def _endpoint(lab, host="server-1", user="root", privilege="root"):
    info = lab.host(host)
    key_type, b64, _ = fetch_host_key(host, "127.0.0.1", info.ssh_port)
    with open(lab.key_path) as f:
        secret = f.read()
    return Endpoint(host, "127.0.0.1", info.ssh_port, user, "key", secret, privilege, f"{key_type} {b64}")


def test_command_timeout_is_a_clear_step_error(fresh_lab):
    with Connection(_endpoint(fresh_lab), command_timeout=1) as conn:
        t0 = time.monotonic()
        with pytest.raises(SSHError) as err:
            conn.run("sleep 5")
        assert time.monotonic() - t0 < 3
        assert err.value.kind == "timeout"
        assert "did not finish within 1 s" in err.value.message


def test_doas_and_sudo_wrapping_run_as_root(fresh_lab):
    for privilege in ("sudo", "doas"):
        with Connection(_endpoint(fresh_lab, user="carpadm", privilege=privilege)) as conn:
            assert conn.run("id -u").stdout == "0\n"


def test_fingerprint_matches_ssh_keygen(fresh_lab):
    info = fresh_lab.host("server-1")
    assert fetch_host_key("server-1", "127.0.0.1", info.ssh_port)[2] == info.host_key_fingerprint.split()[1]
