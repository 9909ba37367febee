"""The many-class open-set set of imagesets/glyphs.py, built offline from the typefaces matplotlib ships:

    python -m cli.glyphs OUT [--seed 0]          # OUT/train/, OUT/test/, OUT/pairs.txt, OUT/glyphs.json

then, as any image folder: ``python main.py --train --center_loss --data_dir OUT --feature_size 32`` trains on
the characters of train/ (the unseen ones, in test/ alone, are held out) and ``python main.py --verify
--pairs OUT/pairs.txt`` measures the pairs of characters never seen. The same seed gives the same files, byte
for byte, wherever matplotlib ships the same fonts: the last line gives their fingerprint."""
import argparse
import os
import sys
import time

from cli.flags import Parser, number


def main(argv=None):
    p = Parser(prog='python -m cli.glyphs', description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument('out', help='an empty or new folder to write the set in')
    p.add_argument('--seed', type=number(int, at_least=0), default=0, help='the distortions, the unseen classes, '
                                                                             'the held-out images and the pairs')
    p.add_argument('--limit', type=number(int, at_least=4), default=None,
                   help='the first N characters only (a quick look; not the set the docs measure)')
    args = p.parse_args(sys.argv[1:] if argv is None else argv)
    if os.path.exists(args.out) and (not os.path.isdir(args.out) or os.listdir(args.out)):
        print('error: %s is not an empty folder: the set is written into a new one' % args.out, file=sys.stderr)
        return 2
    from imagesets import glyphs
    tic = time.time()
    try:
        about = glyphs.build(args.out, args.seed, args.limit)
    except OSError as e:
        print('error: could not write %s (%s)' % (e.filename or args.out, e.strerror or e), file=sys.stderr)
        return 74
    print('glyphs: %d characters (%d look-alikes dropped), %d trained on and %d never seen, %d images of %dx%d each, '
          'in %s (%.0f s)' % (about['classes'], about['twins_dropped'], about['trained'], about['unseen'],
                              about['images_per_class'], about['size'], about['size'], args.out, time.time() - tic))
    print('glyphs: seed %d, fingerprint %s' % (args.seed, about['fingerprint']))
    return 0


if __name__ == '__main__':
    sys.exit(main())
