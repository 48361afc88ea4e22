"""Quality of data-parallel FM against one host, by hosts and ``sync_every``: replicas trained in one process.

    .venv/bin/python -m bench.bench_fm_sync                                 # CTR set, 2 and 3 hosts, 3 epochs
    .venv/bin/python -m bench.bench_fm_sync --hosts 2 --sync-every 10 --hot-touches 1 10 100 1000

Each of N ``algorithm.fm_replica.FMReplica`` trains every N-th training row (FullyReplicated's shares) in rounds
of ``sync_every`` mini-batches (0: one round per epoch), combined by ``combine`` as the first host combines them
(the hot rows' and one slice of the other used rows' weights of each round while the replicas train the next;
the optimizer state stays with each replica); one host is N=1. Per epoch: the test AUC the first host logs (its
replica at the epoch's end) and the megabytes a round sends over the network on average (every host but the
first sends its changes and receives the combined rows); then the model's test AUC (every replica's weights and
state combined, as the first host writes the model). No timings: replicas run one after another.
"""

from __future__ import annotations

import argparse
import itertools
import sys

from algorithm.csr import CSR
from algorithm.fm import FactorizationMachines
from algorithm.fm_replica import (
    HOT_TOUCHES,
    STATE,
    FMReplica,
    Part,
    column_rules,
    combine,
    initial_state,
    sync_plan,
)
from bench import fm_data


def run(data: fm_data.BenchData, hosts: int, sync_every: int, epochs: int, k: int,
        hot_touches: float = HOT_TOUCHES) -> tuple[list[tuple[float, float]], float]:
    """(test AUC, MB sent per synchronisation) after each epoch, and the model's test AUC."""
    params = dict(feature_dim=data.feature_dim, num_factors=k, predictor_type=data.task, num_threads=1)
    matrix = data.train.to_scipy()
    shares = [CSR.from_matrix(matrix[r::hosts], labels=data.train.labels[r::hosts]) for r in range(hosts)]
    replicas = [FMReplica(FactorizationMachines(**params), s, s.labels, None, r) for r, s in enumerate(shares)]
    start = initial_state(FactorizationMachines(**params))
    size = sync_every * replicas[0].model.mini_batch_size
    plan = sync_plan(sum(replica.feature_counts() for replica in replicas), hosts * size, data.train.n_rows,
                     hot_touches)
    rules = column_rules(replicas[0].layout, k)
    n_rounds = 1 if sync_every == 0 else max(-(-replica.rows.n_rows // size) for replica in replicas)
    for replica in replicas:
        replica.start(*start, plan)
    out = []
    pending = None
    for epoch in range(epochs):
        sent = syncs = 0
        for replica in replicas:
            replica.begin_epoch(epoch)
        update = None
        for number in range(n_rounds + 1):  # the calls of container.fm_distributed's pipelined rounds
            part = None if number == 0 else Part(number - 1, n_rounds)
            train = None if number == n_rounds else 0 if number == n_rounds - 1 else sync_every
            changes = []
            for rank, replica in enumerate(replicas):
                late = 1 if n_rounds > 1 else 0  # the call that takes the last epoch's end on the other hosts
                if number == late and pending is not None and rank > 0:
                    replica.apply(pending)
                if update is not None:
                    replica.apply(update)
                if part is not None:
                    changes.append(replica.changes(part))
                if train is not None:
                    replica.train(train)
            update = None if part is None else combine(changes, replicas[0].sent_base, replicas[0].base_bias, rules)
            if update is not None:
                syncs += 1
                sent += sum(change.nbytes for change in changes[1:]) + (hosts - 1) * update.nbytes
        replicas[0].apply(update)  # the first host at once, the others with their epoch's second call
        pending = update
        out.append((fm_data.auc(data.test.labels, replicas[0].scores(data.test)), sent / syncs / 1e6))
    for rank, replica in enumerate(replicas):
        if rank > 0:
            replica.apply(pending)
    model = combine([replica.changes(STATE) for replica in replicas], replicas[0].sent_base, replicas[0].base_bias,
                    rules)
    replicas[0].apply(model)
    return out, fm_data.auc(data.test.labels, replicas[0].scores(data.test))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=None, help="training rows of the CTR set (default: all)")
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--k", type=int, default=8)
    parser.add_argument("--hosts", type=int, nargs="+", default=[2, 3])
    parser.add_argument("--sync-every", type=int, nargs="+", default=[5, 10, 20])
    parser.add_argument("--hot-touches", type=float, nargs="+", default=[HOT_TOUCHES],
                        help="a feature is hot when a round's rows use it this often (algorithm.fm_replica)")
    args = parser.parse_args(argv)
    data = fm_data.load("ctr", rows=args.rows)
    print(f"CTR set: {data.train.n_rows} train rows, k={args.k}; test AUC by epoch", flush=True)
    one, one_model = run(data, 1, 0, args.epochs, args.k)
    print(f"one host                 AUC {' '.join(f'{auc:.4f}' for auc, _ in one)}  model {one_model:.4f}",
          flush=True)
    for hosts in args.hosts:
        for sync_every, hot in itertools.product(args.sync_every, args.hot_touches):
            epochs, model = run(data, hosts, sync_every, args.epochs, args.k, hot)
            aucs = " ".join(f"{auc:.4f}" for auc, _ in epochs)
            print(f"{hosts} hosts, sync_every={sync_every:<3d} hot_touches={hot:g}  AUC {aucs}  model {model:.4f} "
                  f"vs one host {model - one_model:+.4f}  MB per sync {epochs[-1][1]:.2f}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
