"""``train_and_evaluate(config, workdir)``: the training loop (official ``training/trainer.py`` in JAX terms).

One jitted update (``train_step``, state donated) computes the ``SAM2Train`` losses of a batch of clips
(``sam2_train.batch_losses``), their gradients and the AdamW update with the official param groups
(``optimizer.make_optimizer``). Arrays are placed on a ``Mesh`` with axes ``('data', 'fsdp')`` whose sizes come from
``config.train.mesh``: the batch is split over ``data``; every parameter (and its optimiser moments) whose size
reaches ``fsdp_min_size`` is split over ``fsdp`` along its largest divisible dimension, the rest replicated. The
same run on 1 device, on ``data=8`` and on ``data=4, fsdp=2`` gives the same losses up to float32 rounding
(``tests/training/test_trainer_scale.py``).

Several hosts: with ``config.train.distributed`` set, ``jax.distributed.initialize`` runs first; each process makes
only the clips its devices hold (``data.make_batch(..., clip_slice)``, clip ``i`` seeded by ``[seed, step, i]``) and
the global batch is assembled with ``jax.make_array_from_process_local_data``. Orbax coordinates the checkpoints;
metrics, TensorBoard and the export are written by process 0 (params gathered first).

Checkpoints: an orbax ``CheckpointManager`` in ``workdir/checkpoints`` keeps the last ``keep_checkpoints`` (params,
optimiser state, step) plus the data seed and next step (JSON) and the grain data iterator's state (``data_iter``:
one file per process, restored into the iterator on resume); saving is asynchronous. A run started on a workdir
with checkpoints resumes from the latest finalised one (a save cut short by a kill leaves only a temporary
directory, removed at start) and logs bit-identical losses. Metrics go to ``workdir/metrics.jsonl`` and
TensorBoard event files in ``workdir/tensorboard``; at the end the params are exported as an orbax params directory
(``workdir/export/params``, readable by ``build_sam2`` and ``eval.py --checkpoint``) and, when torch is installed,
an official-format ``.pt``.

Clips may hold padded objects (``batch["obj_valid"]`` False): they add no loss and are not counted by the
normaliser (``sam2_train``). ``train.compute_dtype = "bfloat16"`` runs the matmuls in bfloat16 (params, optimiser
and memories stay float32); drop path and memory-attention dropout are on when ``train.dropout``.

Data: ``data.training_source(config)``, the sources of ``train.data.sources`` drawn step by step (a step's clips
come from one source, as the official mixed loader does; each batch geometry compiles the update once), read
through grain (``data.batch_iterator``: threads, and worker processes with ``train.data.processes``).

Not done here: held-out evaluation on several processes (``eval_videos`` must be 0 there).
"""

import json
import os
import time
from typing import Any

import flax.struct
import grain
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
from jax.sharding import Mesh, NamedSharding
from jax.sharding import PartitionSpec as P

from sam2_jax.build_sam import build_sam2
from sam2_jax.training import data as data_lib
from sam2_jax.training import optimizer as opt_lib
from sam2_jax.training import sam2_train
from sam2_jax.utils.compile_cache import enable_compilation_cache
from sam2_jax.utils.config import freeze_config
from sam2_jax.utils.interpolate import interpolate


@flax.struct.dataclass
class TrainState:
    step: jax.Array
    params: Any
    opt_state: Any


def maybe_initialize_distributed(config: ml_collections.ConfigDict) -> None:
    """``jax.distributed.initialize`` when ``config.train.distributed`` asks for several processes (or ``auto``).

    Must run before anything touches the devices. Unset fields (empty address, ``num_processes`` 0, ``process_id``
    -1) are left to jax, which reads them from a detected cluster (SLURM, Open MPI, TPU pods, ...).
    """
    d = config.train.get("distributed")
    if d is None or not (d.auto or d.coordinator_address or d.num_processes > 1):
        return
    jax.distributed.initialize(
        coordinator_address=d.coordinator_address or None,
        num_processes=d.num_processes or None,
        process_id=d.process_id if d.process_id >= 0 else None,
    )


def make_mesh(config: ml_collections.ConfigDict, devices: list | None = None) -> Mesh:
    """A ``('data', 'fsdp')`` mesh; ``data = -1`` takes the devices left after ``fsdp``."""
    devices = devices if devices is not None else jax.devices()
    m = config.train.mesh
    fsdp = m.fsdp
    data = m.data if m.data != -1 else len(devices) // fsdp
    if data * fsdp != len(devices):
        raise ValueError(f"mesh data={data} x fsdp={fsdp} does not cover the {len(devices)} devices")
    return Mesh(np.asarray(devices).reshape(data, fsdp), ("data", "fsdp"))


def leaf_sharding(shape: tuple[int, ...], mesh: Mesh, min_size: int) -> NamedSharding:
    """Split a leaf over ``fsdp`` along its largest dimension divisible by the axis size (if large enough)."""
    n = mesh.shape["fsdp"]
    spec = [None] * len(shape)
    if n > 1 and int(np.prod(shape, dtype=np.int64)) >= min_size:
        dims = [d for d in np.argsort(shape)[::-1] if shape[d] % n == 0]
        if dims:
            spec[int(dims[0])] = "fsdp"
    return NamedSharding(mesh, P(*spec))


def state_shardings(abstract_state: Any, mesh: Mesh, config: ml_collections.ConfigDict) -> Any:
    """Shardings of a (abstract) train state by the size rule; scalars replicated."""
    min_size = config.train.mesh.fsdp_min_size
    return jax.tree.map(lambda x: leaf_sharding(tuple(x.shape), mesh, min_size), abstract_state)


def batch_sharding(mesh: Mesh) -> NamedSharding:
    """Clips (the leading axis of every batch array) split over ``data``."""
    return NamedSharding(mesh, P("data"))


def local_clips(sharding: NamedSharding, batch_size: int) -> slice:
    """The clips of the global batch that this process's devices hold (one contiguous range of the data axis)."""
    idx = sharding.addressable_devices_indices_map((batch_size,)).values()
    starts = sorted({i[0].indices(batch_size)[:2] for i in idx})
    a, b = starts[0][0], max(e for _, e in starts)
    if sum(e - s for s, e in starts) != b - a:
        raise ValueError(f"this process's devices hold the clips {starts}, not one contiguous range")
    return slice(a, b)


def global_batch(local: data_lib.Batch, sharding: NamedSharding, batch_size: int) -> dict:
    """Every process's clips assembled into global arrays (``jax.make_array_from_process_local_data``); a batch
    without ``obj_valid`` has only real objects."""
    if "obj_valid" not in local:
        local = data_lib.Batch(local, obj_valid=np.ones(local["masks"].shape[:1] + local["masks"].shape[2:3], bool))

    def put(x):
        return jax.make_array_from_process_local_data(sharding, x, (batch_size, *x.shape[1:]))

    return {k: jax.tree.map(put, v) for k, v in local.items()}


DATA_ITERATOR = "data_iter"  # the checkpoint item holding grain's iterator state


def _batch_iterator(source, config: ml_collections.ConfigDict, sharding: NamedSharding):
    """The grain iterator of ``(step, batch)`` of this process's clips (whole batches on one process)."""
    if jax.process_count() == 1:
        return data_lib.batch_iterator(source, config)

    def clips(step: int) -> slice:
        return local_clips(sharding, data_lib.step_source(source, config, step).batch_size)

    return data_lib.batch_iterator(source, config, clip_slice_of=clips)


def _put_global(x, sharding: NamedSharding) -> jax.Array:
    host = np.asarray(x)
    return jax.make_array_from_callback(host.shape, sharding, lambda idx: host[idx])


def make_train_step(module, tx: optax.GradientTransformation, config: ml_collections.ConfigDict, mesh: Mesh, shardings):
    """The jitted update ``(state, frames, masks, plan, obj_valid, key) -> (state, metrics)``; ``state`` is
    donated."""
    fc = freeze_config(config)
    deterministic = not config.train.dropout
    optim = config.train.optim

    def train_step(state: TrainState, frames, masks, plan, obj_valid, key):
        key = jax.random.fold_in(key, state.step)

        def loss_fn(params):
            losses, _ = sam2_train.batch_losses(module, params, frames, masks, plan, key, fc, deterministic, obj_valid)
            return losses["core_loss"], losses

        (_, losses), grads = jax.value_and_grad(loss_fn, has_aux=True)(state.params)
        updates, opt_state = tx.update(grads, state.opt_state, state.params)
        params = optax.apply_updates(state.params, updates)
        base_lr, vision_lr = opt_lib.learning_rates(state.step, optim, config.train.total_steps)
        metrics = dict(losses, grad_norm=optax.global_norm(grads), lr=base_lr, vision_lr=vision_lr)
        return TrainState(state.step + 1, params, opt_state), metrics

    rep = NamedSharding(mesh, P())
    bs = batch_sharding(mesh)
    return jax.jit(
        train_step,
        in_shardings=(shardings, bs, bs, bs, bs, rep),
        out_shardings=(shardings, rep),
        donate_argnums=(0,),
    )


def _j_per_object(preds: np.ndarray, masks: np.ndarray) -> np.ndarray:
    """Region similarity J (IoU, 1 when both empty) of every object on frames 1..T-1: (B, O)."""
    pred = preds[:, 1:] > 0
    gt = masks[:, 1:]
    inter = (pred & gt).sum((-2, -1))
    union = (pred | gt).sum((-2, -1))
    j = np.where(union == 0, 1.0, inter / np.maximum(union, 1))
    return j.mean(1)


def evaluate(module, params, batch: data_lib.Batch, config: ml_collections.ConfigDict) -> dict[str, float]:
    """Held-out loss and J: mask prompt on frame 0, tracking through the clip (no corrections)."""
    fc = freeze_config(config)
    valid = batch.get("obj_valid")
    losses, preds = sam2_train.batch_losses(
        module, params, batch["frames"], batch["masks"], batch["plan"], jax.random.key(0), fc, True, valid
    )
    B, T, O, h, w = preds.shape
    S = config.model.image_size
    # (B, T, O, h, w) -> (B*T, h, w, O) -> (B*T, S, S, O) -> (B, T, O, S, S)
    up = interpolate(preds.reshape(B * T, O, h, w).transpose(0, 2, 3, 1), (S, S), "bilinear")
    up = np.asarray(up).transpose(0, 3, 1, 2).reshape(B, T, O, S, S)
    j = _j_per_object(up, batch["masks"])
    j = j.mean() if valid is None else j[np.asarray(valid)].mean()  # padded objects are not scored
    return {"eval_loss": float(losses["core_loss"]), "eval_J": float(j)}


class _Logger:
    """JSONL + TensorBoard event files."""

    def __init__(self, workdir: str):
        from tensorboardX import SummaryWriter

        self.jsonl = open(os.path.join(workdir, "metrics.jsonl"), "a")  # noqa: SIM115 (closed in close())
        self.tb = SummaryWriter(os.path.join(workdir, "tensorboard"))

    def write(self, step: int, metrics: dict[str, float]) -> None:
        self.jsonl.write(json.dumps({"step": step, **metrics}) + "\n")
        self.jsonl.flush()
        for k, v in metrics.items():
            self.tb.add_scalar(k, v, step)

    def close(self) -> None:
        self.jsonl.close()
        self.tb.close()


def _checkpoint_manager(workdir: str, config: ml_collections.ConfigDict):
    import orbax.checkpoint as ocp

    # A save cut short (a killed process) leaves a temporary directory that is never a restore candidate;
    # cleanup_tmp_directories removes it when the next run starts.
    options = ocp.CheckpointManagerOptions(
        max_to_keep=config.train.keep_checkpoints,
        enable_async_checkpointing=config.train.async_checkpointing,
        cleanup_tmp_directories=True,
    )
    return ocp.CheckpointManager(os.path.abspath(os.path.join(workdir, "checkpoints")), options=options)


def _export(params, config: ml_collections.ConfigDict, workdir: str) -> None:
    from sam2_jax.convert_weights.convert import params_to_state_dict, save_torch_state_dict
    from sam2_jax.convert_weights.mapping import param_table
    from sam2_jax.convert_weights.orbax_io import save_params

    if not all(x.is_fully_addressable or x.is_fully_replicated for x in jax.tree.leaves(params)):
        from jax.experimental import multihost_utils

        params = multihost_utils.process_allgather(params, tiled=True)  # a collective: every process calls it
    if jax.process_index() != 0:
        return
    out = os.path.join(workdir, "export")
    os.makedirs(out, exist_ok=True)
    host = jax.tree.map(np.asarray, params)
    path = os.path.join(out, "params")
    if not os.path.exists(path):
        if jax.process_count() == 1:
            save_params(host, path)
        else:  # orbax would wait at barriers for the other processes: this write is process 0's alone
            import orbax.checkpoint as ocp

            only0 = ocp.options.MultiprocessingOptions(primary_host=0, active_processes={0})
            with ocp.StandardCheckpointer(multiprocessing_options=only0) as ckptr:
                ckptr.save(os.path.abspath(path), host)
    # The official-format .pt is written without torch (convert_weights.pt_format).
    save_torch_state_dict(params_to_state_dict(host, param_table(config)), os.path.join(out, "model.pt"))


def build_model(config: ml_collections.ConfigDict):
    """The model at the configured input size: from ``train.init_checkpoint``, or random params (``train.seed``)."""
    t = config.train
    return build_sam2(config, t.init_checkpoint or None, dtype=t.compute_dtype, seed=t.seed)


def train_and_evaluate(config: ml_collections.ConfigDict, workdir: str) -> dict[str, Any]:
    """Train (or resume) in ``workdir`` until ``config.train.total_steps``.

    Args:
        config: a training config (``sam2_jax/configs/train_*.py``).
        workdir: output directory (checkpoints, metrics, export).

    Returns:
        dict with ``losses`` (step -> core loss of the steps run here), the last ``metrics`` and ``eval`` results.
    """

    t = config.train
    maybe_initialize_distributed(config)
    enable_compilation_cache(enabled=t.get("compilation_cache", True))
    os.makedirs(workdir, exist_ok=True)
    model = build_model(config)
    module = sam2_train.training_module(model.module)
    mesh = make_mesh(config)
    source = _checked_source(config, mesh)
    tx = opt_lib.make_optimizer(model.params, config, t.total_steps)
    mngr = _checkpoint_manager(workdir, config)
    bs = batch_sharding(mesh)
    batches = _batch_iterator(source, config, bs)
    state, shardings, start = _initial_state(model.params, tx, mesh, config, mngr, batches)
    del model

    step_fn = make_train_step(module, tx, config, mesh, shardings)
    held_out = data_lib.held_out_batch(config, t.eval_videos, t.eval_seed) if t.eval_videos else None
    if held_out is not None and jax.process_count() > 1:
        raise ValueError("held-out evaluation (train.eval_videos) runs on one process only; set it to 0")
    lead = jax.process_index() == 0
    logger = _Logger(workdir) if lead else None
    key = jax.random.key(t.seed)
    losses: dict[int, float] = {}
    metrics: dict[str, float] = {}
    evals: dict[int, dict] = {}

    def run_eval(step):
        if held_out is not None:
            evals[step] = evaluate(module, state.params, held_out, config)
            logger.write(step, evals[step])  # single process (checked above)

    if start == 0 and t.eval_at_start:
        run_eval(0)
    stop = t.total_steps if not t.stop_after else min(t.total_steps, start + t.stop_after)
    bar = _progress(start, t.total_steps, enabled=lead)
    window = _MetricWindow(start)
    try:
        for step, batch in batches:
            if step >= stop:
                break
            # Sources may differ in clips per batch (and clip shapes: one more compile per kind of batch).
            g = global_batch(batch, bs, data_lib.step_source(source, config, step).batch_size)
            state, m = step_fn(state, g["frames"], g["masks"], g["plan"], g["obj_valid"], key)
            done = step + 1
            window.add(m)
            if done % t.log_every == 0 or done == stop:
                metrics = window.read(done)
                if logger is not None:
                    logger.write(done, metrics)
                losses[done] = metrics["core_loss"]
                bar.update(done, metrics)
            if done % t.checkpoint_every == 0 or done == t.total_steps:
                _save(mngr, state, done, t.data.seed, batches)
            if t.eval_every and done % t.eval_every == 0:
                run_eval(done)
        if int(state.step) >= t.total_steps:
            if t.total_steps not in evals:
                run_eval(t.total_steps)
            _export(state.params, config, workdir)
    finally:
        batches.close()
        mngr.wait_until_finished()
        mngr.close()
        bar.close()
        if logger is not None:
            logger.close()
    return {"losses": losses, "metrics": metrics, "eval": evals}


def _checked_source(config, mesh):
    """The configured training source; each of its batch sizes must split over the mesh's data axis."""
    source = data_lib.training_source(config)
    for src in source.sources:
        if src.batch_size % mesh.shape["data"]:
            raise ValueError(
                f"source {src.name!r} has batches of {src.batch_size} clips, not divisible by the data axis "
                f"{mesh.shape['data']}"
            )
    return source


def _initial_state(params, tx, mesh, config, mngr, batches) -> tuple[TrainState, Any, int]:
    """The train state restored from the latest checkpoint of ``mngr`` (checking its data seed), with the data
    iterator ``batches`` restored to its checkpointed state, or a fresh one.

    Returns ``(state, shardings, first step)``.
    """
    import orbax.checkpoint as ocp

    def init_state(params):
        return TrainState(jnp.zeros((), jnp.int32), params, tx.init(params))

    abstract = jax.eval_shape(init_state, params)
    shardings = state_shardings(abstract, mesh, config)
    latest = mngr.latest_step()
    if latest is None:
        # Host copies placed straight into their shardings: every process holds the same initial params (same
        # seed or checkpoint), and an array on one local device cannot enter a mesh that spans several processes.
        params = jax.tree.map(_put_global, params, shardings.params)
        return jax.jit(init_state, out_shardings=shardings)(params), shardings, 0
    target = jax.tree.map(lambda a, s: jax.ShapeDtypeStruct(a.shape, a.dtype, sharding=s), abstract, shardings)
    items = dict(state=ocp.args.StandardRestore(target), data=ocp.args.JsonRestore())
    # A checkpoint written before the input pipeline ran on grain has no iterator state: it resumes at its step.
    has_iterator = os.path.isdir(os.path.join(mngr.directory, str(latest), DATA_ITERATOR))
    if has_iterator:
        items[DATA_ITERATOR] = grain.checkpoint.CheckpointRestore(batches)
    restored = mngr.restore(latest, args=ocp.args.Composite(**items))
    data_state = restored["data"]
    if data_state["data_seed"] != config.train.data.seed:
        raise ValueError(
            f"checkpoint was written with data seed {data_state['data_seed']}, the config has {config.train.data.seed}"
        )
    start = int(data_state["next_step"])
    if not has_iterator:
        batches.set_state({"next_index": start})
    return restored["state"], shardings, start


def _save(mngr, state: TrainState, done: int, data_seed: int, batches) -> None:
    """Checkpoint ``state`` after ``done`` steps with the data seed and the data iterator's state (grain's: the next
    step, per process)."""
    import orbax.checkpoint as ocp

    data = ocp.args.JsonSave({"data_seed": data_seed, "next_step": done})
    items = dict(state=ocp.args.StandardSave(state), data=data)
    items[DATA_ITERATOR] = grain.checkpoint.CheckpointSave(batches)
    mngr.save(done, args=ocp.args.Composite(**items))


class _MetricWindow:
    """Means of the step metrics since the last log: summed on the device (no host sync until ``read``)."""

    def __init__(self, start: int):
        self.acc, self.n = None, 0
        self.last_step, self.t_last = start, time.perf_counter()

    def add(self, m: dict) -> None:
        self.acc = m if self.acc is None else jax.tree.map(jnp.add, self.acc, m)
        self.n += 1
        self.last = m

    def read(self, done: int) -> dict[str, float]:
        """The window's means, the last step's core loss and the mean step time; starts a new window."""
        metrics = {k: float(v) / self.n for k, v in self.acc.items()}
        metrics["last_core_loss"] = float(self.last["core_loss"])
        now = time.perf_counter()
        metrics["step_time"] = (now - self.t_last) / max(done - self.last_step, 1)
        self.acc, self.n, self.last_step, self.t_last = None, 0, done, now
        return metrics


class _progress:
    """A tqdm bar with the loss and the step time (quiet when tqdm is missing)."""

    def __init__(self, start: int, total: int, enabled: bool = True):
        try:
            from tqdm import tqdm

            self.bar = tqdm(total=total, initial=start, dynamic_ncols=True) if enabled else None
        except ImportError:  # pragma: no cover
            self.bar = None
        self.n = start

    def update(self, step: int, metrics: dict[str, float]) -> None:
        if self.bar is not None:
            self.bar.update(step - self.n)
            self.bar.set_postfix(loss=f"{metrics['core_loss']:.4g}", s_per_step=f"{metrics['step_time']:.2f}")
        self.n = step

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
