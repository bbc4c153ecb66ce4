import json,glob,os
HERE=os.path.dirname(os.path.abspath(__file__))
est={}
for l in open(f'{HERE}/est_now.txt'):
    a=[x.strip() for x in l.split('|')]; est[(a[0],a[1])]=int(a[3])
meas={}
names={'00':'gpt4 S=32K L=2 E=8 bf16','01':'moe E=64 k=6 T=16K EP2','02':'gpt4 S=2K L=1 E=8 bf16','03':'gpt4 S=8K L=2 E=16 bf16','04':'gpt4 S=8K L=4 E=8 fp8','05':'gpt4 S=4K L=1 E=64 fp8','06':'gpt4 S=16K L=2 E=16 EP2 bf16','07':'moe E=64 k=6 T=16K bf16','08':'moe E=8 k=2 T=16K bf16','09':'llama 8B L=2 S=8K bf16+fp8'}
for f in sorted(glob.glob(f'{HERE}/../estimate-sweep/0*.jsonl')):
    k=f.split('/')[-1][:2]
    if k in ('04','05'): continue  # FP8 experts have changed since (grouped FP8): call 1's rows below
    for l in open(f):
        r=json.loads(l); meas.setdefault((names[k],r['variant']),[]).append((r['rank'],r['peak_mem_bytes'],'sweep 17:39'))
rows={'gpt4-fp8-a':'gpt4 S=8K L=4 E=8 fp8','gpt4-fp8-b':'gpt4 S=4K L=1 E=64 fp8','moe-fp8':'moe E=64 k=6 T=16K fp8','moe-dp2-fp8':'moe E=64 k=6 T=16K fp8','gpt4-dp2-fp8':'gpt4 S=8K L=2 E=16 fp8'}
for f,n in rows.items():
    for l in open(f'{HERE}/{f}.jsonl'):
        r=json.loads(l); meas.setdefault((n,r['variant']),[]).append((r['rank'],r['peak_mem_bytes'],'call1 20:04'+(' dp2' if 'dp2' in f else '')))
worst=0
for k,v in meas.items():
    for rank,p,src in v:
        e=est[k]; err=(e-p)/p; worst=max(worst,abs(err))
        print(f'{k[0]:32s} {k[1]:10s} r{rank} peak {p/2**30:7.3f} est {e/2**30:7.3f} {100*err:+5.1f}% {src}')
print('worst',worst)
