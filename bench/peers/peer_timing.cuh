// What the standalone peers (deepgemm/, fa3/) share with ops_bench: the CUDA call check and the timing rule.
#pragma once
#include <cuda_runtime.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <vector>

// A failed CUDA call: file, line, the call and the error, exit 1.
#define CK(call)                                                                                   \
    do {                                                                                           \
        cudaError_t e_ = (call);                                                                   \
        if (e_ != cudaSuccess) {                                                                   \
            fprintf(stderr, "%s:%d: CUDA error %s (%d): %s\n  in: %s\n", __FILE__, __LINE__,       \
                    cudaGetErrorName(e_), (int)e_, cudaGetErrorString(e_), #call);                 \
            exit(1);                                                                               \
        }                                                                                          \
    } while (0)

// ops_bench's Bench::time and torch_ops.median_ms: a warm-up of at least 3 calls and 100 ms (synchronised after
// each), then at least `iters` calls and 300 ms of them (at most 1000), each between two events on `st`; the median
// in ms. pre(i) runs before call(i) and, when timed, before the start event (not timed).
template <class Pre, class Call>
double peer_median_ms(int iters, cudaStream_t st, Pre&& pre, Call&& call) {
    auto now_ms = [] {
        return std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now().time_since_epoch()).count();
    };
    cudaEvent_t e0, e1;
    CK(cudaEventCreate(&e0));
    CK(cudaEventCreate(&e1));
    int i = 0;
    const double start = now_ms();
    while (i < 3 || now_ms() - start < 100.0) {
        pre(i);
        call(i);
        CK(cudaStreamSynchronize(st));
        ++i;
    }
    std::vector<double> ms;
    double sum = 0;
    while ((int)ms.size() < iters || (sum < 300.0 && ms.size() < 1000)) {
        pre(i);
        CK(cudaEventRecord(e0, st));
        call(i);
        CK(cudaEventRecord(e1, st));
        CK(cudaEventSynchronize(e1));
        float t;
        CK(cudaEventElapsedTime(&t, e0, e1));
        ms.push_back(t);
        sum += t;
        ++i;
    }
    CK(cudaGetLastError());
    CK(cudaEventDestroy(e0));
    CK(cudaEventDestroy(e1));
    std::sort(ms.begin(), ms.end());
    return ms[ms.size() / 2];
}
