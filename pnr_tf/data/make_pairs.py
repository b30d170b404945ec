"""`python -m pnr_tf.data.make_pairs`: pair and multi-shot tuple files from an annotation file.

The field's rules (pnr_tf.data.pairs): same identity, only images with both shoulders and both hips
detected; a seeded sample of N rows. Deterministic for a seed. --dataset chooses the naming
convention (default: guessed from the names).

    python -m pnr_tf.data.make_pairs --annotations market-annotation-test.csv --out pairs.csv --num-pairs 12000
    python -m pnr_tf.data.make_pairs --annotations market-annotation-test.csv --out tuples.csv \\
        --num-sources 5 --num-tuples 12000
"""

import argparse

from pnr_tf.data.annotations import read_annotations
from pnr_tf.data.annotations import write_pairs
from pnr_tf.data.annotations import write_tuples
from pnr_tf.data.datasets import DATASETS
from pnr_tf.data.datasets import convention
from pnr_tf.data.datasets import guess_convention
from pnr_tf.data.pairs import make_pairs
from pnr_tf.data.pairs import make_tuples
from pnr_tf.data.pairs import split_rows_by_identity


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--annotations", required=True, help="annotation file (name:keypoints_y:keypoints_x)")
    parser.add_argument("--out", required=True, help="output CSV")
    parser.add_argument("--num-pairs", type=int, default=None, help="sample size (default: every pair)")
    parser.add_argument("--num-sources", type=int, default=None, help="write M-source tuples instead of pairs")
    parser.add_argument("--num-tuples", type=int, default=12000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--split-by-identity", metavar="VALIDATION,TEST", default=None,
                        help="write <out>-train/-validation/-test.csv: identity fractions held out, e.g. 0.1,0.2")  # fmt: skip
    parser.add_argument("--dataset", choices=tuple(DATASETS), default=None, help="naming convention (default: guessed from the names)")
    arguments = parser.parse_args(argv)
    annotations = read_annotations(arguments.annotations)
    dataset = convention(arguments.dataset) if arguments.dataset else guess_convention(annotations)
    if arguments.split_by_identity:
        try:
            validation_fraction, test_fraction = (float(part) for part in arguments.split_by_identity.split(","))
        except ValueError:
            parser.error(f"--split-by-identity takes VALIDATION,TEST fractions such as 0.1,0.2, got {arguments.split_by_identity!r}")
        rows = make_pairs(annotations, arguments.num_pairs, arguments.seed, dataset)
        stem = arguments.out[:-4] if arguments.out.endswith(".csv") else arguments.out
        for name, split_rows in split_rows_by_identity(rows, validation_fraction, test_fraction, arguments.seed, dataset).items():
            write_pairs(f"{stem}-{name}.csv", split_rows)
            print(f"wrote {len(split_rows)} rows of {len({dataset.identity_of(row[-1]) for row in split_rows})} identities to {stem}-{name}.csv")
        return
    if arguments.num_sources is None:
        rows = make_pairs(annotations, arguments.num_pairs, arguments.seed, dataset)
        write_pairs(arguments.out, rows)
    else:
        rows = make_tuples(annotations, arguments.num_sources, arguments.num_tuples, arguments.seed, dataset)
        write_tuples(arguments.out, rows)
    print(f"wrote {len(rows)} rows to {arguments.out}")


if __name__ == "__main__":
    main()
