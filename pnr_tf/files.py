"""Files on any filesystem TensorFlow knows: local paths, gs://, ram://, s3:// (with tensorflow-io's plugins).

Data roots, annotation and pair files, run directories, checkpoints, TensorBoard logs, exports and
evaluation reports all go through these helpers (tf.io.gfile underneath), so a path is a string that
may be a URI. Object stores have no append and no atomic rename of folders: ``append_line`` rewrites
the file there, and whole-file writes go through a temporary name only on local disks.
"""

import os
import posixpath
import re
from pathlib import Path

import tensorflow as tf

_URI = re.compile(r"^[a-zA-Z][a-zA-Z0-9+.-]*://")


def cache_root():
    """Where pnr_tf caches what it builds or fetches once (the pose models, the regression kernel, FID
    statistics): $XDG_CACHE_HOME/pnr_tf, by default ~/.cache/pnr_tf."""
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "pnr_tf"


def is_remote(path):
    """True for a URI such as gs://bucket/x or ram://x (not a local path)."""
    return bool(_URI.match(str(path)))


def join(root, *names):
    """root/name, unless name is absolute (a local absolute path or a URI)."""
    path = str(root)
    for name in names:
        name = str(name)
        if is_remote(name) or posixpath.isabs(name):
            path = name
        else:
            path = path.rstrip("/") + "/" + name if path else name
    return path


def parent(path):
    path = str(path).rstrip("/")
    return path.rsplit("/", 1)[0] if "/" in path else "."


def name_of(path):
    return str(path).rstrip("/").rsplit("/", 1)[-1]


def exists(path):
    return tf.io.gfile.exists(str(path))


def is_dir(path):
    return tf.io.gfile.isdir(str(path))


def is_file(path):
    return exists(path) and not is_dir(path)


def makedirs(path):
    tf.io.gfile.makedirs(str(path))


def listdir(path):
    return sorted(name.rstrip("/") for name in tf.io.gfile.listdir(str(path)))


def read_bytes(path):
    with tf.io.gfile.GFile(str(path), "rb") as file:
        return file.read()


def read_text(path, encoding="utf-8-sig"):
    """Text of a file; a UTF-8 byte-order mark is dropped."""
    return read_bytes(path).decode(encoding)


def write_bytes(path, data):
    """Writes a whole file: through a temporary name and a rename on local disks (no half-written file)."""
    path = str(path)
    makedirs(parent(path))
    target = path if is_remote(path) else path + ".partial"
    if is_remote(path) and exists(path):
        tf.io.gfile.remove(path)  # TensorFlow's ram:// filesystem appends to an existing file instead of replacing it
    with tf.io.gfile.GFile(target, "wb") as file:
        file.write(data)
    if target != path:
        tf.io.gfile.rename(target, path, overwrite=True)
    return path


def write_text(path, text):
    return write_bytes(path, text.encode("utf-8"))


def append_line(path, line):
    """Appends one line (object stores cannot append: the file is rewritten there)."""
    path = str(path)
    if is_remote(path):
        previous = read_text(path) if exists(path) else ""
        write_text(path, previous + line.rstrip("\n") + "\n")
        return
    makedirs(parent(path))
    with open(path, "a", encoding="utf-8") as file:
        file.write(line.rstrip("\n") + "\n")


def same_file(first, second):
    """Whether two local paths name one file (links and relative spellings included); URIs by their text."""
    if is_remote(first) or is_remote(second):
        return str(first) == str(second)
    first, second = os.path.realpath(first), os.path.realpath(second)
    if first == second:
        return True
    try:
        return os.path.samefile(first, second)
    except OSError:  # one of them does not exist yet
        return False


def remove_tree(path):
    if exists(path):
        tf.io.gfile.rmtree(str(path))


def copy_tree(source, destination):
    """Copies a folder between filesystems (e.g. a dataset onto ram:// or gs://)."""
    source, destination = str(source), str(destination)
    makedirs(destination)
    for name in listdir(source):
        if is_dir(join(source, name)):
            copy_tree(join(source, name), join(destination, name))
        else:
            tf.io.gfile.copy(join(source, name), join(destination, name), overwrite=True)
