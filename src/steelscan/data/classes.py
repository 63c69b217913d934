"""Fixed class names and their order. Every model output and every table uses this order."""

# NEU (Song & Yan 2013). NEU-DET spells the names in full; NEU-CLS uses file-name prefixes.
NEU_CLASSES: tuple[str, ...] = (
    "crazing",
    "inclusion",
    "patches",
    "pitted_surface",
    "rolled-in_scale",
    "scratches",
)
NEU_CLS_PREFIXES: tuple[str, ...] = ("Cr", "In", "Pa", "PS", "RS", "Sc")
NEU_PREFIX_TO_CLASS: dict[str, str] = dict(zip(NEU_CLS_PREFIXES, NEU_CLASSES))
NEU_IMAGE_SIZE: tuple[int, int] = (200, 200)  # (height, width)
# Detectors (torchvision) reserve label 0 for background: a detector's label = NEU_CLASSES index + 1.
DETECTION_LABEL_OFFSET = 1

# Severstal (Kaggle 2019): ClassId 1..4; channel k of a mask is ClassId k+1.
SEVERSTAL_CLASSES: tuple[str, ...] = ("1", "2", "3", "4")
SEVERSTAL_SHAPE: tuple[int, int] = (256, 1600)  # (height, width)
# Full training set, for reference beside our own counts (Kaggle 2019).
SEVERSTAL_FULL_SET = {
    "n_images": 12568,
    "n_defect_free": 5902,
    "images_per_class": (897, 247, 5150, 801),
    "defect_pixel_share_of_defective_images": 0.0576,
}
