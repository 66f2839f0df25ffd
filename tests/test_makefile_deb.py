"""`make deb` installs missing Debian packages without starting their services and never kills by name."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def test_makefile_kills_nothing_by_name() -> None:
    text = (ROOT / "Makefile").read_text(encoding="utf-8")
    assert not re.search(r"\b(pkill|killall)\b", text)
    assert not re.search(r"service \S+ stop", text)


def _refuse_a_makefile_without_the_seams() -> None:
    """Never run a recipe that would call the real apt-get (or kill anything): fail before running make."""
    text = (ROOT / "Makefile").read_text(encoding="utf-8")
    assert "DEB_POLICY ?=" in text and "APT_GET ?=" in text, "the deb recipe lacks its test seams"


@pytest.mark.skipif(os.geteuid() != 0 or shutil.which("make") is None, reason="needs root and make")
def test_services_are_kept_from_starting_while_apt_runs_and_the_policy_is_removed(tmp_path: Path) -> None:
    _refuse_a_makefile_without_the_seams()
    policy = tmp_path / "policy-rc.d"
    seen = tmp_path / "seen"
    fake_apt = tmp_path / "apt-get"
    # the fake apt-get records what invoke-rc.d would be told by the policy while packages install
    fake_apt.write_text(f"""#!/bin/sh
if [ "$1" = install ]; then
  if [ -x "{policy}" ]; then "{policy}" prometheus start; echo "policy-exit=$?" >> "{seen}"; \\
  else echo "no-policy" >> "{seen}"; fi
fi
exit 0
""")
    fake_apt.chmod(0o755)
    env = {**os.environ, "MAKEFLAGS": ""}
    done = subprocess.run(["make", "--no-print-directory", "-C", str(ROOT), "deb",
                           "DEB_NEEDS=arbframe-no-such-binary:arbframe-fake-package",
                           f"DEB_POLICY={policy}", f"APT_GET={fake_apt}"],
                          capture_output=True, text=True, env=env, timeout=60)
    assert done.returncode == 0, done.stderr
    assert "arbframe-fake-package" in done.stdout
    assert seen.read_text().split() == ["policy-exit=101"], "services must not start during the install"
    assert not policy.exists(), "the policy must be removed afterwards"


@pytest.mark.skipif(os.geteuid() != 0 or shutil.which("make") is None, reason="needs root and make")
def test_an_existing_policy_is_left_alone(tmp_path: Path) -> None:
    _refuse_a_makefile_without_the_seams()
    policy = tmp_path / "policy-rc.d"
    policy.write_text("#!/bin/sh\nexit 0\n")
    fake_apt = tmp_path / "apt-get"
    fake_apt.write_text("#!/bin/sh\nexit 0\n")
    fake_apt.chmod(0o755)
    done = subprocess.run(["make", "--no-print-directory", "-C", str(ROOT), "deb",
                           "DEB_NEEDS=arbframe-no-such-binary:arbframe-fake-package",
                           f"DEB_POLICY={policy}", f"APT_GET={fake_apt}"],
                          capture_output=True, text=True, env={**os.environ, "MAKEFLAGS": ""}, timeout=60)
    assert done.returncode == 0, done.stderr
    assert policy.read_text() == "#!/bin/sh\nexit 0\n"
