"""Write the mini world's real English: the first sentences of Python standard-library docstrings.

The mini world needs English that is not ours and not harmful: these sentences are lexically varied
(files, sockets, processes, passwords, signals: words that harmful requests use too, in harmless
use), they install with Python itself, and the PSF licence allows redistribution. Extracted once and
bundled (`src/lorasafe/mini/assets/text/stdlib-sentences.txt`, with its licence and sha256 beside it),
so the mini world does not depend on the Python version that builds it. Rerun to regenerate:

    python scripts/bundle_stdlib_sentences.py
"""

from __future__ import annotations

import hashlib
import importlib
import inspect
import platform
import re
from pathlib import Path

MODULES = (
    "os", "os.path", "json", "math", "random", "string", "re", "collections", "itertools", "functools", "datetime",
    "time", "shutil", "pathlib", "textwrap", "statistics", "heapq", "bisect", "copy", "csv", "calendar", "fractions",
    "decimal", "operator", "glob", "fnmatch", "tempfile", "gzip", "zipfile", "tarfile", "hashlib", "base64", "html",
    "urllib.parse", "email.utils", "difflib", "pprint", "enum", "dataclasses", "typing", "uuid", "secrets", "socket",
    "subprocess", "threading", "queue", "sqlite3", "logging", "argparse", "unittest", "doctest", "zlib", "struct",
    "array", "colorsys", "wave", "turtle", "locale", "gettext", "io", "codecs", "unicodedata", "signal", "select",
    "mimetypes", "platform", "sys", "traceback", "inspect", "contextlib", "abc", "numbers", "cmath", "weakref", "types",
    "shelve", "pickle", "configparser", "netrc", "getpass", "smtplib", "ftplib", "imaplib", "http.client", "ssl",
    "ipaddress", "webbrowser", "sched", "graphlib",
)
OUT = Path(__file__).resolve().parents[1] / "src" / "lorasafe" / "mini" / "assets" / "text"
# A plain English sentence: capitalised word then a lower-case one, no code, 20-110 characters.
_PLAIN = re.compile(r"^[A-Z][a-z]+ [a-z][A-Za-z ,;'-]*\.$")


def sentences() -> list[str]:
    found = set()
    for name in MODULES:
        try:
            module = importlib.import_module(name)
        except ImportError:
            continue
        for attr, obj in sorted(vars(module).items()):
            if attr.startswith("_") or not callable(obj):
                continue
            doc = inspect.getdoc(obj) or ""
            first = re.split(r"(?<=[.!?])\s", doc.strip().split("\n\n")[0].replace("\n", " "))[0]
            if 20 <= len(first) <= 110 and _PLAIN.match(first):
                found.add(first)
    return sorted(found)


def main() -> None:
    OUT.mkdir(parents=True, exist_ok=True)
    text = "\n".join(sentences()) + "\n"
    (OUT / "stdlib-sentences.txt").write_text(text, encoding="utf-8")
    digest = hashlib.sha256(text.encode()).hexdigest()
    (OUT / "LICENSE-stdlib-sentences.txt").write_text(
        f"First sentences of docstrings of the Python {platform.python_version()} standard library, extracted by\n"
        "scripts/bundle_stdlib_sentences.py. Python is distributed under the PSF License Agreement\n"
        "(https://docs.python.org/3/license.html), which permits redistribution of derived works with this notice:\n"
        "Copyright (c) 2001 Python Software Foundation; All Rights Reserved.\n"
        f"sha256 of stdlib-sentences.txt: {digest}\n", encoding="utf-8")
    print(f"{len(text.splitlines())} sentences, sha256 {digest}")


if __name__ == "__main__":
    main()
