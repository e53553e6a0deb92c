r"""How many BLAS threads a piece of work gets: one for small work, every core for large work.

OpenBLAS splits every product over all its threads and makes them meet at a barrier. On a quiet machine that
helps large GEMMs; on a busy one a thread that the scheduler has parked behind another process holds the
barrier for a whole time slice (milliseconds), so a 2 ms gradient of a small network took 15-200 ms with two
threads and one core busy, and a 24 ms ``eigh`` of 506 x 506 took 0.75 s. The policy here
(``blas_threads(flops)``) decides from the size of the work and the load:

* work whose BLAS calls each stay below ``SERIAL_FLOPS`` floating-point operations runs in one thread: the call
  is over before a second thread would pay for its barrier;
* larger work gets the cores that other processes left idle since the previous decision (``free_cores``, from
  /proc/stat less this process's own CPU time), at least one: on a quiet machine every core, with one core
  taken by something else one thread fewer, since a thread that has to share its core with a busy process
  makes the product slower than running without it.

``flops`` is the size of the *largest single BLAS call* of the work, not its total: a barrier is paid per call,
so a thousand small calls (the panels of ``eigh``) never gain from threads however much they add up to.

Override with the environment variable ``MINISGD_BLAS_THREADS``: a number fixes the thread count for all work,
``off`` leaves the BLAS library's own setting alone; ``auto`` (the default) is the policy. The ``threads``
argument of ``blas_threads`` overrides both. Through threadpoolctl (the library scikit-learn uses for the same
job) the limit reaches OpenBLAS, MKL and BLIS alike.

The first ``blas_threads`` call also tunes glibc's allocator to keep freed memory (``retain_freed_memory``):
a gradient allocates the same temporaries at every step, and giving them back to the OS at each ``free`` made
every step pay page faults to zero them again (on a small network, half the time of a gradient, and 7x the
time of an elementwise pass). What it keeps is bounded (``RETAIN_BYTES``); ``MINISGD_MALLOC=off`` leaves the
allocator alone.
"""
import ctypes
import os
import sys
from contextlib import contextmanager

from .errors import ConfigError

ENV = "MINISGD_BLAS_THREADS"
MALLOC_ENV = "MINISGD_MALLOC"
# Arrays below this size are recycled by the heap instead of mmap'd and unmapped; at most about this much freed
# memory stays with the process (a (4096, 512) float64 activation is 16 MiB).
RETAIN_BYTES = 256 << 20
# Below this many flops a product runs in one thread: at 10-30 GFLOP/s per core such work takes under ~10 ms,
# about one scheduler time slice, the price of one parked thread (benchmarks/bench_threads.py).
SERIAL_FLOPS = 2e8
# A load measured over less time than this is mostly noise of the clock tick (10 ms): keep the previous one.
LOAD_WINDOW_S = 0.05

_controller = []
_load = {"sample": None, "free": None}
_allocator = []


def available_cores():
    """The cores this process may run on (its CPU affinity), at least 1."""
    if hasattr(os, "sched_getaffinity"):
        return max(1, len(os.sched_getaffinity(0)))
    return max(1, os.cpu_count() or 1)


def _setting():
    """``"auto"``, ``"off"`` or a positive thread count, from ``MINISGD_BLAS_THREADS``."""
    value = os.environ.get(ENV, "auto").strip().lower()
    if value in ("auto", "off", ""):
        return value or "auto"
    try:
        count = int(value)
    except ValueError:
        count = 0
    if count < 1:
        raise ConfigError(f"{ENV}={value!r} is not understood; set it to 'auto' (threads by the size of the work), "
                          "'off' (leave the BLAS library alone) or a positive number of threads")
    return count


def threads_for(flops, threads=None):
    """The BLAS thread count for work of ``flops`` floating-point operations, or None to leave BLAS alone."""
    if threads is not None:
        if int(threads) < 1:
            raise ConfigError(f"threads must be a positive number of threads, got {threads!r}")
        return int(threads)
    setting = _setting()
    if setting == "off":
        return None
    if setting != "auto":
        return setting
    return 1 if flops < SERIAL_FLOPS else free_cores()


def _cpu_seconds():
    """``(wall, all processes' busy CPU seconds, this process's CPU seconds)`` now, or None without /proc/stat."""
    import time
    try:
        with open("/proc/stat") as fh:
            ticks = [int(x) for x in fh.readline().split()[1:9]]
    except (OSError, ValueError):
        return None
    own = os.times()
    busy = sum(ticks) - ticks[3] - ticks[4]  # all but idle and iowait
    return time.perf_counter(), busy / os.sysconf("SC_CLK_TCK"), own.user + own.system


def free_cores():
    """Cores left idle by other processes since the previous call (at least 1, at most ``available_cores()``):
    every core on a first call or where /proc/stat is missing (not Linux)."""
    cores = available_cores()
    now = _cpu_seconds()
    before = _load["sample"]
    if now is None:
        return cores
    if before is None:
        _load["sample"], _load["free"] = now, cores
        return cores
    wall = now[0] - before[0]
    if wall >= LOAD_WINDOW_S:
        others = max(0.0, (now[1] - before[1]) - (now[2] - before[2])) / wall  # cores used by other processes
        _load["sample"], _load["free"] = now, max(1, min(cores, cores - int(round(others))))
    return _load["free"]


def _blas_controller():
    # Scanning the loaded libraries costs about a millisecond: once per process, not per call.
    if not _controller:
        from threadpoolctl import ThreadpoolController
        _controller.append(ThreadpoolController().select(user_api="blas"))
    return _controller[0]


@contextmanager
def blas_threads(flops, threads=None):
    """Run the ``with`` body with the BLAS thread count that ``threads_for(flops, threads)`` picks, then restore
    the previous count. Nested uses are fine (the inner one wins inside it)."""
    if not _allocator:
        _allocator.append(os.environ.get(MALLOC_ENV, "").strip().lower() != "off" and retain_freed_memory())
    count = threads_for(flops, threads)
    if count is None:
        yield
        return
    controller = _blas_controller()
    before = [lib.num_threads for lib in controller.lib_controllers]
    if all(n == count for n in before):
        yield
        return
    for lib in controller.lib_controllers:
        lib.set_num_threads(count)
    try:
        yield
    finally:
        for lib, n in zip(controller.lib_controllers, before):
            lib.set_num_threads(n)


def gemm_flops(m, k, n):
    """``2 m k n``: the floating-point operations of an ``(m, k) @ (k, n)`` product."""
    return 2.0 * m * k * n


# glibc's mallopt parameter numbers (malloc.h)
_M_TRIM_THRESHOLD = -1
_M_MMAP_THRESHOLD = -3


def retain_freed_memory(threshold=RETAIN_BYTES):
    """Ask glibc's allocator to serve blocks below ``threshold`` bytes from its heap and to keep up to
    ``threshold`` bytes of freed memory for reuse instead of returning it to the OS. Returns True when applied,
    False on other C libraries (nothing to do there).

    By default glibc trims the heap as soon as 2x its current mmap threshold lies free at the top, so a loop
    that allocates and frees the same temporaries at every step pays page faults to zero fresh pages each
    time: a float64 gradient of 64-32-32-10 over 2048 examples took 4.5 ms instead of 2.5 ms. The price is up
    to ``threshold`` bytes of resident memory that the process keeps.
    """
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL("libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return False
    threshold = int(min(threshold, 2 ** 31 - 1))
    return bool(mallopt(_M_MMAP_THRESHOLD, threshold)) and bool(mallopt(_M_TRIM_THRESHOLD, threshold))
