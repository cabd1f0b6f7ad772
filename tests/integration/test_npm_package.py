"""The browser client as an npm package (crosswire-client): src/crosswire/static is the
package (package.json, client.js, client.d.ts, README.md), with no copy of the source. Its
version is the Python package's, ``npm pack`` packs those four files, the wheel ships the
same files (package-data), and the sample program compiles against the installed tarball."""

from __future__ import annotations

import fnmatch
import json
import subprocess
import tomllib
from pathlib import Path
from typing import Any

from tests.integration.test_typescript import CHECKS, tsc, write_config
from tests.support import BROWSER_CLIENT, ROOT, node_commands

PACKAGE = BROWSER_CLIENT.parent
FILES = {"package.json", "client.js", "client.d.ts", "README.md"}


def pyproject() -> dict[str, Any]:
    return tomllib.loads((ROOT / "pyproject.toml").read_text())


def npm(*args: str, cwd: Path) -> str:
    result = subprocess.run(
        [*node_commands()[1], *args, "--no-audit", "--no-fund", "--loglevel=error"],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    return result.stdout


def pack(destination: Path) -> dict[str, Any]:
    out = npm("pack", "--pack-destination", str(destination), "--json", cwd=PACKAGE)
    [packed] = json.loads(out)
    return packed  # type: ignore[no-any-return]


def test_the_manifest() -> None:
    manifest = json.loads((PACKAGE / "package.json").read_text())
    assert manifest["version"] == pyproject()["project"]["version"]
    assert manifest["name"] == "crosswire-client" and manifest["license"] == "MIT"
    assert manifest["type"] == "module"
    assert manifest["exports"]["."] == {"types": "./client.d.ts", "default": "./client.js"}
    assert manifest["types"] == "./client.d.ts" and manifest["main"] == "./client.js"
    assert "dependencies" not in manifest  # zero-dependency


def test_npm_pack(tmp_path: Path) -> None:
    packed = pack(tmp_path)
    version = pyproject()["project"]["version"]
    assert packed["filename"] == f"crosswire-client-{version}.tgz"
    assert (tmp_path / packed["filename"]).is_file()
    assert {file["path"] for file in packed["files"]} == FILES


def test_the_wheel_ships_the_same_files() -> None:
    # The static folder of an installed crosswire is the same npm package (npm pack or npm
    # install it from there): package-data takes every file of it, and nothing else.
    patterns = pyproject()["tool"]["setuptools"]["package-data"]["crosswire"]
    shipped = {
        path.name
        for path in PACKAGE.iterdir()
        if any(fnmatch.fnmatch(f"static/{path.name}", pattern) for pattern in patterns)
    }
    assert shipped == FILES


def test_the_sample_compiles_against_the_installed_package(tmp_path: Path) -> None:
    packed = pack(tmp_path)
    project = tmp_path / "app"
    project.mkdir()
    (project / "package.json").write_text('{"private": true, "type": "module"}')
    npm("install", "--offline", "--no-save", str(tmp_path / packed["filename"]), cwd=project)
    installed = project / "node_modules" / "crosswire-client"
    assert {path.name for path in installed.iterdir()} == FILES
    source = (CHECKS / "sample.ts").read_text()
    relative = '"../../src/crosswire/static/client.js"'
    assert relative in source
    sample = project / "sample.ts"
    sample.write_text(source.replace(relative, '"crosswire-client"'))
    result = tsc(write_config(project, [sample]))
    assert result.returncode == 0, result.stdout + result.stderr
