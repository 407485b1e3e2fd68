"""Safe by default: study files and specs are data, pickles only where CIFAR needs them and then restricted,
saved models only with weights_only=True, and a storage password never shown or stored."""

from __future__ import annotations

import ast
import contextlib
import json
import os
import pickle
import uuid
import warnings
from pathlib import Path

import numpy as np
import optuna
import pytest
from run_helpers import cli_output as _cli
from run_helpers import postgres_url_or_skip

import gcsearch
from gcsearch.errors import DataError
from gcsearch.training.config import ProxyConfig
from gcsearch.training.data import load_data

PACKAGE = Path(gcsearch.__file__).resolve().parent
PASSWORD = "s3cret"


def _calls(tree: ast.AST) -> list[tuple[str, ast.Call]]:
    """Every call in `tree` with its dotted callee name (`torch.load`, `eval`, `pickle.Unpickler`)."""
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Call):
            parts, func = [], node.func
            while isinstance(func, ast.Attribute):
                parts.append(func.attr)
                func = func.value
            if isinstance(func, ast.Name):
                parts.append(func.id)
                found.append((".".join(reversed(parts)), node))
    return found


def test_the_package_never_evaluates_or_unpickles_freely() -> None:
    sources = sorted(PACKAGE.rglob("*.py"))
    assert len(sources) > 20
    unsafe: list[str] = []
    torch_loads = 0
    for path in sources:
        tree = ast.parse(path.read_text(), filename=str(path))
        for name, call in _calls(tree):
            where = f"{path.relative_to(PACKAGE.parent)}:{call.lineno} {name}"
            if name in ("eval", "exec", "compile", "__import__", "pickle.load", "pickle.loads", "marshal.loads",
                        "yaml.load", "yaml.unsafe_load", "shelve.open", "dill.load", "joblib.load"):
                unsafe.append(where)
            if name == "torch.load":
                torch_loads += 1
                safe = any(k.arg == "weights_only" and isinstance(k.value, ast.Constant) and k.value.value is True
                           for k in call.keywords)
                if not safe:
                    unsafe.append(f"{where} without weights_only=True")
            if name.endswith("np.load") or name.endswith("numpy.load"):
                if any(k.arg == "allow_pickle" and not (isinstance(k.value, ast.Constant) and k.value.value is False)
                       for k in call.keywords):
                    unsafe.append(f"{where} with allow_pickle")
        # The only Unpickler is CIFAR's restricted one, and it overrides find_class.
        for node in ast.walk(tree):
            if isinstance(node, ast.ClassDef) and any(ast.unparse(b) == "pickle.Unpickler" for b in node.bases):
                assert any(isinstance(f, ast.FunctionDef) and f.name == "find_class" for f in node.body), node.name
    assert unsafe == []
    # model/weights.py reads kept, exported and pretrained weights; training/folder.py its decoded-image cache.
    assert torch_loads == 2


class _Payload:
    def __reduce__(self):  # noqa: ANN204 - what a malicious pickle does: call any function with any argument
        return (os.system, ("touch pwned",))


def _batches(root: Path, protocol: int, payload: object | None = None) -> None:
    rng = np.random.default_rng(0)
    root.mkdir(parents=True, exist_ok=True)
    for i in range(1, 6):
        batch = {b"batch_label": b"x", b"labels": [int(v) for v in rng.integers(0, 10, 20)],
                 b"data": rng.integers(0, 256, (20, 3072), dtype=np.uint8), b"filenames": [b"x.png"] * 20}
        if payload is not None and i == 3:
            batch[b"extra"] = payload
        (root / f"data_batch_{i}").write_bytes(pickle.dumps(batch, protocol=protocol))
    (root / "batches.meta").write_bytes(pickle.dumps({b"label_names": [b"c%d" % i for i in range(10)]}, protocol))


@pytest.mark.parametrize("protocol", [2, 3, 4, 5])
def test_cifar_batches_load_through_the_restricted_unpickler(tmp_path: Path, protocol: int) -> None:
    _batches(tmp_path, protocol)
    data = load_data(ProxyConfig(dataset="cifar10", data_dir=str(tmp_path), train_size=60, val_size=20), "cpu")
    assert (data.train_size, data.val_size, data.num_classes) == (60, 20, 10)


def test_a_cifar_file_that_would_run_code_is_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    _batches(tmp_path / "cifar", 2, payload=_Payload())
    refused = r"data_batch_3: not a CIFAR python batch \(refusing to load (posix|os)\.system"
    with pytest.raises(DataError, match=refused):
        load_data(ProxyConfig(dataset="cifar10", data_dir=str(tmp_path / "cifar")), "cpu")
    assert not (tmp_path / "pwned").exists()


def test_study_files_and_specs_are_data_not_code(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    study = tmp_path / "evil.toml"
    study.write_text('name = "__import__(\'os\').system(\'touch pwned\')"\n[space]\nratio = [4]\n')
    code, _, err = _cli("run", "--study", str(study), "--storage", f"sqlite:///{tmp_path}/no/x.db")
    assert code == 2 and "evil.toml:name: expected a name" in err
    spec = tmp_path / "evil.json"
    spec.write_text(json.dumps({"__class__": "os.system", "block": "__import__('os').system('touch pwned')"}))
    code, _, err = _cli("inspect", "--spec", str(spec))
    assert code == 2 and "__class__: unknown field" in err
    assert not (tmp_path / "pwned").exists()


# -- a password in the storage URL ---------------------------------------------------------------------------


def test_an_unreachable_url_never_shows_its_password(tmp_path: Path) -> None:
    url = f"postgresql+psycopg://gc:{PASSWORD}@127.0.0.1:1/gc"
    (tmp_path / "s.toml").write_text('[space]\nratio = [4]\n[proxy]\nimage_size = 8\n')
    for args in (["run", "--study", str(tmp_path / "s.toml")], ["report"], ["studies"], ["show", "0"]):
        code, out, err = _cli(*args, "--storage", url)
        assert code == 1 and PASSWORD not in out + err and "gc:***@127.0.0.1:1/gc" in err, (args, out, err)


@pytest.fixture
def postgres_with_password() -> str:
    url = postgres_url_or_skip()
    from sqlalchemy.engine import make_url

    parsed = make_url(url)
    if parsed.password:  # the server checks it: keep the real one, and look for it below
        return url
    # The test server trusts local connections, so any password is accepted: add one to look for.
    return parsed.set(password=PASSWORD).render_as_string(hide_password=False)


def test_a_password_never_reaches_output_reports_or_the_database(tmp_path: Path, postgres_with_password: str) -> None:
    from sqlalchemy.engine import make_url

    url = postgres_with_password
    secret = make_url(url).password
    assert secret and secret in url
    name = f"secret-{uuid.uuid4().hex[:12]}"
    (tmp_path / "s.toml").write_text(f'name = "{name}"\nbackbone = "proxy"\nwidth = 4\nsampler = "grid"\n'
                                     '[space]\nratio = [2, 4]\n[budget]\nbaseline_repeats = 1\n'
                                     '[proxy]\nimage_size = 8\ntrain_size = 64\n'
                                     'val_size = 32\nepochs = 1\nbatch_size = 32\n')
    texts: list[str] = []
    try:
        for args in (["run", "--study", str(tmp_path / "s.toml"), "--quiet"],
                     ["run", "--study", str(tmp_path / "s.toml"), "--json", "--trials", "4"],
                     ["studies"], ["studies", "--json"], ["show", "0", "--study", name, "--json"],
                     ["show", "1", "--study", name],
                     *(["report", "--study", name, "--all", "-f", fmt] for fmt in
                       ("table", "csv", "json", "markdown", "latex")),
                     ["report", "--study", name, "-f", "json", "-o", str(tmp_path / "r.json")],
                     ["report", "--study", name, "--study", "nosuch"]):
            code, out, err = _cli(*args, "--storage", url)
            assert code in (0, 2), (args, out, err)
            texts += [out, err]
        texts.append((tmp_path / "r.json").read_text())
        assert "***" in "".join(texts)  # the URL was shown, masked
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            study = optuna.load_study(study_name=name, storage=url)
        stored = [study.user_attrs, study._storage.get_study_system_attrs(study._study_id)] + [
            [t.user_attrs, t.system_attrs, t.params] for t in study.get_trials()]
        texts.append(json.dumps(stored, default=str))
        assert len(study.get_trials()) == 3
        leaks = [t for t in texts if secret in t]
        assert leaks == []
    finally:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            with contextlib.suppress(KeyError):
                optuna.delete_study(study_name=name, storage=url)
