"""Training on several processes: data parallelism over MPI (mpi4py), and cost models.

    mpirun -n 2 python train.py          # each process is one rank

Every rank holds a full replica, reads a disjoint shard of each global
batch, and averages gradients with MPI all-reduce (ddp.py), in buckets
(buckets.py) reduced while backward still runs. zero.py shards AdamW's
moments over the ranks (ZeRO stage 1). training.py is what the Trainer uses
(`Trainer(..., comm=world())`, `mpirun -n N minilm train`). comm.py has the set-up:
the communicator, broadcasting rank 0's weights, checking that every rank
has the same configuration. cost_model.py predicts what the all-reduces
cost on N machines (import it as minilm.distributed.cost_model). mpi4py is
imported only when first needed, so this package imports without it
(pip install "minilm[mpi]" to use it).
"""
from minilm.distributed.buckets import Bucket, bucket_parameters, flatten_into, unflatten
from minilm.distributed.comm import (broadcast_parameters, check_same_config, config_digest, get_rank,
                                     get_world_size, mpi, world)
from minilm.distributed.ddp import DistributedDataParallel, shard_batch, shard_loss_scale
from minilm.distributed.training import DataParallel, OneProcess, launched_world_size, world_from_launcher
from minilm.distributed.zero import ZeroRedundancyOptimizer, partition_parameters

__all__ = ["Bucket", "bucket_parameters", "flatten_into", "unflatten", "broadcast_parameters",
           "check_same_config", "config_digest", "get_rank", "get_world_size", "mpi", "world",
           "DistributedDataParallel", "shard_batch", "shard_loss_scale", "DataParallel", "OneProcess",
           "launched_world_size", "world_from_launcher", "ZeroRedundancyOptimizer", "partition_parameters"]
