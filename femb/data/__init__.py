"""Datasets and image transforms: identity folders, RecordIO sets, synthetic faces, verification pairs.

Every image leaves this package as a float32 ``3×112×112`` RGB tensor, ``(x - 127.5) / 127.5``.
"""

from femb.data.errors import DataFormatError
from femb.data.imagefolder import IMAGE_EXTENSIONS, ImageFolderDataset
from femb.data.labelled_pairs import pairs_from_labelled
from femb.data.pairs import (
    PairsDataset,
    PathImages,
    SubsetImages,
    load_lfw_pairs,
    load_pairs_csv,
)
from femb.data.recordio import IndexedRecordWriter, RecordIOWriter, pack_record, unpack_record
from femb.data.recordio_dataset import RecordIODataset, open_training_dataset
from femb.data.recordio_pack import PackSummary, pack_image_folder
from femb.data.split import IdentitySubset, split_by_identity
from femb.data.synthetic import SyntheticFaces, is_synthetic_spec, render_face, synthetic_from_spec
from femb.data.transforms import (
    FACE_SIZE,
    ImageLoadError,
    decode_image,
    denormalize,
    fit_to_face,
    hflip,
    load_image,
    normalize,
    random_hflip,
    to_face_tensor,
    to_face_uint8,
)
from femb.data.verification_bin import (
    BytesImages,
    UnsafePickleError,
    load_verification_bin,
    write_pairs_dataset_bin,
    write_verification_bin,
)

__all__ = [
    "FACE_SIZE",
    "IMAGE_EXTENSIONS",
    "BytesImages",
    "DataFormatError",
    "ImageFolderDataset",
    "ImageLoadError",
    "IdentitySubset",
    "IndexedRecordWriter",
    "PackSummary",
    "PairsDataset",
    "PathImages",
    "RecordIODataset",
    "RecordIOWriter",
    "SubsetImages",
    "SyntheticFaces",
    "UnsafePickleError",
    "decode_image",
    "denormalize",
    "fit_to_face",
    "hflip",
    "is_synthetic_spec",
    "load_image",
    "load_lfw_pairs",
    "load_pairs_csv",
    "load_verification_bin",
    "normalize",
    "open_training_dataset",
    "pack_image_folder",
    "pack_record",
    "pairs_from_labelled",
    "random_hflip",
    "render_face",
    "split_by_identity",
    "synthetic_from_spec",
    "to_face_tensor",
    "to_face_uint8",
    "unpack_record",
    "write_pairs_dataset_bin",
    "write_verification_bin",
]
