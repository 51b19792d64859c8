"""The README and docs/ cannot rot: every fenced command block in them runs here, and what cannot run is checked.

Blocks of ``README.md`` and ``docs/*.md``, by their fence and first line:
- ```` ```bash ````: run with ``bash -euo pipefail`` from the repository root, ``.venv/bin`` first on ``PATH``, a
  temporary ``HOME`` and ``SAM2_JAX_CACHE`` (so no real checkpoint is found and nothing is downloaded) and
  ``/tmp/sam2_jax_docs`` rewritten to a temporary folder. The compiled programs are shared with the rest of the
  test run through ``SAM2_JAX_COMPILATION_CACHE`` (``tests/conftest.py``).
- ```` ```python ````: the same, as a script.
- first line ``# slow: <reason>``: run in the slow tier only (``SAM2_JAX_SLOW=1`` or ``-m slow``).
- first line ``# not run: <reason>`` (the network, an official checkpoint, a dataset, a GPU, hours): checked
  statically. Every ``sam2-jax <cmd>``, ``python eval.py``, ``python -m <module>`` or script line has only flags its
  ``--help`` names, ``train.py``'s ``--config.<path>`` overrides name fields of its config, ``pip install``
  names extras that ``pyproject.toml`` has, and a test or script it names exists. Running blocks get the same
  checks.
- the README's first block holds the two commands CI runs itself (``.ci/run``); they are compared with
  ``.ci/run`` and ``scripts/setup_env.sh`` instead of being run.

Besides: every relative link (and its ``#anchor``) points to an existing file (heading), and every repository path
written in code (``sam2_jax/...``, ``tests/...``, ``scripts/...``, ...) exists.
"""

import functools
import importlib.util
import os
import re
import shlex
import subprocess
import sys
import tomllib
from pathlib import Path
from typing import NamedTuple

import pytest

REPO = Path(__file__).resolve().parent.parent
DOC_FILES = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]
OUT_PLACEHOLDER = "/tmp/sam2_jax_docs"
VENV_BIN = REPO / ".venv" / "bin"
TOP_COMMANDS = [
    "scripts/setup_env.sh && .venv/bin/python -m sam2_jax.demo --image examples/truck.jpg --point 450,330",
    "scripts/setup_env.sh --reference && .venv/bin/python -m pytest -q -n 2 --dist loadfile tests",
]
BLOCK_TIMEOUT_S = 900


class Block(NamedTuple):
    path: Path
    line: int  # of the opening fence, 1-based
    lang: str
    text: str

    @property
    def where(self) -> str:
        return f"{self.path.relative_to(REPO)}:{self.line}"

    @property
    def first_line(self) -> str:
        return self.text.lstrip("\n").split("\n", 1)[0].strip()

    @property
    def not_run(self) -> bool:
        return self.first_line.startswith("# not run:")

    @property
    def slow(self) -> bool:
        return self.first_line.startswith("# slow:")


def _blocks(path: Path) -> list[Block]:
    """The fenced code blocks of a markdown file, in order."""
    blocks, lines = [], path.read_text().split("\n")
    i = 0
    while i < len(lines):
        m = re.match(r"^(\s*)```(\S*)", lines[i])
        if not m:
            i += 1
            continue
        start, lang, body = i, m.group(2), []
        i += 1
        while i < len(lines) and not lines[i].strip().startswith("```"):
            body.append(lines[i])
            i += 1
        blocks.append(Block(path, start + 1, lang, "\n".join(body) + "\n"))
        i += 1
    return blocks


ALL_BLOCKS = [b for p in DOC_FILES for b in _blocks(p)]
TOP_BLOCK = ALL_BLOCKS[0]
assert TOP_BLOCK.path.name == "README.md" and TOP_BLOCK.line < 10, "the README must open with its two commands"
RUNNABLE = [b for b in ALL_BLOCKS[1:] if b.lang in ("bash", "python") and not b.not_run]
CHECKED = [b for b in ALL_BLOCKS[1:] if b.lang in ("bash", "python")]


def _params(blocks):
    return [pytest.param(b, id=b.where, marks=[pytest.mark.slow] if b.slow else []) for b in blocks]


# ---------------------------------------------------------------------------------------------------------------
# The two top commands


def test_top_commands_are_what_ci_runs():
    commands = [ln for ln in TOP_BLOCK.text.split("\n") if ln.strip() and not ln.lstrip().startswith("#")]
    assert TOP_BLOCK.lang == "bash" and commands == TOP_COMMANDS, TOP_BLOCK.text
    ci = (REPO / ".ci" / "run").read_text()
    # (b) is what CI runs: the same setup flag and the same pytest line
    setup, _, test = TOP_COMMANDS[1].partition(" && ")
    assert setup in ci and f"exec {test}" in ci, ci
    assert os.access(REPO / "scripts" / "setup_env.sh", os.X_OK)
    assert "--reference" in (REPO / "scripts" / "setup_env.sh").read_text()
    # (a)'s demo takes the flags it is given
    demo_args = TOP_COMMANDS[0].partition(" && ")[2].split()[3:]
    errors = _check_flags(demo_args, _help(("python", "-m", "sam2_jax.demo")), "demo")
    assert not errors, errors


# ---------------------------------------------------------------------------------------------------------------
# Running the blocks


@pytest.fixture(scope="module")
def docs_env(tmp_path_factory):
    root = tmp_path_factory.mktemp("docs")
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("PYTEST_", "SAM2_JAX_CACHE", "SAM2_JAX_MEASURED", "HF_", "XDG_"))
    }
    env.update(
        HOME=str(root / "home"),
        SAM2_JAX_CACHE=str(root / "cache"),
        HF_HUB_OFFLINE="1",
        PATH=f"{VENV_BIN}{os.pathsep}{env.get('PATH', '')}",
        PYTHONUNBUFFERED="1",
    )
    # Programs compiled by the other tests (and by earlier blocks) are found in conftest's shared cache folder.
    env.setdefault("SAM2_JAX_COMPILATION_CACHE", str(REPO / ".cache" / "jax"))
    (root / "home").mkdir()
    return root, env


def _tail(s: str, n: int = 3000) -> str:
    return s if len(s) <= n else "…" + s[-n:]


@pytest.mark.parametrize("block", _params(RUNNABLE))
def test_block_runs(block, docs_env, tmp_path):
    root, env = docs_env
    out = tmp_path / "out"
    text = block.text.replace(OUT_PLACEHOLDER, str(out))
    if block.lang == "bash":
        script = tmp_path / "block.sh"
        script.write_text("set -euo pipefail\n" + text)
        cmd = ["bash", str(script)]
    else:
        script = tmp_path / "block.py"
        script.write_text(text)
        cmd = [str(VENV_BIN / "python"), str(script)]
    r = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=BLOCK_TIMEOUT_S)
    assert r.returncode == 0, (
        f"{block.where}: the {block.lang} block failed (exit code {r.returncode}):\n{block.text}\n"
        f"--- stdout ---\n{_tail(r.stdout)}\n--- stderr ---\n{_tail(r.stderr)}"
    )


# ---------------------------------------------------------------------------------------------------------------
# Static checks of every block's commands


@functools.lru_cache(maxsize=None)
def _help(cmd: tuple[str, ...]) -> str:
    """The ``--help`` text of a command (``sam2-jax image``, ``python -m x``, ``python eval.py``)."""
    if cmd[0] == "python":
        cmd = (str(VENV_BIN / "python"), *cmd[1:])
    elif cmd[0] == "sam2-jax":
        cmd = (str(VENV_BIN / "sam2-jax"), *cmd[1:])
    r = subprocess.run([*cmd, "--help"], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, f"{' '.join(cmd)} --help failed:\n{_tail(r.stderr)}"
    return r.stdout


def _check_flags(args: list[str], help_text, what: str) -> list[str]:
    """Flags of ``args`` that ``help_text`` (a string, or a callable giving it: asked only when there are flags)
    does not name."""
    if not any(a.startswith("--") for a in args):
        return []
    if callable(help_text):
        help_text = help_text()
    errors = []
    for a in args:
        if a.startswith("--"):
            flag = a.split("=", 1)[0]
            if not re.search(rf"(?<![\w-]){re.escape(flag)}(?![\w-])", help_text):
                errors.append(f"{what}: {flag} is not an option (see its --help)")
    return errors


def _config_has(config_file: str, dotted: str) -> bool:
    path, _, arg = config_file.partition(":")
    spec = importlib.util.spec_from_file_location("_docs_config", REPO / path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    node = module.get_config(arg or None)
    for key in dotted.split("."):
        if key not in node:
            return False
        node = node[key]
    return True


def _commands(text: str) -> list[list[str]]:
    """The simple commands of a bash block: continuation lines joined, comments dropped, split at ; && || |."""
    text = text.replace("\\\n", " ")
    commands = []
    for line in text.split("\n"):
        lex = shlex.shlex(line, posix=True, punctuation_chars=True)
        lex.whitespace_split, lex.commenters = True, "#"
        try:
            tokens = list(lex)
        except ValueError:  # an unbalanced quote: bash would fail too, and the run says so
            continue
        current = []
        for t in tokens + [";"]:
            if t and set(t) <= set(";&|()"):
                if current:
                    commands.append(current)
                current = []
            else:
                current.append(t)
    return commands


def _strip_prefix(cmd: list[str]) -> list[str]:
    while cmd and (cmd[0] in ("if", "then", "else", "!", "time", "exec") or re.match(r"^\w+=", cmd[0])):
        cmd = cmd[1:]
    return cmd


def _check_command(cmd: list[str]) -> list[str]:
    cmd = _strip_prefix(cmd)
    if not cmd:
        return []
    exe, args = os.path.basename(cmd[0]), cmd[1:]
    if exe == "sam2-jax":
        sub = args[0] if args and not args[0].startswith("-") else None
        helper = functools.partial(_help, ("sam2-jax", sub) if sub else ("sam2-jax",))
        return _check_flags(args[1:] if sub else args, helper, sub or exe)
    if exe in ("python", "python3"):
        if not args or args[0] == "-c":
            return []
        if args[0] == "-m":
            module, rest = args[1], args[2:]
            if module == "pytest":
                missing = [a for a in rest if a.startswith("tests") and not (REPO / a.split("::")[0]).exists()]
                return [f"pytest: {m} does not exist" for m in missing]
            return _check_flags(rest, functools.partial(_help, ("python", "-m", module)), module)
        script, rest = args[0], args[1:]
        if not (REPO / script).is_file():
            return [f"{script} does not exist"]
        if script == "train.py":
            errors = _check_flags([a for a in rest if not a.startswith("--config.")], "--config --workdir", script)
            config = next((a.split("=", 1)[1] for a in rest if a.startswith("--config=")), None)
            if config is None and "--config" in rest:
                config = rest[rest.index("--config") + 1]
            for a in rest:
                if a.startswith("--config.") and not _config_has(config, a[len("--config.") :].split("=")[0]):
                    errors.append(f"train.py: {a.split('=')[0]} is not a field of {config}")
            return errors
        return _check_flags(rest, functools.partial(_help, ("python", script)), script)
    if exe == "pip" and args[:1] == ["install"]:
        extras = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["optional-dependencies"]
        pins = (REPO / "scripts" / "setup_env.sh").read_text() + (REPO / "pyproject.toml").read_text()
        errors = []
        for a in args[1:]:
            m = re.fullmatch(r"sam2-jax\[([\w,-]+)\]", a)
            if m:
                errors += [f"pip: no extra {e!r} in pyproject.toml" for e in m.group(1).split(",") if e not in extras]
            elif "==" in a and a not in pins:
                errors.append(f"pip: {a} is pinned neither in pyproject.toml nor in scripts/setup_env.sh")
        return errors
    if cmd[0].startswith(("scripts/", "benchmarks/", ".ci/")) and not (REPO / cmd[0]).is_file():
        return [f"{cmd[0]} does not exist"]
    return []


@pytest.mark.parametrize("block", [pytest.param(b, id=b.where) for b in CHECKED])
def test_block_commands_are_valid(block):
    if block.lang == "python":
        compile(block.text, block.where, "exec")  # run by test_block_runs, or at least valid Python
        errors = []
    else:
        errors = [e for c in _commands(block.text) for e in _check_command(c)]
    assert not errors, f"{block.where}:\n{block.text}\n" + "\n".join(errors)


def test_static_checks_catch_mistakes():
    """The checks above see a misspelt flag, extra, config field or test path (and pass the right spelling)."""
    tiny = "--config sam2_jax/configs/train_synthetic_tiny.py --workdir w"
    cases = {
        "sam2-jax image x.jpg --points 1,2": "--points is not an option",
        "sam2-jax image x.jpg --point 1,2  # --points in a comment is not read": None,
        "pip install 'sam2-jax[gpu]'": "no extra 'gpu'",
        "pip install 'sam2-jax[onnx]' && pip install --no-deps jax2onnx==0.17.1": None,
        "python -m pytest -q tests/test_nothing.py": "does not exist",
        f"python train.py {tiny} --config.train.total_step=2": "not a field",
        f"python train.py {tiny} \\\n    --config.train.total_steps=2": None,
        "SAM2_JAX_SLOW=1 .venv/bin/python eval.py --data-root x": "--data-root is not an option",
    }
    for text, expected in cases.items():
        errors = [e for c in _commands(text) for e in _check_command(c)]
        if expected is None:
            assert not errors, (text, errors)
        else:
            assert any(expected in e for e in errors), (text, errors)


def test_blocks_are_marked():
    """Every bash/python block runs, or says why not; a reason is given for a slow block too."""
    for b in CHECKED:
        if b.not_run or b.slow:
            assert len(b.first_line.split(":", 1)[1].strip()) > 5, f"{b.where}: give the reason after the colon"
    assert len([b for b in RUNNABLE if not b.slow]) >= 10, "most documented examples should run in the default tier"


# ---------------------------------------------------------------------------------------------------------------
# Links and paths


def _slug(heading: str) -> str:
    """GitHub's anchor of a heading."""
    s = re.sub(r"[^\w\- ]", "", heading.strip().lower())
    return s.replace(" ", "-")


def _anchors(path: Path) -> set[str]:
    text = re.sub(r"^```.*?^```", "", path.read_text(), flags=re.M | re.S)
    return {_slug(m.group(1)) for m in re.finditer(r"^#+\s+(.*)$", text, re.M)}


@pytest.mark.parametrize("path", DOC_FILES, ids=lambda p: str(p.relative_to(REPO)))
def test_relative_links_exist(path):
    text = path.read_text()
    errors = []
    for m in re.finditer(r"\]\(([^)\s]+)\)", text):
        target = m.group(1)
        if re.match(r"^[a-z]+:", target):
            continue
        file, _, anchor = target.partition("#")
        dest = (path.parent / file).resolve() if file else path
        if not dest.exists():
            errors.append(f"{target}: no such file")
        elif anchor and dest.suffix == ".md" and anchor not in _anchors(dest):
            errors.append(f"{target}: no heading #{anchor} in {dest.relative_to(REPO)}")
    assert not errors, f"{path.relative_to(REPO)}:\n" + "\n".join(errors)


PATH_RE = re.compile(r"(?<![\w./-])((?:sam2_jax|tests|scripts|benchmarks|docs|examples|\.ci)/[\w./{},*-]*)")


def _expand(p: str) -> list[str]:
    m = re.search(r"\{([^{}]*)\}", p)
    if not m:
        return [p]
    return [x for alt in m.group(1).split(",") for x in _expand(p[: m.start()] + alt + p[m.end() :])]


@pytest.mark.parametrize("path", DOC_FILES, ids=lambda p: str(p.relative_to(REPO)))
def test_repository_paths_exist(path):
    prose = re.sub(r"^\s*```.*?^\s*```", "", path.read_text(), flags=re.M | re.S)
    # code spans may break across lines in the middle of a path list
    spans = (re.sub(r"(?<=[,/{])\n\s*", "", m.group(1)) for m in re.finditer(r"`([^`]+)`", prose))
    code = [re.sub(r"\n\s*", " ", span) for span in spans]
    code += [b.text for b in _blocks(path)]
    errors = set()
    for chunk in code:
        for m in PATH_RE.finditer(chunk):
            p = m.group(1)
            if re.search(r"\{[^}]*:", p) or "{" in p and "}" not in p:  # a Python format string, not a path
                continue
            for q in _expand(p.split("::")[0].split(":")[0].rstrip(".,")):
                if not (REPO / q).exists() and not list(REPO.glob(q)):
                    errors.add(q)
    assert not errors, f"{path.relative_to(REPO)} names paths that do not exist: {sorted(errors)}"


def test_every_docs_page_starts_with_a_runnable_example():
    """A reader's first block on a new page is one that runs (serve.md's server and architecture.md's diagram
    are the exceptions)."""
    for path in DOC_FILES[1:]:
        if path.name in ("serve.md", "architecture.md"):
            continue
        first = next(b for b in _blocks(path))
        assert first.lang in ("bash", "python") and not first.not_run and not first.slow, first.where


if __name__ == "__main__":
    sys.exit(pytest.main([__file__, "-q"]))
