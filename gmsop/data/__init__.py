"""gmsop.data: datasets as uint8 tensors, a resumable batch loader and batched augmentation.

``get_dataset(name, root=None, **options)`` builds a ``Dataset`` (two ``Split``s, mean/std, the
paper's ``AugmentSpec``); training reads ``BatchLoader(ds.train, ...).iter_epoch(epoch)`` batches and
applies ``BatchTransform.for_dataset(ds, train=True)`` with ``epoch_generator(seed, epoch)``.
"""

from gmsop.data.base import AugmentSpec, Dataset, Split, resolve_augment
from gmsop.data.registry import (
    augment_spec,
    dataset_fingerprint,
    dataset_options,
    flip_doubled,
    get_dataset,
    list_datasets,
    register_dataset,
    train_size,
)

# importing the dataset modules registers them
from gmsop.data import digits, folder, imagenet64, npz, places365, synthetic  # noqa: E402  isort: skip
from gmsop.data.augment import BatchTransform, epoch_generator
from gmsop.data.content import content_fingerprint
from gmsop.data.imagenet64 import SubsetWarning
from gmsop.data.loader import BatchLoader
