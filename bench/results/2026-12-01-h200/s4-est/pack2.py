from llama_seq import seq
MiB=1<<20
def pack(ev, align=512, page=2*MiB):
    free=[]; top=0; where={}; size={}; pages=set()
    for op,n,b in ev:
        if op=='a':
            b=max(align,-(-b//align)*align)
            c=[blk for blk in free if blk[1]>=b]
            if c:
                blk=min(c,key=lambda t:(t[1],t[0])); free.remove(blk)
                if blk[1]>b: free.append((blk[0]+b,blk[1]-b))
                where[n]=blk[0]
            else:
                where[n]=top; top+=b
            size[n]=b
            pages.update(range(where[n]//page, (where[n]+b-1)//page+1))
        else:
            free.append((where[n],size[n])); free.sort(); m=[]
            for s0,l0 in free:
                if m and m[-1][0]+m[-1][1]==s0: m[-1]=(m[-1][0],m[-1][1]+l0)
                else: m.append((s0,l0))
            free=m
    return len(pages)*page, top
def live_peak(ev):
    live=peak=0;sz={}
    for op,n,b in ev:
        if op=='a': live+=b; sz[n]=b
        else: live-=sz[n]
        peak=max(peak,live)
    return peak
if __name__=='__main__':
    import sys
    fp8 = len(sys.argv)>1
    for S,L in [(8192,2),(8192,4),(2048,2),(8192,32),(32768,32),(1024,32)]:
        ev=seq(S=S,L=L,fp8=fp8) if fp8 else seq(S=S,L=L)
        p=live_peak(ev); fp,top=pack(ev)
        print(S,L,'peak MiB',round(p/MiB,2),'pages-peak',round((fp-p)/MiB,2),'top-peak',round((top-p)/MiB,2))
