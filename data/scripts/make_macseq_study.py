"""Build data/studies/macseq_pmmsq033 from the staged MAC-seq plate (../shared/data).

Run once from the repository root: ``python data/scripts/make_macseq_study.py SRC``, where
SRC is the staged ``macseq_PMMSq033`` folder. Output: ``counts.tsv.gz`` (genes x wells:
gene_id, gene_name, one column per well named <plate>_<well>) and ``plate_map.tsv``.

Plate-map rules (documented in data/README.md):
- compound = the drug name (``Compound_ID``) for library compounds, else ``Treatment_1``
  (DMSO, Media, Staurosporine, Paclitaxel, Thapsigargin); ``compound_id`` keeps the SN id and
  ``target`` the mode of action from CompoundDrugNames.csv;
- dose = ``Concentration_1`` (uM) for treated and positive-control wells, 0 for vehicle wells
  (the source writes a placeholder dose for vehicles);
- well_type = ``Sample_type`` for MCF10A wells; wells of the other cell models on the plate
  (KL476 co-culture, CAR-T/UTD suspension) get ``other_cell_model``, so they stay in well QC
  but are not tested against the MCF10A DMSO wells.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pandas as pd
import scipy.io

OUT = Path(__file__).resolve().parents[1] / "studies" / "macseq_pmmsq033"


def main(src: Path) -> None:
    meta = pd.read_csv(src / "PMMSq033_well_metadata.csv")
    names = pd.read_csv(src / "CompoundDrugNames.csv", encoding="utf-8-sig").iloc[:, :3]
    names.columns = ["sn", "drug", "target"]
    matrix = scipy.io.mmread(src / "counts_1000gene_subset" / "matrix.mtx.gz").tocsc()
    features = pd.read_csv(src / "counts_1000gene_subset" / "features.tsv.gz", sep="\t",
                           header=None, names=["gene_id", "gene_name"])
    barcodes = pd.read_csv(src / "counts_1000gene_subset" / "barcodes.tsv.gz", header=None)[0]
    meta["sample"] = meta["Plate_ID"] + "_" + meta["Well_ID"]
    by_barcode = meta.set_index("Barcode").loc[barcodes]
    counts = pd.DataFrame(matrix.toarray(), columns=by_barcode["sample"].to_numpy())
    counts = counts[meta["sample"]]  # plate-map (row-major well) order
    counts.insert(0, "gene_name", features["gene_name"])
    counts.insert(0, "gene_id", features["gene_id"])

    drug = meta["Treatment_1"].map(names.set_index("sn")["drug"])
    vehicle = meta["Sample_type"].eq("Vehicle_control")
    plate_map = pd.DataFrame({
        "sample": meta["sample"], "plate": meta["Plate_ID"], "well": meta["Well_ID"],
        "compound": drug.fillna(meta["Treatment_1"]),
        "dose": meta["Concentration_1"].where(~vehicle, 0).astype(float),
        "dose_unit": meta["Unit_1"],
        "well_type": meta["Sample_type"].where(meta["Cell_type"].eq("MCF10A"),
                                               "other_cell_model"),
        "cell_type": meta["Cell_type"], "model_type": meta["Model_type"],
        "compound_id": meta["Treatment_1"].where(drug.notna()),
        "target": meta["Treatment_1"].map(names.set_index("sn")["target"]),
        "barcode": meta["Barcode"],
    })
    plate_map["replicate"] = plate_map.groupby(["cell_type", "compound", "dose"]).cumcount() + 1
    OUT.mkdir(parents=True, exist_ok=True)
    counts.to_csv(OUT / "counts.tsv.gz", sep="\t", index=False,
                  compression={"method": "gzip", "mtime": 0})
    plate_map.to_csv(OUT / "plate_map.tsv", sep="\t", index=False)


if __name__ == "__main__":
    main(Path(sys.argv[1]))
