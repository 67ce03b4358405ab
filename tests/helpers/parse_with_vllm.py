"""Run in a subprocess: parse rendered argv lists with the installed vLLM's own parser.

stdin: JSON list of argv tails (flags only). stdout: JSON list of {ok, error, args, unknown_exact}.
The parser's module moved between releases (docs/vllm-facts.md): 0.26 has it under
vllm.entrypoints.openai.cli_args, 0.32 under vllm.entrypoints.launchers.cli_args.
"""

import contextlib
import io
import json
import sys


def make_parser():  # type: ignore[no-untyped-def]
    try:
        from vllm.utils.argparse_utils import FlexibleArgumentParser
    except ImportError:  # vLLM <= 0.2x
        from vllm.utils import FlexibleArgumentParser  # type: ignore[no-redef]
    try:
        from vllm.entrypoints.launchers.cli_args import make_arg_parser
    except ImportError:
        from vllm.entrypoints.openai.cli_args import make_arg_parser  # type: ignore[no-redef]
    return make_arg_parser(FlexibleArgumentParser())


def main() -> None:
    parser = make_parser()
    known = {s for a in parser._actions for s in a.option_strings}
    results = []
    for argv in json.load(sys.stdin):
        flags = [a.split("=")[0] for a in argv if a.startswith("--")]
        err = io.StringIO()
        try:
            with contextlib.redirect_stderr(err):
                ns = parser.parse_args(argv)
            args = {k: v for k, v in vars(ns).items() if isinstance(v, (int, float, str, bool))}
            results.append(
                {"ok": True, "args": args, "inexact": [f for f in flags if f not in known]}
            )
        except SystemExit:
            results.append({"ok": False, "error": err.getvalue().strip().splitlines()[-1:]})
    json.dump(results, sys.stdout)


main()
