from llama_seq import seq
from pack2 import live_peak
import itertools
MiB=1<<20
def pack(ev, fit, coal, hi, small, gran):
    free=[]; top=0; where={}; size={}; t=0; stop=0; smallset=set()
    for op,n,b in ev:
        t+=1
        if op=='a':
            if b<small: smallset.add(n); continue
            b=max(gran,-(-b//gran)*gran)
            c=[blk for blk in free if blk[1]>=b]
            if c:
                key={'best':lambda x:(x[1],x[0]),'first':lambda x:(x[0],),'last':lambda x:(-x[0],),'lifo':lambda x:(-x[2],),'bestlast':lambda x:(x[1],-x[0])}[fit]
                blk=min(c,key=key); free.remove(blk)
                if hi:
                    if blk[1]>b: free.append((blk[0],blk[1]-b,blk[2]))
                    where[n]=blk[0]+blk[1]-b
                else:
                    if blk[1]>b: free.append((blk[0]+b,blk[1]-b,blk[2]))
                    where[n]=blk[0]
            else:
                where[n]=top; top+=b
            size[n]=b
        else:
            if n in smallset: continue
            free.append((where[n],size[n],t))
            if coal:
                free.sort(); m=[]
                for s0,l0,st in free:
                    if m and m[-1][0]+m[-1][1]==s0: m[-1]=(m[-1][0],m[-1][1]+l0,max(m[-1][2],st))
                    else: m.append((s0,l0,st))
                free=m
    return top
want={(False,8192,2):288.5,(False,8192,32):224.5,(True,8192,2):288.2,(True,8192,32):288.2,(False,1024,32):44.5}
evs={k:seq(S=k[1],L=k[2],fp8=k[0]) for k in want}
peaks={k:live_peak([e for e in v]) for k,v in evs.items()}
res=[]
for fit,coal,hi,small,gran in itertools.product(['best','first','last','lifo','bestlast'],[True,False],[False,True],[0,1<<20,2<<20,4<<20],[512,2*MiB]):
    got={k:(pack(evs[k],fit,coal,hi,small,gran)-peaks[k])/MiB for k in want}
    err=sum(abs(got[k]-want[k]) for k in want)
    res.append((err,fit,coal,hi,small,gran,[round(got[k]) for k in want]))
res.sort()
for r in res[:15]: print(r)
