"""The Optuna study behind `lorastack train --search`: where it is kept, what it is called,
and how workers on several machines share it without running a trial twice.

The study lives in an RDB storage: the lorastack database by default (SQLite under
`$LORASTACK_HOME`, or `LORASTACK_DATABASE_URL`), or any SQLAlchemy URL; processes pointing
at one PostgreSQL database with one study name share its trials. The storage numbers every
trial of a study once, under a lock, so a trial number is a claim no other worker holds:
the search's total is counted from those numbers, and each trial's random draws come from
the seed and its number, so that workers started with one seed still draw differently.
"""

from __future__ import annotations

import hashlib
import json
import socket
import time
import warnings
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import optuna
import tenacity
from optuna.distributions import BaseDistribution
from optuna.exceptions import ExperimentalWarning
from optuna.samplers import BaseSampler, TPESampler
from optuna.storages import BaseStorage, InMemoryStorage, RDBStorage
from optuna.trial import FrozenTrial, TrialState
from sqlalchemy.exc import IntegrityError, OperationalError, ProgrammingError, SQLAlchemyError

from lorastack.db.engine import connect_url, display_url
from lorastack.errors import DatabaseError
from lorastack.progress import Progress
from lorastack.train.config import ConfigError, TrainConfig

# A worker that dies mid-trial stops beating; after the grace period the next worker to
# look marks its trial failed, so that the study's total is made up by a trial that runs.
HEARTBEAT_S = 30
GRACE_S = 120
WAIT_POLL_S = 2.0
SQLITE_TIMEOUT_S = 30  # several workers and each one's heartbeat thread write to one file

# Trial user attributes.
RUN = "run"
"""The trial's run folder (absolute path on the machine that trained it)."""
HOST = "host"
SURPLUS = "surplus"
"""Set on a trial created after the study already had its total (two workers asked for the
last one at once); it is failed at once, trains nothing and counts for nothing."""
FINGERPRINT = "lorastack_fingerprint"
"""Study user attribute: what the study searches (config, data, rank limit)."""
SPACE_VERSION = 1
"""Bumped when the search space changes, so that old studies are not continued with it."""

_COUNTED = (TrialState.COMPLETE, TrialState.PRUNED, TrialState.RUNNING)


def open_storage(url: str | None) -> BaseStorage:
    """The storage at `url` (a SQLAlchemy URL), or an in-memory one for None."""
    if url is None:
        return InMemoryStorage()
    parsed = connect_url(url)
    engine_kwargs: dict[str, Any] = (
        {"connect_args": {"timeout": SQLITE_TIMEOUT_S}}
        if parsed.get_backend_name() == "sqlite"
        else {"pool_pre_ping": True, "connect_args": {"connect_timeout": 10}}
    )
    try:
        return _rdb_storage(parsed.render_as_string(hide_password=False), engine_kwargs)
    except SQLAlchemyError as error:
        cause = getattr(error, "orig", None) or error
        first = (str(cause).strip().splitlines() or [type(cause).__name__])[0]
        raise DatabaseError(f"study storage {display_url(url)}: {first}") from error


def _lost_the_race(error: BaseException) -> bool:
    if isinstance(error, IntegrityError | ProgrammingError):
        return True
    return isinstance(error, OperationalError) and "locked" in str(error)


# Workers starting together race to create Optuna's tables (PostgreSQL answers the loser
# with a duplicate key in its catalogue, SQLite with a lock): the loser's next attempt
# finds them made.
@tenacity.retry(
    retry=tenacity.retry_if_exception(_lost_the_race),
    stop=tenacity.stop_after_attempt(5),
    wait=tenacity.wait_random(0.1, 1.0),
    reraise=True,
)
def _rdb_storage(url: str, engine_kwargs: dict[str, Any]) -> RDBStorage:
    with _quiet():
        return RDBStorage(
            url,
            engine_kwargs=engine_kwargs,
            heartbeat_interval=HEARTBEAT_S,
            grace_period=GRACE_S,
        )


def config_fingerprint(config: TrainConfig, data_sha256: str, max_rank: int) -> str:
    """What a study searches, as a hash: the resolved config (not where its data was read
    from), the prepared data's hash, the rank limit and the search space's version."""
    described = {k: v for k, v in config.to_dict().items() if k != "data"}
    blob = {"config": described, "data": data_sha256, "max_rank": max_rank}
    text = json.dumps({**blob, "space": SPACE_VERSION}, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()


def default_study_name(domain: str, fingerprint: str) -> str:
    """`<domain>-<12 hex>`: the same on every machine with the same config and data."""
    return f"{domain}-{fingerprint[:12]}"


def open_study(
    storage: BaseStorage, name: str, fingerprint: str, sampler: BaseSampler, pruner: Any
) -> optuna.Study:
    """Create the study or join it; refuse one made for another config or data."""
    try:
        study = optuna.create_study(
            storage=storage,
            study_name=name,
            direction="minimize",
            sampler=sampler,
            pruner=pruner,
            load_if_exists=True,
        )
        found = study.user_attrs.get(FINGERPRINT)
        if found is None:
            study.set_user_attr(FINGERPRINT, fingerprint)
    except SQLAlchemyError as error:
        raise DatabaseError(f"study {name}: {error}") from error
    if found not in (None, fingerprint):
        raise ConfigError(
            f"study {name} searches another config, data set or rank limit; "
            "pick another --study (or leave it out: the default name follows the config)"
        )
    return study


class TrialSeededTPE(BaseSampler):
    """Optuna's TPE sampler whose random draws for a trial depend on the seed and the
    trial's number alone.

    One `TPESampler(seed=s)` per process would make every worker started with seed s draw
    the same first trials; here trial n draws from a TPE sampler seeded from (s, n), and
    the storage gives each trial a number no other worker has. One seed still reproduces a
    search run by one worker. `constant_liar`: trials under way in other workers count as
    poor results, so that TPE does not suggest their neighbourhood again meanwhile.
    """

    def __init__(self, seed: int | None, n_startup_trials: int) -> None:
        self._seed = seed
        self._startup = n_startup_trials
        self._by_trial: dict[int, TPESampler] = {}

    def _tpe(self, trial: FrozenTrial) -> TPESampler:
        sampler = self._by_trial.get(trial.number)
        if sampler is None:
            seed = None if self._seed is None else trial_seed(self._seed, trial.number)
            sampler = TPESampler(seed=seed, n_startup_trials=self._startup, constant_liar=True)
            self._by_trial[trial.number] = sampler
        return sampler

    def infer_relative_search_space(
        self, study: optuna.Study, trial: FrozenTrial
    ) -> dict[str, BaseDistribution]:
        return self._tpe(trial).infer_relative_search_space(study, trial)

    def sample_relative(
        self, study: optuna.Study, trial: FrozenTrial, search_space: dict[str, BaseDistribution]
    ) -> dict[str, Any]:
        return self._tpe(trial).sample_relative(study, trial, search_space)

    def sample_independent(
        self,
        study: optuna.Study,
        trial: FrozenTrial,
        param_name: str,
        param_distribution: BaseDistribution,
    ) -> Any:
        return self._tpe(trial).sample_independent(study, trial, param_name, param_distribution)

    def before_trial(self, study: optuna.Study, trial: FrozenTrial) -> None:
        self._tpe(trial).before_trial(study, trial)

    def after_trial(
        self,
        study: optuna.Study,
        trial: FrozenTrial,
        state: TrialState,
        values: Sequence[float] | None,
    ) -> None:
        sampler = self._by_trial.pop(trial.number, None)
        if sampler is not None:
            sampler.after_trial(study, trial, state, values)


def trial_seed(seed: int, number: int) -> int:
    """A 32-bit seed for trial `number` of a search seeded with `seed`."""
    digest = hashlib.sha256(f"{seed}:{number}".encode()).digest()
    return int.from_bytes(digest[:4], "big")


def claimed(study: optuna.Study, below: int | None = None) -> int:
    """Trials that count towards the search's total: finished (complete or pruned) or
    under way, and not surplus; with `below`, only those numbered lower."""
    return sum(
        1
        for trial in study.get_trials(deepcopy=False, states=_COUNTED)
        if not trial.user_attrs.get(SURPLUS) and (below is None or trial.number < below)
    )


def is_surplus(trial: optuna.Trial, total: int) -> bool:
    """Whether `total` trials numbered lower already count: then this one, created by a
    worker that asked at the same moment as another, is one too many."""
    return claimed(trial.study, below=trial.number) >= total


def wait_for_other_workers(study: optuna.Study, progress: Progress) -> None:
    """Until no trial of the study is under way: every worker then reports the same best.

    A trial whose worker died is failed once its heartbeat is older than the grace period.
    """
    shown = False
    while True:
        with _quiet():
            optuna.storages.fail_stale_trials(study)
        running = [
            t
            for t in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,))
            if not t.user_attrs.get(SURPLUS)
        ]
        if not running:
            return
        if not shown:
            where = ", ".join(f"{display_number(t)} on {t.user_attrs.get(HOST)}" for t in running)
            progress.step(f"waiting for the other workers' trials: {where}")
            shown = True
        time.sleep(WAIT_POLL_S)


def display_number(trial: FrozenTrial | optuna.Trial) -> str:
    """`trial-N`, 1-based like the trial folders (Optuna numbers from 0)."""
    return f"trial-{trial.number + 1}"


def this_host() -> str:
    return socket.gethostname()


@contextmanager
def _quiet() -> Iterator[None]:
    # Heartbeats and failing stale trials are marked experimental in Optuna 5; what
    # lorastack uses of them is the documented behaviour, so the warning says nothing here.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ExperimentalWarning)
        yield
