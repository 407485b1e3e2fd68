"""The paired design's starts: for each seed, the block-less network trained once from scratch, from which every
candidate of that seed fine-tunes (`[proxy] start = "baseline"`, see `training/config.py`).

A start is an ordinary Optuna trial of the study `gcsearch-starts` in the same storage, keyed by what makes it
(the block-less backbone, classes and channels, the proxy it is trained with, the seed), so every study in the
storage with the same backbone, proxy and seed shares it, and its weights are kept in the artifact store like
any trial's. Workers on any machine agree through the database:

- under a storage-wide lock named after the key, a worker finds the start COMPLETE (it loads it), RUNNING
  (it waits, polling; should the trainer's heartbeat stop, Optuna fails that trial and the next worker to look
  trains it), or absent (it creates the trial, RUNNING with a heartbeat, and trains it after the lock is
  released). So a start is trained by one worker at a time and never twice once it exists;
- a start interrupted by Ctrl-C or SIGTERM is recorded as failed, and the next worker that needs it trains it;
- a start whose loss diverged would diverge again: every candidate of its seed fails as diverged;
- a start whose weights can no longer be read (its artifact folder deleted or out of this machine's reach) is
  trained again, once, and the newest readable one is used from then on.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from dataclasses import dataclass
from typing import Any

import optuna
from optuna.trial import TrialState

from gcsearch.contract import (
    DIVERGED,
    ERROR,
    INTERRUPTED,
    STARTS_KIND,
    STARTS_STUDY,
    STUDY_META,
    Attr,
    fail_reason,
    is_final_failure,
)
from gcsearch.errors import InputError
from gcsearch.run.heartbeat import heartbeat
from gcsearch.run.optuna_access import claim_waiting, record_heartbeat, trial_id
from gcsearch.run.progress import Reporter
from gcsearch.run.setup import Run
from gcsearch.run.signals import sigint_ignored
from gcsearch.space import ArchSpec
from gcsearch.storage.artifacts import keep_weights, trial_weights
from gcsearch.storage.writer import exclusive


class StartDiverged(RuntimeError):
    """The start of a seed diverged; its message is the candidate's fail reason ("diverged: ...")."""


@dataclass(frozen=True)
class Start:
    """A trained start: where it is stored, how good it is, its weights."""

    trial: int  # its number in the starts study
    seed: int
    accuracy: float
    sha256: str
    state_dict: Any  # dict[str, torch.Tensor]
    file: str | None = None  # a pretrained start (`start = "weights"`): the file's name; no trial, no accuracy

    def record(self) -> dict[str, Any]:
        """What a candidate's trial keeps of its start (`Attr.START`)."""
        if self.file is not None:
            return {"file": self.file, "seed": self.seed, "sha256": self.sha256}
        return {"study": STARTS_STUDY, "trial": self.trial, "seed": self.seed, "accuracy": self.accuracy,
                "sha256": self.sha256}


def start_key(run: Run, spec: ArchSpec, seed: int) -> str:
    """The start's identity: equal for every study whose candidates can share it."""
    what = {"spec": spec.baseline.key, "classes": run.data.num_classes, "channels": run.data.in_chans,
            "proxy": run.spec.proxy.start_proxy().fingerprint(), "seed": seed}
    return hashlib.sha1(json.dumps(what, sort_keys=True).encode()).hexdigest()[:16]


def obtain_start(run: Run, spec: ArchSpec, seed: int, reporter: Reporter) -> Start:
    """The start of `seed` for `spec`'s backbone: loaded when it exists, else trained here or waited for."""
    key = start_key(run, spec, seed)
    known = (str(run.options.storage), key)
    if known in _KNOWN:  # a finished start never changes: this process has read it already
        return _KNOWN[known]
    study = _starts_study(run.storage)
    waited = False
    while True:
        with exclusive(run.storage, f"gcsearch: start {key}"):
            mine = [t for t in study.get_trials(deepcopy=False) if t.user_attrs.get(Attr.START_KEY) == key]
            done = [t for t in mine if t.state == TrialState.COMPLETE]
            for finished in reversed(done):  # the newest whose weights can still be read
                try:
                    _KNOWN[known] = _load(run, finished, seed)
                    return _KNOWN[known]
                except InputError as exc:
                    if not waited:
                        reporter.note(f"seed {seed}: its start (trial {finished.number} of {STARTS_STUDY}) cannot "
                                      f"be used ({exc}); training it again")
                        waited = True
            failed = [t for t in mine if is_final_failure(t)]
            if failed:
                raise StartDiverged(fail_reason(DIVERGED, f"the start of seed {seed} diverged (trial "
                                                          f"{failed[0].number} of {STARTS_STUDY})"))
            running = [t for t in mine if t.state == TrialState.RUNNING]
            trial = None if running else _claim(study, key, seed)
        if trial is not None:
            _KNOWN[known] = _train(run, study, trial, spec, seed, reporter)
            return _KNOWN[known]
        if not waited:
            reporter.note(f"seed {seed}: waiting for another worker to train its start (trial "
                          f"{running[0].number} of {STARTS_STUDY})")
            waited = True
        time.sleep(run.options.poll_s)
        optuna.storages.fail_stale_trials(study)  # a trainer that died: its trial fails, the next look trains


_KNOWN: dict[tuple[str, str], Start] = {}  # finished starts this process loaded or trained: (storage, key)
_PRETRAINED: dict[str, Any] = {}  # this process's pretrained file, read once: {"key", "sha", "state", "said"}


def pretrained_start(run: Run, spec: ArchSpec, seed: int, reporter: Reporter | None = None) -> Start:
    """`start = "weights"`: the pretrained file mapped onto the backbone of `spec`, its classifier (when the
    classes differ) drawn from `seed`, so every candidate of a seed starts alike. Refused with one line
    (exit 2) when the file does not fit the backbone."""
    from gcsearch.model.pretrained import map_pretrained, read_state_dict
    from gcsearch.training.config import weights_sha256

    path = str(run.spec.proxy.weights)
    stat = os.stat(os.path.expanduser(path))
    key = (path, stat.st_size, stat.st_mtime_ns)  # read and hashed once per process, unless the file changes
    if _PRETRAINED.get("key") != key:
        _PRETRAINED.update(key=key, sha=weights_sha256(path), state=read_state_dict(path), said=False)
    sha = _PRETRAINED["sha"]
    name = os.path.basename(path)
    mapped = map_pretrained(spec.baseline, _PRETRAINED["state"], run.data.num_classes,
                            in_chans=run.data.in_chans, name=name, seed=seed)
    if reporter is not None and mapped.message and not _PRETRAINED["said"]:
        reporter.note(f"{name}: {mapped.message}")
        _PRETRAINED["said"] = True
    return Start(trial=-1, seed=seed, accuracy=float("nan"), sha256=sha, state_dict=mapped.state_dict,
                 file=name)


def _starts_study(storage: optuna.storages.BaseStorage) -> optuna.Study:
    try:
        study = optuna.create_study(study_name=STARTS_STUDY, storage=storage, direction="maximize")
    except optuna.exceptions.DuplicatedStudyError:
        return optuna.load_study(study_name=STARTS_STUDY, storage=storage)
    study.set_user_attr(STUDY_META, {"kind": STARTS_KIND, "description": "the trained starts of paired studies: "
                                     "one block-less network per backbone, proxy and seed"})
    return study


def _claim(study: optuna.Study, key: str, seed: int) -> optuna.Trial:
    """A RUNNING trial for the start, with its first heartbeat written (inside the caller's lock): a copy that
    Optuna queued when an earlier trainer's heartbeat stopped, else a new one."""
    trial = claim_waiting(study, accept=lambda frozen: frozen.user_attrs.get(Attr.START_KEY) == key)
    if trial is not None:
        return trial
    with sigint_ignored():
        trial = study.ask()
        record_heartbeat(study, trial)
        trial.set_user_attr(Attr.START_KEY, key)
        trial.set_user_attr(Attr.SEED, seed)
    return trial


def _train(run: Run, study: optuna.Study, trial: optuna.Trial, spec: ArchSpec, seed: int,
           reporter: Reporter) -> Start:
    from gcsearch.run.trial import cpu_threads, versions

    baseline = spec.baseline
    proxy = run.spec.proxy.start_proxy()
    reporter.start_training(seed, proxy.epochs)
    with heartbeat(run.storage, trial_id(trial), run.options.heartbeat):
        try:
            run.functions.seed(seed)
            model = run.functions.build(baseline, num_classes=run.data.num_classes, in_chans=run.data.in_chans)
            result = run.functions.train(model, run.data, proxy, seed=seed, device=run.device,
                                      on_step=reporter.step)
            info = {"study": STARTS_STUDY, "trial": trial.number, "image_size": run.data.image_size,
                    "mean": list(run.data.mean), "std": list(run.data.std), "dataset": run.data.name}
            content = run.functions.weights(model, baseline, num_classes=run.data.num_classes,
                                         in_chans=run.data.in_chans, info=info)
            kept = keep_weights(run.artifacts, trial, content)
            for name, value in {Attr.SPEC: baseline.to_dict(), Attr.KEY: baseline.key,
                                Attr.LABEL: f"start of seed {seed}", Attr.DEVICE: run.device_name,
                                Attr.THREADS: cpu_threads(), Attr.VERSIONS: versions(),
                                Attr.ACCURACY: float(result.accuracy),
                                Attr.ACCURACIES: [float(a) for a in result.accuracies],
                                Attr.TRAIN_SECONDS: float(result.train_seconds), Attr.EPOCHS: int(result.epochs),
                                Attr.WEIGHTS: kept}.items():
                trial.set_user_attr(name, value)
            study.tell(trial, float(result.accuracy))
        except KeyboardInterrupt:
            _fail(study, trial, fail_reason(INTERRUPTED))
            raise
        except Exception as exc:
            from gcsearch.training.loop import Diverged

            detail = str(exc).strip().splitlines()[0][:500] if str(exc).strip() else type(exc).__name__
            if isinstance(exc, Diverged):
                _fail(study, trial, str(exc))
                raise StartDiverged(fail_reason(DIVERGED, f"the start of seed {seed} diverged ({detail})")) from None
            _fail(study, trial, fail_reason(ERROR, f"{type(exc).__name__}: {detail}"))
            raise
    reporter.start_ready(seed, float(result.accuracy), float(result.train_seconds))
    state = {k: v.detach().to("cpu").clone() for k, v in model.state_dict().items()}
    return Start(trial=trial.number, seed=seed, accuracy=float(result.accuracy), sha256=kept["sha256"],
                 state_dict=state)


def _fail(study: optuna.Study, trial: optuna.Trial, reason: str) -> None:
    with sigint_ignored():
        try:
            trial.set_user_attr(Attr.FAIL_REASON, reason)
            study.tell(trial, state=TrialState.FAIL, skip_if_finished=True)
        except Exception:  # noqa: BLE001 - the storage may be what failed; the heartbeat tells the next worker
            pass


def _load(run: Run, trial: optuna.trial.FrozenTrial, seed: int) -> Start:
    content, _ = trial_weights(trial.user_attrs, trial.number)
    state = run.functions.read_state(content)
    return Start(trial=trial.number, seed=seed, accuracy=float(trial.user_attrs.get(Attr.ACCURACY, float("nan"))),
                 sha256=str(trial.user_attrs[Attr.WEIGHTS].get("sha256", "")), state_dict=state)
