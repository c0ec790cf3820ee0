"""The parent of `lsr serve --workers N`: uvicorn's supervisor and nothing else.

`lsr serve` checks its settings and the index, then replaces itself (``exec``, the same process id) with
``python -m lsr.service.supervisor``, so that the process that only starts, watches and stops the workers imports
uvicorn and no more: not the command line's parser (which loads every command's modules, numpy and numba among
them), not FastAPI, not the index. Each worker builds its app from the environment (``LSR_*``, the settings file),
as :func:`lsr.service.app.app_from_environment` says. Measured in README, "Serving memory".
"""

from __future__ import annotations

import argparse
import sys


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="lsr serve (supervisor)")
    parser.add_argument("--host", required=True)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--workers", type=int, required=True)
    args = parser.parse_args(argv)
    import os

    from lsr.threads import plan

    chosen = plan(args.workers)  # (checked by `lsr serve` already)
    if chosen is not None:  # each worker's numba pool, sized when it first imports numba
        os.environ["NUMBA_NUM_THREADS"] = str(chosen.kernel_threads)
    import uvicorn

    from lsr.service.server import http_protocol

    uvicorn.run("lsr.service.app:app_from_environment", factory=True, host=args.host, port=args.port,
                workers=args.workers, log_level="info", http=http_protocol())
    return 0


if __name__ == "__main__":
    sys.exit(main())
