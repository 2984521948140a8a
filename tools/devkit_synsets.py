#!/usr/bin/env python3
"""The synset table `mst eval --synsets` reads, from the ILSVRC2012 devkit's
data/meta.mat: line j is the WNID of ILSVRC2012_ID j (j = 1..1000, the leaf
classes). The ground-truth file's numbers are these IDs, not class indices;
mst maps them through this table and sorts the WNIDs (spec section 5).

  python3 tools/devkit_synsets.py ILSVRC2012_devkit_t12/data/meta.mat > synsets.txt
  python3 tools/devkit_synsets.py meta.mat --names > labels.txt   (class names, class-index order)

Needs scipy (Debian: python3-scipy).
"""
import argparse

import scipy.io


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("meta")
    ap.add_argument("--names", action="store_true", help="print the class names in class-index (sorted WNID) order")
    args = ap.parse_args()
    synsets = scipy.io.loadmat(args.meta, squeeze_me=True)["synsets"]
    leaves = sorted((int(s["ILSVRC2012_ID"]), str(s["WNID"]), str(s["words"])) for s in synsets
                    if int(s["num_children"]) == 0)
    if [i for i, _, _ in leaves] != list(range(1, len(leaves) + 1)):
        raise SystemExit(f"{args.meta}: leaf ILSVRC2012_IDs are not 1..{len(leaves)}")
    if args.names:
        for _, wnid, words in sorted(leaves, key=lambda x: x[1]):
            print(words)
    else:
        for _, wnid, _ in leaves:
            print(wnid)


if __name__ == "__main__":
    main()
