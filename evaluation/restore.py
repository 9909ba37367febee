"""A checkpoint's network restored for measuring: the network its records describe, its weights and
centers put in, each array checked against the shape and type it needs."""
from models import build_net
from runs.checkpoints import checked_centers, restore_net


def network(ckpt, ctxs):
    """(the Arch, the network on ``ctxs`` with the checkpoint's weights, its centers): each array checked."""
    arch = ckpt.meta.run.arch
    net = build_net(arch, ctxs)
    restore_net(net, ckpt)
    return arch, net, checked_centers(ckpt, arch.num_classes, arch.feature_size)
