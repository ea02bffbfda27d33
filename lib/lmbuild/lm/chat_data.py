"""Chat and preference data: read the common file formats into one shape (sft trains on
conversations, dpo on prompt/chosen/rejected pairs); lmbuild.lm.chat turns them into token ids.

Reading
-------
`read_conversations(path, format)` -> (conversations, rejects); `read_pairs(path, format)` ->
(pairs, rejects). A path is a JSONL file (`.jsonl`, `.jsonl.gz`), a JSON array file (`.json`,
`.json.gz`; a `.json` file that does not start with `[` is read as JSONL, as many published
datasets are) or a local Hugging Face dataset directory written by `save_to_disk` (a
DatasetDict uses its `train` split).

Conversation formats (`FORMATS`):

- messages   {"messages": [{"role": "system"|"user"|"assistant", "content": str}, ...]}
- alpaca     {"instruction": str, "input": str (optional), "output": str, "system": str (optional)};
             the user turn is instruction + "\\n\\n" + input when input is not empty
- sharegpt   {"conversations": [{"from": "human"|"gpt"|"system", "value": str}, ...]}, optional
             top-level "system"; "user"/"assistant" (and "chatgpt", "bing", "bard") are accepted
             as `from`, and role/content keys instead of from/value

Pair formats (`PAIR_FORMATS`):

- prompt_chosen_rejected  {"prompt": str, "chosen": str, "rejected": str, "system": str (optional)}
- conversational          "chosen" / "rejected" are message lists ending with different assistant
             turns after the same prompt turns (UltraFeedback-binarized, TRL conversational); the
             prompt is the shared prefix, or "prompt" (a string = one user turn, or messages) when
             the lists hold only the completion or repeat the prompt. Anthropic HH-RLHF's raw
             transcripts ("\\n\\nHuman: ... \\n\\nAssistant: ...") are parsed into messages too.

`format="auto"` picks the format from the first row that parses as a JSON object; every row is
then validated on its own. A file that cannot be used at all (missing, unreadable, unknown format)
raises `ChatDataError`, whose message names the file and what to change. A bad row never raises:
it becomes a `Reject(location, reason)` ("data/x.jsonl:17", "bad_role:bot") for the stage to
count, write aside and report. Locations are `file:LINE` (1-based, as editors number lines) for
JSONL, `file:item N` for JSON arrays and `dir:row N` for datasets (0-based, as `ds[N]`).

Reasons: malformed_json, not_an_object, missing_field:<key>, bad_type:<key>, bad_role:<role>,
empty_content, control_token (a special token such as <|im_end|> written inside a message: it
would forge turn boundaries), bad_order:<prev>-><role> (system turns only at the start, then
user and assistant alternate starting with user), no_assistant_turn, prompt_mismatch (chosen
and rejected disagree on the prompt), identical (chosen == rejected, ignoring surrounding
whitespace). Normalisation that loses no information is done silently: message dicts are
reduced to {"role", "content"}, empty system messages are dropped, and trailing user turns
after the last assistant turn (nothing to learn from) are cut.
"""

from __future__ import annotations

import gzip
import hashlib
import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

from lmbuild.tokenize.chat_template import SPECIAL_TOKENS

FORMATS = ("messages", "alpaca", "sharegpt")
PAIR_FORMATS = ("prompt_chosen_rejected", "conversational")
ROLES = ("system", "user", "assistant")
# ShareGPT dumps name the speakers in several ways; FastChat's converter accepts the same set.
SHAREGPT_ROLES = {"human": "user", "user": "user", "gpt": "assistant", "assistant": "assistant",
                  "chatgpt": "assistant", "bing": "assistant", "bard": "assistant", "system": "system"}
_HH_TURN_RE = re.compile(r"(?:^|\n\n)(Human|Assistant): ")


class ChatDataError(Exception):
    """A whole data file cannot be used; the message names the file and what to change."""


@dataclass(frozen=True)
class Reject:
    location: str  # "data/x.jsonl:17", "data/x.json:item 3", "data/ds:row 5"
    reason: str  # short and aggregatable: "malformed_json", "missing_field:output", "bad_role:bot"


@dataclass(frozen=True)
class Pair:
    prompt: list[dict]  # messages ending with a user turn
    chosen: str
    rejected: str


class _Bad(Exception):
    """A row fails validation; `args[0]` is the reject reason."""


# ---------------------------------------------------------------------------------------------
# rows of a file


def _iter_rows(path: Path) -> Iterator[tuple[str, Any]]:
    """(location, row) for every record; row is a parsed value, or _Bad("malformed_json")."""
    if not path.exists():
        raise ChatDataError(f"{path}: no such file or directory; check the data path in params")
    if path.is_dir():
        yield from _iter_dataset_dir(path)
        return
    name = path.name.lower()
    if not name.endswith((".jsonl", ".jsonl.gz", ".json", ".json.gz")):
        raise ChatDataError(f"{path}: unsupported file type; use .jsonl, .jsonl.gz, .json (an array), .json.gz "
                            "or a directory written by datasets' save_to_disk")
    try:
        opener = gzip.open if name.endswith(".gz") else open
        with opener(path, "rt", encoding="utf-8") as f:
            text = f.read()
    except (OSError, UnicodeDecodeError, EOFError) as e:
        raise ChatDataError(f"{path}: cannot read it ({e}); check that it is UTF-8 text "
                            "(gzip-compressed if it ends in .gz)") from e
    if name.endswith((".json", ".json.gz")) and text.lstrip().startswith("["):
        try:
            items = json.loads(text)
        except json.JSONDecodeError as e:
            raise ChatDataError(f"{path}: not valid JSON (line {e.lineno}, column {e.colno}: {e.msg}); "
                                "fix the file or write one JSON object per line as .jsonl") from e
        for i, item in enumerate(items):
            yield f"{path}:item {i}", item
        return
    if name.endswith((".json", ".json.gz")) and text.lstrip().startswith("{"):
        try:
            whole = json.loads(text)
        except json.JSONDecodeError:
            whole = None  # one object per line (JSONL named .json)
        if isinstance(whole, dict) and "\n" in text.strip():
            raise ChatDataError(f"{path}: one JSON object spread over several lines (keys: "
                                f"{', '.join(sorted(whole)[:12])}); write the records as a JSON array or as one "
                                "object per line (.jsonl)")
    # split on "\n" only: str.splitlines() would also break at U+2028 etc., which JSON strings may hold raw
    for n, line in enumerate(text.split("\n"), 1):
        if not line.strip():
            continue
        try:
            yield f"{path}:{n}", json.loads(line)
        except json.JSONDecodeError:
            yield f"{path}:{n}", _Bad("malformed_json")


def _iter_dataset_dir(path: Path) -> Iterator[tuple[str, Any]]:
    import datasets

    try:
        ds = datasets.load_from_disk(str(path))
    except (FileNotFoundError, ValueError, OSError) as e:
        raise ChatDataError(f"{path}: a directory but not a dataset written by datasets' save_to_disk ({e}); "
                            "point the data path at a .jsonl/.json file or such a directory") from e
    if isinstance(ds, datasets.DatasetDict):
        if "train" not in ds:
            raise ChatDataError(f"{path}: a DatasetDict without a 'train' split (splits: {', '.join(ds)}); "
                                "save the split to use with ds[split].save_to_disk(...)")
        ds = ds["train"]
    for i, row in enumerate(ds):
        yield f"{path}:row {i}", row


def _detect(path: Path, rows: list[tuple[str, Any]], keys_to_format, formats: tuple[str, ...]) -> str | None:
    """The format of the first row that is a JSON object, None when there is no such row."""
    for location, row in rows:
        if isinstance(row, dict):
            fmt = keys_to_format(row)
            if fmt is None:
                keys = sorted(row)
                shown = ", ".join(keys[:12]) + (", ..." if len(keys) > 12 else "")
                where = location[len(str(path)) + 1:]
                where = f"line {where}" if where.isdigit() else where
                raise ChatDataError(f"{path}: cannot tell the format from {where} (keys: {shown}); "
                                    f"expected one of {', '.join(formats)}; set format: in params")
            return fmt
    return None


def _load(path, format: str, formats: tuple[str, ...], keys_to_format) -> tuple[Path, str | None, list]:
    path = Path(path)
    if format != "auto" and format not in formats:
        raise ChatDataError(f"{path}: unknown format {format!r}; use auto or one of {', '.join(formats)}")
    rows = list(_iter_rows(path))
    fmt = format if format != "auto" else _detect(path, rows, keys_to_format, formats)
    return path, fmt, rows


def _apply(rows, parse) -> tuple[list, list[Reject]]:
    good, rejects = [], []
    for location, row in rows:
        try:
            if isinstance(row, _Bad):
                raise row
            if not isinstance(row, dict):
                raise _Bad("not_an_object")
            good.append(parse(row))
        except _Bad as bad:
            rejects.append(Reject(location, bad.args[0]))
    return good, rejects


# ---------------------------------------------------------------------------------------------
# validation shared by the formats


def _field(row: dict, key: str, optional: bool = False) -> Any:
    value = row.get(key)
    if value is None:
        if optional:
            return None
        raise _Bad(f"missing_field:{key}")
    return value


def _text(row: dict, key: str, optional: bool = False) -> str | None:
    value = _field(row, key, optional)
    if value is not None and not isinstance(value, str):
        raise _Bad(f"bad_type:{key}")
    return value


def _clean_role(role: Any) -> str:
    return str(role)[:24].replace("\n", " ")


def _check(messages: list[dict], need_assistant: bool = True, end_with_user: bool = False) -> list[dict]:
    """Validate roles, contents and turn order; drop empty system turns and trailing user turns."""
    out, prev = [], "start"
    for m in messages:
        role, content = m["role"], m["content"]
        if role not in ROLES:
            raise _Bad(f"bad_role:{_clean_role(role)}")
        if not isinstance(content, str):
            raise _Bad("bad_type:content")
        if any(t in content for t in SPECIAL_TOKENS):
            raise _Bad("control_token")
        if not content.strip():
            if role == "system":
                continue
            raise _Bad("empty_content")
        ok = {"start": ("system", "user"), "system": ("user",), "user": ("assistant",), "assistant": ("user",)}[prev]
        if role not in ok:
            raise _Bad(f"bad_order:{prev}->{role}")
        out.append({"role": role, "content": content})
        prev = role
    if end_with_user:
        if prev != "user":
            raise _Bad(f"bad_order:prompt_ends_with_{prev}")
        return out
    if need_assistant:
        while out and out[-1]["role"] != "assistant":
            out.pop()
        if not out:
            raise _Bad("no_assistant_turn")
    return out


def _message_list(value: Any, key: str, role_key: str = "role", content_key: str = "content",
                  role_map: dict | None = None) -> list[dict]:
    if not isinstance(value, list):
        raise _Bad(f"bad_type:{key}")
    out = []
    for m in value:
        if not isinstance(m, dict):
            raise _Bad(f"bad_type:{key}")
        rk, ck = (role_key, content_key) if role_key in m or "role" not in m else ("role", "content")
        role, content = m.get(rk), m.get(ck)
        if role is None:
            raise _Bad(f"missing_field:{rk}")
        if content is None:
            raise _Bad(f"missing_field:{ck}")
        if role_map is not None:
            role = role_map.get(str(role).lower(), role)
        out.append({"role": role, "content": content})
    return out


# ---------------------------------------------------------------------------------------------
# conversations


def _conversation_format(row: dict) -> str | None:
    if "messages" in row:
        return "messages"
    if "conversations" in row:
        return "sharegpt"
    if "instruction" in row and "output" in row:
        return "alpaca"
    return None


def _parse_messages(row: dict) -> list[dict]:
    return _check(_message_list(_field(row, "messages"), "messages"))


def _parse_alpaca(row: dict) -> list[dict]:
    instruction, output = _text(row, "instruction"), _text(row, "output")
    extra, system = _text(row, "input", optional=True), _text(row, "system", optional=True)
    user = instruction + "\n\n" + extra if extra and extra.strip() else instruction
    messages = [{"role": "system", "content": system}] if system else []
    return _check(messages + [{"role": "user", "content": user}, {"role": "assistant", "content": output}])


def _parse_sharegpt(row: dict) -> list[dict]:
    turns = _message_list(_field(row, "conversations"), "conversations", "from", "value", SHAREGPT_ROLES)
    system = _text(row, "system", optional=True)
    if system and not (turns and turns[0]["role"] == "system"):
        turns = [{"role": "system", "content": system}] + turns
    return _check(turns)


_CONVERSATION_PARSERS = {"messages": _parse_messages, "alpaca": _parse_alpaca, "sharegpt": _parse_sharegpt}


def in_heldout(messages: list[dict], fraction: float) -> bool:
    """Whether a conversation is in its file's held-out share: a hash of its content below
    `fraction` (stable when counts change). sft holds these out; the judge asks their prompts."""
    h = hashlib.blake2b(json.dumps(messages, sort_keys=True).encode(), digest_size=8).digest()
    return int.from_bytes(h, "big") / 2 ** 64 < fraction


def read_conversations(path, format: str = "auto") -> tuple[list[list[dict]], list[Reject]]:
    """Conversations ([{"role", "content"}, ...], each with an assistant turn) and the rejected rows."""
    _, fmt, rows = _load(path, format, FORMATS, _conversation_format)
    if fmt is None:  # no row parsed as an object: all of them are rejects
        return _apply(rows, lambda row: None)
    return _apply(rows, _CONVERSATION_PARSERS[fmt])


# ---------------------------------------------------------------------------------------------
# preference pairs


def _is_hh(value: Any) -> bool:
    return isinstance(value, str) and bool(re.match(r"\s*Human: ", value))


def _pair_format(row: dict) -> str | None:
    if "chosen" not in row or "rejected" not in row:
        return None
    chosen, prompt = row["chosen"], row.get("prompt")
    if isinstance(chosen, str) and isinstance(prompt, str) and not _is_hh(chosen):
        return "prompt_chosen_rejected"
    return "conversational"


def _hh_messages(text: str) -> list[dict]:
    """Anthropic HH-RLHF transcript -> messages ("\\n\\nHuman: ...\\n\\nAssistant: ...")."""
    parts = _HH_TURN_RE.split(text.lstrip())
    if parts[0].strip():
        raise _Bad("bad_type:transcript")
    return [{"role": "user" if who == "Human" else "assistant", "content": body.strip()}
            for who, body in zip(parts[1::2], parts[2::2])]


def _side(value: Any, key: str) -> list[dict] | str:
    """One side of a pair: a completion string, or messages ending with an assistant turn."""
    if _is_hh(value):
        return _hh_messages(value)
    if isinstance(value, str):
        return value
    return _message_list(value, key)


def _completion(messages: list[dict], key: str) -> str:
    if not messages or messages[-1]["role"] != "assistant":
        raise _Bad(f"bad_order:{key}_ends_with_{messages[-1]['role'] if messages else 'nothing'}")
    content = messages[-1]["content"]
    if not isinstance(content, str):
        raise _Bad("bad_type:content")
    return content


def _finish_pair(prompt: list[dict], chosen: str, rejected: str) -> Pair:
    prompt = _check(prompt, end_with_user=True)
    for text in (chosen, rejected):
        if any(t in text for t in SPECIAL_TOKENS):
            raise _Bad("control_token")
        if not text.strip():
            raise _Bad("empty_content")
    if chosen.strip() == rejected.strip():
        raise _Bad("identical")
    return Pair(prompt, chosen, rejected)


def _system_prefix(row: dict) -> list[dict]:
    system = _text(row, "system", optional=True)
    return [{"role": "system", "content": system}] if system else []


def _parse_pcr(row: dict) -> Pair:
    prompt, chosen, rejected = _text(row, "prompt"), _text(row, "chosen"), _text(row, "rejected")
    return _finish_pair(_system_prefix(row) + [{"role": "user", "content": prompt}], chosen, rejected)


def _parse_conversational(row: dict) -> Pair:
    chosen, rejected = _side(_field(row, "chosen"), "chosen"), _side(_field(row, "rejected"), "rejected")
    texts = [s if isinstance(s, str) else _completion(s, k) for s, k in ((chosen, "chosen"), (rejected, "rejected"))]
    prompt = row.get("prompt")
    if isinstance(prompt, str):
        prompt = _system_prefix(row) + [{"role": "user", "content": prompt}]
    elif prompt is not None:
        prompt = _message_list(prompt, "prompt")
    prefixes = []
    for side in (chosen, rejected):
        if isinstance(side, list):
            prefixes.append(side[:-1])
    if prompt is None:
        if len(prefixes) < 2 or not prefixes[0]:
            raise _Bad("missing_field:prompt")
        prompt = prefixes[0]
    # The lists may repeat the prompt (UltraFeedback) or hold only the completion (TRL).
    # Message lists from datasets may carry extra keys: compare role and content only.
    key = [(m["role"], m["content"]) for m in prompt]
    for prefix in prefixes:
        if prefix and [(m["role"], m["content"]) for m in prefix] != key:
            raise _Bad("prompt_mismatch")
    return _finish_pair(prompt, *texts)


_PAIR_PARSERS = {"prompt_chosen_rejected": _parse_pcr, "conversational": _parse_conversational}


def read_pairs(path, format: str = "auto") -> tuple[list[Pair], list[Reject]]:
    """Preference pairs (prompt messages ending with a user turn, chosen, rejected) and the rejected rows."""
    _, fmt, rows = _load(path, format, PAIR_FORMATS, _pair_format)
    if fmt is None:
        return _apply(rows, lambda row: None)
    return _apply(rows, _PAIR_PARSERS[fmt])
