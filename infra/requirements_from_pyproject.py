"""Print the third-party requirements of pyproject.toml files, one per line (the image's dependency layer).

    python infra/requirements_from_pyproject.py 'pyproject.toml[server]' plugins/*/pyproject.toml

The Dockerfile installs these before it copies any source, so editing code reuses the cached dependency layer;
the project's own distributions (``arbframe``, ``arbframe-*``) are left out: they are installed from the source
afterwards with ``--no-deps``. ``file[extra,...]`` adds the named optional dependencies.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10 (the tests run it with the interpreter under test)
    import tomli as tomllib


def requirements(specs: list[str]) -> list[str]:
    found: list[str] = []
    ours: set[str] = set()
    for spec in specs:
        path, _, extras = spec.partition("[")
        project = tomllib.loads(Path(path).read_text())["project"]
        ours.add(project["name"].lower())
        found += project.get("dependencies", [])
        for extra in filter(None, extras.rstrip("]").split(",")):
            found += project["optional-dependencies"][extra.strip()]
    out = []
    for req in found:
        name = re.split(r"[\s<>=!~;\[]", req, maxsplit=1)[0].lower().replace("_", "-")
        if name == "arbframe" or name.startswith("arbframe-") or name in ours:
            continue
        if req not in out:
            out.append(req)
    return out


if __name__ == "__main__":
    print("\n".join(requirements(sys.argv[1:])))
