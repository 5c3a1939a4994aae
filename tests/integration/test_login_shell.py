"""FreeBSD up to 13.x gives root /bin/csh (tcsh): sshd runs each exec request with it. The lab does the same, and
carpweb's commands still run, because each goes through `sh -c` with a quoting csh reads as sh does."""

from __future__ import annotations

import pytest

from lab.pytest_plugin import Shell
from tests.helpers import lab_cluster, wait_run
from wizard import services
from wizard.models import Run

pytestmark = [pytest.mark.lab, pytest.mark.django_db(transaction=True)]


def _run(cluster, kind, limit=120):
    run = wait_run(services.run_start(cluster=cluster, kind=kind), limit=limit)
    assert run.status == Run.Status.OK, (kind, list(run.steps.filter(status="failed").values_list("server_name",
                                                                                                 "name", "message")))
    return run


def _login_shell_is_csh(world, host: str, user: str = "root", password: str | None = None) -> None:
    shell = Shell(world, host, user, password)
    try:
        assert shell.run("set x = 1; echo $x")[1] == "1\n"  # csh's syntax; sh would print an empty line
        code, _, err = shell.run("v=$(uname -s); echo $v")  # sh syntax, handed to csh as it is: refused
        assert code != 0 and "Illegal variable name" in err, err
    finally:
        shell.close()


def test_root_with_csh_on_13x_runs_setup_check_drill_and_remove(world):
    for host in ("server-1", "server-2"):
        world.reinstall(host, version="13.2-RELEASE")
        _login_shell_is_csh(world, host)
    cluster = lab_cluster(world, probe=True, configure_service_ip=True)
    _run(cluster, "setup")
    assert world.exec("server-1", ["uname", "-r"]).stdout.strip() == "13.2-RELEASE"
    for kind in ("check", "drill", "remove"):
        _run(cluster, kind)
    assert "vhid 1" not in world.exec("server-1", ["ifconfig", "em0"]).stdout


def test_a_sudo_user_whose_shell_is_csh(world):
    for host in ("server-1", "server-2"):
        world.reinstall(host, shells={"carpadm": "/bin/csh"})
    _login_shell_is_csh(world, "server-1", "carpadm", password=world.host("server-1").user("carpadm")["password"])
    cluster = lab_cluster(world, users=("carpadm", "carpadm"), privileges=("sudo", "doas"))
    _run(cluster, "preflight")
    _run(cluster, "prepare")
