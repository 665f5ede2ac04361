"""BatchStream: the order of batches over epochs, across restarts, with and without worker processes."""
import torch
from torch.utils.data.distributed import DistributedSampler

from minimind_core.train.batches import BatchStream


class Numbers(torch.utils.data.Dataset):
    def __init__(self, n):
        self.n = n

    def __len__(self):
        return self.n

    def __getitem__(self, i):
        return torch.tensor(i)


def expected_epochs(n, batch, epochs, seed=3):
    """Each epoch: DistributedSampler's permutation for that epoch, cut to whole batches."""
    sampler = DistributedSampler(Numbers(n), num_replicas=1, rank=0, shuffle=True, seed=seed, drop_last=True)
    out = []
    for e in range(epochs):
        sampler.set_epoch(e)
        order = list(sampler)[:(n // batch) * batch]
        out += [order[i:i + batch] for i in range(0, len(order), batch)]
    return out


def take(stream, k):
    return [stream.next().tolist() for _ in range(k)]


def test_batches_follow_each_epochs_permutation_and_count_epochs():
    stream = BatchStream(Numbers(11), 3, seed=3)          # 3 batches per epoch, 2 examples left out
    assert take(stream, 7) == expected_epochs(11, 3, 3)[:7]
    assert (stream.epoch, stream.position) == (2, 1)
    take(stream, 2)
    assert (stream.epoch, stream.position) == (3, 0)      # the third epoch is used up


def test_worker_processes_give_the_same_batches_and_start_once():
    plain = BatchStream(Numbers(10), 4, seed=3)
    workers = BatchStream(Numbers(10), 4, seed=3, num_workers=2)
    assert take(workers, 1) == take(plain, 1)
    loader_iter = workers._it
    assert take(workers, 6) == take(plain, 6)             # three more epochs of 2 batches
    assert workers._it is loader_iter                     # one loader for all of them


def test_a_restart_mid_epoch_and_at_an_epoch_boundary_continues_exactly():
    whole = take(BatchStream(Numbers(11), 3, seed=3), 9)
    for k in (2, 3, 4):                                   # inside an epoch, just after one, inside the next
        first = BatchStream(Numbers(11), 3, seed=3)
        seen = take(first, k)
        again = BatchStream(Numbers(11), 3, seed=3, num_workers=1)
        again.load_state_dict(first.state_dict())
        assert seen + take(again, 9 - k) == whole
