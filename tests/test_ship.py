"""What ships: the Dockerfile for GPU hosts, the README's instructions for it, and the environment variables
the image sets (GCSEARCH_STORAGE, GCSEARCH_DATA_DIR), which `run` and `report` must honour."""

from __future__ import annotations

import importlib.util
import json
import re
import shlex
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

from report_study import STUDY, build_hand_study
from run_helpers import cli_output as _cli

from gcsearch.cli import app

ROOT = Path(__file__).resolve().parent.parent
INSTALL = "pip install '.[plots,postgres,images]'"


def _instructions() -> list[tuple[str, str]]:
    """The Dockerfile's instructions as (KEYWORD, arguments), continuation lines joined, comments dropped."""
    text = (ROOT / "Dockerfile").read_text()
    joined = re.sub(r"\\\n", " ", "\n".join(line for line in text.splitlines() if not line.lstrip().startswith("#")))
    out = []
    for line in joined.splitlines():
        if line.strip():
            keyword, _, args = line.strip().partition(" ")
            out.append((keyword.upper(), " ".join(args.split())))
    return out


def _section(title: str) -> str:
    text = (ROOT / "README.md").read_text()
    match = re.search(rf"^## {re.escape(title)}\n(.*?)(?=^## |\Z)", text, flags=re.M | re.S)
    assert match, f"README.md has no '## {title}' section"
    return match.group(1)


def _env() -> dict[str, str]:
    env: dict[str, str] = {}
    for keyword, args in _instructions():
        if keyword == "ENV":
            for item in shlex.split(args):
                key, _, value = item.partition("=")
                env[key] = value
    return env


def test_the_image_installs_gcsearch_with_the_readme_install_line() -> None:
    runs = [args for keyword, args in _instructions() if keyword == "RUN" and "pip install" in args]
    assert runs == [INSTALL]
    assert INSTALL in _section("Docker")
    extras = re.search(r"\[(.*)\]", INSTALL).group(1).split(",")
    declared = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["optional-dependencies"]
    assert set(extras) <= set(declared)
    base = next(args for keyword, args in _instructions() if keyword == "FROM")
    assert "pytorch" in base and "cuda" in base  # torch with CUDA comes from the base image
    for keyword, args in _instructions():  # what the image copies exists here
        if keyword == "COPY":
            for source in shlex.split(args)[:-1]:
                assert (ROOT / source).exists(), source


def test_the_image_runs_gcsearch_as_a_user_with_volumes_for_database_and_data() -> None:
    instructions = _instructions()
    users = [args for keyword, args in instructions if keyword == "USER"]
    assert users and users[-1].split(":")[0] not in ("root", "0")
    entrypoint = [args for keyword, args in instructions if keyword == "ENTRYPOINT"]
    assert [json.loads(e) for e in entrypoint] == [["gcsearch"]]
    volumes = [v for keyword, args in instructions if keyword == "VOLUME" for v in json.loads(args)]
    env = _env()
    storage, data = env["GCSEARCH_STORAGE"], env["GCSEARCH_DATA_DIR"]
    assert storage.startswith("sqlite:////") and str(Path(storage[len("sqlite:///"):]).parent) in volumes
    assert data in volumes
    docker = _section("Docker")
    assert "docker build" in docker and "--gpus all" in docker
    for volume in volumes:  # the README mounts every volume
        assert f":{volume}" in docker, volume


def test_run_and_report_read_the_image_environment_variables() -> None:
    import typer.main

    group = typer.main.get_command(app)
    for name in ("run", "report", "studies", "show"):
        params = {p.name: p for p in group.commands[name].params}
        assert params["storage"].envvar == "GCSEARCH_STORAGE", name
    run_params = {p.name: p for p in group.commands["run"].params}
    assert run_params["data_dir"].envvar == "GCSEARCH_DATA_DIR"


def test_the_environment_variables_take_effect(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    db = tmp_path / "hand.db"
    build_hand_study(db)
    monkeypatch.setenv("GCSEARCH_STORAGE", f"sqlite:///{db}")
    code, out, _ = _cli("studies", "--json")
    assert code == 0 and [s["name"] for s in json.loads(out)] == [STUDY]
    code, out, _ = _cli("report", "-f", "json")
    assert code == 0 and json.loads(out)["study"]["study"] == STUDY

    empty = tmp_path / "cifar-here"
    empty.mkdir()
    monkeypatch.setenv("GCSEARCH_STORAGE", f"sqlite:///{tmp_path / 'run.db'}")
    monkeypatch.setenv("GCSEARCH_DATA_DIR", str(empty))
    study = tmp_path / "c.toml"
    study.write_text('[space]\nratio = [4]\n[proxy]\ndataset = "cifar10"\n')
    code, _, err = _cli("run", "--study", str(study))
    assert code == 2 and f"{empty}/data_batch_1: missing cifar10 batch file" in err


def _readme_commands() -> list[str]:
    """The shell lines of the README's Quick start."""
    return [line for line in re.findall(r"```bash\n(.*?)```", _section("Quick start"), re.S)
            for line in line.strip().splitlines()]


def test_ci_runs_the_readme_test_command_verbatim_in_a_fresh_venv() -> None:
    main_command, test_command = _readme_commands()[:2]
    ci = (ROOT / ".ci" / "run").read_text()
    assert test_command in ci
    assert "python3 -m venv" in ci and "source \"$envs/$1/bin/activate\"" in ci
    # the main command, shortened to a few trials: the same run then report
    run, report = main_command.split(" && ")[1:]
    assert f'{run} --trials "$1"' in ci and report in ci
    for constraints in ("constraints.txt", "constraints-oldest.txt"):
        assert f"-c {constraints}" in ci and (ROOT / constraints).is_file()


def test_every_third_party_import_is_declared() -> None:
    """deptry compares gcsearch's imports with pyproject.toml: an import the package does not declare (click
    once) works on a developer's machine and breaks every fresh install."""
    import subprocess

    deptry = Path(sys.executable).with_name("deptry")
    result = subprocess.run([str(deptry), "."], cwd=ROOT, capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


def test_oldest_constraints_are_the_lower_bounds() -> None:
    pins = dict(line.split("==") for line in (ROOT / "constraints-oldest.txt").read_text().splitlines()
                if line and not line.startswith("#"))
    declared = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    for requirement in declared:
        match = re.match(r"([A-Za-z0-9_-]+)>=([^,;\s]+)", requirement)
        if match and match[1] not in ("torch", "tomli"):
            trim = re.compile(r"(\.0)+$")
            assert trim.sub("", pins[match[1].lower()]) == trim.sub("", match[2]), requirement


def test_a_wheel_built_from_a_clean_clone_carries_every_module_and_the_built_in_studies(tmp_path: Path) -> None:
    """gcsearch/studies is a link to ../studies: a wheel built from a fresh clone (only what git tracks) must hold
    the study files themselves, and every module of every subpackage."""
    if shutil.which("git") is None or not (ROOT / ".git").exists():
        pytest.skip("needs git and a git checkout")
    clone = tmp_path / "clone"
    subprocess.run(["git", "clone", "--quiet", str(ROOT), str(clone)], check=True, timeout=120)
    # Without a network (or a setuptools here), pip cannot build in isolation: build with this environment's.
    isolation = [] if importlib.util.find_spec("setuptools") is None else ["--no-build-isolation"]
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", *isolation, "--wheel-dir",
                    str(tmp_path / "dist"), str(clone)], check=True, timeout=300, capture_output=True)
    names = set(zipfile.ZipFile(next((tmp_path / "dist").glob("gcsearch-*.whl"))).namelist())
    studies = {Path(n).name for n in names if n.startswith("gcsearch/studies/") and n.endswith(".toml")}
    assert studies == {p.name for p in (clone / "studies").glob("*.toml")} and "placement.toml" in studies
    assert "gcsearch/studies/__init__.py" in names  # importlib.resources finds the built-in studies as a package
    modules = {str(p.relative_to(clone)) for p in (clone / "gcsearch").rglob("*.py") if "studies" not in p.parts}
    assert "gcsearch/model/blocks/pooling.py" in modules and modules <= names, sorted(modules - names)
