"""Checkpoints in one place: find or download the official ones, make random stand-ins, convert, load.

- ``get_checkpoint``: the official ``.pt`` of a config in the cache (``$SAM2_JAX_CACHE`` or ``~/.cache/sam2_jax``),
  downloaded from Meta's published URL when missing; where there is no network a ``CheckpointUnavailable`` says
  where to put the file.
- ``hub_checkpoint`` (for ``build_sam2_hf``): an official Hugging Face id (``facebook/sam2.1-hiera-tiny``) through
  ``huggingface_hub`` (cache, revision, offline mode, token): the repo's official ``.pt`` or transformers'
  ``model.safetensors``.
- ``read_state_dict``: the official state dict of a ``.pt`` or a transformers SAM 2 file / folder.
- ``random_checkpoint`` / ``random_params``: deterministic random weights at PyTorch-like scales
  (``sam2_jax.utils.random_weights``), as an official-format ``.pt`` or as our params, for demos and tests on
  machines that cannot download anything.
- ``convert_checkpoint``: an official ``.pt`` (or a transformers folder) to an orbax params folder. Without an
  explicit output folder the conversion goes to the cache, keyed by the SHA-256 of the file's content (not its
  name), so a replaced, edited or truncated file is never served an earlier conversion; ``resolve_checkpoint`` finds
  it again.
- ``export_checkpoint`` / ``export_hf_checkpoint``: our params back to an official ``.pt`` or a transformers folder
  (bit-exact round trips).
- ``load_params`` (strict, from a ``.pt``, a transformers folder / ``.safetensors`` or an orbax folder),
  ``init_params`` and ``param_shapes`` for ``build_sam2``.
- ``cache_dir`` (from ``sam2_jax.utils.paths``): the cache folder.

This module is checkpoint I/O: it imports the model type and configs below it and nothing above
(``sam2_jax/modeling/sam2_model.py`` draws the layers).

Nothing here needs PyTorch: ``.pt`` files are read and written by ``convert_weights.pt_format`` (zip + a restricted
unpickler that refuses any pickle able to run code), transformers' files by ``convert_weights.hf_format``.
"""

import functools
import hashlib
import json
import os
import shutil
import sys
import tempfile
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from sam2_jax.configs import get_config
from sam2_jax.convert_weights.convert import (
    convert_state_dict,
    flatten,
    infer_config_name,
    load_torch_state_dict,
    params_to_state_dict,
    save_torch_state_dict,
)
from sam2_jax.convert_weights.hf_format import hf_to_state_dict, infer_config_name_hf, read_hf, weights_file, write_hf
from sam2_jax.convert_weights.mapping import TRANSFORMS, param_table
from sam2_jax.convert_weights.orbax_io import restore_params, save_params
from sam2_jax.modeling.sam2_base import SAM2Base
from sam2_jax.modeling.sam2_model import make_module, resolve_config
from sam2_jax.utils.paths import cache_dir

HF_MODEL_IDS = {
    "facebook/sam2-hiera-tiny": "sam2_hiera_t",
    "facebook/sam2-hiera-small": "sam2_hiera_s",
    "facebook/sam2-hiera-base-plus": "sam2_hiera_b+",
    "facebook/sam2-hiera-large": "sam2_hiera_l",
    "facebook/sam2.1-hiera-tiny": "sam2.1_hiera_t",
    "facebook/sam2.1-hiera-small": "sam2.1_hiera_s",
    "facebook/sam2.1-hiera-base-plus": "sam2.1_hiera_b+",
    "facebook/sam2.1-hiera-large": "sam2.1_hiera_l",
}
# Cache layout of conversions: CONVERTED/<stem>-<sha256[:16]>/{params/ (orbax), source.json}.
CONVERTED = "converted"
PARAMS = "params"
SOURCE = "source.json"


class CheckpointUnavailable(RuntimeError):
    """The official checkpoint is neither cached nor downloadable here."""


class Conversion(NamedTuple):
    """What ``convert_checkpoint`` wrote (or found already written)."""

    path: Path  # the orbax params folder, what ``build_sam2`` / ``load_params`` take
    config_name: str
    sha256: str  # of the source .pt
    num_tensors: int
    cached: bool  # True when an earlier conversion of the same content was reused


class CheckpointSource(NamedTuple):
    """A checkpoint as the user named it, and what is actually read for it (``resolve_checkpoint``)."""

    path: Path  # the .pt file or orbax folder given
    sha256: str | None  # SHA-256 of a .pt file's content; None for a folder
    load_path: Path  # the .pt itself, or its cached orbax conversion


# --- the official files -------------------------------------------------------------------------------------


def official_checkpoint_path(config_name: str) -> Path:
    """Where the official ``.pt`` of a config lives in the cache (whether or not it is there).

    Args:
      config_name: ``sam2.1_hiera_t``, ``sam2.1_hiera_tiny``, ... (see ``configs.get_config``).
    Returns:
      ``cache_dir() / <official file name>``, e.g. ``~/.cache/sam2_jax/sam2.1_hiera_tiny.pt``.
    """
    return cache_dir() / get_config(config_name).checkpoint_name


def get_checkpoint(config_name: str, download: bool = True, timeout: float = 20.0, progress: bool = False) -> Path:
    """The official ``.pt`` of ``config_name`` in the cache, downloaded from Meta's URL when missing.

    The download goes to a ``.part`` file renamed at the end, so an interrupted one never leaves a truncated
    checkpoint under the official name.

    Args:
      config_name: model config name (``sam2.1_hiera_t`` ...).
      download: whether to download a missing file (False: only look in the cache).
      timeout: network timeout in seconds.
      progress: show a progress bar on stderr.
    Returns:
      Path of the cached file.
    Raises:
      CheckpointUnavailable: not cached and not downloadable (the message says where to copy the file).
    """
    config = get_config(config_name)
    path = cache_dir() / config.checkpoint_name
    if path.is_file():
        return path
    if not download:
        raise CheckpointUnavailable(f"{path} is not there and downloading is off")
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".part")
    try:
        with urllib.request.urlopen(config.checkpoint_url, timeout=timeout) as r, open(tmp, "wb") as f:
            bar = None
            if progress:
                from tqdm import tqdm

                total = int(r.headers.get("Content-Length") or 0) or None
                bar = tqdm(total=total, unit="B", unit_scale=True, desc=config.checkpoint_name, file=sys.stderr)
            while chunk := r.read(1 << 20):
                f.write(chunk)
                if bar is not None:
                    bar.update(len(chunk))
            if bar is not None:
                bar.close()
    except (urllib.error.URLError, OSError, TimeoutError, ValueError) as e:
        tmp.unlink(missing_ok=True)
        raise CheckpointUnavailable(
            f"cannot download {config.checkpoint_name} from {config.checkpoint_url} ({getattr(e, 'reason', e)}); "
            f"no network here? Download it on a machine with internet and copy it to {path}, or pass its path "
            "as the checkpoint"
        ) from None
    tmp.rename(path)
    return path


def sha256_file(path: str | os.PathLike) -> str:
    """SHA-256 of a file's content (hex), read in 1 MiB chunks: about a second for the largest checkpoint.

    Args:
      path: a file.
    Returns:
      64 hex digits.
    """
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            h.update(chunk)
    return h.hexdigest()


# --- params of a module -------------------------------------------------------------------------------------


def param_shapes(module: SAM2Base) -> dict[tuple[str, ...], tuple[int, ...]]:
    """Shapes of every param of ``module`` (from ``jax.eval_shape``: nothing is computed).

    Args:
      module: the model, traced at its own ``image_size`` (the prompt encoder's dense position encoding is sized
        by the config).
    Returns:
      Param path (tuple of names) -> shape.
    """
    return dict(_traced_shapes(module))


@functools.lru_cache(maxsize=16)
def _traced_shapes(module: SAM2Base) -> tuple:
    # Tracing the whole init takes seconds for the large model; a module hashes by its frozen config.
    s = module.image_size
    x = jax.ShapeDtypeStruct((1, s, s, 3), jnp.float32)
    variables = jax.eval_shape(lambda x: module.init(jax.random.PRNGKey(0), x), x)
    return tuple((p, tuple(v.shape)) for p, v in flatten(variables["params"]).items())


def init_params(module: SAM2Base, seed: int = 0) -> dict:
    """Fresh random params from the modules' initializers (training from scratch).

    Args:
      module: the model, traced at its own input size; only the params are returned, so XLA drops the forward
        pass.
      seed: ``jax.random.PRNGKey`` seed.
    Returns:
      Nested dict of params.
    """
    s = module.image_size
    x = jnp.zeros((1, s, s, 3), jnp.float32)
    return jax.jit(lambda x: module.init(jax.random.PRNGKey(seed), x))(x)["params"]


def _torch_shapes(config: ml_collections.ConfigDict, ours: dict) -> dict[str, tuple[int, ...]]:
    # Torch-layout shapes by running each inverse transform on a dummy of our shape.
    return {k: TRANSFORMS[tf][1](np.empty(ours[p], np.float32)).shape for p, k, tf in param_table(config)}


def official_shapes(config: Any) -> dict[str, tuple[int, ...]]:
    """Torch-layout shapes of every official state-dict key of a config (from ``jax.eval_shape``; no torch).

    Args:
      config: config name or ConfigDict.
    Returns:
      Official key -> shape.
    """
    config = resolve_config(config)
    return _torch_shapes(config, param_shapes(make_module(config.model)))


def random_params(config: Any, module: SAM2Base | None = None, seed: int = 0) -> dict:
    """Deterministic random params at PyTorch-like scales: the weights of ``random_checkpoint``, converted.

    Args:
      config: config name or ConfigDict (``resolve_config``).
      module: the model to size them for (e.g. built with a smaller ``image_size``); default: from ``config``.
      seed: seed of ``sam2_jax.utils.random_weights.random_state_dict``.
    Returns:
      Nested dict of float32 numpy params, the same values as converting ``random_checkpoint(config, ..., seed)``.
    """
    from sam2_jax.utils.random_weights import random_state_dict

    config = resolve_config(config)
    ours = param_shapes(module if module is not None else make_module(config.model))
    table = param_table(config)
    return convert_state_dict(random_state_dict(_torch_shapes(config, ours), table, seed), table, ours)


def random_checkpoint(config_name: str, path: str | os.PathLike, seed: int = 0) -> Path:
    """Write an official-format ``.pt`` with deterministic random weights (no PyTorch needed).

    Args:
      config_name: model config name.
      path: output file; written to a temporary name and renamed, so it is complete or absent.
      seed: weight seed.
    Returns:
      ``path``.
    """
    from sam2_jax.utils.random_weights import random_state_dict

    config = resolve_config(config_name)
    sd = random_state_dict(_torch_shapes(config, param_shapes(make_module(config.model))), param_table(config), seed)
    path = Path(path)
    tmp = path.with_name(path.name + ".part")
    save_torch_state_dict(sd, tmp)
    tmp.replace(path)
    return path


# --- conversion ---------------------------------------------------------------------------------------------


def is_hf_checkpoint(path: str | os.PathLike) -> bool:
    """Whether ``path`` is in transformers' format: a ``.safetensors`` file or a folder with ``model.safetensors``."""
    path = Path(path)
    return path.suffix == ".safetensors" or (path.is_dir() and weights_file(path).is_file())


def read_state_dict(path: str | os.PathLike) -> dict[str, np.ndarray]:
    """The official state dict (numpy) of an official ``.pt`` or a transformers SAM 2 file / folder. No torch.

    Args:
      path: ``.pt`` (read by ``sam2_jax.convert_weights.pt_format``), ``.safetensors`` or an HF folder (strict HF table;
        the model is inferred from the HF keys).
    Returns:
      Official key -> array.
    Raises:
      ValueError: unreadable, or an HF file that does not match its own inferred config (names the keys).
    """
    if is_hf_checkpoint(path):
        hf = read_hf(path)
        config = get_config(infer_config_name_hf(hf))
        return hf_to_state_dict(hf, config, official_shapes(config))  # shape errors named by HF key
    return load_torch_state_dict(path)


def _params_from_state_dict(sd: dict, path: Any, config: ml_collections.ConfigDict, shapes: dict) -> dict:
    try:
        found = infer_config_name(sd)
    except ValueError:
        found = None
    if found is not None and found != config.name:
        raise ValueError(f"checkpoint {str(path)!r} is a {found} model, but config {config.name} was requested")
    return convert_state_dict(sd, param_table(config), shapes)


def conversion_dir(checkpoint: str | os.PathLike, sha256: str | None = None) -> Path:
    """The cache folder that holds (or will hold) the conversion of this file's content.

    Args:
      checkpoint: an official ``.pt``.
      sha256: its hash when already known (else computed).
    Returns:
      ``cache_dir()/converted/<stem>-<sha256[:16]>``; its ``params`` subfolder is the orbax folder.
    """
    sha256 = sha256 or sha256_file(checkpoint)
    return cache_dir() / CONVERTED / f"{Path(checkpoint).stem}-{sha256[:16]}"


def _cached(folder: Path, sha256: str) -> dict | None:
    """The source record of a finished conversion of content ``sha256`` in ``folder``, else None."""
    try:
        record = json.loads((folder / SOURCE).read_text())
    except (OSError, ValueError):
        return None
    if record.get("sha256") != sha256 or not (folder / PARAMS).is_dir():
        return None
    return record


def cached_conversion(checkpoint: str | os.PathLike, sha256: str | None = None) -> Path | None:
    """The orbax folder of an earlier ``convert_checkpoint`` of this file's exact content, if there is one.

    Args:
      checkpoint: an official ``.pt``.
      sha256: its hash when already known (else computed).
    Returns:
      The params folder, or None (never converted, or the file changed since).
    """
    sha256 = sha256 or sha256_file(checkpoint)
    folder = conversion_dir(checkpoint, sha256)
    return folder / PARAMS if _cached(folder, sha256) is not None else None


def convert_checkpoint(
    checkpoint: str | os.PathLike, out: str | os.PathLike | None = None, config: Any = None
) -> Conversion:
    """Convert an official ``.pt`` strictly (every key used, every shape checked) to an orbax params folder.

    Args:
      checkpoint: official ``.pt``.
      out: new orbax folder (must not exist). None: the cache, keyed by the file's SHA-256; an earlier conversion
        of the same content is reused and a changed file gets a new one.
      config: config name or ConfigDict the checkpoint must match; None infers it from the keys.
    Returns:
      ``Conversion(path, config_name, sha256, num_tensors, cached)``.
    Raises:
      ValueError: missing or unreadable file, a checkpoint that does not match the config, ``out`` exists.
      UnsafeCheckpointError: the ``.pt``'s pickle would run code (refused, nothing executed).
    """
    source = Path(checkpoint)
    checkpoint = weights_file(source) if is_hf_checkpoint(source) else source  # an HF folder: its safetensors
    if not checkpoint.is_file():
        raise ValueError(f"checkpoint {str(checkpoint)!r} does not exist")
    if out is not None and os.path.exists(out):  # before the slow part; save_params checks again
        raise ValueError(f"output {os.fspath(out)!r} already exists; choose a new directory or delete it")
    sha256 = sha256_file(checkpoint)
    folder = None
    if out is None:
        folder = conversion_dir(checkpoint, sha256)
        record = _cached(folder, sha256)
        if record is not None:
            return Conversion(folder / PARAMS, record["config"], sha256, record["num_tensors"], cached=True)
    sd = read_state_dict(checkpoint)
    config = resolve_config(config if config is not None else infer_config_name(sd))
    params = _params_from_state_dict(sd, checkpoint, config, param_shapes(make_module(config.model)))
    if folder is None:
        save_params(params, out)
        return Conversion(Path(out), config.name, sha256, len(sd), cached=False)
    # Write beside the final folder and rename it into place, so a cache entry is whole or absent.
    folder.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=folder.name + ".", suffix=".partial", dir=folder.parent))
    try:
        save_params(params, staging / PARAMS)
        record = dict(
            source=str(checkpoint.resolve()),
            size=checkpoint.stat().st_size,
            sha256=sha256,
            config=config.name,
            num_tensors=len(sd),
        )
        (staging / SOURCE).write_text(json.dumps(record, indent=1))
        if folder.exists() and _cached(folder, sha256) is None:
            shutil.rmtree(folder)  # a broken entry (written by hand, or half deleted)
        try:
            staging.rename(folder)
        except OSError:
            if _cached(folder, sha256) is None:  # not a concurrent conversion of the same file that won the race
                raise
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return Conversion(folder / PARAMS, config.name, sha256, len(sd), cached=False)


def export_checkpoint(params_dir: str | os.PathLike, config: Any, out: str | os.PathLike) -> Path:
    """Write orbax params back as an official-format ``.pt`` that the official ``build_sam2`` loads.

    Args:
      params_dir: orbax params folder (``convert_checkpoint``'s output or a training export).
      config: config name or ConfigDict of the params.
      out: output ``.pt``.
    Returns:
      ``out``.
    Raises:
      ValueError: the params do not match the config.
    """
    config = resolve_config(config)
    sd = params_to_state_dict(restore_params(params_dir), param_table(config))
    save_torch_state_dict(sd, out)
    return Path(out)


def export_hf_checkpoint(
    params_dir: str | os.PathLike, config: Any, out: str | os.PathLike, image_only: bool = False
) -> Path:
    """Write orbax params as a transformers SAM 2 folder (``model.safetensors`` + ``config.json``), no torch.

    Args:
      params_dir: orbax params folder.
      config: config name or ConfigDict of the params.
      out: output folder (``Sam2VideoModel.from_pretrained(out)`` loads it; ``Sam2Model`` with ``image_only``).
      image_only: write only the image model's tensors and config.
    Returns:
      ``out``.
    Raises:
      ValueError: the params do not match the config.
    """
    config = resolve_config(config)
    sd = params_to_state_dict(restore_params(params_dir), param_table(config))
    return write_hf(sd, config, out, image_only)


# --- loading ------------------------------------------------------------------------------------------------


def resolve_checkpoint(checkpoint: str | os.PathLike) -> CheckpointSource:
    """What to read for a checkpoint: a ``.pt``'s cached conversion when its content was converted before.

    Args:
      checkpoint: an official ``.pt`` or an orbax folder.
    Returns:
      ``CheckpointSource(path, sha256, load_path)``; ``sha256`` is the file's content hash (None for a folder).
    Raises:
      ValueError: the path does not exist.
    """
    path = Path(checkpoint)
    if path.is_dir():  # orbax params or an HF folder: read as they are
        return CheckpointSource(path, None, path)
    if not path.is_file():
        raise ValueError(f"checkpoint {str(path)!r} does not exist")
    sha256 = sha256_file(path)
    return CheckpointSource(path, sha256, cached_conversion(path, sha256) or path)


def load_params(checkpoint: str | os.PathLike, config: ml_collections.ConfigDict, module: SAM2Base) -> dict:
    """Params from an official ``.pt`` (strict conversion) or from an orbax folder written by the converter.

    Args:
      checkpoint: ``.pt`` file or orbax params folder.
      config: the config ``module`` was built from (its name is checked against the checkpoint's).
      module: the model; every param's shape is checked against it.
    Returns:
      Nested dict of numpy params.
    Raises:
      ValueError: naming missing, unexpected or wrongly shaped params, a checkpoint of another model, or a missing
        or unreadable file.
      UnsafeCheckpointError: the ``.pt``'s pickle would run code (refused, nothing executed).
    """
    path = os.fspath(checkpoint)
    shapes = param_shapes(module)
    if os.path.isdir(path) and not is_hf_checkpoint(path):
        params = restore_params(path)
        flat = {p: np.shape(v) for p, v in flatten(params).items()}
        missing, extra = set(shapes) - set(flat), set(flat) - set(shapes)
        wrong = [
            f"{'/'.join(p)}: {flat[p]} vs model {shapes[p]}"
            for p in set(flat) & set(shapes)
            if tuple(flat[p]) != shapes[p]
        ]
        if missing or extra or wrong:
            raise ValueError(
                f"orbax params at {path!r} do not match config {config.name}: "
                f"missing {sorted('/'.join(p) for p in missing)[:8]}, unexpected "
                f"{sorted('/'.join(p) for p in extra)[:8]}, wrong shapes {wrong[:8]}"
            )
        return params
    return _params_from_state_dict(read_state_dict(path), path, config, shapes)


def hub_checkpoint(
    model_id: str,
    revision: str | None = None,
    token: str | bool | None = None,
    cache_dir: str | os.PathLike | None = None,
    local_files_only: bool = False,
) -> Path:
    """The checkpoint file of an official Hugging Face repo (``facebook/sam2.1-hiera-tiny`` ...), through
    ``huggingface_hub``: its cache (``HF_HUB_CACHE``), revision pinning, offline mode (``HF_HUB_OFFLINE=1``) and
    token. The first supported file the repo (or the cache) has: the official ``.pt``, then transformers'
    ``model.safetensors``; where neither can be had, the official ``.pt`` already in our cache (``cache_dir()``).

    Args:
      model_id: one of ``HF_MODEL_IDS``.
      revision: branch, tag or commit (None: ``main``).
      token: hub token (None: ``huggingface_hub``'s own lookup: ``HF_TOKEN``, the saved login).
      cache_dir: hub cache folder (None: ``huggingface_hub``'s default).
      local_files_only: only look in the hub cache.
    Returns:
      Path of the ``.pt`` or ``.safetensors`` file (``build_sam2`` / ``load_params`` read either).
    Raises:
      ValueError: an unknown id.
      CheckpointUnavailable: nothing found (one line saying which file to place where).
    """
    from huggingface_hub import hf_hub_download
    from huggingface_hub.errors import EntryNotFoundError, HfHubHTTPError, LocalEntryNotFoundError

    if model_id not in HF_MODEL_IDS:
        raise ValueError(f"unknown model id {model_id!r}; expected one of {sorted(HF_MODEL_IDS)}")
    config = get_config(HF_MODEL_IDS[model_id])
    reasons = []
    for filename in (config.checkpoint_name, "model.safetensors"):
        try:
            return Path(
                hf_hub_download(
                    model_id,
                    filename,
                    revision=revision,
                    token=token,
                    cache_dir=cache_dir,
                    local_files_only=local_files_only,
                )
            )
        except (EntryNotFoundError, HfHubHTTPError, OSError) as e:  # not in the repo / cache, offline, no network
            reasons.append(f"{filename}: {type(e).__name__}")
            if isinstance(e, LocalEntryNotFoundError) or not isinstance(e, EntryNotFoundError | HfHubHTTPError):
                # No answer from the hub (no network: huggingface_hub raises LocalEntryNotFoundError, a subclass of
                # EntryNotFoundError, after its retries): the next file is looked for in the hub cache only, not
                # waited for a second time (each try costs those retries, about 25 s here).
                local_files_only = True
    ours = official_checkpoint_path(config.name)
    if ours.is_file():
        return ours
    raise CheckpointUnavailable(
        f"cannot get {model_id}{'@' + revision if revision else ''} from the Hugging Face hub "
        f"({'; '.join(reasons)}): no network, or offline? Download {config.checkpoint_name} (or the repo's "
        f"model.safetensors) on a machine with internet and copy it to {ours}, or pass its path as the checkpoint"
    )
