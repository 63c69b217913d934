"""Write labelled data in another layout: `steelscan convert SRC DST --to {yolo,coco,voc,folders}`.

`convert(src, dst, to)` reads SRC with `steelscan.data.formats.read_data` (any layout) and hands the
`LabelledData` to `write_data(data, dst, to)`, which writes exactly the layout the readers read:

- yolo: DST/images/<split>/<file>, DST/labels/<split>/<stem>.txt ("cls cx cy w h", normalised, 6 decimals;
  a defect-free image gets an empty file) and DST/data.yaml (`path: .`, one entry per split present,
  `names` as {id: name}). An item without a split goes to train.
- coco: DST/images/<file>, DST/annotations/instances_<split>.json (instances_all.json when the data has no
  split): categories 1..K in class order, images with width/height, annotations with bbox xywh, area,
  iscrowd 0.
- voc: DST/Annotations/<stem>.xml, DST/JPEGImages/<file>, DST/ImageSets/Main/<split>.txt. Boxes are written
  1-based inclusive (xmin = round(x1) + 1, xmax = round(x2)); the readers take x1 = xmin - 1, x2 = xmax.
- folders: classification data as DST/[<split>/]<class>/<file>. Detection data becomes a crop classifier's
  data: each box's crop (a margin of 10% of its side, at least 2 px, clipped to the image) is written as
  DST/[<split>/]<class>/<stem>_<k>.png; segmentation data likewise, one crop per connected component.

Segmentation data written as yolo/coco/voc becomes one box per 8-connected component of each class mask
(boxes only, no polygons). Classification data has no boxes and is refused for those three.

Images are copied byte for byte (`shutil.copy2`); file names stay unique inside each output folder (a
colliding name gets its split or source folder as a prefix, then a counter). Class names travel exactly,
in UTF-8. The split of the source (`Item.split`) is kept, so e.g. NEU-DET written as YOLO and as COCO holds
the same train/val images.

DST must be absent or empty. Everything is written into a hidden folder beside DST that is renamed to DST
only at the end, so a failure leaves neither a half-written DST nor anything of the user's touched.

    base.py     `ConvertResult`, the destination checks and the staging folder
    items.py    what the writers share: unique names, splits, image sizes, boxes of any task
    write.py    `convert`, `write_data`: check, stage, hand to the layout's writer
    yolo.py, coco.py, voc.py, folders.py   one writer per layout
"""

from __future__ import annotations

from steelscan.data.convert.base import TARGETS, ConvertResult
from steelscan.data.convert.write import convert, write_data

__all__ = ["TARGETS", "ConvertResult", "convert", "write_data"]
