// Shim for NVRTC: -DNDEBUG, so assert is a no-op as in FA3 release builds.
#pragma once
#ifndef assert
#define assert(x) ((void)0)
#endif
