"""Thread pools sized against the cores and the workers (lsr.threads): the rule, its settings, and what a process
that calls configure() ends up with."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from lsr.errors import InvalidInput
from lsr.threads import available_cores, plan


def run_fresh(code: str, **env: str) -> None:
    """``code`` in a fresh interpreter (thread settings are process-wide), without the thread variables of this
    process plus ``env``; it must print ok."""
    base = {k: v for k, v in os.environ.items() if k not in ("LSR_THREADS", "LSR_TORCH_THREADS", "NUMBA_NUM_THREADS")}
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120,
                          env={**base, **env})
    assert done.returncode == 0 and done.stdout.strip() == "ok", done.stderr[-2000:]


@pytest.mark.parametrize("text, cap", [("max 100000\n", None), ("150000 100000\n", 2), ("50000 100000\n", 1),
                                       ("garbage", None)])
def test_a_cgroup_quota_caps_the_cores(tmp_path, text, cap):
    cpu_max = tmp_path / "cpu.max"
    cpu_max.write_text(text)
    affinity = available_cores(tmp_path / "missing")
    assert available_cores(cpu_max) == (min(affinity, cap) if cap else affinity)


def test_the_rule_splits_the_cores_among_the_workers():
    assert plan(1, {}, cores=4).kernel_threads == 4
    assert plan(2, {}, cores=4).kernel_threads == 2
    assert plan(3, {}, cores=2).kernel_threads == 1  # never 0
    assert plan(2, {}, cores=4).torch_threads == 1  # one query: one thread
    assert plan(2, {"LSR_THREADS": "3", "LSR_TORCH_THREADS": "2"}, cores=4) == plan(2, {}, cores=4).__class__(
        cores=4, workers=2, kernel_threads=3, torch_threads=2)
    assert plan(2, {"LSR_THREADS": "0"}, cores=4) is None  # leave the libraries' pools alone


@pytest.mark.parametrize("name, value", [("LSR_THREADS", "two"), ("LSR_THREADS", "-1"), ("LSR_TORCH_THREADS", "x")])
def test_a_bad_thread_count_is_named(name, value):
    with pytest.raises(InvalidInput, match=f"{name}='{value}' is not a thread count"):
        plan(1, {name: value}, cores=2)
    with pytest.raises(InvalidInput, match=name):  # checked even when the pools are left alone
        plan(1, {name: value, "LSR_THREADS": "0"} if name != "LSR_THREADS" else {name: value}, cores=2)


def test_torch_needs_a_thread_and_a_users_numba_setting_is_kept():
    with pytest.raises(InvalidInput, match="LSR_TORCH_THREADS=0: torch needs at least 1 thread"):
        plan(1, {"LSR_TORCH_THREADS": "0"}, cores=2)
    assert plan(1, {"NUMBA_NUM_THREADS": "3"}, cores=8).kernel_threads == 3
    assert plan(1, {"NUMBA_NUM_THREADS": "3", "LSR_THREADS": "5"}, cores=8).kernel_threads == 5  # LSR_THREADS first


def test_a_handler_thread_sets_its_own_numba_team_and_configured_puts_the_pools_back():
    """numba's thread count is per calling thread: team() in a new thread (a server's handler) limits that thread's
    launches; configured() restores torch's and numba's counts and the plan after its block (lsr eval)."""
    code = (
        "import threading, numba, torch\n"
        "from lsr import threads\n"
        "torch.set_num_threads(2)\n"
        "before = numba.get_num_threads()\n"
        "with threads.configured(workers=2) as chosen:\n"
        "    assert torch.get_num_threads() == 1 and threads.kernel_threads() == chosen.kernel_threads\n"
        "assert torch.get_num_threads() == 2 and numba.get_num_threads() == before\n"
        "assert threads.kernel_threads() is None\n"
        "seen = []\n"
        "def handler():\n"
        "    threads.team(1)\n"
        "    seen.append(numba.get_num_threads())\n"
        "t = threading.Thread(target=handler); t.start(); t.join()\n"
        "assert seen == [1] and numba.get_num_threads() == before, (seen, before)\n"
        "print('ok')\n"
    )
    run_fresh(code)


def test_configure_sets_torch_and_numba_in_the_process_that_calls_it():
    """In a fresh interpreter (the setting is process-wide): numba imported after configure() gets its pool size
    from NUMBA_NUM_THREADS; torch, imported before, is set at once; an encoder that loads a model later keeps it."""
    code = (
        "import os, torch\n"
        "torch.set_num_threads(2)\n"
        "from lsr.threads import configure\n"
        "chosen = configure(workers=2)\n"
        "import numba\n"
        "assert torch.get_num_threads() == 1, torch.get_num_threads()\n"
        "assert numba.get_num_threads() == chosen.kernel_threads == max(1, chosen.cores // 2)\n"
        "from lsr.retrievers.native import default_threads\n"
        "assert default_threads() == chosen.kernel_threads\n"
        "torch.set_num_threads(2)\n"
        "from lsr.encoders.device import resolve_device\n"
        "resolve_device('cpu')\n"
        "assert torch.get_num_threads() == 1\n"
        "print('ok')\n"
    )
    run_fresh(code)


def test_lsr_threads_0_leaves_the_pools_alone():
    code = (
        "import torch\n"
        "torch.set_num_threads(2)\n"
        "from lsr.threads import configure\n"
        "assert configure(workers=4) is None\n"
        "assert torch.get_num_threads() == 2\n"
        "print('ok')\n"
    )
    run_fresh(code, LSR_THREADS="0")
