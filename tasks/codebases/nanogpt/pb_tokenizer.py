"""
The GPT-2 tokenizer, offline-capable and verified.

get_gpt2_encoding() returns tiktoken's GPT-2 encoding (50257 tokens, <|endoftext|> = 50256).
It is built from PB_TOKENIZER_DIR/gpt2.tiktoken when that variable is set (the BPE ranks,
checked against the sha256 tiktoken itself expects), else it comes from tiktoken's own cache or
download. It never falls back to a different tokenizer: a wrong or missing file is an error.

The ranks file ships with the openai-whisper sdist on PyPI, so a machine that can reach only
package registries can still get it:

    python pb_tokenizer.py --fetch ~/.cache/pretrainbench/tokenizer
    python pb_tokenizer.py --check ~/.cache/pretrainbench/tokenizer
"""

import argparse
import base64
import hashlib
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
from functools import lru_cache
from pathlib import Path

import tiktoken

# -----------------------------------------------------------------------------
# constants

TOKENIZER_FILE = "gpt2.tiktoken"  # the file name expected inside PB_TOKENIZER_DIR
# sha256 of the GPT-2 BPE ranks; byte-identical to tiktoken's r50k_base.tiktoken
GPT2_TIKTOKEN_SHA256 = "306cd27f03c1a714eca7108e03d66b7dc042abe8c258b44c199a7ed9838dd930"
EOT_TOKEN = 50256  # <|endoftext|>, the document separator
N_VOCAB = 50257  # 50256 BPE ranks + <|endoftext|>
# a fixed sentence and its GPT-2 ids: catches any tokenizer that is not GPT-2
CHECK_TEXT = "Hello world, this is GPT-2!"
CHECK_IDS = [15496, 995, 11, 428, 318, 402, 11571, 12, 17, 0]
WHISPER_ASSET = "whisper/assets/gpt2.tiktoken"  # path of the ranks inside the whisper sdist


class TokenizerError(RuntimeError):
    """The GPT-2 tokenizer could not be loaded or is not the GPT-2 tokenizer."""


# -----------------------------------------------------------------------------
# loading


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _parse_ranks(data: bytes, source: str) -> dict:
    # the .tiktoken format: one "<base64 token> <rank>" per line
    ranks = {}
    for lineno, line in enumerate(data.splitlines(), 1):
        if not line:
            continue
        try:
            token, rank = line.split()
            ranks[base64.b64decode(token)] = int(rank)
        except ValueError as e:
            raise TokenizerError(f"{source}: line {lineno} is not '<base64> <rank>'") from e
    return ranks


def encoding_from_file(path) -> tiktoken.Encoding:
    """Build the GPT-2 encoding from a gpt2.tiktoken file, verifying its sha256."""
    path = Path(path)
    if not path.is_file():
        raise TokenizerError(
            f"{path} does not exist; fetch it with `python pb_tokenizer.py --fetch {path.parent}`"
        )
    data = path.read_bytes()
    digest = _sha256(data)
    if digest != GPT2_TIKTOKEN_SHA256:
        raise TokenizerError(
            f"{path} has sha256 {digest}, expected {GPT2_TIKTOKEN_SHA256} (the GPT-2 BPE ranks); "
            "refusing to use a different tokenizer"
        )
    from tiktoken_ext.openai_public import r50k_pat_str  # GPT-2's pre-tokenisation regex

    enc = tiktoken.Encoding(
        name="gpt2",
        pat_str=r50k_pat_str,
        mergeable_ranks=_parse_ranks(data, str(path)),
        special_tokens={"<|endoftext|>": EOT_TOKEN},
        explicit_n_vocab=N_VOCAB,
    )
    return enc


def check_encoding(enc: tiktoken.Encoding) -> None:
    """Raise TokenizerError unless enc behaves exactly like GPT-2 on a fixed sentence."""
    ids = enc.encode_ordinary(CHECK_TEXT)
    if ids != CHECK_IDS or enc.eot_token != EOT_TOKEN or enc.n_vocab != N_VOCAB:
        raise TokenizerError(
            f"tokenizer {enc.name!r} is not GPT-2: {CHECK_TEXT!r} -> {ids}, eot={enc.eot_token}, "
            f"n_vocab={enc.n_vocab}"
        )


@lru_cache(maxsize=4)
def _load(tokenizer_dir: str) -> tiktoken.Encoding:
    if tokenizer_dir:
        enc = encoding_from_file(Path(tokenizer_dir) / TOKENIZER_FILE)
    else:
        try:
            enc = tiktoken.get_encoding("gpt2")
        except Exception as e:  # network errors come in many types
            raise TokenizerError(
                "tiktoken.get_encoding('gpt2') failed (no network and no cache?); set "
                "PB_TOKENIZER_DIR to a directory holding gpt2.tiktoken "
                "(`python pb_tokenizer.py --fetch DIR`)"
            ) from e
    check_encoding(enc)
    return enc


def get_gpt2_encoding(tokenizer_dir=None) -> tiktoken.Encoding:
    """The GPT-2 encoding: from tokenizer_dir (or PB_TOKENIZER_DIR) if given, else tiktoken's."""
    if tokenizer_dir is None:
        tokenizer_dir = os.environ.get("PB_TOKENIZER_DIR", "")
    return _load(str(tokenizer_dir))


# -----------------------------------------------------------------------------
# fetching from PyPI (the openai-whisper sdist carries the ranks, MIT licensed)


def fetch_gpt2_tiktoken(out_dir) -> Path:
    """Download the openai-whisper sdist with pip and extract gpt2.tiktoken into out_dir."""
    out_dir = Path(out_dir)
    target = out_dir / TOKENIZER_FILE
    if target.is_file() and _sha256(target.read_bytes()) == GPT2_TIKTOKEN_SHA256:
        return target
    out_dir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--no-binary", ":all:",
               "openai-whisper", "-d", tmp]
        proc = subprocess.run(cmd, capture_output=True, text=True)
        if proc.returncode != 0:
            raise TokenizerError(f"`{' '.join(cmd)}` failed:\n{proc.stderr[-2000:]}")
        sdists = sorted(Path(tmp).glob("openai_whisper-*.tar.gz")) + sorted(
            Path(tmp).glob("openai-whisper-*.tar.gz"))
        if not sdists:
            raise TokenizerError(f"pip downloaded no openai-whisper sdist into {tmp}")
        with tarfile.open(sdists[0]) as tar:
            member = next((m for m in tar.getmembers() if m.name.endswith("/" + WHISPER_ASSET)), None)
            if member is None or not member.isfile():
                raise TokenizerError(f"{sdists[0].name} has no {WHISPER_ASSET}")
            data = tar.extractfile(member).read()
    digest = _sha256(data)
    if digest != GPT2_TIKTOKEN_SHA256:
        raise TokenizerError(f"{WHISPER_ASSET} has sha256 {digest}, expected {GPT2_TIKTOKEN_SHA256}")
    partial = target.with_suffix(".partial")
    partial.write_bytes(data)
    shutil.move(str(partial), str(target))  # atomic on one file system
    return target


# -----------------------------------------------------------------------------
# command line

if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    group = parser.add_mutually_exclusive_group(required=True)
    group.add_argument("--fetch", metavar="DIR", help="download and verify DIR/gpt2.tiktoken")
    group.add_argument("--check", metavar="DIR", help="verify DIR/gpt2.tiktoken and encode a test sentence")
    args = parser.parse_args()
    try:
        if args.fetch:
            path = fetch_gpt2_tiktoken(args.fetch)
            print(f"fetched {path} (sha256 {GPT2_TIKTOKEN_SHA256})")
        directory = args.fetch or args.check
        enc = get_gpt2_encoding(directory)
        print(f"ok: {CHECK_TEXT!r} -> {enc.encode_ordinary(CHECK_TEXT)}")
    except TokenizerError as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(1)
