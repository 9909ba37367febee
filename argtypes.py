"""The types of the command line's values and the shape of its messages: each bad value is one
line (exit 2) in one style, and --help shows every default."""
import argparse
import math


class HelpFormatter(argparse.RawDescriptionHelpFormatter):
    """--help shows every flag's default (those of no fixed value say in words what they default to)."""

    def _get_help_string(self, action):
        text = action.help or ''
        if 'default' in text or action.default is None or action.default is False or \
                action.default == argparse.SUPPRESS:  # not `in`: 0.0 == False
            return text
        return '%s (default: %%(default)s)' % text


class Parser(argparse.ArgumentParser):
    def error(self, message):  # one line, exit status 2, no usage dump
        self.exit(2, '%s: error: %s (see --help)\n' % (self.prog, message))


def str2bool(value):
    v = str(value).strip().lower()
    if v in ('1', 'true', 'yes', 'y', 'on'):
        return True
    if v in ('0', 'false', 'no', 'n', 'off'):
        return False
    raise argparse.ArgumentTypeError('expected a boolean (True/False), got %r' % value)


def number(kind, above=None, at_least=None, at_most=None):
    """An argparse type for every numeric flag: one message style, finite values only."""
    def parse(value):
        try:
            v = kind(value)
        except ValueError:
            raise argparse.ArgumentTypeError('expected a %s, got %r' % (
                'whole number' if kind is int else 'float', value))
        if not math.isfinite(v):
            raise argparse.ArgumentTypeError('expected a finite number, got %r' % value)
        if above is not None and not v > above:
            raise argparse.ArgumentTypeError('must be > %g, got %r' % (above, value))
        if at_least is not None and not v >= at_least:
            raise argparse.ArgumentTypeError('must be %g or more, got %r' % (at_least, value))
        if at_most is not None and not v <= at_most:
            raise argparse.ArgumentTypeError('must be %g or less, got %r' % (at_most, value))
        return v
    return parse


def class_ids(value):
    """--holdout: class ids separated by commas, e.g. 5,6,7,8,9 -> (5, 6, 7, 8, 9)."""
    parts = [v.strip() for v in value.split(',')]
    try:
        ids = [int(v) for v in parts]
    except ValueError:
        raise argparse.ArgumentTypeError('expected class ids separated by commas, e.g. 5,6,7,8,9, got %r' % value)
    twice = sorted({i for i in ids if ids.count(i) > 1})
    if twice:
        raise argparse.ArgumentTypeError('class %d is named twice in %r' % (twice[0], value))
    return tuple(sorted(ids))


def image_size(value):
    """--image_size: N (square) or HxW, e.g. 112 or 112x96 -> (112, 112), (112, 96)."""
    parts = value.lower().split('x')
    try:
        size = tuple(int(v) for v in parts)
    except ValueError:
        size = ()
    if len(size) not in (1, 2) or min(size) < 8:
        raise argparse.ArgumentTypeError('expected N or HxW of at least 8 pixels, e.g. 112 or 112x96, got %r' % value)
    return size * 2 if len(size) == 1 else size


POSITIVE_INT, POSITIVE = number(int, above=0), number(float, above=0)
NON_NEGATIVE_INT, NON_NEGATIVE = number(int, at_least=0), number(float, at_least=0)
