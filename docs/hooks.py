"""MkDocs hooks of the documentation site (mkdocs.yml `hooks:`): what makes the pages unable to
drift from the repository. Everything here runs at build time.

1. Generated stage tables. A page line `<!-- lmbuild:stages dvc.yaml -->` becomes a table of that
   pipeline file's stages as DVC itself resolves them (templating and `foreach` expanded:
   eval@sft, card@rlvr...): the command, the data a stage reads (its deps other than code and
   schemas), its params, what it writes, and what it does (the first paragraph of its script's
   docstring, else the stage's `desc`). Options after the path: `grouped` (one row per dvc.yaml
   entry, its foreach items listed) and `desc` (prefer the stage's `desc` to the docstring).
   `<!-- lmbuild:graph dvc.yaml -->` becomes a mermaid flowchart of the same stages.
2. Included results. Result figures enter a page only through pymdownx.snippets
   (`--8<-- "reports/report.md"`, checked: a missing file fails the build). A generated report
   names its images relative to itself (`img/loss_sft.png` in reports/report.md); the images are
   published under `generated/<repository path>` and the links of included text rewritten to
   them. Included headings are renumbered to sit below the heading that encloses the include.
3. snippets' base_path is set to the repository root, whatever the working directory.
"""

from __future__ import annotations

import ast
import posixpath
import re
from pathlib import Path

from markdown import Extension
from markdown.preprocessors import Preprocessor
from mkdocs.structure.files import File

ROOT = Path(__file__).resolve().parents[1]
GENERATED = "generated"  # site folder of the images that generated reports refer to
ASSET_GLOBS = ("reports/img/*.png", "studies/*/*.png")
CODE_PREFIXES = ("stages/", "lib/", "specs/", "studies/code/")  # deps that are code or schemas, not data

SNIPPET = re.compile(r"""^(?P<indent>[ \t]*)-+8<-+[ \t]+(?P<q>["'])(?P<path>.+?)(?P=q)[ \t]*$""")
MARKER = re.compile(r"^(?P<indent>[ \t]*)<!-- lmbuild:(?P<kind>stages|graph|provenance) (?P<args>[^>]*?) ?-->[ \t]*$")
BEGIN = re.compile(r"^(?P<indent>[ \t]*)<!-- lmbuild:include (?P<path>\S+) (?P<page>\S+) -->$")
END = re.compile(r"^[ \t]*<!-- lmbuild:end -->$")
HEADING = re.compile(r"^(?P<indent>[ \t]*)(?P<hashes>#{1,6})(?P<rest>[ \t].*|)$")
FENCE = re.compile(r"^[ \t]*(?P<fence>`{3,}|~{3,})")
LINK = re.compile(r"(?P<head>!?\[[^\]]*\]\()(?P<target>[^)\s]+)(?P<tail>(?:[ \t]+\"[^\"]*\")?\))")

_assets: set[str] = set()  # repository paths of the published images
_stages_cache: dict[str, list[dict]] = {}
_graph_cache: dict[str, list[tuple[str, str]]] = {}


# --- mkdocs events ---------------------------------------------------------------------------

def on_config(config):
    config.mdx_configs.setdefault("pymdownx.snippets", {})["base_path"] = [str(ROOT)]
    config.markdown_extensions.append(_IncludeExtension())
    _stages_cache.clear()
    _graph_cache.clear()
    return config


def on_files(files, config):
    _assets.clear()
    for pattern in ASSET_GLOBS:
        for path in sorted(ROOT.glob(pattern)):
            rel = path.relative_to(ROOT).as_posix()
            files.append(File.generated(config, f"{GENERATED}/{rel}", abs_src_path=str(path)))
            _assets.add(rel)
    return files


def on_page_markdown(markdown, page, config, files):
    out = []
    for line in markdown.split("\n"):
        m = MARKER.match(line)
        if m:
            path, *opts = m["args"].split()
            block = (stage_graph(path) if m["kind"] == "graph" else provenance(path) if m["kind"] == "provenance"
                     else stage_table(path, *opts))
            out.extend(m["indent"] + row if row else "" for row in block.split("\n"))
            continue
        m = SNIPPET.match(line)
        if m:  # bracket the include, so that the preprocessor below knows where its lines came from
            out += [f"{m['indent']}<!-- lmbuild:include {m['path'].split(':')[0]} {page.file.src_uri} -->",
                    line, f"{m['indent']}<!-- lmbuild:end -->"]
            continue
        out.append(line)
    return "\n".join(out)


# --- provenance: which commit wrote a result --------------------------------------------------

def provenance(path: str) -> str:
    """The commit that last changed `path` (a lock file): the runs that produced the figures it
    locks, with the commit's date and subject (which names the machine they ran on and what ran)."""
    import subprocess
    try:
        line = subprocess.run(["git", "log", "-1", "--format=%h|%ad|%s", "--date=short", "--", path], cwd=ROOT,
                              capture_output=True, text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        line = ""
    if not line:
        return f"The figures below come from `{path}` as it is in this working tree (no commit records them)."
    commit, date, subject = line.split("|", 2)
    return f"The figures below were produced by the runs committed in `{commit}` ({date}), the last commit that " \
           f"changed `{path}`: *{_text(subject)}* A study whose stages `dvc status {path.replace('.lock', '.yaml')}` " \
           "lists as changed was not rerun there: its figures are older."


# --- included reports: image links and heading levels ---------------------------------------

class _IncludeFixer(Preprocessor):
    """Runs right after pymdownx.snippets (priority 32): rewrites the relative links of included
    text to the published copies, renumbers its headings, and drops the include brackets."""

    def run(self, lines):
        out, fence, level, i = [], None, 0, 0
        while i < len(lines):
            m = BEGIN.match(lines[i])
            if not m:
                fence = _fence_state(lines[i], fence)
                h = HEADING.match(lines[i])
                if fence is None and h and not h["indent"]:
                    level = len(h["hashes"])
                out.append(lines[i])
                i += 1
                continue
            depth, j = 1, i + 1
            while j < len(lines) and depth:
                depth += 1 if BEGIN.match(lines[j]) else -1 if END.match(lines[j]) else 0
                j += 1
            block = [x for x in lines[i + 1:j - 1] if not (BEGIN.match(x) or END.match(x))]
            if fence is None:  # an include inside a code fence is code: left as it is
                block = _fix_block(block, posixpath.dirname(m["path"]), m["page"], level, bool(m["indent"]))
            out.extend(block)
            i = j
        return out


class _IncludeExtension(Extension):
    def extendMarkdown(self, md):
        md.preprocessors.register(_IncludeFixer(md), "lmbuild_includes", 31)


def _fence_state(line: str, fence: str | None) -> str | None:
    f = FENCE.match(line)
    if not f:
        return fence
    if fence is None:
        return f["fence"]
    return None if f["fence"][0] == fence[0] and len(f["fence"]) >= len(fence) else fence


def _fix_block(block: list[str], base: str, page: str, level: int, nested: bool) -> list[str]:
    """The included lines with links rewritten and headings moved below `level`; in a nested
    block (an include indented into a collapsible note) headings become bold lines instead, so
    the table of contents lists only the page's own sections."""
    fence, levels = None, []
    for line in block:
        fence = _fence_state(line, fence)
        h = HEADING.match(line)
        if fence is None and h:
            levels.append(len(h["hashes"]))
    # the included levels, renumbered without gaps from one below the enclosing heading
    rank = {lvl: min(6, level + 1 + k) for k, lvl in enumerate(sorted(set(levels)))}
    up = "../" * page.count("/")
    out, fence = [], None
    for line in block:
        fence = _fence_state(line, fence)
        if fence is None:
            h = HEADING.match(line)
            if h and nested and h["rest"].strip():
                line = f"{h['indent']}**{h['rest'].strip()}**"
            elif h:
                line = h["indent"] + "#" * rank[len(h["hashes"])] + h["rest"]
            line = LINK.sub(lambda m: _relink(m, base, up), line)
        out.append(line)
    return out


def _relink(m: re.Match, base: str, up: str) -> str:
    target = m["target"]
    if re.match(r"^[a-z][a-z0-9+.-]*:|^[/#]", target, re.I):
        return m[0]
    repo_path = posixpath.normpath(posixpath.join(base, target))
    if repo_path in _assets:
        return f"{m['head']}{up}{GENERATED}/{repo_path}{m['tail']}"
    return m[0]


# --- stage tables and graph from DVC ---------------------------------------------------------

def _load(dvcfile: str) -> None:
    """The stages of one pipeline file and the edges between them, as DVC resolves them."""
    if dvcfile in _stages_cache:
        return
    import yaml
    from dvc.repo import Repo
    from lmbuild.deps import stage_scripts  # the library's own reading of a stage's script

    target = (ROOT / dvcfile).resolve()
    if not target.is_file():
        raise FileNotFoundError(f"docs: no pipeline file {dvcfile}")
    scripts = {}
    for name, body in (yaml.safe_load(target.read_text(encoding="utf-8")).get("stages") or {}).items():
        try:  # a stage whose command runs no `-m stages.<name>` script has no docstring to show
            scripts.update(stage_scripts({"stages": {name: body}}))
        except (ValueError, AttributeError, KeyError, TypeError):
            pass
    with Repo(str(ROOT)) as repo:
        stages = [s for s in repo.index.stages if Path(s.path).resolve() == target]
        names = {id(s): s.name for s in stages}
        # DVC's graph points from a stage to the stages it depends on
        edges = [(names[id(b)], names[id(a)]) for a, b in repo.index.graph.edges
                 if id(a) in names and id(b) in names]
        rows = []
        for s in stages:
            data, params = [], []
            for d in s.deps:
                if hasattr(d, "params") and d.params is not None:
                    params.extend(d.params)
                elif not d.def_path.startswith(CODE_PREFIXES):
                    data.append(d.def_path)
            outs = [o.def_path + ("" if o.use_cache else " (git)") + (" (persist)" if o.persist else "")
                    for o in s.outs]
            base = s.name.split("@")[0]
            cmd = " && ".join(s.cmd) if isinstance(s.cmd, list) else s.cmd
            rows.append(dict(name=s.name, base=base, item=s.name.partition("@")[2], cmd=cmd,
                             reads=data, params=params, writes=outs, desc=(s.desc or "").strip(),
                             doc=_docstring(scripts.get(base), base)))
    _stages_cache[dvcfile] = rows
    _graph_cache[dvcfile] = edges


def _docstring(script: str | None, stage: str) -> str:
    """The first paragraph of a stage script's docstring, without its leading `<name>: `."""
    if not script or not (ROOT / script).is_file():
        return ""
    doc = ast.get_docstring(ast.parse((ROOT / script).read_text(encoding="utf-8"))) or ""
    para = " ".join(doc.split("\n\n")[0].split())
    name = Path(script).stem
    for prefix in (f"{name}: ", f"{stage}: "):
        if para.startswith(prefix):
            para = para[len(prefix):]
            break
    return para[:1].upper() + para[1:]


def _text(s: str) -> str:
    """Markdown-safe table text: `<` and `>` escaped outside code spans, `|` escaped."""
    parts = s.split("`")
    return "`".join(p if k % 2 else p.replace("<", "&lt;").replace(">", "&gt;") for k, p in enumerate(parts)) \
        .replace("|", "\\|")


def _codes(items: list[str]) -> str:
    return "<br>".join(f"`{x}`" for x in items) if items else "—"


def stage_table(dvcfile: str, *opts: str) -> str:
    _load(dvcfile)
    rows = _stages_cache[dvcfile]
    prefer_desc = "desc" in opts
    if "grouped" in opts:
        grouped: dict[str, list[dict]] = {}
        for r in rows:
            grouped.setdefault(r["base"], []).append(r)
        rows = [dict(g[0], name=g[0]["base"] + (f"@… ({len(g)}: {', '.join(r['item'] for r in g)})"
                                                  if g[0]["item"] else "")) for g in grouped.values()]
    lines = ["| stage | command | reads | params | writes | what it does |", "|---|---|---|---|---|---|"]
    for r in rows:
        what = (r["desc"] or r["doc"]) if prefer_desc else (r["doc"] or r["desc"])
        lines.append(f"| **{_text(r['name'])}** | `{r['cmd']}` | {_codes(r['reads'])} | {_codes(r['params'])} "
                     f"| {_codes(r['writes'])} | {_text(what)} |")
    return "\n".join(lines)


def stage_graph(dvcfile: str) -> str:
    import networkx as nx

    _load(dvcfile)
    names = [r["name"] for r in _stages_cache[dvcfile]]
    g = nx.DiGraph()
    g.add_nodes_from(names)
    g.add_edges_from(_graph_cache[dvcfile])
    g = nx.transitive_reduction(g)  # an edge implied by a longer path is left out
    ids = {n: f"s{k}" for k, n in enumerate(names)}
    lines = ["```mermaid", "flowchart TD"]
    lines += [f'    {ids[n]}["{n}"]' for n in names]
    lines += [f"    {ids[a]} --> {ids[b]}" for a, b in sorted(g.edges, key=lambda e: (names.index(e[0]), names.index(e[1])))]
    lines.append("```")
    return "\n".join(lines)
