"""The README's two set-up commands stay true: CI runs exactly the test command, the main job is the quickstart."""

import re

from .conftest import REPO_ROOT


def _bash_blocks(text: str) -> list[str]:
    return [block.strip() for block in re.findall(r"```bash\n(.*?)```", text, flags=re.S)]


def test_ci_runs_exactly_the_readme_test_commands():
    blocks = _bash_blocks((REPO_ROOT / "README.md").read_text(encoding="utf-8"))
    main_job, test_command, lowest_command = blocks[0], blocks[1], blocks[2]
    assert main_job.startswith("pip install torch==2.13.0 && ") and main_job.endswith("lmforge quickstart")
    assert test_command.startswith("pip install torch==2.13.0 && ")
    assert "--cov-fail-under=85" in test_command
    assert "-c .ci/constraints-lowest.txt" in lowest_command and "pip install torch==2.13.0 && " in lowest_command
    ci_lines = (REPO_ROOT / ".ci" / "run").read_text(encoding="utf-8").splitlines()
    assert "set -euo pipefail" in ci_lines
    assert test_command in ci_lines and lowest_command in ci_lines
    assert ci_lines.index(test_command) < ci_lines.index(lowest_command)


def _requirement(line: str) -> tuple[str, str, str]:
    """`"name>=1.2,<2"` -> ("name", lower bound, the whole specifier)."""
    match = re.fullmatch(r"([A-Za-z0-9_.-]+)((?:[<>=!~]=?[^,]+,?)+)", line.replace(" ", ""))
    assert match, line
    lower = re.search(r">=([^,]+)", match[2])
    return match[1].lower(), lower[1] if lower else "", match[2]


def test_the_lowest_constraints_are_the_declared_lower_bounds():
    """Every runtime dependency and every extra's (the linters apart: they run at their newest only) has a lower
    bound, and the lower-bounds run installs exactly that version."""
    import tomllib
    from packaging.version import Version

    project = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())["project"]
    linters = {"ruff", "mypy", "types-pyyaml"}
    dependencies = list(project["dependencies"])
    for extra in project["optional-dependencies"].values():
        dependencies += [
            d for d in extra if re.match(r"[\w.-]+", d)[0].lower() not in linters and d not in dependencies
        ]
    lowest = {}
    for line in (REPO_ROOT / ".ci" / "constraints-lowest.txt").read_text(encoding="utf-8").splitlines():
        if line.strip() and not line.startswith("#"):
            name, _, version = line.partition("==")
            lowest[name.strip().lower()] = Version(version.strip())
    for dependency in dependencies:
        name, lower, specifier = _requirement(dependency)
        assert lower, f"{dependency} needs a lower bound that CI installs"
        if name == "torch":  # the one CPU build these machines install; both CI runs use it
            assert specifier == ">=2.13,<2.14", specifier
            continue
        assert lowest.get(name) == Version(lower), (
            f"{name}: pyproject says >={lower}, the lowest run installs {lowest.get(name)}"
        )
    assert set(lowest) == {_requirement(d)[0] for d in dependencies} - {"torch"}


def test_every_source_package_is_installed():
    import tomllib

    listed = set(tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"])
    found = {
        ".".join(path.parent.relative_to(REPO_ROOT / "src").parts)
        for path in (REPO_ROOT / "src" / "lmforge").rglob("__init__.py")
    }
    assert found | {"lmforge.model_cards", "lmforge.recipes"} == listed
    assert (REPO_ROOT / "model_cards" / "aksis.md").is_file()
    assert (REPO_ROOT / "recipes" / "__init__.py").is_file()
