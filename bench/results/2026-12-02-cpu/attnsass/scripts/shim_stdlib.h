// Shim for NVRTC (FA3 includes it for host code only).
#pragma once
