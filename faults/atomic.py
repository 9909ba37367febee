"""Files written whole: the bytes go to a temporary file beside the target, then one rename puts
them in place, so a crash, a full disk or a signal leaves the old file (or none) and no
temporary file. Every file this project writes goes through here: checkpoints, pictures, JSON."""
import json
import os
import secrets


def atomic_write(path, data):
    """Write ``data`` (bytes, or an iterable of bytes written one after the other, so that a large file
    need not be held whole in memory) to ``path`` whole. An OSError names ``path``, the file the user
    knows, not the temporary one, with the operating system's reason."""
    directory = os.path.dirname(os.path.abspath(path))
    while True:
        tmp = os.path.join(directory, '.%s.%s.tmp' % (os.path.basename(path), secrets.token_hex(4)))
        try:  # the mode a new file gets (0666 less the umask), as any other program's file
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
            break
        except FileExistsError:
            continue
        except OSError as e:
            raise OSError(e.errno, e.strerror, path)
    try:
        with os.fdopen(fd, 'wb') as f:
            for part in ([data] if isinstance(data, (bytes, bytearray)) else data):
                f.write(part)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException as e:
        if os.path.exists(tmp):
            os.remove(tmp)
        if isinstance(e, OSError):
            raise OSError(e.errno, e.strerror, path)
        raise


def write_json(path, obj):
    atomic_write(path, json.dumps(obj, indent=1).encode())
