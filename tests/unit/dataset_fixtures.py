"""Writers for tiny dataset fixtures in each dataset's published layout (used by test_datasets_*)."""

from __future__ import annotations

import io
import json
from pathlib import Path
from typing import Any

from PIL import Image


def image(path: Path, color: tuple[int, int, int] = (200, 30, 30), size: tuple[int, int] = (8, 6)) -> Path:
    """A tiny image; the format follows the suffix (.jpg / .png)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", size, color).save(path)
    return path


def image_bytes(fmt: str = "PNG", color: tuple[int, int, int] = (10, 120, 200)) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (8, 6), color).save(buf, format=fmt)
    return buf.getvalue()


def write_json(path: Path, obj: Any) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(obj), encoding="utf-8")
    return path


def write_jsonl(path: Path, records: list[dict[str, Any]]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r) + "\n" for r in records), encoding="utf-8")
    return path


def coco(images: list[tuple[int, str, int, int]], anns: list[tuple[int, int, int, list[float]]],
         cats: dict[int, str]) -> dict[str, Any]:
    """A COCO instances dict: images (id, file_name, w, h), anns (id, image_id, cat_id, bbox)."""
    return {
        "info": {"description": "fixture"},
        "images": [{"id": i, "file_name": f, "width": w, "height": h} for i, f, w, h in images],
        "annotations": [{"id": a, "image_id": i, "category_id": c, "bbox": b, "area": b[2] * b[3], "iscrowd": 0,
                         "segmentation": []} for a, i, c, b in anns],
        "categories": [{"id": c, "name": n, "supercategory": "x"} for c, n in cats.items()],
    }


def write_parquet(path: Path, columns: dict[str, list[Any]], image_column: str | None = "image") -> Path:
    """A parquet file; `image_column` is typed as a Hugging Face Image cell struct {bytes, path}."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    arrays = {}
    for name, values in columns.items():
        if name == image_column:
            arrays[name] = pa.array(values, type=pa.struct([("bytes", pa.binary()), ("path", pa.string())]))
        else:
            arrays[name] = pa.array(values)
    path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(pa.table(arrays), path)
    return path
