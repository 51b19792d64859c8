"""A small client of the ``sam2-jax serve`` API (standard library only), and the load run built on it.

c = Client("http://127.0.0.1:8000")
c.open_path("bedroom")                         # a path under the server's --allow-dir (or c.upload("clip.mp4"))
c.prompt(frame=0, obj_id=1, points=[[200, 150, 1]])
for event in c.propagate("both"): ...         # one event per tracked frame
masks = c.masks_zip()                          # {name: bytes} of the zip the page downloads
"""

import io
import json
import mimetypes
import os
import statistics
import threading
import time
import urllib.error
import urllib.request
import uuid
import zipfile
from collections.abc import Iterator


class ApiError(Exception):
    def __init__(self, status: int, message: str):
        super().__init__(f"{status}: {message}")
        self.status = status


class Client:
    """One session of the server."""

    def __init__(self, base_url: str, timeout: float = 600.0) -> None:
        self.base = base_url.rstrip("/")
        self.timeout = timeout
        self.sid = self._call("POST", "/api/sessions")["session"]

    def _request(self, method: str, path: str, body=None, content_type: str = "application/json"):
        data = None
        headers = {}
        if body is not None:
            data = body if isinstance(body, bytes) else json.dumps(body).encode()
            headers["Content-Type"] = content_type
        req = urllib.request.Request(self.base + path, data=data, method=method, headers=headers)
        try:
            return urllib.request.urlopen(req, timeout=self.timeout)
        except urllib.error.HTTPError as e:
            try:
                message = json.loads(e.read()).get("error", e.reason)
            except ValueError:
                message = e.reason
            raise ApiError(e.code, message) from None

    def _call(self, method: str, path: str, body=None, content_type: str = "application/json"):
        with self._request(method, path, body, content_type) as r:
            return json.loads(r.read())

    def _session(self, method: str, path: str = "", body=None):
        return self._call(method, f"/api/sessions/{self.sid}{path}", body)

    def open_path(self, path: str) -> dict:
        return self._session("POST", "/open", {"path": path})

    def upload(self, path: str, data: bytes | None = None, name: str | None = None) -> dict:
        """Upload a file (or ``data`` under ``name``) as the page does: multipart form field ``file``."""
        name = name or os.path.basename(path)
        if data is None:
            with open(path, "rb") as f:
                data = f.read()
        boundary = uuid.uuid4().hex
        mime = mimetypes.guess_type(name)[0] or "application/octet-stream"
        body = (
            (
                f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="{name}"\r\n'
                f"Content-Type: {mime}\r\n\r\n"
            ).encode()
            + data
            + f"\r\n--{boundary}--\r\n".encode()
        )
        return self._call("POST", f"/api/sessions/{self.sid}/open", body, f"multipart/form-data; boundary={boundary}")

    def info(self) -> dict:
        return self._session("GET")

    def prompt(self, frame: int, obj_id: int, points=None, box=None) -> dict:
        return self._session("POST", "/prompt", {"frame": frame, "obj_id": obj_id, "points": points, "box": box})

    def propagate(self, direction: str = "both", start: int | None = None) -> Iterator[dict]:
        """The server-sent events of a propagation: a dict per frame, then ``{"end": ...}``."""
        query = f"?direction={direction}" + ("" if start is None else f"&start={start}")
        with self._request("GET", f"/api/sessions/{self.sid}/propagate{query}") as r:
            kind = "message"
            for raw in r:
                line = raw.decode().rstrip("\n")
                if line.startswith("event: "):
                    kind = line[7:]
                elif line.startswith("data: "):
                    data = json.loads(line[6:])
                    if kind == "failed":
                        raise ApiError(500, data["error"])
                    yield {"end": data} if kind == "end" else data
                    kind = "message"

    def masks_zip(self) -> dict[str, bytes]:
        with self._request("GET", f"/api/sessions/{self.sid}/download/masks.zip") as r:
            z = zipfile.ZipFile(io.BytesIO(r.read()))
        return {n: z.read(n) for n in z.namelist()}

    def close(self) -> None:
        self._session("DELETE")


def one_user(base_url: str, path: str, clicks: list[dict], direction: str = "both") -> dict:
    """What one user of the load run does: open ``path``, click each of ``clicks`` (timed), propagate, download."""
    c = Client(base_url)
    t0 = time.perf_counter()
    c.open_path(path)
    latencies = []
    for click in clicks:
        t = time.perf_counter()
        c.prompt(**click)
        latencies.append(time.perf_counter() - t)
    frames = sum(1 for e in c.propagate(direction) if "end" not in e)
    masks = c.masks_zip()
    c.close()
    return {"latencies": latencies, "frames": frames, "masks": masks, "seconds": time.perf_counter() - t0}


def load_run(base_url: str, sessions: int, path: str, clicks_of, direction: str = "both") -> dict:
    """``sessions`` users at once (a thread each); ``clicks_of(i)`` gives user ``i``'s clicks. Returns each user's
    result and the summary: requests/s over the run, p50/p95 of a click's latency."""
    results: list[dict | BaseException] = [None] * sessions  # type: ignore[list-item]

    def user(i: int) -> None:
        try:
            results[i] = one_user(base_url, path, clicks_of(i), direction)
        except BaseException as e:  # noqa: BLE001 - reported by the caller
            results[i] = e

    t0 = time.perf_counter()
    threads = [threading.Thread(target=user, args=(i,)) for i in range(sessions)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    wall = time.perf_counter() - t0
    errors = [r for r in results if isinstance(r, BaseException)]
    if errors:
        raise RuntimeError(f"{len(errors)} of {sessions} sessions failed: {errors[0]!r}") from errors[0]
    lat = sorted(x for r in results for x in r["latencies"])
    # requests per user: session, open, clicks, propagate, download, close
    requests = sum(5 + len(r["latencies"]) for r in results)
    return {
        "results": results,
        "wall_s": wall,
        "requests_per_s": requests / wall,
        "frames_per_s": sum(r["frames"] for r in results) / wall,
        "click_p50_s": statistics.median(lat),
        "click_p95_s": lat[min(len(lat) - 1, round(0.95 * (len(lat) - 1)))],
    }
