"""gmsop.data: datasets as uint8 tensors, a resumable batch loader and batched augmentation.

The interface (``gmsop.data.base``)
-----------------------------------
``get_dataset(name, root=None, **options) -> Dataset`` builds a dataset by name;
``list_datasets()`` lists the names; ``dataset_options(name)`` shows a dataset's options and
defaults. Unknown names and options raise ``ValueError`` naming them; so does anything wrong in
the data (label out of range, wrong dtype or shape, truncated file), with the file path.

``Dataset`` fields:
    name, num_classes, train: Split, val: Split,
    mean, std        per channel (R, G, B) on the 0-255 scale, from the training images,
    augment          AugmentSpec: what the paper trains and evaluates this data with,
    classes          class names or None,   info   provenance (source, cache, notes),
    input_size       (property) (H, W) the model sees after augmentation; image_size as stored.
``Split`` fields: images uint8 (N, 3, H, W) (possibly a copy-on-write memmap), labels int64 (N,),
source (file or cache path, for errors); ``len(split)``.
``AugmentSpec`` fields: flip, pad, train_crop, eval_crop, flip_double, eval_pad_crop.

Datasets
--------
synthetic   generated texture mosaics (embedded default; cached if $GMSOP_CACHE_DIR) gmsop.data.synthetic
digits      scikit-learn's bundled 8x8 digits, upsampled                     gmsop.data.digits
imagenet64  downsampled ImageNet release files (npz or pickle), cached       gmsop.data.imagenet64
places365   Places365-Standard list files + JPEGs at 100x100, cached         gmsop.data.places365
folder      root/train/<class>/*.jpg, root/val/<class>/..., cached           gmsop.data.folder
npz         train.npz/val.npz with x (NCHW or NHWC uint8) and y              gmsop.data.npz

A file-backed dataset's identity includes the content of the files it reads
(``content_fingerprint``, gmsop.data.content); a generated one's is its options.

Training path
-------------
    ds = get_dataset("imagenet64", root="/data/imagenet64")
    loader = BatchLoader(ds.train, 256, seed=0, device="cuda", flip_double=ds.augment.flip_double)
    tf = BatchTransform.for_dataset(ds, train=True)
    for epoch in range(start_epoch, epochs):
        g = epoch_generator(seed, epoch)
        for x, y in loader.iter_epoch(epoch):      # uint8 (B, 3, H, W), int64 (B,) on device
            x = tf(x, g)                           # float32 (B, 3, *ds.input_size), normalised
"""

from gmsop.data.base import AugmentSpec, Dataset, Split, check_labels, resolve_augment
from gmsop.data.registry import (
    augment_presets,
    augment_spec,
    dataset_fingerprint,
    dataset_options,
    flip_doubled,
    get_dataset,
    list_datasets,
    register_augment_presets,
    register_dataset,
    register_source_files,
    register_train_size,
    source_files,
    train_size,
)

# importing the dataset modules registers them
from gmsop.data import digits, folder, imagenet64, npz, places365, synthetic  # noqa: E402,F401  isort: skip
from gmsop.data.augment import (
    BatchTransform,
    center_crop,
    crop_at,
    epoch_generator,
    hflip_where,
    normalize,
    pad_fill,
    random_crop,
    random_hflip,
    to_float,
)
from gmsop.data.content import content_fingerprint  # noqa: E402
from gmsop.data.imagenet64 import SubsetWarning
from gmsop.data.loader import BatchLoader, batch_order, epoch_permutation
from gmsop.data.throughput import measure_loader_throughput

__all__ = [
    # base
    "AugmentSpec",
    "Dataset",
    "Split",
    "check_labels",
    "resolve_augment",
    # registry
    "augment_presets",
    "augment_spec",
    "flip_doubled",
    "register_augment_presets",
    "dataset_fingerprint",
    "dataset_options",
    "get_dataset",
    "list_datasets",
    "register_dataset",
    "register_train_size",
    "register_source_files",
    "source_files",
    "train_size",
    # content
    "content_fingerprint",
    # augment
    "BatchTransform",
    "center_crop",
    "crop_at",
    "epoch_generator",
    "hflip_where",
    "normalize",
    "pad_fill",
    "random_crop",
    "random_hflip",
    "to_float",
    # loader
    "BatchLoader",
    "batch_order",
    "epoch_permutation",
    # throughput
    "measure_loader_throughput",
    # warnings
    "SubsetWarning",
]
