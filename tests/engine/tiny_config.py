"""The smallest `dssl bench` configuration that still trains and evaluates (32 px, a few steps), as --set lines."""

TINY_SETS: list[str] = [
    "dataset.options.size=32",
    "dataset.options.num_train=8",
    "dataset.options.num_val=4",
    "augmentation.options.global_size=32",
    "augmentation.options.local_size=16",
    "augmentation.options.n_local=2",
    "optim.batch_size=4",
    "optim.warmup_steps=1",
    "log_every=1",
    "objective.options.out_dim=64",
    "objective.options.hidden_dim=32",
    "objective.options.bottleneck_dim=16",
    # The cpu preset's loader processes and baseline evaluations only cost time at this size.
    "optim.num_workers=0",
    "baselines=[]",
]
