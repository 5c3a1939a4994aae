"""rc.conf read one way: as sh sources it, which is how sysrc(8) reads a variable (sysrc.subr's f_sysrc_get sources
the file in a sub-shell) and how rc reads it at boot. The product's parser (wizard.carp.rcconf, pure Python on a
file fetched from a node) and the lab's sysrc (lab.freebsd.rcfile) are both held to /bin/sh on the same files."""

from __future__ import annotations

import subprocess

import pytest

from lab.freebsd import rcfile
from wizard.carp.rcconf import RcSyntaxError, parse_rc

CASES = {
    "double quotes": 'ifconfig_em0_alias0="inet vhid 1 advskew 0 pass s3cret alias 192.0.2.100/32"\n',
    "single quotes keep double ones": "e='single \"q\"'\n",
    "a bare word, then a comment": "carp_load=YES # loaded at boot\n",
    "a comment line and leading blanks": "# $FreeBSD$\n   hostname=\"node-1\"\n",
    "# inside a word is text": "c=x#y\n",
    "# inside quotes is text": 'd="in #quotes" # but this is a comment\n',
    "escapes in double quotes": 'f="esc \\"q\\" \\$x \\\\ end \\n"\n',
    "a backslash outside quotes": "j=a\\ b\n",
    "a quoted value over two lines": 'g="multi\nline"\n',
    "a line continued by a backslash": 'k="one \\\ntwo"\n',
    "the last assignment wins": "h=first\nh=second\n",
    "an empty value": 'i=""\nz=\n',
    "expansion of an earlier variable": 'base=192.0.2\nvip="$base.100/32"\nv2=${base}.101\nraw=\'$base\'\n',
    "two assignments on a line": "a=1; b=2\n",
    "an assignment before a command sets nothing": "x=1 true\ny=2\n",
    "no newline at the end": "last=value",
    "quotes that mix": "m=\"a\"'b'c\n",
}
BROKEN = {
    "an unterminated double quote": 'a=1\nb="open\nc=3\n',
    "an unterminated single quote": "a=1\nb='open\n",
}


def sh_value(text: str, name: str, tmp_path) -> str | None:  # type: ignore[no-untyped-def]
    """What sh has in `name` after sourcing `text` (None: unset), in a clean environment, as sysrc reads it."""
    path = tmp_path / "rc.conf"
    path.write_text(text)
    res = subprocess.run(["/bin/sh", "-c", '. "$1" >/dev/null 2>&1 || exit 3; eval "[ \\"\\${$2+set}\\" ]" || exit 4; '
                          'eval "printf %s \\"\\$$2\\""', "sh", str(path), name],
                         env={"PATH": "/usr/bin:/bin"}, capture_output=True, text=True, timeout=10, check=False)
    assert res.returncode in (0, 4), res
    return res.stdout if res.returncode == 0 else None


@pytest.mark.parametrize("case", CASES)
def test_the_product_and_the_lab_read_rc_conf_as_sh_does(case, tmp_path):
    text = CASES[case]
    product, lab = parse_rc(text), rcfile.parse(text)
    names = set(product) | set(lab) | {"x", "y"}
    expected = {n: v for n in names if (v := sh_value(text, n, tmp_path)) is not None}
    assert expected, "every case assigns something"
    assert product == expected
    assert lab == expected


@pytest.mark.parametrize("case", BROKEN)
def test_a_file_sh_cannot_parse_is_refused_whole(case, tmp_path):
    text = BROKEN[case]
    path = tmp_path / "rc.conf"
    path.write_text(text)
    assert subprocess.run(["/bin/sh", "-c", '. "$1"', "sh", str(path)], capture_output=True, timeout=10,
                          check=False).returncode != 0
    with pytest.raises(RcSyntaxError, match=r"line 2: unterminated quoted string"):
        parse_rc(text)
    assert rcfile.parse(text) == {}  # sysrc reads nothing from such a file
