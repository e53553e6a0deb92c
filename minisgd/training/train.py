r"""The trainer: minibatch SGD-type training that records exactly what it did and measures as it goes.

::

    cfg = TrainConfig(optimizer="adam", lr=1e-3, batch_size=256, sampling="shuffle", epochs=20, seed=0,
                      checkpoint_every=500, out="runs/sb")
    result = train(net, theta0, data, cfg, callbacks=[every(200, top_eigenvalue)])
    result.theta, result.history["test_acc"], result.history["top_eigenvalue"]
    result = train(net, theta0, data, cfg, resume="runs/sb")     # bit-identical continuation on the CPU

Step ``t`` (0-based) draws batch :math:`\mathcal B_t` (:mod:`minisgd.training.sampling`), computes the minibatch loss
and gradient at :math:`\theta_t`, and applies the optimizer's rule (:mod:`minisgd.training.optim`) with
:math:`\eta_t` and :math:`B_t` from the schedules (:mod:`minisgd.training.schedules`). Three options change the step,
each a remedy for the large-batch gap (Keskar et al. 2017, section 5), and each random draw a pure function of
``(seed, t)`` so that a resumed run repeats it:

* ``augment = aug``: the batch goes through the transform ``aug(X_B, [seed, t])`` before the gradient, e.g.
  :class:`minisgd.data.augment.RandomShifts` (random image shifts, zero fill); the trainer knows transforms only
  by this call and their ``to_dict()``, which is stored with the config;
* ``noise_batch = b``: Gaussian noise :math:`\xi_t` with the covariance a batch of b has in excess of the batch
  of :math:`B_t` is added to the gradient when :math:`B_t > b` (:mod:`minisgd.training.injection`, seeded by
  ``[injection.STREAM, seed, t]``);
* ``proximal = rho``: the update is ``proximal_steps`` updates of the optimizer on
  :math:`f_{\mathcal B_t}(\theta) + \frac{\rho}{2}\lVert\theta - \theta_t\rVert^2` (conservative training,
  :func:`minisgd.training.optim.proximal_step`), all on the same batch (and the same :math:`\xi_t`).

The history is a dict of lists:

* per step ``t`` (one entry each): ``step`` (t), ``epoch``, ``lr``, ``batch_size``, ``loss`` (minibatch loss
  at :math:`\theta_t` before the update, the net's L2 term included), ``grad_norm`` (:math:`\lVert g_t \rVert`, the
  batch gradient without injected noise),
  ``examples`` (examples processed before step t: the compute spent to reach :math:`\theta_t`), ``wall_time``
  (seconds since the start, at the end of the step; earlier legs of a resumed run included).
* per evaluation (at step 0, every ``eval_every`` steps or epochs, and at the end): ``eval_step``,
  ``eval_epoch``, ``eval_examples``, ``eval_wall_time``, ``train_loss``, ``test_loss`` (mean loss + L2 on the
  whole split, or on ``eval_subset`` training examples), ``train_acc`` and ``test_acc`` for classification,
  ``val_*`` when the data has a validation split.
* per measurement (:mod:`minisgd.training.callbacks`): ``name`` and ``name + "_step"``.

Stopping: an epoch budget, a step budget, an example budget (a step that would exceed it is not taken), a target
training loss (checked at each evaluation), a plateau (``plateau_patience``: none of the last ``patience``
evaluations of the training loss improved on the best before them by a relative ``plateau_tol``; Keskar et al.'s
"until the loss function ceased to improve", made a rule), or a measurement raising ``StopTraining``. The run ends with an
evaluation (if the last one was earlier) and a checkpoint (if ``out`` is set). A run stopped by a budget and
resumed with a larger one keeps that final evaluation, which the longer run alone would have made only if it fell
on its evaluation schedule; an interrupted run resumes to an identical history.
"""
import hashlib
import json
import math
import sys
import time
from dataclasses import dataclass, fields

import numpy as np

from . import checkpoint as ckpt
from . import injection
from ..backend import device_of, namespace, to_numpy
from ..core import backprop, batchnorm
from .callbacks import StopTraining, fixed_subset
from ..errors import CheckpointError, DivergenceError, NonFiniteError
from .optim import make_optimizer, proximal_step
from .sampling import SAMPLING, Sampler
from .schedules import as_batch_schedule, as_lr_schedule, describe, lr_unit

EVAL_UNITS = ("step", "epoch")
# Keys that may differ when resuming: the budgets (to extend a run) and where / how often to checkpoint.
RESUMABLE_CHANGES = ("epochs", "max_steps", "max_examples", "target_loss", "plateau_patience", "checkpoint_every",
                     "out")



@dataclass(frozen=True)
class TrainConfig:
    """Everything that decides a training run (stored with each checkpoint and checked on resume)."""

    optimizer: object = "sgd"  # "sgd", "momentum", "nesterov", "adam", or an optimizer object (minisgd.training.optim)
    lr: object = 0.1  # step size: a float, or a schedule of the step / epoch (minisgd.training.schedules)
    momentum: float = 0.9  # mu of "momentum" and "nesterov"
    betas: tuple = (0.9, 0.999)  # beta1, beta2 of "adam"
    eps: float = 1e-8  # epsilon of "adam", added to sqrt(v_hat)
    weight_decay: float = 0.0  # optimizer weight decay lambda (not the net's l2, which is part of the loss)
    decoupled_weight_decay: bool = False  # False: L2 (g + lambda theta); True: decoupled (AdamW)
    batch_size: object = 128  # B: an int, or a schedule of the epoch; capped at N; ignored for sampling="full"
    sampling: str = "shuffle"  # "shuffle" (epochs without replacement), "replacement" (i.i.d.), "full" (GD)
    drop_last: bool = False  # drop the last partial batch of each epoch
    epochs: int | None = None  # stop after this many epochs
    max_steps: int | None = None  # stop after this many updates
    max_examples: int | None = None  # stop before a step that would take the examples processed past this
    target_loss: float | None = None  # stop once the evaluated training loss is <= this
    plateau_patience: int | None = None  # stop once this many evaluations gave no relative improvement plateau_tol
    plateau_tol: float = 1e-3  # relative improvement of the best training loss that counts for plateau_patience
    seed: int = 0  # seeds the minibatch sequence (the initial theta is the caller's)
    eval_every: int | None = 1  # evaluate every this many eval_units (and at step 0 and the end); None: at the end
    eval_unit: str = "epoch"  # "epoch" or "step"
    eval_subset: int | None = None  # evaluate the training loss on this many fixed, seeded examples; None: all
    eval_batch_size: int = 8192  # examples per forward pass in evaluations (memory, not results)
    log_grad_norm: bool = True  # record |g_t| every step (one O(P) reduction)
    divergence_factor: float | None = 100.0  # diverged when a loss > this x the first minibatch loss; None: off
    augment: object = None  # a batch transform aug(X_B, seed) -> X_B, seed = [seed, t]; None: off
    noise_batch: int | None = None  # b: inject the extra gradient noise of a batch of b (minisgd.training.injection)
    proximal: float = 0.0  # rho of conservative training, f_B + rho/2 |theta - theta_t|^2; 0: off
    proximal_steps: int = 1  # optimizer updates per step on that objective (same batch)
    checkpoint_every: int | None = None  # write a checkpoint every this many steps (needs out)
    out: str | None = None  # checkpoint folder; the final state and a diverged run are written there too

    def __post_init__(self):
        if self.sampling not in SAMPLING:
            raise ValueError(f"sampling must be one of {SAMPLING}, got {self.sampling!r}")
        if self.eval_unit not in EVAL_UNITS:
            raise ValueError(f"eval_unit must be one of {EVAL_UNITS}, got {self.eval_unit!r}")
        for name in ("epochs", "max_steps", "max_examples", "eval_every", "checkpoint_every", "eval_subset"):
            value = getattr(self, name)
            if value is not None and (int(value) != value or value < (1 if name in ("eval_every", "checkpoint_every",
                                                                                     "eval_subset") else 0)):
                raise ValueError(f"{name} must be a non-negative integer (or None), got {value!r}")
        if self.plateau_patience is not None and (int(self.plateau_patience) != self.plateau_patience
                                                  or self.plateau_patience < 1 or self.eval_every is None):
            raise ValueError(f"plateau_patience must be an integer >= 1 (evaluations), with eval_every set; got "
                             f"{self.plateau_patience!r} with eval_every={self.eval_every!r}")
        if not 0 <= self.plateau_tol < 1:
            raise ValueError(f"plateau_tol must lie in [0, 1), got {self.plateau_tol!r}")
        if all(getattr(self, k) is None for k in ("epochs", "max_steps", "max_examples", "target_loss")):
            raise ValueError("set a budget: epochs, max_steps, max_examples or target_loss")
        if self.checkpoint_every is not None and self.out is None:
            raise ValueError("checkpoint_every needs out= (the folder to write checkpoints to)")
        if self.divergence_factor is not None and not self.divergence_factor > 1:
            raise ValueError(f"divergence_factor must be > 1 (or None), got {self.divergence_factor!r}")
        if self.augment is not None and not (callable(self.augment) and hasattr(self.augment, "to_dict")):
            raise ValueError("augment must be a batch transform with a to_dict() (e.g. minisgd.data.augment."
                             f"RandomShifts(max_shift, image_shape)) or None, got {self.augment!r}")
        if self.noise_batch is not None and (int(self.noise_batch) != self.noise_batch or self.noise_batch < 1):
            raise ValueError(f"noise_batch must be an integer >= 1 (the small batch whose noise to inject) or None, "
                             f"got {self.noise_batch!r}")
        if not (self.proximal >= 0 and math.isfinite(self.proximal)) or int(self.proximal_steps) < 1:
            raise ValueError(f"proximal must be a finite number >= 0 and proximal_steps an integer >= 1, got "
                             f"{self.proximal!r} and {self.proximal_steps!r}")
        if self.proximal == 0 and self.proximal_steps != 1:
            raise ValueError(f"proximal_steps={self.proximal_steps} needs proximal > 0 (rho); without the proximal "
                             "term the inner steps would be ordinary steps on one batch")
        object.__setattr__(self, "betas", tuple(self.betas))
        self.rule()  # hyperparameter errors now, not at the first step
        as_lr_schedule(self.lr)

    def rule(self):
        """The optimizer object this configuration describes."""
        if not isinstance(self.optimizer, str):
            defaults = {f.name: f.default for f in fields(self)}
            changed = [k for k in ("momentum", "betas", "eps", "weight_decay", "decoupled_weight_decay")
                       if getattr(self, k) != defaults[k]]
            if changed:
                raise ValueError(f"{changed} given beside an optimizer object; set them on the object")
            return make_optimizer(self.optimizer)
        hyper = {"weight_decay": self.weight_decay, "decoupled": self.decoupled_weight_decay}
        if self.optimizer in ("momentum", "nesterov"):
            hyper["mu"] = self.momentum
        elif self.optimizer == "adam":
            hyper.update(beta1=self.betas[0], beta2=self.betas[1], eps=self.eps)
        return make_optimizer(self.optimizer, **hyper)

    def to_dict(self):
        """JSON-able: schedules and optimizer objects become dicts (``describe``), tuples lists."""
        out = {}
        for f in fields(self):
            value = getattr(self, f.name)
            if (f.name == "optimizer" and not isinstance(value, str)) or (f.name == "augment" and value is not None):
                value = value.to_dict()
            elif f.name in ("lr", "batch_size") and callable(value):
                value = describe(value)
            out[f.name] = value
        # the form it takes after a JSON round trip: tuples become lists, NumPy scalars Python numbers
        return json.loads(json.dumps(out, default=lambda o: o.item() if hasattr(o, "item") else repr(o)))


@dataclass
class TrainResult:
    """What ``train`` returns: final parameters, the history, and where and why it stopped."""

    theta: object  # (P,) final parameters, on the device of theta0
    history: dict  # dict of lists, see the module docstring
    opt_state: dict  # the optimizer state that goes with theta
    config: object  # the TrainConfig (a dict when read back with load_run)
    step: int  # updates done
    epoch: int  # epochs completed
    examples: int  # examples processed in all
    stop_reason: str  # "epochs", "max_steps", "max_examples", "target_loss", "plateau" or "callback"
    wall_time: float  # seconds, resumed legs included
    bn_stats: object = None  # (S,) running statistics of a batch-normalized net (net.eval_mode(bn_stats)), else None


@dataclass
class _Counters:
    step: int = 0  # updates done
    epoch: int = 0  # epochs completed
    step_in_epoch: int = 0  # updates done in the current epoch
    examples: int = 0  # examples processed
    loss0: float | None = None  # the first minibatch loss (divergence reference)
    elapsed: float = 0.0  # wall seconds of earlier legs


@dataclass(frozen=True)
class ArrayData:
    """Training (and optionally test / validation) arrays, when no ``minisgd.data.Dataset`` is at hand."""

    X_train: object
    y_train: object
    X_test: object = None
    y_test: object = None
    X_val: object = None
    y_val: object = None


def as_data(data):
    """A ``Dataset`` or ``ArrayData`` passes through; ``(X, y)`` or ``(X, y, X_test, y_test)`` is wrapped."""
    if hasattr(data, "X_train"):
        return data
    if isinstance(data, (tuple, list)) and len(data) in (2, 4):
        return ArrayData(*data)
    raise TypeError("data must be a minisgd.data.Dataset, an ArrayData, (X, y) or (X, y, X_test, y_test)")


def planned_steps(config, num_train):
    """The number of updates the budgets allow (``None`` when only ``target_loss`` bounds the run)."""
    cfg = config
    if cfg.epochs is None and cfg.max_steps is None and cfg.max_examples is None:
        return None
    sampler, batch = Sampler(num_train, cfg.sampling, cfg.drop_last, cfg.seed), as_batch_schedule(cfg.batch_size)
    steps = examples = epoch = 0
    while cfg.epochs is None or epoch < cfg.epochs:
        B = sampler.batch_size(batch(epoch))
        sizes = [B] * sampler.steps_per_epoch(B)
        if cfg.sampling == "shuffle" and not cfg.drop_last:
            sizes[-1] = num_train - B * (len(sizes) - 1)
        if cfg.max_examples is not None and examples + sum(sizes) > cfg.max_examples:
            for size in sizes:  # the budget ends inside this epoch
                if examples + size > cfg.max_examples or (cfg.max_steps is not None and steps >= cfg.max_steps):
                    break
                steps, examples = steps + 1, examples + size
            return steps if cfg.max_steps is None else min(steps, cfg.max_steps)
        steps, examples, epoch = steps + len(sizes), examples + sum(sizes), epoch + 1
        if cfg.max_steps is not None and steps >= cfg.max_steps:
            return cfg.max_steps
    return steps


def batch_sequence(config, num_train, epoch):
    """The index arrays the trainer visits in epoch ``epoch``, in order (the batch size from the schedule)."""
    sampler = Sampler(num_train, config.sampling, config.drop_last, config.seed)
    return sampler.epoch_batches(epoch, as_batch_schedule(config.batch_size)(epoch))


def evaluate(net, theta, X, y, chunk=8192):
    """``(loss, accuracy)`` on ``(X, y)``: the mean loss plus L2 (as ``net.loss``), accuracy ``None`` for mse."""
    xp = namespace(theta)
    N, total, correct = X.shape[0], 0.0, 0
    classify = net.loss_fn.name == "cross_entropy"
    for start in range(0, N, chunk):
        stop = min(start + chunk, N)  # the array API leaves out-of-bounds slice ends unspecified
        Xc, yc = X[start:stop, ...], y[start:stop, ...]
        Z = net.forward(theta, Xc)  # (n, K)
        yc = net.loss_fn.check_targets(yc, Z.shape[0], Z.shape[1])
        total += float(xp.sum(net.loss_fn.value(Z, yc)))
        if classify:
            correct += int(xp.sum(xp.astype(xp.argmax(Z, axis=1) == yc, xp.int64)))
    loss = total / N + (0.5 * net.l2 * float(xp.sum(theta * theta)) if net.l2 else 0.0)
    return loss, (correct / N if classify else None)


def plateaued(losses, patience, tol):
    r"""Whether the last ``patience`` values of ``losses`` (one per evaluation) all stayed above
    :math:`(1 - 	ext{tol}) \min(	ext{the earlier ones})`: the loss ceased to improve."""
    if len(losses) <= patience:
        return False
    return min(losses[-patience:]) > (1.0 - tol) * min(losses[:-patience])


def _floats(xp, *scalars):
    """Python floats of 0-d arrays, read in one device-to-host copy."""
    return tuple(float(v) for v in to_numpy(xp.stack(scalars)))


def _gather(xp, X, idx):
    return xp.take(X, xp.asarray(idx, device=device_of(X)), axis=0)


def _append(history, values):
    for key, value in values.items():
        history.setdefault(key, []).append(value)


FINGERPRINT_ROWS = 1024  # rows of X_train hashed into the resume fingerprint


def _fingerprint(net, theta0, data):
    """What must not change between the legs of a resumed run besides the config: the network, theta's dtype and
    length, and the training data by hash. ``y_train`` is hashed whole (N labels: cheap); ``X_train`` by its dtype,
    its shape and the SHA-256 of the C-order bytes of :data:`FINGERPRINT_ROWS` rows at evenly spaced indices
    ``i * (N - 1) // (n - 1)`` (every row when N <= n), so standardized instead of raw pixels, another subset or
    another dtype is caught for ~6 MB of hashing at d = 784 (a change confined to rows outside the sample is not)."""
    xp, X, y = namespace(data.X_train), data.X_train, to_numpy(data.y_train)
    N = int(X.shape[0])
    n = min(N, FINGERPRINT_ROWS)
    rows = np.arange(n, dtype=np.int64) * (N - 1) // max(n - 1, 1)
    sample = np.ascontiguousarray(to_numpy(_gather(xp, X, rows)))  # (n, ...) on the host
    X_hash = hashlib.sha256(f"{sample.dtype.str} {list(X.shape)}".encode())
    X_hash.update(sample.tobytes())
    return {"net": repr(net), "dtype": str(theta0.dtype), "num_params": int(theta0.shape[0]),
            "X_train_shape": list(X.shape), "X_train_rows_sha256": X_hash.hexdigest(),
            "y_train_sha256": hashlib.sha256(np.ascontiguousarray(y).tobytes()).hexdigest()}


# Options a later field replaced: a stored config holding them switched off resumes as if they were never there.
_RETIRED_OFF = {"augment_shift": 0, "image_shape": None}  # replaced by `augment`
# Fingerprint entries added later: a checkpoint written before them resumes without that check.
_FINGERPRINT_ADDED = ("X_train_rows_sha256",)


def _counters(folder, stored):
    try:
        return _Counters(**stored)
    except TypeError as exc:  # a key this trainer does not know
        raise CheckpointError(f"malformed checkpoint manifest {ckpt.manifest_path(folder)}: its counters do not fit "
                              f"({exc})") from None


def _restore(folder, cfg, fingerprint, theta0, num_statistics):
    state = ckpt.load_state(folder)
    meta = state["meta"]
    for key, off in _RETIRED_OFF.items():
        if key in meta["config"] and meta["config"][key] == off:
            del meta["config"][key]
    defaults = {k: v for k, v in TrainConfig(epochs=1).to_dict().items() if k not in meta["config"]}
    stored = {**{k: fingerprint[k] for k in _FINGERPRINT_ADDED}, **meta["fingerprint"]}
    ckpt.check_compatible(folder, {**defaults, **meta["config"], **stored},  # older runs: defaults
                          {**cfg.to_dict(), **fingerprint}, may_change=RESUMABLE_CHANGES)
    xp, dev = namespace(theta0), device_of(theta0)
    theta = xp.asarray(state["theta"], device=dev)
    opt_state = {k: v if k == "step" else xp.asarray(v, device=dev) for k, v in state["opt_state"].items()}
    bn_stats = state["bn_stats"]
    if (bn_stats is None) != (num_statistics == 0):
        raise CheckpointError(f"checkpoint {ckpt.manifest_path(folder)} {'lacks' if bn_stats is None else 'holds'} "
                              "batch-norm running statistics, which the network to resume "
                              f"{'has' if num_statistics else 'has not'}; resume with the network that wrote it")
    bn_stats = None if bn_stats is None else xp.asarray(bn_stats, device=dev)
    return theta, opt_state, _counters(folder, state["counters"]), state["history"], bn_stats


def load_run(folder):
    """The state stored in checkpoint folder ``folder`` as a ``TrainResult`` (NumPy arrays; config as a dict)."""
    state = ckpt.load_state(folder)
    c = _counters(folder, state["counters"])
    return TrainResult(state["theta"], state["history"], state["opt_state"], state["meta"]["config"], c.step,
                       c.epoch, c.examples, state["meta"].get("stop_reason") or "in_progress", c.elapsed,
                       state["bn_stats"])


def _interactive():
    return sys.stderr.isatty() or "ipykernel" in sys.modules


class _NoBar:
    """What the loop calls on a progress bar, doing nothing (tqdm is imported only when a bar is shown)."""

    def update(self, n=1):
        pass

    def set_postfix(self, postfix, refresh=True):
        pass

    def close(self):
        pass


def _progress_bar(show, total, initial):
    if not show:
        return _NoBar()
    from tqdm.auto import tqdm  # loaded only when a bar is shown: `import minisgd` stays free of it
    return tqdm(total=total, initial=initial, unit="step", dynamic_ncols=True)


def _check_callbacks(callbacks):
    callbacks = list(callbacks)
    names = [getattr(cb, "name", None) for cb in callbacks]
    if any(not hasattr(cb, "due") for cb in callbacks):
        raise TypeError("callbacks must be made with minisgd.every(k, fn)")
    if len(set(names)) != len(names):
        raise ValueError(f"two callbacks share a name: {names}; pass every(k, fn, name=...)")
    return callbacks


class _Run:
    """One training run in progress: its state (theta, optimizer state, counters, history) and the five things
    the loop does, each a method read in the order :meth:`loop` calls them: :meth:`step`, :meth:`measure` (which
    calls :meth:`evaluate` and the callbacks), :meth:`checkpoint`, and :meth:`diverge` when the loss blows up."""

    def __init__(self, net, data, cfg, callbacks, state, resumed, show):
        self.net, self.data, self.cfg, self.callbacks = net, data, cfg, callbacks
        self.theta, self.opt_state, self.c, self.history, self.bn_stats = state
        self.resumed = resumed
        # Checked once here: a step then runs no value checks, each a device-to-host copy and wait on a GPU.
        _, self.X, self.y = net.check_inputs(self.theta, data.X_train, data.y_train)
        N = int(self.X.shape[0])
        self.xp = namespace(self.theta)
        self.opt = cfg.rule()
        self.lr_schedule, self.batch_schedule = as_lr_schedule(cfg.lr), as_batch_schedule(cfg.batch_size)
        self.lr_by_step = lr_unit(self.lr_schedule) == "step"
        self.sampler = Sampler(N, cfg.sampling, cfg.drop_last, cfg.seed)
        self.meta = {"config": cfg.to_dict(), "fingerprint": _fingerprint(net, self.theta, data)}
        self.eval_sets = [("train", *fixed_subset(data, cfg.eval_subset, cfg.seed))]
        for split in ("test", "val"):
            if getattr(data, f"X_{split}", None) is not None:
                self.eval_sets.append((split, getattr(data, f"X_{split}"), getattr(data, f"y_{split}")))
        self.t0 = time.perf_counter() - self.c.elapsed
        self.prev = (self.theta, self.opt_state)  # the state before the last update: what a divergence hands back
        self.show = show
        self.bar = _progress_bar(show, planned_steps(cfg, N), self.c.step)
        self.postfix = {}
        self.batches, self.batches_epoch = None, None

    # ---- the loop ----------------------------------------------------------------------------------------------

    def loop(self):
        """Step until a budget, the target loss or a callback stops the run; evaluate and store the final state."""
        reason = None if self.resumed else self.measure(epoch_end=False)  # a resumed run measured its step already
        try:
            while reason is None:
                reason = self.budget_spent() or self.step()
            if not self.history.get("eval_step") or self.history["eval_step"][-1] != self.c.step:
                self.evaluate()  # the final state is always evaluated
        finally:
            self.bar.close()
        self.c.elapsed = time.perf_counter() - self.t0
        if self.cfg.out is not None:
            ckpt.save_state(self.cfg.out, self.theta, self.opt_state, vars(self.c), self.history,
                            {**self.meta, "stop_reason": reason}, bn_stats=self.bn_stats)
        return reason

    def budget_spent(self):
        """The budget that ends the run before the next step, or ``None``."""
        cfg, c = self.cfg, self.c
        if cfg.epochs is not None and c.epoch >= cfg.epochs:
            return "epochs"
        if cfg.max_steps is not None and c.step >= cfg.max_steps:
            return "max_steps"
        if cfg.max_examples is not None and c.examples + len(self.next_batch()) > cfg.max_examples:
            return "max_examples"
        return None

    def next_batch(self):
        """``(B_t,)`` int64 host indices of the examples step ``t`` sees."""
        c = self.c
        if self.batches_epoch != c.epoch:
            self.batches = self.sampler.epoch_batches(c.epoch, self.batch_schedule(c.epoch))
            self.batches_epoch = c.epoch
        return self.batches[c.step_in_epoch]

    # ---- one update --------------------------------------------------------------------------------------------

    def step(self):
        """Step ``t``: draw the batch, transform it, take the loss and gradient at theta_t (plus the injected noise
        xi_t), update, record; then measure and checkpoint. Returns the reason to stop, or ``None``."""
        cfg, c, net, xp = self.cfg, self.c, self.net, self.xp
        idx = self.next_batch()
        X, y = self.X, self.y
        Xb, yb = (X, y) if cfg.sampling == "full" else (_gather(xp, X, idx), _gather(xp, y, idx))
        if cfg.augment is not None:
            Xb = cfg.augment(Xb, [cfg.seed, c.step])
            Xb = Xb if Xb.dtype == self.X.dtype else xp.astype(Xb, self.X.dtype)  # as the checks would cast it
        lr = float(self.lr_schedule(c.step if self.lr_by_step else c.epoch))
        try:
            loss, g, batch_stats = self.loss_and_grad(self.theta, Xb, yb)  # loss: 0-d, on the device
            noise = (injection.matched_noise(net, self.theta, Xb, yb, cfg.noise_batch,
                                             [injection.STREAM, cfg.seed, c.step])
                     if cfg.noise_batch is not None and len(idx) > cfg.noise_batch else None)
        except NonFiniteError:  # theta went non-finite in the last update (the noise injection checks it)
            loss, g = math.nan, None
        grad_sq = math.nan
        if g is not None:  # the step's one device-to-host copy: the loss, which the divergence test needs now,
            # with |g|^2 (a BLAS dot: 4x vector_norm); a non-finite theta shows in one of them
            loss, grad_sq = _floats(xp, loss, g @ g) if cfg.log_grad_norm else (float(loss), math.nan)
        if c.loss0 is None:
            c.loss0 = loss
        if self.bad(loss):
            self.diverge(loss, "minibatch loss")
        if cfg.log_grad_norm and not math.isfinite(grad_sq):
            self.diverge(grad_sq, "squared gradient norm")
        grad_norm = math.sqrt(grad_sq)
        self.prev = (self.theta, self.opt_state)
        shift = 0.0 if noise is None else noise  # the same xi_t at every inner step of a proximal update

        def batch_grad(th):
            return self.loss_and_grad(th, Xb, yb)[1] + shift

        # rho = 0 and one step (the default) is exactly opt.update(theta, g + xi_t, ...); no O(P) add without xi_t
        self.theta, self.opt_state = proximal_step(batch_grad, self.theta, cfg.proximal, self.opt, self.opt_state, lr,
                                                   cfg.proximal_steps, grad_t=g if noise is None else g + noise)
        if batch_stats is not None:  # the statistics of theta_t's forward pass, as torch updates them
            self.bn_stats = batchnorm.update_running_statistics(net, self.bn_stats, batch_stats, len(idx))
        _append(self.history, {"step": c.step, "epoch": c.epoch, "lr": lr, "batch_size": len(idx), "loss": loss,
                               "grad_norm": grad_norm, "examples": c.examples,
                               "wall_time": time.perf_counter() - self.t0})
        c.step, c.step_in_epoch, c.examples = c.step + 1, c.step_in_epoch + 1, c.examples + len(idx)
        epoch_end = c.step_in_epoch == len(self.batches)
        if epoch_end:
            c.epoch, c.step_in_epoch = c.epoch + 1, 0
        reason = self.measure(epoch_end)
        if cfg.checkpoint_every is not None and c.step % cfg.checkpoint_every == 0 and reason is None:
            self.checkpoint()
        self.bar.update(1)
        if self.show and c.step % 16 == 0:
            self.postfix["loss"] = f"{loss:.4g}"  # the minibatch loss
            self.bar.set_postfix(self.postfix, refresh=False)
        return reason

    def loss_and_grad(self, theta, Xb, yb):
        """``(loss, gradient, batch statistics or None)`` of the batch: a BN net in training mode."""
        if self.net.batch_norm:
            return batchnorm.train_loss_and_grad(self.net, theta, Xb, yb)
        return (*backprop.loss_and_grad(self.net, theta, Xb, yb), None)

    def measured_net(self):
        """What evaluations and callbacks see: the net, or a BN net in eval mode at the current running statistics
        (a function of theta alone, as ``model.eval()`` in torch)."""
        return self.net.eval_mode(self.bn_stats) if self.net.batch_norm else self.net

    # ---- measurements ------------------------------------------------------------------------------------------

    def measure(self, epoch_end):
        """The evaluation when it is due, then every due callback; the reason to stop they give, or ``None``."""
        cfg, c = self.cfg, self.c
        reason = None
        if cfg.eval_every is not None and (
                (cfg.eval_unit == "step" and c.step % cfg.eval_every == 0)
                or (cfg.eval_unit == "epoch" and (c.step == 0 or epoch_end) and c.epoch % cfg.eval_every == 0)):
            reason = self.evaluate()
        for cb in self.callbacks:
            if not cb.due(c.step):
                continue
            try:
                value = cb(self.measured_net(), self.theta, self.data, c.step)
            except StopTraining:
                reason = reason or "callback"
                continue
            for key, v in (value if isinstance(value, dict) else {cb.name: value}).items():
                try:
                    self.history.setdefault(key, []).append(float(v))
                except (TypeError, ValueError):
                    raise TypeError(f"callback {cb.name!r} returned {v!r} for {key!r}; return a float or a dict "
                                    "of floats") from None
            self.history.setdefault(f"{cb.name}_step", []).append(c.step)
        return reason

    def evaluate(self):
        """Loss (and accuracy) on every split, appended to the history; ``"target_loss"`` once it is reached,
        ``"plateau"`` once the training loss ceased to improve (:func:`plateaued`)."""
        cfg, c = self.cfg, self.c
        values = {"eval_step": c.step, "eval_epoch": c.epoch, "eval_examples": c.examples}
        for split, Xs, ys in self.eval_sets:
            try:
                loss, acc = evaluate(self.measured_net(), self.theta, Xs, ys, cfg.eval_batch_size)
            except NonFiniteError:
                loss, acc = math.nan, None
            if split == "train" and self.bad(loss):
                self.diverge(loss, "training loss")
            values[f"{split}_loss"] = loss
            if acc is not None:
                values[f"{split}_acc"] = acc
        values["eval_wall_time"] = time.perf_counter() - self.t0
        _append(self.history, values)
        self.postfix.update({k: f"{v:.4g}" for k, v in values.items() if k[-4:] in ("loss", "_acc")})
        self.bar.set_postfix(self.postfix, refresh=False)
        if cfg.target_loss is not None and values["train_loss"] <= cfg.target_loss:
            return "target_loss"
        return "plateau" if cfg.plateau_patience and plateaued(self.history["train_loss"], cfg.plateau_patience,
                                                               cfg.plateau_tol) else None

    # ---- storage and failure -----------------------------------------------------------------------------------

    def checkpoint(self):
        self.c.elapsed = time.perf_counter() - self.t0
        ckpt.save_state(self.cfg.out, self.theta, self.opt_state, vars(self.c), self.history, self.meta,
                        bn_stats=self.bn_stats)

    def bad(self, loss):
        """Non-finite, or above ``divergence_factor`` times the first minibatch loss."""
        cfg, loss0 = self.cfg, self.c.loss0
        return not math.isfinite(loss) or (cfg.divergence_factor is not None and loss0 is not None
                                           and loss > cfg.divergence_factor * abs(loss0))

    def diverge(self, loss, where):
        """Raise :class:`DivergenceError` with the state before the last update (also written to ``out``)."""
        cfg, c = self.cfg, self.c
        limit = math.inf if cfg.divergence_factor is None or c.loss0 is None else cfg.divergence_factor * abs(c.loss0)
        lr = float(self.lr_schedule(c.step if self.lr_by_step else c.epoch))
        message = (f"training diverged at step {c.step} (epoch {c.epoch}): the {where} is {loss:.6g} (first minibatch "
                   f"loss {c.loss0 if c.loss0 is None else f'{c.loss0:.6g}'}, limit {limit:.6g} = divergence_factor x "
                   f"|first loss|) at lr {lr:.3g}. Lower the learning rate (e.g. {lr / 10:.3g}), add a warm-up "
                   "(minisgd.training.schedules.Warmup) or use a larger batch. The error's .theta holds the parameters "
                   "before the last update and .history everything measured up to here")
        if cfg.out is not None:
            c.elapsed = time.perf_counter() - self.t0
            path = ckpt.save_state(cfg.out, *self.prev, vars(c), self.history,
                                   {**self.meta, "stop_reason": "diverged", "message": message}, name="diverged")
            message += (f"; both are saved in {path} "
                        "(read them with minisgd.training.checkpoint.load_state(folder, name='diverged'))")
        self.bar.close()
        raise DivergenceError(message, theta=self.prev[0], history=self.history, step=c.step, loss=loss,
                              opt_state=self.prev[1])


def train(net, theta0, data, config, callbacks=(), resume=None, progress=None):
    """Train ``net`` from ``theta0`` on ``data`` as ``config`` says; returns a :class:`TrainResult`.

    ``data``: a ``minisgd.data.Dataset`` or ``(X, y)`` / ``(X, y, X_test, y_test)`` arrays on the device of
    ``theta0``. ``callbacks``: measurements made with ``minisgd.every``. ``resume``: a checkpoint folder
    (or ``True`` for ``config.out``) to continue from; ``theta0`` then only fixes the array library and device, and
    the stored configuration, network and data must match (:data:`RESUMABLE_CHANGES` may differ).
    ``progress``: ``None`` shows a tqdm bar in a terminal or notebook, ``False`` never, ``True`` always.

    Raises :class:`~minisgd.errors.DivergenceError` (with the last good state) when the loss blows up,
    :class:`~minisgd.errors.CheckpointError` / :class:`~minisgd.errors.ConfigMismatchError` for a bad resume,
    :class:`~minisgd.errors.FolderInUseError` when another process trains into ``config.out``, and
    ``FileExistsError`` when ``config.out`` already holds a checkpoint and ``resume`` is not given.
    """
    cfg, data = config, as_data(data)
    callbacks = _check_callbacks(callbacks)
    if resume is True:
        resume = cfg.out
    with ckpt.writing(cfg.out):  # one writer per checkpoint folder, for the whole run
        if resume is not None:
            state = _restore(resume, cfg, _fingerprint(net, theta0, data), theta0, getattr(net, "num_statistics", 0))
        else:
            if cfg.out is not None and ckpt.has_checkpoint(cfg.out):
                raise FileExistsError(f"{cfg.out} already holds a checkpoint; pass resume={cfg.out!r} to continue "
                                      "it, or choose another out= (or delete the folder) to start afresh")
            xp = namespace(theta0)
            bn_stats = (xp.astype(xp.asarray(net.initial_statistics(), device=device_of(theta0)), theta0.dtype)
                        if getattr(net, "batch_norm", False) else None)
            state = (theta0, cfg.rule().init(theta0), _Counters(), {}, bn_stats)
        show = _interactive() if progress is None else bool(progress)
        run = _Run(net, data, cfg, callbacks, state, resumed=resume is not None, show=show)
        reason = run.loop()
    c = run.c
    return TrainResult(run.theta, run.history, run.opt_state, cfg, c.step, c.epoch, c.examples, reason, c.elapsed,
                       run.bn_stats)
