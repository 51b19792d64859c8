"""The names an export is read by, written once for the writers (``stablehlo``, ``onnx_export``) and the runtimes
(``runtime``, ``onnx_runtime``). Plain Python, no imports: the runtimes stay free of the model code.

StableHLO folder: ``MANIFEST`` (``manifest.json``) with ``"format": FORMAT``; ``PARAMS`` (``params.npz``); per
function ``<name>SUFFIX`` (``jax.export``) and ``<name>MLIR_SUFFIX`` (bare StableHLO). ONNX folder:
``ONNX_MANIFEST`` (``"format": ONNX_FORMAT``) and ``<name>.onnx`` per graph, named as the StableHLO functions.
"""

FORMAT = "sam2-jax-export"
FORMAT_VERSION = 1
MANIFEST = "manifest.json"
PARAMS = "params.npz"
PLATFORMS = ("cpu", "cuda", "tpu")
SUFFIX = ".jax_export"
MLIR_SUFFIX = ".mlirbc"
STATIC_MLIR_SUFFIX = ".static.mlirbc"  # the same function with concrete sizes (export_model's static_dims)

# Functions of a StableHLO export that take no size or prompt kind in their name.
IMAGE_ENCODER = "image_encoder"
FRAME_FEATURES = "frame_features"
PROMPT_MASK = "prompt_mask"
ENCODE_PROMPT_MEMORY = "encode_prompt_memory"

# Keys of an exported features / embeddings dict beside the numbered high-resolution levels.
VISION_FEAT, VISION_POS, IMAGE_EMBED = "vision_feat", "vision_pos", "image_embed"

ONNX_MANIFEST = "onnx_manifest.json"
ONNX_FORMAT = "sam2-jax-onnx"


def high_res(level: int) -> str:
    """Key of high-resolution feature level ``level`` (0: the finest) in a features or embeddings dict."""
    return f"high_res_{level}"


def num_high_res(keys) -> int:
    """How many ``high_res`` levels a features or embeddings dict's keys hold."""
    return sum(k.startswith("high_res_") for k in keys)


def image_decode(multimask: bool) -> str:
    """The image predictor's decoder with three masks (``multimask``) or one."""
    return f"image_decode_{'multi' if multimask else 'single'}"


def _count(num_points: int | str) -> str:
    if num_points in ("one", "many"):
        return num_points
    return "one" if num_points == 1 else "many"


def prompt_first(num_points: int | str, refine: bool = False) -> str:
    """An object's first prompted frame (no memory): one click, or ``n`` (``"many"``); ``refine`` with the frame's
    previous low-res logits."""
    return f"prompt_first{'_refine' if refine else ''}_{_count(num_points)}"


def prompt_tracked(num_points: int | str) -> str:
    """A prompt on a tracked frame (a correction), attending to the object's memory."""
    return f"prompt_tracked_{_count(num_points)}"


def propagate(chunk_size: int) -> str:
    """Propagation through ``chunk_size`` frames (one compiled ``lax.scan``)."""
    return f"propagate_{chunk_size}"


def track_step(num_objects: int) -> str:
    """The ONNX export's tracking step for ``num_objects`` objects: a frame's features in (``propagate(1)`` takes
    the frame's image instead), every object tracked one frame."""
    return f"track_step_{num_objects}"
