#!/usr/bin/env bash
# The JSON (and --help) the front ends print on fixed inputs, volatile keys (times, dates) masked, so that a
# redesign of the CLI or the service can be checked byte for byte:
#     bash bench/front_outputs.sh /tmp/before   (on the old commit)
#     bash bench/front_outputs.sh /tmp/after    (on the new one)
#     diff -r /tmp/before /tmp/after
# Needs the simsearch command on PATH; serves on 127.0.0.1:8765 for a few requests.
# JSON outputs of the front ends on fixed inputs; volatile keys masked afterwards
set -e
OUT=$(realpath -m "$1"); D=$(realpath -m "${2:-/tmp/simsearch-outputs-work}"); rm -rf $D $OUT; mkdir -p $D $OUT
cd $D
python -c "
from simsearch.symbols import write_symbol_set
write_symbol_set('g', ['circle','triangle','star','cross'], per_class=4, seed=0)
write_symbol_set('q', ['circle','star'], per_class=1, seed=5)
from simsearch.symbols import SYMBOLS
write_symbol_set('e', list(SYMBOLS), per_class=4, seed=3)
"
S=simsearch
$S index build g --index g.idx -q --json > $OUT/build.json
$S index info --index g.idx --json > $OUT/info.json
$S query q/circle/*.png q/star/*.png --index g.idx -k 3 --json > $OUT/query.json
$S identify q/circle/*.png q/star/*.png --index g.idx --json > $OUT/identify.json
$S calibrate g --index g.idx --json --dry-run > $OUT/calibrate.json
$S duplicates --index g.idx --json --threshold 0.5 > $OUT/dups.json || true
$S verify g/circle/circle_00.png g/circle/circle_01.png --index g.idx --json > $OUT/verify.json || true
$S evaluate g --episodes 20 --way 2 --pairs 20 --json > $OUT/evaluate.json
$S evaluate e --open-set --sizes 5 --runs 3 --json > $OUT/evaluate_open.json 2>/dev/null || echo "open-set failed" > $OUT/evaluate_open.json
$S models --json > $OUT/models.json
$S serve --index g.idx --port 8765 2>/dev/null & SP=$!
python - $OUT <<'PY'
import json, sys, time, urllib.request, uuid
base = "http://127.0.0.1:8765"
for _ in range(300):
    try:
        urllib.request.urlopen(base + "/health", timeout=2); break
    except Exception: time.sleep(0.2)
def up(path, file):
    b = uuid.uuid4().hex
    body = (f"--{b}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"x.png\"\r\nContent-Type: image/png\r\n\r\n").encode() + open(file, "rb").read() + f"\r\n--{b}--\r\n".encode()
    req = urllib.request.Request(base + path, data=body, headers={"Content-Type": f"multipart/form-data; boundary={b}"})
    return urllib.request.urlopen(req, timeout=30).read().decode()
out = sys.argv[1]
open(out + "/svc_search.json", "w").write(up("/search?k=3", "q/circle/circle_00.png") + "\n")
open(out + "/svc_identify.json", "w").write(up("/identify", "q/star/star_00.png") + "\n")
for p in ("classes", "health"):
    open(out + f"/svc_{p}.json", "w").write(urllib.request.urlopen(base + "/" + p).read().decode() + "\n")
PY
kill $SP
$S --help > $OUT/help.txt
for c in "index build" "index add" query identify verify calibrate duplicates models "models import" train evaluate serve demo; do $S $c --help > "$OUT/help-${c// /_}.txt"; done
python - $OUT <<'PY'
import json,sys,glob,re
for f in glob.glob(sys.argv[1]+'/*.json'):
    t=open(f).read()
    try: obj=[json.loads(l) for l in t.splitlines() if l.strip()]
    except Exception: continue
    def mask(o):
        if isinstance(o,dict): return {k:('*' if k in ('elapsed_s','at','updated','seconds','images_per_s','s','took_s','rate') or k.endswith('_s') and k!='time_budget_s' else mask(v)) for k,v in o.items()}
        if isinstance(o,list): return [mask(v) for v in o]
        return o
    open(f,'w').write('\n'.join(json.dumps(mask(o),sort_keys=True) for o in obj)+'\n')
PY
