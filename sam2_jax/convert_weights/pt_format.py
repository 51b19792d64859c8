"""PyTorch's checkpoint file format (``torch.save``'s zip archive) read and written with the standard library and
numpy: no ``torch`` import.

A ``.pt`` written by ``torch.save`` (torch >= 1.6) is a zip archive ``<prefix>/data.pkl`` + ``<prefix>/data/<key>``
(+ ``version``, ``byteorder``, ``.format_version``, ``.storage_alignment``, ``.data/serialization_id``). The pickle
rebuilds each tensor with ``torch._utils._rebuild_tensor_v2(storage, offset, size, stride, requires_grad, hooks)``,
where ``storage`` is a persistent id ``('storage', torch.<Type>Storage, key, location, numel)`` naming a raw record.

Reading: ``RestrictedUnpickler`` resolves only the globals listed in ``ALLOWED_GLOBALS`` (the tensor and storage
rebuilders, ``collections.OrderedDict``) to local stand-ins; any other global (``os.system``, ``builtins.eval``,
``torch.nn.Module``, ...) raises ``UnsafeCheckpointError`` before anything is called, so a checkpoint's pickle can
never run code. Tensors become numpy arrays (float32, float16, bfloat16 through ``ml_dtypes``, float64, the integer
types, bool), rebuilt from their storage with the stored offset, shape and strides (bounds checked), so views and
shared storages read exactly as ``torch.load`` gives them. The result equals ``torch.load(weights_only=True)``
tensor for tensor, bit for bit (``tests/convert_weights/test_pt_format.py``).

Writing: ``save_pt`` emits the same archive (pickle protocol 2 written opcode by opcode, since pickling a reference
to ``torch._utils._rebuild_tensor_v2`` with ``pickle`` would need torch importable; records 64-byte aligned as torch
writes them), so ``torch.load(weights_only=True)`` and the official ``build_sam2`` load it.
"""

import collections
import io
import os
import pickle
import struct
import sys
import zipfile
from typing import Any, Mapping

import ml_dtypes
import numpy as np

# torch's legacy storage type names -> numpy dtype (the types torch.save writes for typed storages).
STORAGE_DTYPES = {
    "FloatStorage": np.dtype(np.float32),
    "DoubleStorage": np.dtype(np.float64),
    "HalfStorage": np.dtype(np.float16),
    "BFloat16Storage": np.dtype(ml_dtypes.bfloat16),
    "LongStorage": np.dtype(np.int64),
    "IntStorage": np.dtype(np.int32),
    "ShortStorage": np.dtype(np.int16),
    "CharStorage": np.dtype(np.int8),
    "ByteStorage": np.dtype(np.uint8),
    "BoolStorage": np.dtype(np.bool_),
}
DTYPE_STORAGES = {v: k for k, v in STORAGE_DTYPES.items()}
# Record alignment of torch.save's archives (``.storage_alignment``).
ALIGNMENT = 64


class UnsafeCheckpointError(pickle.UnpicklingError):
    """The checkpoint's pickle names a global that is not part of the tensor format (it could run code)."""


class StorageType(str):
    """Stand-in for ``torch.<Type>Storage`` in a persistent id: carries the numpy dtype."""

    @property
    def dtype(self) -> np.dtype:
        return STORAGE_DTYPES[self]


def rebuild_tensor_v2(storage, storage_offset, size, stride, requires_grad=False, backward_hooks=None, metadata=None):
    """Stand-in for ``torch._utils._rebuild_tensor_v2``: a numpy copy of the strided view into ``storage``.

    Args:
      storage: the flat numpy array of the storage record.
      storage_offset, size, stride: in elements, as torch stores them.
      requires_grad, backward_hooks, metadata: ignored (state dicts hold plain tensors).
    Returns:
      A C-contiguous numpy array of shape ``size``.
    Raises:
      pickle.UnpicklingError: the view would reach outside its storage.
    """
    size, stride = tuple(int(s) for s in size), tuple(int(s) for s in stride)
    offset = int(storage_offset)
    if not isinstance(storage, np.ndarray) or len(size) != len(stride) or min(size + stride + (offset,), default=0) < 0:
        raise pickle.UnpicklingError(f"malformed tensor record: offset {offset}, size {size}, stride {stride}")
    if 0 in size:
        return np.zeros(size, storage.dtype)
    last = offset + sum((n - 1) * s for n, s in zip(size, stride, strict=True))
    if last >= storage.size:
        raise pickle.UnpicklingError(
            f"tensor view (offset {offset}, size {size}, stride {stride}) reaches past its storage of {storage.size}"
        )
    itemsize = storage.dtype.itemsize
    view = np.lib.stride_tricks.as_strided(
        storage[offset:], shape=size, strides=[s * itemsize for s in stride], writeable=False
    )
    return np.array(view, order="C")


def rebuild_parameter(data, requires_grad=False, backward_hooks=None):
    """Stand-in for ``torch._utils._rebuild_parameter``: an ``nn.Parameter`` is its data."""
    return data


# (module, name) -> what the restricted unpickler returns for it. Nothing else resolves.
ALLOWED_GLOBALS: dict[tuple[str, str], Any] = {
    ("collections", "OrderedDict"): collections.OrderedDict,
    ("torch._utils", "_rebuild_tensor_v2"): rebuild_tensor_v2,
    ("torch._utils", "_rebuild_parameter"): rebuild_parameter,
    **{("torch", name): StorageType(name) for name in STORAGE_DTYPES},
}


class RestrictedUnpickler(pickle.Unpickler):
    """Unpickles a ``torch.save`` ``data.pkl`` with only ``ALLOWED_GLOBALS``; storages come from the archive."""

    def __init__(self, data: bytes, read_record, byteorder: str = "little"):
        super().__init__(io.BytesIO(data))
        self.read_record = read_record
        self.byteorder = byteorder
        self.storages: dict[str, np.ndarray] = {}

    def find_class(self, module: str, name: str):
        try:
            return ALLOWED_GLOBALS[(module, name)]
        except KeyError:
            raise UnsafeCheckpointError(
                f"refusing to load global {module}.{name}: a SAM 2 checkpoint holds only tensors, and this pickle "
                "could run code"
            ) from None

    def persistent_load(self, pid):
        if not (isinstance(pid, tuple) and len(pid) == 5 and pid[0] == "storage" and isinstance(pid[1], StorageType)):
            raise UnsafeCheckpointError(f"unexpected persistent id {pid!r:.200} (only tensor storages are allowed)")
        _, storage_type, key, _location, numel = pid
        key = str(key)
        if key not in self.storages:
            raw = self.read_record(key)
            dtype = storage_type.dtype
            if len(raw) != int(numel) * dtype.itemsize:
                raise pickle.UnpicklingError(
                    f"storage {key} has {len(raw)} bytes, expected {numel} x {dtype.itemsize} ({storage_type})"
                )
            storage = np.frombuffer(raw, dtype)
            if self.byteorder != sys.byteorder:  # swap through unsigned ints: bfloat16 has no byte-order variant
                storage = storage.view(f"u{dtype.itemsize}").byteswap().view(dtype)
            self.storages[key] = storage
        storage = self.storages[key]
        if storage.dtype != storage_type.dtype:  # the same record read as two dtypes: not something torch writes
            raise pickle.UnpicklingError(f"storage {key} is used as both {storage.dtype} and {storage_type.dtype}")
        return storage


def load_pt(path: str | os.PathLike) -> Any:
    """``torch.load(path, weights_only=True)`` without torch: the pickled object with numpy arrays for tensors.

    Args:
      path: a ``torch.save`` zip archive.
    Returns:
      The unpickled object (dicts, lists, numbers, strings, numpy arrays).
    Raises:
      ValueError: not a file, not a zip archive, truncated or corrupt (one line naming the file and the cause).
      UnsafeCheckpointError: the pickle names a global outside the tensor format (nothing was executed).
    """
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise ValueError(f"checkpoint {path!r} does not exist")
    try:
        with zipfile.ZipFile(path) as z:
            pkl = [n for n in z.namelist() if n.endswith("data.pkl") and n.count("/") == 1]
            if len(pkl) != 1:
                raise ValueError(f"no single <prefix>/data.pkl record (found {len(pkl)})")
            prefix = pkl[0][: -len("data.pkl")]
            names = set(z.namelist())
            byteorder = z.read(prefix + "byteorder").decode().strip() if prefix + "byteorder" in names else "little"
            if byteorder not in ("little", "big"):
                raise ValueError(f"unknown byteorder {byteorder!r}")
            unpickler = RestrictedUnpickler(z.read(pkl[0]), lambda key: z.read(f"{prefix}data/{key}"), byteorder)
            return unpickler.load()
    except UnsafeCheckpointError as e:
        raise UnsafeCheckpointError(f"checkpoint {path!r}: {e}") from None
    except (
        zipfile.BadZipFile,
        zipfile.LargeZipFile,
        KeyError,
        EOFError,
        OSError,
        ValueError,
        pickle.UnpicklingError,
    ) as e:
        raise ValueError(
            f"checkpoint {path!r} could not be read (truncated, or not a zip-format torch file): {e}"
        ) from None


# --- writing ------------------------------------------------------------------------------------------------


def pickle_int(n: int) -> bytes:
    """A pickle opcode pushing ``n``."""
    if 0 <= n < 256:
        return b"K" + bytes([n])
    if -(2**31) <= n < 2**31:
        return b"J" + struct.pack("<i", n)
    data = n.to_bytes((n.bit_length() + 8) // 8, "little", signed=True)
    return b"\x8a" + bytes([len(data)]) + data


def pickle_str(s: str) -> bytes:
    data = s.encode("utf-8")
    return b"X" + struct.pack("<I", len(data)) + data


def pickle_tuple(items: list[bytes]) -> bytes:
    return b"(" + b"".join(items) + b"t"


def pickle_state_dict(state_dict: Mapping[str, np.ndarray]) -> bytes:
    """``{"model": OrderedDict(key -> tensor)}`` as ``torch.save`` pickles it, storage ``i`` for the i-th tensor."""
    ordered_dict = b"ccollections\nOrderedDict\n)R"  # GLOBAL, EMPTY_TUPLE, REDUCE: OrderedDict()
    out = [b"\x80\x02}", pickle_str("model"), ordered_dict, b"("]
    for i, (key, a) in enumerate(state_dict.items()):
        storage = f"torch\n{DTYPE_STORAGES[a.dtype]}\n".encode()
        pid = pickle_tuple(
            [pickle_str("storage"), b"c" + storage, pickle_str(str(i)), pickle_str("cpu"), pickle_int(a.size)]
        )
        strides = [int(np.prod(a.shape[d + 1 :], dtype=np.int64)) for d in range(a.ndim)]
        args = [
            pid + b"Q",  # BINPERSID
            pickle_int(0),
            pickle_tuple([pickle_int(n) for n in a.shape]),
            pickle_tuple([pickle_int(s) for s in strides]),
            b"\x89",  # NEWFALSE: requires_grad
            ordered_dict,  # backward hooks
        ]
        out += [pickle_str(key), b"ctorch._utils\n_rebuild_tensor_v2\n", pickle_tuple(args), b"R"]
    out += [b"u", b"s", b"."]  # SETITEMS into the OrderedDict, SETITEM into the outer dict, STOP
    return b"".join(out)


def write_record(z: zipfile.ZipFile, name: str, data: bytes, align: int = 1) -> None:
    """An uncompressed record whose data starts at a multiple of ``align`` (padding in the local extra field)."""
    info = zipfile.ZipInfo(name, date_time=(1980, 1, 1, 0, 0, 0))
    info.compress_type = zipfile.ZIP_STORED
    if align > 1:
        start = z.fp.tell() + 30 + len(name.encode())  # local header: 30 bytes + name + extra
        pad = (-(start + 4)) % align
        info.extra = struct.pack("<HH", 0x4246, pad) + b"Z" * pad  # 'FB', as torch's writer pads
    z.writestr(info, data)


def save_pt(state_dict: Mapping[str, np.ndarray], path: str | os.PathLike, prefix: str = "archive") -> None:
    """Write ``{"model": state_dict}`` as ``torch.save`` does (zip archive, pickle protocol 2), without torch.

    Args:
      state_dict: key -> numpy array (float32, float16, bfloat16, float64, integer or bool).
      path: output file.
      prefix: the archive's top folder (torch uses the file stem or ``archive``; readers accept any).
    Raises:
      ValueError: an array of a dtype torch's format has no storage type for.
    """
    arrays = {k: np.asarray(v, order="C") for k, v in state_dict.items()}  # ascontiguousarray makes 0-d 1-d
    bad = {k: str(a.dtype) for k, a in arrays.items() if a.dtype not in DTYPE_STORAGES}
    if bad:
        raise ValueError(f"no torch storage type for dtypes {dict(list(bad.items())[:8])}")
    with zipfile.ZipFile(path, "w", zipfile.ZIP_STORED) as z:
        write_record(z, f"{prefix}/data.pkl", pickle_state_dict(arrays))
        write_record(z, f"{prefix}/.format_version", b"1")
        write_record(z, f"{prefix}/.storage_alignment", str(ALIGNMENT).encode())
        write_record(z, f"{prefix}/byteorder", b"little")
        for i, a in enumerate(arrays.values()):
            data = a if sys.byteorder == "little" else a.view(f"u{a.dtype.itemsize}").byteswap()
            write_record(z, f"{prefix}/data/{i}", data.tobytes(), ALIGNMENT)
        write_record(z, f"{prefix}/version", b"3\n")
        write_record(z, f"{prefix}/.data/serialization_id", b"0" * 40)
