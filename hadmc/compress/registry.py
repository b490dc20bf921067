"""The compression-pass registry: every operator the agents choose is one ``CompressionPass``.

A pass declares, in one class:

- its head: ``kind`` (categorical over ``choices(runtime)``, or a Gaussian of ``dims``) and
  whether the runtime offers it at all (``offered``);
- when it acts: ``per_group`` passes decide at every start of one of their ``units`` (a group
  each, or a precision stage of several groups) and hold a value per group; the others decide
  once, at the last step, and hold one value per episode;
- how a raw action decodes (``decode``, then ``refine`` once the step's other choices are
  known), how its stored JSON value parses (``parse``), and what uniform configurations and
  runtimes without the head use (``default_choice``);
- what it adds to the observation (``features``), to Optuna's space (``suggest``) and to the
  report's action plots (``plot_series``);
- how it applies to the candidate (``apply``) in its ``phase`` of the pipeline: ``model``
  (replace the student model), ``finetune`` (set ``DistillConfig`` fields) or ``export`` (set
  exporter keyword arguments).

Registration (Olive's model): a subclass registers itself by being defined
(``__init_subclass__``); ``register=False`` keeps it out, e.g. for a pass a caller passes in
explicitly (Torch-Pruning's model: ``passes=(*default_passes(), MyPass())`` at the call site).
The built-in passes live one per module in ``hadmc.compress.passes``; ``default_passes()``
imports every module there, so a new built-in operator is one new module. ``order`` fixes the
head order of the policy and, within a phase, the pipeline order.

Torch-free on purpose: the report imports this to lay out its plots without loading torch;
passes import their torch implementations inside ``apply`` / ``choices``.
"""

from __future__ import annotations

import functools
import importlib
import pkgutil
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar

PHASES = ("model", "finetune", "export")  # pipeline order of build_candidate
HEAD_KINDS = ("categorical", "gaussian")  # as hadmc.rl.policy.HeadSpec


@dataclass
class StepContext:
    """What ``refine`` may read at one environment step."""

    step: int
    runtime: str
    history: Mapping[str, Sequence[Any]]  # per-group values decided before this step, by pass
    current: Mapping[str, Any]  # this step's decoded per-group values, by pass
    bounds: Mapping[str, Callable[..., Any]]  # action bounds by pass name (AMC), e.g. pruning


@dataclass
class Build:
    """The candidate being built, as passes see it (``hadmc.search.candidate.build_candidate``).

    A ``model`` pass replaces ``student`` with a new module and never changes one in place:
    ``teacher`` is the user's model, and ``student`` starts as that same object.
    """

    teacher: Any  # torch.nn.Module
    student: Any  # torch.nn.Module
    data: Any  # hadmc.data.DataSplits
    groups: Sequence[Any]  # hadmc.compress.pruning.LayerGroup
    example: Any  # torch.Tensor, one input
    runtime: str
    finetune: dict[str, Any] = field(default_factory=dict)  # DistillConfig fields
    export: dict[str, Any] = field(default_factory=lambda: {"precision": "fp32"})  # exporter kwargs


@dataclass(frozen=True)
class Feature:
    """One observation feature of a per-group pass's choices so far, in [0, 1].

    ``compute(values_so_far, macs_share)``: ``macs_share[i]`` is group i's share of the group
    MACs. ``slot`` orders features across passes: the built-ins' slots (1-3) keep the layout
    the policy defaults were tuned on; a new pass's features come after them.
    """

    name: str
    compute: Callable[[Sequence[Any], Sequence[float]], float]
    slot: int = 100


@dataclass
class Series:
    """One panel of the report's action plot: a histogram when numeric, else counts."""

    title: str
    values: list[Any]
    numeric: bool


def _is_number(v: Any) -> bool:
    return isinstance(v, int | float) and not isinstance(v, bool)


_REGISTRY: dict[str, type[CompressionPass]] = {}


class CompressionPass:
    """One compression operator as one agent head (see the module docstring)."""

    name: ClassVar[str]  # head name and key in the stored actions
    order: ClassVar[int] = 100
    kind: ClassVar[str] = "categorical"
    dims: ClassVar[int] = 1  # Gaussian heads: raw dimensions
    per_group: ClassVar[bool] = True
    phase: ClassVar[str] = "model"
    default_choice: ClassVar[Any] = None
    init_mean: ClassVar[tuple[float, ...] | None] = None  # Gaussian: PPO's initial raw mean
    optuna_name: ClassVar[str] = ""  # Optuna parameter name (default: ``name``)
    timing: ClassVar[str] = ""  # model phase: timings_s key without "_s" (default: ``name``)
    plot_label: ClassVar[str] = ""  # report panel title after "name: "
    plot_fields: ClassVar[Mapping[str, str]] = {}  # dict values: field -> panel label

    def __init_subclass__(cls, register: bool = True, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if register and not (isinstance(cls.__dict__.get("name"), str) and cls.name):
            raise TypeError(f"{cls.__qualname__}: a registered pass needs its own name = '...'")
        if cls.kind not in HEAD_KINDS or cls.phase not in PHASES:
            raise TypeError(f"{cls.__qualname__}: kind in {HEAD_KINDS}, phase in {PHASES}")
        if register:
            old = _REGISTRY.get(cls.name)
            if old is not None and old.__qualname__ != cls.__qualname__:
                raise ValueError(f"pass name {cls.name!r} taken by {old.__qualname__}")
            _REGISTRY[cls.name] = cls

    # -- the head ----------------------------------------------------------------------------
    def offered(self, runtime: str) -> bool:
        """Whether the head exists on ``runtime``; if not, ``default_choice`` is used."""
        return True

    def choices(self, runtime: str) -> tuple[Any, ...]:
        """Categorical heads: the value of each head index."""
        raise NotImplementedError(f"{self.name}: categorical passes define choices()")

    def size(self, runtime: str) -> int:
        """Number of choices (categorical) or raw dimensions (Gaussian): ``HeadSpec.size``."""
        return len(self.choices(runtime)) if self.kind == "categorical" else self.dims

    def units(self, n_groups: int, runtime: str) -> list[int]:
        """Per-group passes: the decision unit of every group (contiguous); the head acts at
        each unit's first group and the unit's other groups repeat that choice."""
        return list(range(n_groups))

    def decode(self, raw: Any, runtime: str) -> Any:
        """Raw head output -> the value of one decision (a group's, or the episode's)."""
        return self.choices(runtime)[int(raw)]

    def refine(self, value: Any, ctx: StepContext) -> Any:
        """Per-group passes: adjust a decoded value once the step's other choices are known."""
        return value

    # -- values ------------------------------------------------------------------------------
    def parse(self, stored: Any) -> Any:
        """Stored JSON value -> the value (types normalised, so equal configurations give the
        same canonical JSON and the same cache key)."""
        return list(stored) if self.per_group else stored

    def uniform(self, n_groups: int, choice: Any) -> Any:
        """The value with ``choice`` everywhere (every group, or the episode)."""
        return self.parse([choice] * n_groups if self.per_group else choice)

    def default(self, n_groups: int) -> Any:
        return self.uniform(n_groups, self.default_choice)

    # -- search and report -------------------------------------------------------------------
    def features(self) -> tuple[Feature, ...]:
        """Observation features of this (per-group) pass's choices so far."""
        return ()

    def suggest(self, trial: Any, runtime: str, units: Sequence[int] | None) -> Any:
        """``--strategy optuna``: one categorical parameter per decision unit (or one per
        episode), named ``optuna_name`` (+ ``_<unit>``). A Gaussian head has no generic
        range, so it stays at ``default_choice`` unless the pass overrides this."""
        n = len(units or ())
        if self.kind != "categorical" or not self.offered(runtime):
            return self.default(n)
        pname, options = self.optuna_name or self.name, self.choices(runtime)
        if not self.per_group:
            return self.parse(trial.suggest_categorical(pname, options))
        units = list(units or ())
        per_unit = {
            u: trial.suggest_categorical(f"{pname}_{u}", options) for u in sorted(set(units))
        }
        return self.parse([per_unit[u] for u in units])

    def plot_series(self, stored: Sequence[Any]) -> list[Series]:
        """The report's panels for this pass, from every candidate's stored value."""
        if self.plot_fields:
            dicts = [v for v in stored if isinstance(v, Mapping)]
            default = self.default_choice or {}
            return [
                Series(f"{self.name}: {label}", [d[k] for d in dicts if k in d],
                       _is_number(default.get(k)))
                for k, label in self.plot_fields.items()
            ]  # fmt: skip
        label = self.plot_label or "value"
        if self.per_group:
            values = [x for v in stored if isinstance(v, list) for x in v]
            title = f"{self.name}: {label} (all groups)"
        else:
            values, title = list(stored), f"{self.name}: {label}"
        numeric = _is_number(self.default_choice)
        return [Series(title, [float(x) for x in values] if numeric else values, numeric)]

    # -- the pipeline ------------------------------------------------------------------------
    def apply(self, value: Any, build: Build) -> None:
        """Apply this pass's value to ``build`` in its ``phase`` (see ``Build``)."""
        raise NotImplementedError(f"{self.name}: passes define apply()")


def registered() -> dict[str, type[CompressionPass]]:
    """Every registered pass class by name (the built-ins once ``default_passes`` ran)."""
    _import_builtins()
    return dict(_REGISTRY)


@functools.cache
def _import_builtins() -> None:
    # Imported by name at run time, not by a static import: a new module in the folder needs
    # no line anywhere else. Once per process (the passes register as their modules load).
    from hadmc.compress import passes

    for info in pkgutil.iter_modules(passes.__path__):
        importlib.import_module(f"{passes.__name__}.{info.name}")


def default_passes() -> tuple[CompressionPass, ...]:
    """One instance of every registered pass, in ``order``."""
    return resolve_passes([cls() for cls in registered().values()])


def resolve_passes(passes: Sequence[CompressionPass] | None = None) -> tuple[CompressionPass, ...]:
    """``passes`` (default: ``default_passes()``) checked for unique names, in ``order``."""
    if passes is None:
        return default_passes()
    names = [p.name for p in passes]
    if len(set(names)) != len(names):
        raise ValueError(f"pass names must be unique, got {names}")
    return tuple(sorted(passes, key=lambda p: (p.order, p.name)))


def action_series(
    actions: Sequence[Mapping[str, Any]], passes: Sequence[CompressionPass] | None = None
) -> list[Series]:
    """Panels of the report's action plot: every pass of ``passes`` (default: the registry),
    then any other key found in the stored actions (a pass given at a call site), inferred."""
    out: list[Series] = []
    known = resolve_passes(passes)
    for p in known:
        out += p.plot_series([a[p.name] for a in actions if p.name in a])
    names = {p.name for p in known}
    extra = sorted({k for a in actions for k in a} - names)
    for k in extra:
        stored = [a[k] for a in actions if k in a]
        flat = [x for v in stored for x in (v if isinstance(v, list) else [v])]
        if all(isinstance(v, Mapping) for v in stored):
            keys = sorted({f for v in stored for f in v})
            out += [_inferred(f"{k}: {f}", [v[f] for v in stored if f in v]) for f in keys]
        else:
            per_group = any(isinstance(v, list) for v in stored)
            out.append(_inferred(f"{k}{' (all groups)' if per_group else ''}", flat))
    return out


def _inferred(title: str, values: list[Any]) -> Series:
    numeric = bool(values) and all(_is_number(v) for v in values)
    return Series(title, [float(v) for v in values] if numeric else values, numeric)


# Pass names stored by earlier versions -> today's (``update`` became ``update_scope``: "update"
# also meant PPO's update and the update's size).
LEGACY_PASS_NAMES = {"update": "update_scope"}


def renamed_pass_names(d: dict[str, Any]) -> dict[str, Any]:
    """Stored actions ``d`` under today's pass names (a key already under today's name wins)."""
    out = dict(d)
    for old, new in LEGACY_PASS_NAMES.items():
        if old in out and new not in out:
            out[new] = out.pop(old)
    return out
