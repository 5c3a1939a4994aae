"""carpweb's devd script on a lab host's /bin/sh: /var/log/messages can be written by any local user (logger), so
the script reads only the kernel's own line, takes only INIT/BACKUP/MASTER from it, cleans and cuts the reason,
and refuses odd arguments. The collector keeps a malformed line as such instead of dropping its transition."""

from __future__ import annotations

import pytest

from wizard.carp import transition_log

pytestmark = pytest.mark.lab
HOST = "server-1"


def _fire(lab, messages: list[str], *args: str) -> str:
    """Install the script, write /var/log/messages, run the script as devd would, return the event log's last line."""
    script = transition_log.SCRIPT_TEXT.replace("'", "'\\''")
    lab.exec(HOST, ["sh", "-c", "rm -rf /var/db/carpweb /var/log/carpweb; mkdir -p /usr/local/libexec; "
                                f"printf '%s' '{script}' > {transition_log.SCRIPT}; "
                                f"chmod 755 {transition_log.SCRIPT}"], check=True)
    lab.exec(HOST, ["sh", "-c", "cat > /var/log/messages"], input="".join(m + "\n" for m in messages), check=True)
    res = lab.exec(HOST, [transition_log.SCRIPT, *args])
    assert res.returncode == 0, res.stderr
    return lab.exec(HOST, ["sh", "-c", f"tail -n 1 {transition_log.LOG} 2>/dev/null"]).stdout.strip()


def test_a_line_any_user_can_write_is_not_taken_for_the_kernels(fresh_lab):
    forged = [f"Nov 29 10:00:01 {HOST} root: carp: 1@em0: MASTER -> BACKUP (forged by logger)",
              f"Nov 29 10:00:02 {HOST} kernel: carp: 1@em0: PWNED -> BACKUP (odd state)"]
    line = _fire(fresh_lab, forged, "1@em0", "BACKUP")
    event = transition_log.parse_line(line)
    assert event is not None and not event.malformed, line
    assert (event.old, event.new, event.reason) == ("INIT", "BACKUP", "")  # old from the script's own record


def test_the_kernels_reason_is_cleaned_and_cut(fresh_lab):
    noisy = "master timed out \x1b[31m$(reboot) `id` ;|& " + "z" * 300
    line = _fire(fresh_lab, [f"Nov  9 10:00:03 {HOST} kernel: carp: 1@em0: BACKUP -> MASTER ({noisy})"],
                 "1@em0", "MASTER")
    event = transition_log.parse_line(line)
    assert event is not None and not event.malformed, line
    assert event.old == "BACKUP" and event.new == "MASTER"
    assert event.reason.startswith("master timed out") and len(event.reason) <= transition_log.REASON_MAX
    assert not set(event.reason) & set("\x1b$`;|&()")


@pytest.mark.parametrize("args", [("1@em0;reboot", "MASTER"), ("1@em0", "PWNED"), ("x@em0", "MASTER"), ("", "")])
def test_odd_devd_arguments_write_nothing(fresh_lab, args):
    assert _fire(fresh_lab, [], *args) == ""
