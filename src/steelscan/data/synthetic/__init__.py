"""Synthetic steel strip data in the real on-disk formats: Severstal, NEU-CLS, NEU-DET, defect-free NEU-like
images, a coil of frames, and real NEU-DET images laid out as a coil (`neu_coil`).

Images are procedural rolled-steel textures (streaks along the rolling direction, scale, lighting,
grain) with drawn defects whose masks and boxes are exactly the drawn regions. Everything is a function of
a seed: the same seed writes the same bytes. See `writers` (formats), `coil` (coil format), `strips`
(Severstal images), `neu_images` (NEU images), `defects` and `texture`.
"""

from steelscan.data.synthetic.coil import CoilSpec, coil_truth, render_frame, write_coil
from steelscan.data.synthetic.neu_clean import neu_clean_image, write_neu_clean
from steelscan.data.synthetic.neu_coil import write_neu_coil
from steelscan.data.synthetic.neu_images import make_neu_image
from steelscan.data.synthetic.strips import SEVERSTAL_CLASS_SETS, make_severstal_image
from steelscan.data.synthetic.writers import (
    SynthSummary,
    image_rng,
    neu_counts,
    neu_image,
    severstal_ids,
    severstal_image,
    voc_xml,
    write_neu_cls,
    write_neu_det,
    write_severstal,
)

__all__ = [
    "SEVERSTAL_CLASS_SETS",
    "CoilSpec",
    "SynthSummary",
    "coil_truth",
    "image_rng",
    "make_neu_image",
    "make_severstal_image",
    "neu_clean_image",
    "neu_counts",
    "neu_image",
    "render_frame",
    "severstal_ids",
    "severstal_image",
    "voc_xml",
    "write_coil",
    "write_neu_cls",
    "write_neu_clean",
    "write_neu_coil",
    "write_neu_det",
    "write_severstal",
]
