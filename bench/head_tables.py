"""The tables bench/heads.py prints from its rows: each run's mean and spread over the seeds, its paired
differences against softmax, and retrieval by Euclidean distance beside cosine."""
import numpy as np


def print_table(rows, names, unnormalised):
    """The table of ``rows`` (bench/heads.py's log lines): each dataset and feature size apart, the runs in the
    order of ``names`` (its protocol's), then the paired differences against softmax and, for the runs of
    ``unnormalised``, retrieval by Euclidean distance."""
    keys = [('accuracy', 'accuracy (trained classes)'), ('auc', 'AUC'), ('tar', 'TAR @ FAR 1e-3'),
            ('precision_at_1', 'P@1'), ('r_precision', 'R-precision'), ('map_at_r', 'MAP@R')]
    for dataset, features in sorted({(r['dataset'], r['feature_size']) for r in rows}):
        group = [r for r in rows if r['dataset'] == dataset and r['feature_size'] == features]
        seeds = sorted({r['seed'] for r in group})
        never = {'glyphs': 'the third of the characters', 'glyphs-validation': 'a fifth of the trained characters'}
        print('\n%s, %s never trained on, %d-D features (%s)\n' % (
            dataset, never.get(dataset, 'classes 5-9'), features, 'seed %d' % seeds[0]
            if len(seeds) == 1 else 'mean +- half the range over seeds %s' % ','.join(map(str, seeds))))
        print('| run | seeds | ' + ' | '.join(title for _, title in keys) + ' |')
        print('|---|---|' + '---|' * len(keys))
        order = sorted({r['run'] for r in group}, key=lambda n: (names.index(n.split(' (')[0])
                                                                 if n.split(' (')[0] in names else len(names), n))
        for name in order:
            mine = [r for r in group if r['run'] == name and not r.get('failed')]
            failed = len([r for r in group if r['run'] == name and r.get('failed')])
            cells = [str(len(mine)) + (' (%d failed)' % failed if failed else '')]
            for key, _ in keys:
                values = np.array([r[key] for r in mine])
                cells.append('' if not len(values) else '%.4f +- %.4f' % (values.mean(), np.ptp(values) / 2)
                             if len(values) > 1 else '%.4f' % values[0])  # one seed has no spread to show
            print('| %s | %s |' % (name, ' | '.join(cells)))
        trained = [r['precision'] for r in group if not r.get('failed')]  # (logged() fills in older rows')
        print('\ntrained in ' + ', '.join('%s (%d row%s)' % (p, trained.count(p), 's' * (trained.count(p) != 1))
                                     for p in sorted(set(trained)))
              + ('' if len(set(trained)) < 2 else ': not one protocol, the precision moves the figures too'))
        for r in sorted((r for r in group if r.get('failed')), key=lambda r: (r['run'], r['seed'])):
            print('\nfailed: %s, seed %d: %s' % (r['run'], r['seed'], r['failed']))
        if len(seeds) > 1:
            print_paired(group, keys[1:], order)
        print_euclidean(group, order, unnormalised)


def print_euclidean(group, order, unnormalised):
    """Retrieval ranked by Euclidean distance, pytorch-metric-learning's default, beside the cosine one, for
    the runs whose features are not normalised (on normalised ones the two rank alike)."""
    keys = ['precision_at_1', 'r_precision', 'map_at_r']
    raw = [name for name in order if name.split(' (')[0] in unnormalised
           and any('euclidean_map_at_r' in r for r in group if r['run'] == name)]
    if not raw:
        return
    several = len({r['seed'] for r in group if r['run'] in raw}) > 1
    print('\nretrieval by Euclidean distance / by cosine, runs with unnormalised features%s\n'
          % (': mean +- half the range over the seeds' if several else ''))
    print('| run | seeds | ' + ' | '.join('%s (Euclidean / cosine)' % k for k in ('P@1', 'R-precision', 'MAP@R')) + ' |')
    print('|---|---|' + '---|' * len(keys))
    for name in raw:
        mine = [r for r in group if r['run'] == name and 'euclidean_map_at_r' in r]
        cells = []
        for key in keys:
            pair = [np.array([r[prefix + key] for r in mine]) for prefix in ('euclidean_', '')]
            cells.append(' / '.join('%.4f +- %.4f' % (v.mean(), np.ptp(v) / 2) if len(v) > 1 else '%.4f' % v[0]
                                    for v in pair))
        print('| %s | %d | %s |' % (name, len(mine), ' | '.join(cells)))


def print_paired(group, keys, order):
    """Each run against softmax, seed by seed (the seeds are paired: the same seed draws the same batches and
    initial weights): the mean of the differences and its 95% interval (Student's t over the seeds)."""
    from scipy import stats
    base = {r['seed']: r for r in group if r['run'] == 'softmax' and not r.get('failed')}
    print('\nagainst softmax, seed by seed: mean difference [95% interval]\n')
    print('| run | seeds | ' + ' | '.join(title for _, title in keys) + ' |')
    print('|---|---|' + '---|' * len(keys))
    for name in order:
        mine = [r for r in group if r['run'] == name and not r.get('failed') and r['seed'] in base]
        if name == 'softmax' or len(mine) < 2:
            continue
        cells = []
        for key, _ in keys:
            d = np.array([r[key] - base[r['seed']][key] for r in mine])
            half = stats.t.ppf(0.975, len(d) - 1) * d.std(ddof=1) / np.sqrt(len(d))
            cells.append('%+.4f [%+.4f, %+.4f]' % (d.mean(), d.mean() - half, d.mean() + half))
        print('| %s | %d | %s |' % (name, len(mine), ' | '.join(cells)))
