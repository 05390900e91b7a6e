#!/usr/bin/env python3
"""Mean KL per cache type and schedule of several `kvarn eval` runs side by side, with each run's
relative change against the first.

Usage: scripts/compare_eval_kl.py NAME=path/eval.json NAME=path/eval.json ...
"""
import json,sys
def load(p):
    d=json.load(open(p)); return {(c['cache_type'],c['schedule']):c for c in d['cases']}
runs=[(n,load(p)) for n,p in [a.split('=') for a in sys.argv[1:]]]
keys=list(runs[0][1].keys())
print("%-20s %-11s "%("cache","schedule")+" ".join("%12s"%n for n,_ in runs))
for k in keys:
    vals=[r[k]['kl_mean'] if k in r else float('nan') for _,r in runs]
    base=vals[0]
    print("%-20s %-11s "%k+" ".join("%12.6f"%v for v in vals)+"   "+" ".join("%+6.2f%%"%(100*(v/base-1)) if base>0 else "" for v in vals[1:]))
