#!/bin/bash
# old, new, old, new, old, new: idle rows of each, one after the other
. /work/main/.venv/bin/activate
unset OPENBLAS_CORETYPE OPENBLAS_L2_SIZE
cd /tmp/exp
for round in 1 2 3; do
  python idle_rows.py /tmp/old /tmp/exp/alt-old-$round.json > /tmp/exp/alt-old-$round.txt 2>&1
  python idle_rows.py /work/main /tmp/exp/alt-new-$round.json > /tmp/exp/alt-new-$round.txt 2>&1
done
echo done > /tmp/exp/alternate.done
