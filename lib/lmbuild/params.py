"""Load `params.yaml` sections and validate them against the cerberus schemas in specs/.

Every stage calls `load_params(stage)`: it reads `common` and the stage's own section,
validates each against `specs/<section>.yaml` (types, ranges, allowed values, defaults, unknown
keys rejected) and either returns the normalised sections or stops the stage before any work
with one line per problem:

    params.yaml: filter.gopher_quality.max_symbol_word_ratio: must be <= 1.0, got 3

Checks a schema cannot express (dedup's bands x rows = num_perm, a rater's files, a tokenizer
pattern that compiles, a bad-words file that exists) raise ParamsError the same way, before any
work: a stage either calls them through `check_or_exit` or, where the stage's own function runs
them first, runs that function inside `stage_errors`, which also turns the errors a user can fix
(a missing input, a bad shard) into one line and exit 2.

A spec file may hold a top-level `registry:` mapping of reusable sub-schemas. Each is
registered under its name and, with every `default` removed, under `<name>_override`, so a
section can validate per-domain or per-source overrides with the same ranges without filling
in defaults that would mask the base values.

A spec file may also hold a top-level `extends: [<fragment>, ...]`: each name is a file
`specs/fragments/<fragment>.yaml` holding schema keys several sections share (`training`: the
precision, batch, optimiser, schedule, eval, checkpoint, NaN and spike keys of every training
stage). The fragments are merged in the order given, then the spec's own keys over them:
mappings merge key by key at any depth, and any other value in the spec replaces the
fragment's. So a stage writes only what is its own, e.g. a default:

    extends: [training]
    optim: {schema: {lr: {default: 9.0e-6}}}   # the fragment's rule for optim.lr, this default

A fragment cannot extend another. The fragments sit below specs/ and not in it, because
`specs/<name>.yaml` is the schema of the params section <name>.
"""

from __future__ import annotations

import copy
import sys
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Callable, Iterator, NoReturn, TypeVar

import cerberus
import yaml

REPO = Path(__file__).resolve().parents[2]
SPECS = REPO / "specs"
FRAGMENTS = "fragments"  # specs/fragments/<name>.yaml: what a spec's `extends:` names
T = TypeVar("T")


class ParamsError(Exception):
    """Invalid params: `problems` holds one readable line per problem."""

    def __init__(self, problems: list[str]):
        super().__init__("\n".join(problems))
        self.problems = problems


def _strip_defaults(schema: Any) -> Any:
    if isinstance(schema, dict):
        return {k: _strip_defaults(v) for k, v in schema.items() if k not in ("default", "required")}
    if isinstance(schema, list):
        return [_strip_defaults(v) for v in schema]
    return schema


def _extend(spec: dict, specs_dir: Path, where: str) -> dict:
    """The spec with the fragments its `extends:` names merged under its own keys."""
    names = spec.pop("extends", None)
    if names is None:
        return spec
    if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
        raise ParamsError([f"{where}: extends: must be a list of fragment names, got {names!r}"])
    folder = specs_dir / FRAGMENTS
    merged: dict = {}
    for name in names:
        path = folder / f"{name}.yaml"
        if not path.is_file():
            known = sorted(p.stem for p in folder.glob("*.yaml"))
            raise ParamsError([f"{where}: extends: no fragment {name!r}: create specs/{FRAGMENTS}/{name}.yaml"
                               f" (known fragments: {', '.join(known) or 'none'})"])
        fragment = yaml.safe_load(path.read_text()) or {}
        if "extends" in fragment:
            raise ParamsError([f"specs/{FRAGMENTS}/{name}.yaml: extends: a fragment cannot extend another"])
        merged = deep_merge(merged, fragment)
    return deep_merge(merged, spec)


def load_spec(section: str, specs_dir: Path = SPECS) -> tuple[dict, cerberus.schema.SchemaRegistry]:
    path = specs_dir / f"{section}.yaml"
    if not path.exists():
        raise ParamsError([f"specs/{section}.yaml: no schema for params section '{section}'"])
    spec = _extend(yaml.safe_load(path.read_text()) or {}, specs_dir, f"specs/{section}.yaml")
    registry = cerberus.schema.SchemaRegistry()
    for name, sub in (spec.pop("registry", None) or {}).items():
        registry.add(name, sub)
        registry.add(f"{name}_override", _strip_defaults(sub))
    return spec, registry


_RULE_TEXT = {
    "min": lambda c: f"must be >= {c}",
    "max": lambda c: f"must be <= {c}",
    "minlength": lambda c: f"must have at least {c} items",
    "maxlength": lambda c: f"must have at most {c} items",
    "allowed": lambda c: f"must be one of {list(c)}",
    "type": lambda c: f"must be of type {' or '.join(c) if isinstance(c, (list, tuple)) else c}",
    "regex": lambda c: f"must match the pattern {c}",
    "nullable": lambda c: "must not be null",
    "empty": lambda c: "must not be empty",
    "required": lambda c: "is required",
}


def _describe(err: cerberus.errors.ValidationError) -> str:
    rule = err.rule
    if rule == "required":
        return "is required but missing"
    if err.code == cerberus.errors.UNKNOWN_FIELD.code:
        return f"unknown key (typo?), got {err.value!r}"
    text = _RULE_TEXT.get(rule, lambda c: f"violates rule '{rule}' ({c})")(err.constraint)
    return f"{text}, got {err.value!r}"


def _leaf_errors(errors) -> list[cerberus.errors.ValidationError]:
    out = []
    for err in errors:
        if err.is_group_error:
            out.extend(_leaf_errors(err.child_errors))
        else:
            out.append(err)
    return out


def validate_document(schema: dict, registry, document: dict, path: str,
                      source: str = "params.yaml") -> tuple[dict | None, list[str]]:
    """Validate one mapping against a schema; return (normalised document, []) or (None, problems).

    `path` names the document in messages ("filter", "rate.raters[0]").
    """
    validator = cerberus.Validator(schema, schema_registry=registry)
    if validator.validate(document):
        return validator.document, []
    problems = []
    for err in _leaf_errors(validator._errors):
        where = path + "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in err.document_path)
        line = f"{source}: {where}: {_describe(err)}"
        if err.code == cerberus.errors.UNKNOWN_FIELD.code:
            known = _known_keys_at(schema, registry, tuple(err.document_path[:-1]))
            if known:
                line += f" (known keys: {', '.join(map(str, known))})"
        problems.append(line)
    return None, sorted(set(problems))


def _known_keys_at(schema: dict, registry, parent: tuple) -> list[str]:
    """Field names allowed at `parent` (a document path), for 'unknown key' messages."""
    resolve = lambda sub: registry.get(sub) if isinstance(sub, str) else sub  # noqa: E731
    fields, i = resolve(schema), 0
    while i < len(parent):
        rules = fields.get(parent[i]) if isinstance(fields, dict) else None
        if not isinstance(rules, dict):
            return []
        if "valuesrules" in rules:  # a mapping of free keys: skip the key
            fields, i = resolve(rules["valuesrules"].get("schema")), i + 2
        elif rules.get("type") == "list" and isinstance(rules.get("schema"), dict):  # skip the index
            fields, i = resolve(rules["schema"].get("schema")), i + 2
        elif "schema" in rules:
            fields, i = resolve(rules["schema"]), i + 1
        else:
            return []
    return sorted(map(str, fields)) if isinstance(fields, dict) else []


def validate_section(section: str, values: Any, specs_dir: Path = SPECS, source: str = "params.yaml") -> dict:
    """Validate and normalise one params section; raise ParamsError listing every problem."""
    schema, registry = load_spec(section, specs_dir)
    if not isinstance(values, dict):
        raise ParamsError([f"{source}: {section}: must be a mapping, got {values!r}"])
    document, problems = validate_document(schema, registry, values, section, source)
    if problems:
        raise ParamsError(problems)
    return document


def read_params_file(path: Path) -> dict:
    try:
        data = yaml.safe_load(Path(path).read_text())
    except FileNotFoundError:
        raise ParamsError([f"{path}: file not found"]) from None
    except yaml.YAMLError as exc:
        raise ParamsError([f"{path}: not valid YAML: {exc}".replace("\n", " ")]) from None
    return data or {}


def load_params(stage: str, path: Path | str = "params.yaml", specs_dir: Path = SPECS,
                shared: tuple[str, ...] = ()) -> dict:
    """Return {'common': ..., <shared sections>..., stage: ...} validated, or raise ParamsError.
    `shared`: sections several stages read (e.g. `tasks`), listed in their dvc.yaml params too."""
    raw = read_params_file(Path(path))
    problems, out = [], {}
    for section in ("common", *shared, stage):
        if section not in raw:
            problems.append(f"{path}: {section}: section is missing")
            continue
        try:
            out[section] = validate_section(section, raw[section], specs_dir, source=str(path))
        except ParamsError as exc:
            problems.extend(exc.problems)
    if problems:
        raise ParamsError(problems)
    return out


def exit_on_params_error(stage: str, exc: ParamsError) -> NoReturn:
    """Print one line per problem and the stage's stop line to stderr; exit 2."""
    for line in exc.problems:
        print(line, file=sys.stderr)
    print(f"{stage}: stopped before doing any work: fix the params above", file=sys.stderr)
    raise SystemExit(2) from None


def load_params_or_exit(stage: str, path: Path | str = "params.yaml", shared: tuple[str, ...] = ()) -> dict:
    """Stage entry point: print one line per problem to stderr and exit 2 on invalid params."""
    try:
        return load_params(stage, path, shared=shared)
    except ParamsError as exc:
        exit_on_params_error(stage, exc)


def check_or_exit(stage: str, check: Callable[..., T], *args, **kwargs) -> T:
    """Run one of a stage's checks after schema validation (what a schema cannot say: fields that
    depend on each other, files that must exist). The convention for every stage: such a check
    raises ParamsError with one `params.yaml: <section>.<key>: ...` line per problem and returns
    what it derived; the stage calls it through here before any work, so it stops with exit 2 and
    the same lines as a schema error."""
    try:
        return check(*args, **kwargs)
    except ParamsError as exc:
        exit_on_params_error(stage, exc)


@contextmanager
def stage_errors(stage: str, *errors: type[Exception], label: str | bool = True) -> Iterator[None]:
    """A data stage's main() runs its work inside this (the training stages' counterpart is
    lmbuild.train.entry.run_training_stage). Any of `errors` prints one line to stderr and exits
    2, no traceback: `<label>: <error>`, where label True is the stage's name (left out when the
    message already starts with it), a string is itself, and False prints the error alone (its
    message already names the file or key). A ParamsError
    from a check that runs inside the work (files that params name, a set a param names) stops the
    stage as a schema error does, `exit_on_params_error(stage, ...)`, unless `errors` lists
    ParamsError: then it is one line like the others.

        with stage_errors("mix", MixError, ShardError, label=False):
            metrics, rows = mix(params, POOL, OUT)
    """
    try:
        yield
    except errors as exc:
        prefix = stage if label is True else label
        print(exc if label is False or (label is True and str(exc).startswith(stage)) else f"{prefix}: {exc}",
              file=sys.stderr)
        raise SystemExit(2) from None
    except ParamsError as exc:
        exit_on_params_error(stage, exc)


def deep_merge(base: dict, override: dict | None) -> dict:
    """Return base with override applied key by key (nested dicts merged, other values replaced)."""
    out = copy.deepcopy(base)
    for key, value in (override or {}).items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = deep_merge(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


def training_seed(params: dict, section: str) -> int:
    """The seed of one training stage: `<section>.seed` (dotted for nested sections such as
    `dpo.pairs`) when set, else common.seed. A seed study varies these per-stage seeds, so the
    data stages upstream and the held-out eval problems (always common.seed) stay as they are."""
    node: Any = params
    for part in section.split("."):
        node = node[part]
    return params["common"]["seed"] if node.get("seed") is None else node["seed"]
