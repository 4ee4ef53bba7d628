"""The README's two set-up commands stay true: CI runs exactly the test command, the main job is the quickstart."""

import re

from .conftest import REPO_ROOT


def _bash_blocks(text: str) -> list[str]:
    return [block.strip() for block in re.findall(r"```bash\n(.*?)```", text, flags=re.S)]


def test_ci_runs_exactly_the_readme_test_command():
    blocks = _bash_blocks((REPO_ROOT / "README.md").read_text(encoding="utf-8"))
    main_job, test_command = blocks[0], blocks[1]
    assert main_job.startswith("pip install torch==2.13.0 && ") and main_job.endswith("lmforge quickstart")
    assert test_command.startswith("pip install torch==2.13.0 && ")
    ci_lines = (REPO_ROOT / ".ci" / "run").read_text(encoding="utf-8").splitlines()
    assert test_command in ci_lines
    assert "set -euo pipefail" in ci_lines


def test_every_source_package_is_installed():
    import tomllib

    listed = set(tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"])
    found = {
        ".".join(path.parent.relative_to(REPO_ROOT / "src").parts)
        for path in (REPO_ROOT / "src" / "lmforge").rglob("__init__.py")
    }
    assert found | {"lmforge.model_cards"} == listed
    assert (REPO_ROOT / "model_cards" / "aksis.md").is_file()
