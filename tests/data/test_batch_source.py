"""The order batches are cut in: a function of seed and epoch, whatever the process count, so that a
checkpoint resumes on another number of processes (N -> M) with the same images in each step."""

import torch

from selfsup.data.batch_source import InMemorySource, Layout, epoch_order


def _step_sets(count: int, world: int, epoch: int, world_batch: int = 8) -> list[set[int]]:
    """The images of each step of `epoch`, over all `world` processes."""
    shares = [epoch_order(count, Layout(3, world_batch, r, world), epoch).view(-1, world_batch // world)
              for r in range(world)]
    return [set(torch.cat([s[i] for s in shares]).tolist()) for i in range(len(shares[0]))]


def test_each_step_reads_the_same_images_on_any_process_count():
    for epoch in (0, 1):
        one = _step_sets(37, 1, epoch)
        assert len(one) == 4 and all(len(s) == 8 for s in one)  # 37 // 8 full batches
        assert _step_sets(37, 2, epoch) == one and _step_sets(37, 4, epoch) == one
    assert _step_sets(37, 1, 0) != _step_sets(37, 1, 1)  # epochs are shuffled apart


def test_processes_read_disjoint_shares_of_a_step():
    images = torch.arange(40).view(40, 1, 1, 1).to(torch.uint8)
    batches = [InMemorySource(images, Layout(0, 8, r, 2)).batch(5).flatten().tolist() for r in (0, 1)]
    assert len(batches[0]) == len(batches[1]) == 4 and not set(batches[0]) & set(batches[1])
