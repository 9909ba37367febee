"""Your own images in the field's layouts (imagesets/writing.py): a folder of class folders packed as
insightface packs its training sets, and a pair list written as its verification .bin.

    python -m cli.pack rec FOLDER OUT              # OUT/train.rec, train.idx, property (and test.rec, .idx)
    python -m cli.pack bin PAIRS FOLDER OUT.bin    # LFW's pairs.txt over FOLDER's class folders, as a .bin

FOLDER is what main.py's --data_dir takes (train/ and test/ class folders, or one folder a class); PAIRS
names images as LFW's pairs.txt does (the n-th file of a class folder, in sorted order). What either
writes trains and verifies as what it came from: ``python main.py --train --data_dir OUT``,
``python main.py --verify --pairs OUT.bin``. Bad input is one line and exit 2; a failed write, exit 74."""
import argparse
import os
import sys

from cli.flags import Parser
from faults.errors import DataError, SaveError, UserError, saved
from imagesets import pairs, sources, writing


def parse(argv):
    p = Parser(prog='python -m cli.pack', description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    what = p.add_subparsers(dest='what', metavar='{rec,bin}')
    what.required = True
    rec = what.add_parser('rec', help='a folder of class folders as insightface\'s training folder')
    rec.add_argument('folder', help='class folders: train/ and test/, or one folder a class')
    rec.add_argument('out', help='the folder to write train.rec, train.idx and property in')
    pair = what.add_parser('bin', help='a pairs.txt over a folder as insightface\'s .bin')
    pair.add_argument('pairs', help='LFW\'s pairs.txt format: a line "folds pairs", then "name n1 n2" and '
                                    '"name1 n1 name2 n2" lines')
    pair.add_argument('folder', help='the folder of class folders the pairs name (LFW\'s lfw/)')
    pair.add_argument('out', help='the .bin to write')
    for sub in (rec, pair):
        sub.error = p.error
    return p.parse_args(argv)


def pack_folder(folder, out):
    if not os.path.isdir(folder):
        raise UserError('%s is not a folder' % folder)
    if sources.kind_of(folder) != 'folder':
        raise UserError('%s holds no class folders (train/ and test/, or one folder a class)%s' % (
            folder, ': it is RecordIO already' if sources.kind_of(folder) == 'recordio' else ''))
    if os.path.abspath(out) == os.path.abspath(folder):
        raise UserError('write the packed set beside %s, not into it' % folder)
    source = sources.open_source(folder)
    if source.skipped:
        print('pack: %s' % source.skipped.line())
    with saved(out, 'what was written before is kept'):
        written = writing.pack(source, out)
    for path, n in written:
        print('pack: %s: %d images%s' % (path, n, ' of %d classes, with insightface\'s header and identity records'
                                         % len(source.classes) if path.endswith('train.rec') else ''))
    print('pack: %s: %d,%d,%d (classes, height, width: the most common size; images are stored as their files '
          'are)' % (os.path.join(out, 'property'), len(source.classes), source.size[0], source.size[1]))


def pack_pairs(pairs_path, folder, out):
    if not out.endswith('.bin'):
        raise UserError('%s: a verification set is a .bin file' % out)
    pair_list = pairs.read_pairs(pairs_path, folder)
    with saved(out, 'nothing else was written'):
        n = writing.write_bin(pair_list, out)
    folds = len(set(pair_list.folds.tolist()))
    print('pack: %s: %d pairs (%d same) of %d images%s' % (
        out, n, int(pair_list.same.sum()), 2 * n, '' if folds == pairs.BIN_FOLDS else
        '; %s gives %d fold%s and a .bin is read as %d consecutive folds: the fold accuracies will differ (AUC, '
        'EER and TAR will not)' % (pairs_path, folds, '' if folds == 1 else 's', pairs.BIN_FOLDS)))


def main(argv=None):
    args = parse(sys.argv[1:] if argv is None else argv)
    try:
        if args.what == 'rec':
            pack_folder(args.folder, args.out)
        else:
            pack_pairs(args.pairs, args.folder, args.out)
    except (UserError, DataError, SaveError) as e:
        print('error: %s' % e, file=sys.stderr)
        return e.status
    except KeyboardInterrupt:
        print('\nstopped: nothing half-written is left (each file is written whole or not at all)', file=sys.stderr)
        return 130
    return 0


if __name__ == '__main__':
    sys.exit(main())
