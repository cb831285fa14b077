"""Atomic writing: old or new content, never half; unique temporary names that no listing matches,
removed on failure; and the module's place at the bottom of the package (no import cycle)."""

import ast
import errno
import fnmatch
import os
import threading
from pathlib import Path

import pytest

from translator import atomic
from translator.atomic import WEIGHTS_SUFFIX, save_weights_atomic, temporary_path, write_atomic

PACKAGE = Path(atomic.__file__).parent


def test_write_atomic_replaces_only_with_a_complete_file(tmp_path, monkeypatch):
    path = tmp_path / "metrics.json"
    write_atomic(path, "old")

    def fail(*args, **kwargs):
        raise OSError("rename failed")

    monkeypatch.setattr(os, "replace", fail)
    with pytest.raises(OSError):
        write_atomic(path, "new")
    assert path.read_text() == "old"
    assert os.listdir(tmp_path) == ["metrics.json"]  # the temporary file is gone


class FullDisk:
    """A file whose writes stop half way with ENOSPC, as on a full disk."""

    def __init__(self, f):
        self.f = f

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.f.close()

    def write(self, data):
        self.f.write(data[: len(data) // 2])
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    def __getattr__(self, name):
        return getattr(self.f, name)


def test_a_full_disk_leaves_the_old_file_and_no_temporary_file(tmp_path, monkeypatch):
    path = tmp_path / "config.yaml"
    write_atomic(path, "old: 1\n")
    monkeypatch.setattr(atomic, "open", lambda *a, **k: FullDisk(open(*a, **k)), raising=False)
    with pytest.raises(OSError) as error:
        write_atomic(path, "new: 2\n" * 1000)
    assert error.value.errno == errno.ENOSPC
    assert path.read_text() == "old: 1\n"
    assert os.listdir(tmp_path) == ["config.yaml"]


def test_two_writers_of_one_file_never_share_a_temporary_file(tmp_path):
    """Two commands writing the same file at once (two trainings of one run): each write is
    whole, and neither finds its temporary file renamed away by the other."""
    path = tmp_path / "run_state.json"
    errors = []

    def writer(text):
        try:
            for _ in range(300):
                write_atomic(path, text)
        except OSError as error:  # with one shared temporary name: FileNotFoundError
            errors.append(error)

    threads = [threading.Thread(target=writer, args=(c * 5000,)) for c in "ab"]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    assert path.read_text() in ("a" * 5000, "b" * 5000)
    assert os.listdir(tmp_path) == ["run_state.json"]


def test_the_folder_is_flushed_after_the_rename(tmp_path, monkeypatch):
    synced = []
    real_fsync = os.fsync

    def fsync(fd):
        synced.append(Path(os.readlink(f"/proc/self/fd/{fd}")))
        real_fsync(fd)

    monkeypatch.setattr(os, "fsync", fsync)
    write_atomic(tmp_path / "model.json", "{}")
    assert synced[-1] == tmp_path  # the file first, then its folder (the rename in it)
    assert synced[0].name.endswith(".tmp")


def small_model():
    import keras

    model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(2)])
    model.build((None, 3))
    return model


def test_a_weights_writer_that_dies_halfway_leaves_the_previous_file(tmp_path, monkeypatch):
    model = small_model()
    path = tmp_path / "best.weights.h5"
    save_weights_atomic(model, path)
    before = model.get_weights()
    model.set_weights([w + 1.0 for w in before])
    real = model.save_weights

    def dies_halfway(filepath, **kwargs):
        real(filepath, **kwargs)
        data = open(filepath, "rb").read()
        open(filepath, "wb").write(data[: len(data) // 2])  # half a file on disk, then death
        raise RuntimeError("killed mid-write")

    monkeypatch.setattr(model, "save_weights", dies_halfway)
    with pytest.raises(RuntimeError, match="killed mid-write"):
        save_weights_atomic(model, path)
    assert os.listdir(tmp_path) == ["best.weights.h5"]  # the half-written temporary is gone
    reloaded = small_model()
    reloaded.load_weights(path)
    for old, loaded in zip(before, reloaded.get_weights(), strict=True):
        assert (old == loaded).all()  # the previous complete weights, not half of the new ones


# The patterns the package lists run files with: epoch weights (averaging), evaluation reports.
LISTINGS = ("epoch_*.weights.h5", "*.json", "x.*.json")


@pytest.mark.parametrize("name", ["epoch_0003.weights.h5", "averaged.weights.h5", "x.json"])
def test_temporary_names_are_hidden_unique_and_match_no_listing(tmp_path, name):
    suffix = WEIGHTS_SUFFIX if name.endswith(WEIGHTS_SUFFIX) else ""
    first, second = (temporary_path(tmp_path / name, suffix) for _ in range(2))
    assert first != second and first.parent == second.parent == tmp_path
    assert first.name.startswith(f".{name}.{os.getpid()}-")
    assert first.name.endswith(".tmp" + suffix)  # Keras saves only to `*.weights.h5`
    assert not any(fnmatch.fnmatch(first.name, pattern) for pattern in LISTINGS)


def imports(path: Path) -> set[str]:
    """The `translator` modules a file imports, at its top or inside functions."""
    names = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
            names.update(f"{node.module}.{alias.name}" for alias in node.names)
    return {name for name in names if name.split(".")[0] == "translator"}


def module_graph() -> dict[str, set[str]]:
    """Each module of the package and the package modules it imports (a package stands for its
    `__init__`; `from a import b` counts as importing module a.b when there is one)."""
    modules = {}
    for path in PACKAGE.rglob("*.py"):
        parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
        modules[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    graph = {}
    for name, path in modules.items():
        edges = set()
        for target in imports(path):
            while target and target not in modules:  # a name inside a module: the module
                target = target.rpartition(".")[0]
            if target and target != name:
                edges.add(target)
        graph[name] = edges
    return graph


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import cycle of `graph`, as a path that returns to its start, or None."""
    state = {}  # 1: on the current path, 2: done

    def visit(node, path):
        state[node] = 1
        for other in sorted(graph[node]):
            if state.get(other) == 1:
                return [*path[path.index(other) :], node, other]
            if other not in state and (cycle := visit(other, [*path, node])):
                return cycle
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state and (cycle := visit(node, [])):
            return cycle
    return None


def test_no_import_cycle_among_the_package_modules():
    graph = module_graph()
    assert "translator.tokenizer.subword" in graph and "translator.run_dir" in graph
    cycle = find_cycle(graph)
    assert cycle is None, " -> ".join(cycle)


def test_atomic_writing_sits_at_the_bottom_of_the_package():
    assert imports(PACKAGE / "atomic.py") <= {"translator.errors"}
    for path in (PACKAGE / "tokenizer").glob("*.py"):
        assert "translator.run_dir" not in imports(path), path


def test_find_cycle_finds_one():
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set()}) is None
