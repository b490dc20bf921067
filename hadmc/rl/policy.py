"""Multi-head actor-critic policy for the five-agent controller, plus a random sampler.

One shared feature extractor (3 x Linear+ReLU of width H) feeds one head per ``HeadSpec``:
categorical heads output logits; the Gaussian head (distillation, 2-D) outputs a mean and uses
a state-independent log-std parameter. The value function is a separate 3 x Linear+ReLU
network (CleanRL default: no value/policy gradient interference through a shared trunk).

Joint log-prob and entropy are sums over heads, each multiplied by that step's head mask, so
a masked head contributes neither value nor gradient (ERRATA row "3.1 / 3.3 joint policy").
The Gaussian head stores the RAW sample u and log N(u; mu, sigma) summed over its dims; the
environment maps u to (T, alpha). The policy never squashes (ERRATA row "3.2").
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn
from torch.distributions import Categorical, Normal

HEAD_KINDS = ("categorical", "gaussian")


@dataclass(frozen=True)
class HeadSpec:
    """One agent's action head: ``size`` = number of choices (categorical) or dims (gaussian)."""

    name: str
    kind: str
    size: int

    def __post_init__(self) -> None:
        if not self.name:
            raise ValueError("HeadSpec.name must be a non-empty string")
        if self.kind not in HEAD_KINDS:
            raise ValueError(
                f"HeadSpec {self.name!r}: kind must be one of {HEAD_KINDS}, got {self.kind!r}"
            )
        if not isinstance(self.size, int) or self.size < 1:
            raise ValueError(
                f"HeadSpec {self.name!r}: size must be a positive int, got {self.size!r}"
            )
        if self.kind == "categorical" and self.size < 2:
            raise ValueError(f"HeadSpec {self.name!r}: a categorical head needs >= 2 choices")


@dataclass(frozen=True)
class ActionSpec:
    """The joint action: an ordered tuple of uniquely named heads."""

    heads: tuple[HeadSpec, ...]

    def __post_init__(self) -> None:
        if not self.heads:
            raise ValueError("ActionSpec needs at least one head")
        names = [h.name for h in self.heads]
        if len(set(names)) != len(names):
            raise ValueError(f"ActionSpec head names must be unique, got {names}")

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(h.name for h in self.heads)

    def head(self, name: str) -> HeadSpec:
        for h in self.heads:
            if h.name == name:
                return h
        raise KeyError(f"no head named {name!r}; heads are {self.names}")

    def mask_vector(self, head_mask: Mapping[str, bool] | None) -> np.ndarray:
        """Float32 vector (one entry per head, spec order): 1 = head acts, 0 = masked.

        ``None`` means every head acts (the environment protocol's default).
        """
        if head_mask is None:
            return np.ones(len(self.heads), dtype=np.float32)
        unknown = set(head_mask) - set(self.names)
        if unknown:
            raise ValueError(
                f"head_mask names unknown heads {sorted(unknown)}; heads are {self.names}"
            )
        return np.array(
            [1.0 if head_mask.get(n, True) else 0.0 for n in self.names], dtype=np.float32
        )


def _layer_init(layer: nn.Linear, gain: float, generator: torch.Generator) -> nn.Linear:
    """Orthogonal weights with ``gain``, zero bias (CleanRL / SB3 convention)."""
    nn.init.orthogonal_(layer.weight, gain=gain, generator=generator)
    nn.init.zeros_(layer.bias)
    return layer


def _mlp(in_dim: int, hidden: int, generator: torch.Generator) -> nn.Sequential:
    g = math.sqrt(2.0)
    return nn.Sequential(
        _layer_init(nn.Linear(in_dim, hidden), g, generator),
        nn.ReLU(),
        _layer_init(nn.Linear(hidden, hidden), g, generator),
        nn.ReLU(),
        _layer_init(nn.Linear(hidden, hidden), g, generator),
        nn.ReLU(),
    )


@dataclass
class PolicyEval:
    """Batch evaluation of stored actions under the current parameters."""

    log_prob: torch.Tensor  # [B] joint, masked heads excluded
    entropy: torch.Tensor  # [B] joint, masked heads excluded
    value: torch.Tensor  # [B]
    head_log_prob: dict[str, torch.Tensor]  # [B] each, already multiplied by the mask
    head_entropy: dict[str, torch.Tensor]  # [B] each, already multiplied by the mask


class MultiHeadPolicy(nn.Module):
    """Shared trunk + one head per ``HeadSpec`` + a separate value network."""

    def __init__(
        self,
        obs_dim: int,
        action_spec: ActionSpec,
        hidden_size: int = 64,
        init_log_std: float = 0.0,
        generator: torch.Generator | None = None,
        gaussian_init_mean: Mapping[str, Sequence[float]] | None = None,
    ) -> None:
        """``gaussian_init_mean[name]``: initial raw mean of a Gaussian head (its bias)."""
        super().__init__()
        if obs_dim < 1 or hidden_size < 1:
            raise ValueError(f"obs_dim and hidden_size must be >= 1, got {obs_dim}, {hidden_size}")
        gen = generator if generator is not None else torch.Generator().manual_seed(0)
        self.obs_dim = obs_dim
        self.action_spec = action_spec
        self.trunk = _mlp(obs_dim, hidden_size, gen)
        # Lists in ActionSpec order, not dicts keyed by name: a head called "update" would
        # clash with ModuleDict.update. Look heads up by name with ``head_layer``/``log_std``.
        self.heads = nn.ModuleList()
        self.log_stds = nn.ParameterList()
        self._log_std_index: dict[str, int] = {}
        for h in action_spec.heads:
            # gain 0.01: near-uniform categorical / near-zero mean at start (Andrychowicz 2021).
            self.heads.append(_layer_init(nn.Linear(hidden_size, h.size), 0.01, gen))
            if h.kind == "gaussian":
                # State-independent log-std: one exploratory scale per dim, as in CleanRL and
                # SB3. The distillation head acts once per episode from near-identical states,
                # so a state-dependent softplus std head (spec 3.2) would add parameters that
                # cannot learn anything a free parameter cannot, and can collapse sigma early.
                self._log_std_index[h.name] = len(self.log_stds)
                self.log_stds.append(nn.Parameter(torch.full((h.size,), float(init_log_std))))
        for name, mean in (gaussian_init_mean or {}).items():
            if name not in self._log_std_index:
                raise ValueError(f"gaussian_init_mean names {name!r}, not a Gaussian head")
            layer = self.head_layer(name)
            if len(mean) != layer.out_features:
                raise ValueError(f"gaussian_init_mean[{name!r}] needs {layer.out_features} values")
            with torch.no_grad():
                # Centre exploration on a sensible raw point (e.g. T=4, alpha=0.7 for the
                # distillation head) instead of u=0, where T=clip(u0,1,20) is stuck at 1.
                layer.bias.copy_(torch.as_tensor(mean, dtype=torch.float32))
        self.value_net = nn.Sequential(
            _mlp(obs_dim, hidden_size, gen), _layer_init(nn.Linear(hidden_size, 1), 1.0, gen)
        )

    def head_layer(self, name: str) -> nn.Linear:
        """The output layer of head ``name`` (logits, or the Gaussian mean)."""
        return self.heads[self.action_spec.names.index(name)]  # type: ignore[return-value]

    def log_std(self, name: str) -> nn.Parameter:
        """The state-independent log-std parameter of Gaussian head ``name``."""
        if name not in self._log_std_index:
            raise KeyError(f"{name!r} is not a Gaussian head")
        return self.log_stds[self._log_std_index[name]]

    def distributions(self, obs: torch.Tensor) -> dict[str, torch.distributions.Distribution]:
        """Per-head distributions for a batch of observations ``[B, obs_dim]``."""
        feats = self.trunk(obs)
        dists: dict[str, torch.distributions.Distribution] = {}
        for h, layer in zip(self.action_spec.heads, self.heads, strict=True):
            out = layer(feats)
            if h.kind == "categorical":
                # Argument validation off: it dominates the cost of a single-step act().
                dists[h.name] = Categorical(logits=out, validate_args=False)
            else:
                std = self.log_std(h.name).exp().expand_as(out)
                dists[h.name] = Normal(out, std, validate_args=False)
        return dists

    def value(self, obs: torch.Tensor) -> torch.Tensor:
        return self.value_net(obs).squeeze(-1)

    def evaluate(
        self, obs: torch.Tensor, actions: Mapping[str, torch.Tensor], masks: torch.Tensor
    ) -> PolicyEval:
        """Joint log-prob/entropy of ``actions`` (``masks``: ``[B, n_heads]`` float, 1 = acts)."""
        return self._joint(self.distributions(obs), actions, masks, self.value(obs))

    def _joint(
        self,
        dists: Mapping[str, torch.distributions.Distribution],
        actions: Mapping[str, torch.Tensor],
        masks: torch.Tensor,
        value: torch.Tensor,
    ) -> PolicyEval:
        head_lp: dict[str, torch.Tensor] = {}
        head_ent: dict[str, torch.Tensor] = {}
        for i, h in enumerate(self.action_spec.heads):
            d, m = dists[h.name], masks[:, i]
            if h.kind == "categorical":
                lp, ent = d.log_prob(actions[h.name]), d.entropy()
            else:  # independent dims: sum over the event dimension
                lp, ent = d.log_prob(actions[h.name]).sum(-1), d.entropy().sum(-1)
            # Multiply (not zero afterwards): the product's gradient w.r.t. a masked head is 0.
            head_lp[h.name] = lp * m
            head_ent[h.name] = ent * m
        return PolicyEval(
            log_prob=torch.stack(list(head_lp.values()), 0).sum(0),
            entropy=torch.stack(list(head_ent.values()), 0).sum(0),
            value=value,
            head_log_prob=head_lp,
            head_entropy=head_ent,
        )

    @torch.no_grad()
    def sample(
        self,
        obs: torch.Tensor,
        masks: torch.Tensor,
        generator: torch.Generator,
        deterministic: bool = False,
    ) -> tuple[dict[str, torch.Tensor], PolicyEval]:
        """Draw one joint action per row (or the mode if ``deterministic``) and evaluate it.

        Sampling uses ``generator`` (not the global RNG) so a checkpoint can restore it. Every
        head is sampled even when masked; the environment ignores masked heads' values.
        """
        dists = self.distributions(obs)
        out: dict[str, torch.Tensor] = {}
        for h in self.action_spec.heads:
            d = dists[h.name]
            if h.kind == "categorical":
                assert isinstance(d, Categorical)
                out[h.name] = (
                    d.probs.argmax(-1)
                    if deterministic
                    else torch.multinomial(d.probs, 1, generator=generator).squeeze(-1)
                )
            else:
                assert isinstance(d, Normal)
                noise = torch.randn(d.loc.shape, generator=generator, dtype=d.loc.dtype)
                out[h.name] = d.loc.clone() if deterministic else d.loc + d.scale * noise
        return out, self._joint(dists, out, masks, self.value(obs))


@dataclass
class RandomPolicy:
    """Uniform sampler over an ``ActionSpec`` for the random-search baseline.

    Categorical heads: uniform over choices. Gaussian heads: each raw dim uniform in
    ``gaussian_ranges[name][dim]`` (default ``DEFAULT_RAW_RANGE`` for a 2-D head, else
    (-3, 3) per dim), i.e. the same raw
    space the PPO head samples in; the environment maps it. With the compression env's
    mapping, the default (1, 20) x (-3, 3) covers T in [1, 20] and alpha = sigmoid(u1) in
    [0.047, 0.953].
    """

    action_spec: ActionSpec
    seed: int = 0
    gaussian_ranges: Mapping[str, tuple[tuple[float, float], ...]] | None = None

    DEFAULT_RAW_RANGE = ((1.0, 20.0), (-3.0, 3.0))

    def __post_init__(self) -> None:
        self.rng = np.random.default_rng(self.seed)
        self._ranges: dict[str, tuple[tuple[float, float], ...]] = {}
        for h in self.action_spec.heads:
            if h.kind != "gaussian":
                continue
            given = (self.gaussian_ranges or {}).get(h.name)
            if given is not None:
                rng = tuple(given)
            elif h.size == 2:
                rng = self.DEFAULT_RAW_RANGE
            else:
                rng = ((-3.0, 3.0),) * h.size
            if len(rng) != h.size or any(lo >= hi for lo, hi in rng):
                raise ValueError(
                    f"head {h.name!r}: need {h.size} (low, high) ranges with low < high, got {rng}"
                )
            self._ranges[h.name] = rng

    def act(self, head_mask: Mapping[str, bool] | None = None) -> dict[str, int | np.ndarray]:
        """One joint action; masked heads are sampled too (the env ignores them)."""
        self.action_spec.mask_vector(head_mask)  # validates names
        out: dict[str, int | np.ndarray] = {}
        for h in self.action_spec.heads:
            if h.kind == "categorical":
                out[h.name] = int(self.rng.integers(h.size))
            else:
                lo = np.array([r[0] for r in self._ranges[h.name]])
                hi = np.array([r[1] for r in self._ranges[h.name]])
                out[h.name] = self.rng.uniform(lo, hi).astype(np.float32)
        return out
