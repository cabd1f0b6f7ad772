"""The browser client's TypeScript declarations (src/crosswire/static/client.d.ts), checked
by the pinned TypeScript compiler (tests/typescript, installed by ``python3 dev.py test``):
tests/typescript/sample.ts, which uses the whole API as a user would (its
``@ts-expect-error`` lines must be errors), compiles with ``--strict``; a program with a
deliberate type error does not; and the declarations need no DOM library."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

from tests.support import BROWSER_CLIENT, ROOT, node_commands

CHECKS = ROOT / "tests" / "typescript"
DECLARATIONS = BROWSER_CLIENT.with_name("client.d.ts")


def tsc(config: Path) -> subprocess.CompletedProcess[str]:
    """``tsc -p config``: loudly missing when tests/typescript's packages are not installed."""
    compiler = CHECKS / "node_modules" / "typescript" / "bin" / "tsc"
    assert compiler.is_file(), (
        f"{compiler} is missing: `python3 dev.py test` installs it (npm ci in tests/typescript)"
    )
    node = node_commands()[0]
    return subprocess.run(
        [*node, str(compiler), "-p", str(config)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def write_config(folder: Path, files: list[Path], **options: object) -> Path:
    """A tsconfig.json in ``folder`` that extends tests/typescript's, for ``files``."""
    config = folder / "tsconfig.json"
    body = {
        "extends": str(CHECKS / "tsconfig.json"),
        "compilerOptions": options,
        "files": [str(file) for file in files],
    }
    config.write_text(json.dumps(body))
    return config


def test_the_sample_program_compiles() -> None:
    result = tsc(CHECKS / "tsconfig.json")
    assert result.returncode == 0, result.stdout + result.stderr


def test_a_type_error_fails(tmp_path: Path) -> None:
    # With no declarations applied, the import would be `any` and this would compile.
    result = tsc(write_config(tmp_path, [CHECKS / "errors" / "wrong_option.ts"]))
    assert result.returncode != 0
    assert "wrong_option.ts(5," in result.stdout, result.stdout
    assert "error TS2322: Type 'string' is not assignable to type 'number'" in result.stdout


def test_the_declarations_need_no_dom(tmp_path: Path) -> None:
    # A Node.js project (lib ES2022 alone, no @types) can use them too.
    result = tsc(write_config(tmp_path, [DECLARATIONS], lib=["ES2022"], types=[]))
    assert result.returncode == 0, result.stdout + result.stderr
