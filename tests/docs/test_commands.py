"""What docs/architecture.md and README.md tell a reader to run exists, and the names they use are real.

Fenced bash blocks (and inline `make ...` / `python ...` spans) are split the way a shell would split
them; then each `make X` must be a target in `make -pn`'s database with a `## ` help line, each
`VAR=value` passed to make a variable the makefiles define, each `python path/script.py` a file and each
`python -m module` importable, each `fashion-clip-*` command a console script of pyproject.toml, and
any other command a tool listed in EXTERNAL_TOOLS. Every project env name (backticked in prose, or
set before a command) must be a field of a settings class, appear in a chart template, or be read by
the notebook; every repository path and relative link must exist. The same checks run on made-up
names to prove they fail.
"""

from __future__ import annotations

import importlib.util
import os
import re
import shlex
import subprocess
import tomllib
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from types import ModuleType

import nbformat
import pytest
from pydantic import BaseModel

ROOT = Path(__file__).resolve().parents[2]
DOCS = ("docs/architecture.md", "README.md")
ARCHITECTURE = ROOT / "docs" / "architecture.md"

# Tools the docs may tell a reader to run that the project does not provide itself.
EXTERNAL_TOOLS = frozenset(
    {
        "cd", "curl", "docker", "export", "gcloud", "git", "helm", "jupyter", "kill", "kind",
        "kubectl", "ln", "mv", "openssl", "pip", "rm", "skaffold",
    }
)  # fmt: skip
SHELL_KEYWORDS = frozenset(
    {"do", "done", "then", "else", "elif", "fi", "if", "while", "until", "!", "{", "}"}
)
PYTHONS = frozenset({"python", "python3", ".venv/bin/python"})
# Variables read by libraries we use, not by our settings classes.
THIRD_PARTY_ENV = frozenset({"HF_HUB_OFFLINE", "HF_ENDPOINT", "GOOGLE_APPLICATION_CREDENTIALS", "KUBECONFIG"})
PROJECT_ENV = re.compile(
    r"^(?:RECOMMENDER|MODEL_SERVER|FRONTEND|DEMO|TS|STREAMLIT|FASHION_CLIP)_[A-Z0-9]+(?:_{1,2}[A-Z0-9]+)*$"
)
# Top-level folders and files a path in the docs may start with (generated ones are ignored by git).
TREE_ROOTS = frozenset(
    {
        "charts", "deploy", "docs", "frontend", "loadtest", "mk", "model-server", "notebooks", "scripts",
        "services", "tests", "Makefile", "pyproject.toml", "kind-config.yaml", "skaffold.yaml",
        "cloudbuild.yaml", "README.md",
    }
)  # fmt: skip


# --- what the repository declares -------------------------------------------------------------------


def _load(path: Path) -> ModuleType:
    spec = importlib.util.spec_from_file_location(f"_doccheck_{path.stem}", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def settings_env_names(settings_class: type[BaseModel], prefix: str) -> set[str]:
    """The env names a pydantic-settings class reads: its prefix, fields, and nested models with `__`."""
    names = set()
    for name, info in settings_class.model_fields.items():
        annotation = info.annotation
        if isinstance(annotation, type) and issubclass(annotation, BaseModel):
            names |= settings_env_names(annotation, f"{prefix}{name.upper()}__")
        else:
            names.add(f"{prefix}{name.upper()}")
    return names


@cache
def service_settings() -> dict[str, frozenset[str]]:
    """Per service, the env names of its settings class (the classes themselves, not a copy)."""
    from fashion_clip.settings import ModelServerSettings
    from recommender.config import RecommenderSettings

    frontend = _load(ROOT / "frontend" / "fashion_ui" / "config.py").FrontendSettings
    demo = _load(ROOT / "scripts" / "demo.py").DemoSettings
    return {
        cls.__name__: frozenset(settings_env_names(cls, cls.model_config["env_prefix"]))
        for cls in (ModelServerSettings, RecommenderSettings, frontend, demo)
    }


@cache
def chart_env_names() -> frozenset[str]:
    text = "\n".join(p.read_text() for p in (ROOT / "charts").rglob("*") if p.is_file())
    return frozenset(m for m in re.findall(r"\b[A-Z][A-Z0-9_]+\b", text) if PROJECT_ENV.match(m))


@cache
def notebook_env_names() -> frozenset[str]:
    names = set()
    for path in (ROOT / "notebooks").glob("*.ipynb"):
        for cell in nbformat.read(path, as_version=4).cells:
            if cell.cell_type == "code":
                names |= set(re.findall(r'os\.environ\.get\("([A-Z][A-Z0-9_]+)"', cell.source))
    return frozenset(names)


def known_env_names() -> frozenset[str]:
    settings = frozenset().union(*service_settings().values())
    return settings | chart_env_names() | notebook_env_names() | THIRD_PARTY_ENV


@dataclass(frozen=True)
class MakeDatabase:
    targets: frozenset[str]
    variables: frozenset[str]
    documented: frozenset[str]


@cache
def make_database() -> MakeDatabase:
    """Targets and makefile variables from `make -pn` (nothing runs), and the targets with a `## ` help."""
    env = {k: v for k, v in os.environ.items() if k not in ("MAKEFLAGS", "MAKELEVEL", "MFLAGS")}
    result = subprocess.run(
        ["make", "-pnrR", "--no-print-directory", "help"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    lines = result.stdout.splitlines()
    targets, variables = set(), set()
    for number, line in enumerate(lines):
        previous = lines[number - 1] if number else ""
        if previous.startswith("# makefile"):
            match = re.match(r"^([A-Za-z_][A-Za-z0-9_]*) :?=(?:\s|$)", line)
            if match:
                variables.add(match[1])
            continue
        match = re.match(r"^([A-Za-z0-9_.-]+):(?!=)", line)
        if match and previous != "# Not a target:":
            targets.add(match[1])
    makefiles = [ROOT / "Makefile", *sorted((ROOT / "mk").glob("*.mk"))]
    documented = {
        m for path in makefiles for m in re.findall(r"^([a-zA-Z0-9_-]+):.*## ", path.read_text(), flags=re.M)
    }
    return MakeDatabase(frozenset(targets), frozenset(variables), frozenset(documented))


@cache
def image_names() -> frozenset[str]:
    """The images (and Cloud Run services) the chart deploys: named like console scripts, but not ones."""
    values = (ROOT / "charts" / "fashion-clip" / "values.yaml").read_text()
    return frozenset(re.findall(r"^\s+repository: (fashion-clip-[\w-]+)$", values, flags=re.M))


@cache
def console_scripts() -> frozenset[str]:
    return frozenset(tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["scripts"])


# --- reading the markdown ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Command:
    where: str
    words: tuple[str, ...]
    env: tuple[str, ...] = ()


@dataclass
class Markdown:
    name: str
    text: str
    blocks: list[tuple[int, str, str]] = field(init=False)  # (first line, language, body)
    prose: str = field(init=False)

    def __post_init__(self) -> None:
        self.blocks, prose, inside = [], [], None
        for number, line in enumerate(self.text.splitlines(), start=1):
            fence = re.match(r"^\s*```(\S*)\s*$", line)
            if fence and inside is None:
                inside = (number + 1, fence[1], [])
            elif fence:
                self.blocks.append((inside[0], inside[1], "\n".join(inside[2])))
                inside = None
            elif inside is not None:
                inside[2].append(line)
            else:
                prose.append(line)
        self.prose = "\n".join(prose)

    def code_spans(self) -> list[str]:
        return re.findall(r"`([^`\n]+)`", self.prose)

    def links(self) -> list[str]:
        return re.findall(r"\]\(([^)\s]+)\)", self.prose)


def _segments(line: str) -> list[list[str]]:
    """Simple commands of a shell line: split like the shell, cut at ;, &&, ||, | and &."""
    lexer = shlex.shlex(line, posix=True, punctuation_chars=";&|")
    lexer.whitespace_split = True
    lexer.commenters = "#"
    segments: list[list[str]] = [[]]
    for token in lexer:
        if token and set(token) <= set(";&|"):
            segments.append([])
        else:
            segments[-1].append(token)
    return [s for s in segments if s]


def _command(words: list[str], where: str) -> Command | None:
    while words and words[0] in SHELL_KEYWORDS:
        words = words[1:]
    if not words or words[0] in ("for", "case"):
        return None
    if words[0] == "export":
        return Command(where, ("export",), tuple(w.split("=", 1)[0] for w in words[1:]))
    env = []
    while words and re.match(r"^[A-Za-z_][A-Za-z0-9_]*=", words[0]):
        env.append(words[0].split("=", 1)[0])
        words = words[1:]
    if not words:
        return None  # a shell variable for the lines below, not a command's environment
    return Command(where, tuple(words), tuple(env))


def commands(doc: Markdown) -> list[Command]:
    found = []
    for first, language, body in doc.blocks:
        if language not in ("bash", "sh", "shell"):
            continue
        logical, start = "", first
        for offset, line in enumerate(body.splitlines()):
            if not logical:
                start = first + offset
            if line.rstrip().endswith("\\"):
                logical += line.rstrip()[:-1] + " "
                continue
            logical += line
            for words in _segments(logical):
                command = _command(words, f"{doc.name}:{start}")
                if command is not None:
                    found.append(command)
            logical = ""
    for span in doc.code_spans():
        first_word = span.split(" ", 1)[0]
        if span in image_names():
            continue  # `fashion-clip-api` the image (and Cloud Run service), not a command
        if first_word in ("make", *PYTHONS) or first_word.startswith("fashion-clip-"):
            for words in _segments(span):
                command = _command(words, f"{doc.name}: `{span}`")
                if command is not None:
                    found.append(command)
    return found


# --- the checks -------------------------------------------------------------------------------------


def check_command(command: Command) -> list[str]:
    problems = []
    words, where = command.words, command.where
    make = make_database()
    known_env = known_env_names()
    for name in command.env:
        if words[0] == "make" and name in make.variables:
            continue
        if name not in known_env:
            problems.append(f"{where}: {name} is read by no settings class, chart template or the notebook")
    program = words[0]
    if program == "make":
        arguments = iter(words[1:])
        for argument in arguments:
            if argument in ("-C", "-f", "-j", "--directory", "--file"):
                next(arguments, None)
            elif argument.startswith("-"):
                continue
            elif "=" in argument:
                variable = argument.split("=", 1)[0]
                if variable not in make.variables and variable not in known_env:
                    problems.append(f"{where}: make variable {variable} is defined in no makefile")
            elif argument not in make.targets:
                problems.append(f"{where}: make target {argument!r} does not exist")
            elif argument not in make.documented:
                problems.append(f"{where}: make target {argument!r} has no `## ` line for `make help`")
    elif program in PYTHONS:
        if len(words) > 2 and words[1] == "-m":
            if importlib.util.find_spec(words[2]) is None:
                problems.append(f"{where}: module {words[2]} is not importable")
        elif len(words) > 1 and words[1].endswith(".py") and not (ROOT / words[1]).is_file():
            problems.append(f"{where}: script {words[1]} does not exist")
    elif program.startswith("fashion-clip"):
        if program not in console_scripts():
            problems.append(f"{where}: {program} is not a console script of pyproject.toml")
    elif "/" in program:
        if not (ROOT / program).is_file():
            problems.append(f"{where}: {program} does not exist")
    elif program not in EXTERNAL_TOOLS:
        problems.append(f"{where}: unknown command {program!r} (not the project's, not in EXTERNAL_TOOLS)")
    return problems


def _ignored_by_git(paths: list[str]) -> set[str]:
    """The paths .gitignore names (built artefacts, absent from a fresh clone), as files or folders."""
    if not paths:
        return set()
    result = subprocess.run(
        ["git", "check-ignore", "--no-index", "--stdin"],
        cwd=ROOT,
        input="\n".join(form for path in paths for form in (path, f"{path}/")),
        capture_output=True,
        text=True,
    )
    return {path.rstrip("/") for path in result.stdout.split()}


def check_markdown(doc: Markdown, doc_dir: Path) -> list[str]:
    problems = []
    for command in commands(doc):
        problems += check_command(command)
    known_env = known_env_names()
    for span in doc.code_spans():
        for token in re.findall(r"[A-Z][A-Z0-9_]+", span):
            if PROJECT_ENV.match(token) and token not in known_env:
                problems.append(
                    f"{doc.name}: `{span}`: {token} is read by no settings class, chart template or the notebook"
                )
    paths = [
        span.rstrip("/")
        for span in doc.code_spans()
        if re.fullmatch(r"[\w.-]+(/[\w.*-]+)*/?", span) and span.split("/")[0] in TREE_ROOTS
    ]
    generated = _ignored_by_git(paths)
    for path in paths:
        if path not in generated and not list(ROOT.glob(path)):
            problems.append(f"{doc.name}: path {path} does not exist")
    for link in doc.links():
        target = link.split("#", 1)[0]
        if target and not re.match(r"^[a-z]+:", target) and not (doc_dir / target).exists():
            problems.append(f"{doc.name}: link {link} points nowhere")
    return problems


# --- the tests --------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", DOCS)
def test_every_command_and_name_in_the_docs_exists(name: str) -> None:
    path = ROOT / name
    assert check_markdown(Markdown(name, path.read_text()), path.parent) == []


def test_the_commands_are_found() -> None:
    """The parser sees the commands (a check that reads nothing passes anything)."""
    found_commands = commands(Markdown("architecture.md", ARCHITECTURE.read_text()))
    found = {" ".join(c.words) for c in found_commands}
    for expected in (
        "make demo",
        "make notebook",
        "make index INDEX_DIR=data/index-2",
        "fashion-clip-build-index data/catalog --out data/index-2 --backend torchserve --url http://127.0.0.1:8080",
        "python model-server/model_installer.py --tiny",
        "make model-tiny",  # an inline span
    ):
        assert expected in found
    assert ("FASHION_CLIP_API_URL",) in [c.env for c in found_commands]


MADE_UP = """
```bash
make demo && make no-such-target
make index NO_SUCH_VARIABLE=1
make api-image
python scripts/no_such_script.py --flag
python -m fashion_clip.no_such_module
fashion-clip-no-such-command data/catalog
RECOMMENDER_NO_SUCH_SETTING=1 make api
frobnicate --all
```

Set `MODEL_SERVER_NO_SUCH` to break it; see `services/no_such_folder/` and [there](no-such-doc.md).
"""


def test_made_up_names_are_reported(tmp_path: Path) -> None:
    problems = check_markdown(Markdown("made-up.md", MADE_UP), tmp_path)
    expected = [
        "made-up.md:3: make target 'no-such-target' does not exist",
        "made-up.md:4: make variable NO_SUCH_VARIABLE is defined in no makefile",
        "made-up.md:5: make target 'api-image' does not exist",
        "made-up.md:6: script scripts/no_such_script.py does not exist",
        "made-up.md:7: module fashion_clip.no_such_module is not importable",
        "made-up.md:8: fashion-clip-no-such-command is not a console script of pyproject.toml",
        "made-up.md:9: RECOMMENDER_NO_SUCH_SETTING is read by no settings class, chart template or the notebook",
        "made-up.md:10: unknown command 'frobnicate' (not the project's, not in EXTERNAL_TOOLS)",
        "made-up.md: `MODEL_SERVER_NO_SUCH`: MODEL_SERVER_NO_SUCH is read by no settings class, chart template or the notebook",
        "made-up.md: path services/no_such_folder does not exist",
        "made-up.md: link no-such-doc.md points nowhere",
    ]
    assert problems == expected


def test_real_names_pass(tmp_path: Path) -> None:
    (tmp_path / "other.md").write_text("")
    real = """
```bash
RECOMMENDER_EMBEDDER__BACKEND=torchserve DEMO_UI_PORT=8600 make demo
make index INDEX_BACKEND=torchserve && make chart-lint
python -m recommender
fashion-clip-sample-catalog data/catalog --count 36
for s in a b; do helm test "$s"; done
```
`TS_DEFAULT_WORKERS_PER_MODEL`, `FRONTEND_API_URL`, `services/fashion_clip/embedding.py`, `data/index/`,
[other](other.md), [site](https://example.com).
"""
    assert check_markdown(Markdown("real.md", real), tmp_path) == []


@pytest.mark.parametrize("service", ["ModelServerSettings", "RecommenderSettings", "FrontendSettings"])
def test_every_setting_of_a_service_is_documented(service: str) -> None:
    documented = set(re.findall(r"`([A-Z][A-Z0-9_]+)`", ARCHITECTURE.read_text()))
    missing = sorted(service_settings()[service] - documented)
    assert missing == [], f"docs/architecture.md does not mention {', '.join(missing)}"


def test_the_diagram_shows_the_data_flow() -> None:
    doc = Markdown("architecture.md", ARCHITECTURE.read_text())
    diagrams = [body for _, language, body in doc.blocks if language == "mermaid"]
    assert len(diagrams) == 1
    lines = [line.strip() for line in diagrams[0].splitlines() if line.strip()]
    assert lines[0] == "flowchart LR"
    labels, edges = {}, set()
    for line in lines[1:]:
        node = re.fullmatch(r'(\w+)(?:\["|\[\("|\(\[")(.+?)(?:"\]|"\)\]|"\]\))', line)
        edge = re.fullmatch(r'(\w+) (-->|---)(?:\|"[^"|]+"\|)? (\w+)', line)
        assert node or edge, f"not a node or an edge: {line}"
        if node:
            labels[node[1]] = node[2]
        else:
            edges.add((edge[1], edge[3]))
    used = {end for edge in edges for end in edge}
    assert used == set(labels), "every node is declared and connected"
    for start, end in [
        ("catalog", "build"),
        ("build", "bundle"),
        ("bundle", "api"),
        ("ui", "api"),
        ("api", "ms"),
    ]:
        assert (start, end) in edges
    assert "TorchServe" in labels["ms"] and "KServe" in labels["ms"]
    for node in ("api", "ui", "ms"):
        assert "kind" in labels[node] or "Deployment" in labels[node], node
        assert "Cloud Run" in labels[node], node


def test_the_repository_parts_resolve() -> None:
    """The declared sets the checks compare against are not empty (a failed read would pass anything)."""
    make = make_database()
    assert {"demo", "index", "notebook", "docs-check", "help"} <= make.targets
    assert {"notebook", "docs-check"} <= make.documented and "install" in make.documented
    assert {"INDEX_DIR", "NOTEBOOK_OUT", "API_ADMIN_TOKEN"} <= make.variables
    assert {"fashion-clip-build-index", "fashion-clip-sample-catalog"} <= console_scripts()
    assert image_names() == {"fashion-clip-model-server", "fashion-clip-api", "fashion-clip-frontend"}
    assert "RECOMMENDER_EMBEDDER__ID_TOKEN_AUDIENCE" in service_settings()["RecommenderSettings"]
    assert "TS_DEFAULT_WORKERS_PER_MODEL" in chart_env_names()
    assert {"FASHION_CLIP_API_URL", "FASHION_CLIP_NOTEBOOK_DIR"} <= notebook_env_names()
