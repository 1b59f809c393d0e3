"""Letting go of a memory-mapped matrix's pages: the process's memory falls, the data stays readable."""
import numpy as np

from indexer.mapped import release_pages


def resident_mb() -> float:
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) for line in f if line.startswith("VmRSS:")) / 1024


def test_released_pages_leave_the_process_and_read_back_the_same(tmp_path):
    matrix = np.arange(1 << 24, dtype=np.float32).reshape(1 << 16, 256)  # 64 MB
    np.save(tmp_path / "m.npy", matrix)
    del matrix
    mapped = np.load(tmp_path / "m.npy", mmap_mode="r")
    before = resident_mb()
    total = float(mapped.sum(dtype=np.float64))  # every page read
    read = resident_mb()
    release_pages(mapped)
    released = resident_mb()
    assert read - before > 48 and read - released > 48
    assert float(mapped.sum(dtype=np.float64)) == total


def test_other_arrays_are_left_alone(tmp_path):
    plain = np.ones((4, 4), np.float32)
    release_pages(plain)
    release_pages(None)
    np.save(tmp_path / "c.npy", plain)
    private = np.load(tmp_path / "c.npy", mmap_mode="c")
    private[0, 0] = 7  # a copy-on-write mapping's own pages would be lost: not touched
    release_pages(private)
    assert private[0, 0] == 7 and np.array_equal(plain, np.ones((4, 4)))
