/* A stand-in for the CUDA driver (libcuda.so.1), for kt-gpu's tests on machines without
 * a GPU. KT_STUB_CUDA_DEVICES (default 0) says how many devices it reports; with none,
 * cuInit fails with CUDA_ERROR_NO_DEVICE (100) as the real driver does. Built with
 * -DSTUB_NO_DEVICE_QUERIES it lacks the per-device functions, like a driver too old for
 * the bindings: cudarc then panics on first use, and kt-gpu must turn that into an error. */
#include <stdio.h>
#include <stdlib.h>

typedef int CUresult;
typedef int CUdevice;

static int devices(void) {
    const char *count = getenv("KT_STUB_CUDA_DEVICES");
    return count ? atoi(count) : 0;
}

CUresult cuInit(unsigned int flags) {
    (void)flags;
    return devices() > 0 ? 0 : 100;
}

CUresult cuDeviceGetCount(int *count) {
    *count = devices();
    return devices() > 0 ? 0 : 100;
}

CUresult cuGetErrorString(CUresult error, const char **text) {
    *text = error == 100 ? "no CUDA-capable device is detected" : "stub: unknown error";
    return 0;
}

CUresult cuGetErrorName(CUresult error, const char **name) {
    *name = error == 100 ? "CUDA_ERROR_NO_DEVICE" : "CUDA_ERROR_UNKNOWN";
    return 0;
}

#ifndef STUB_NO_DEVICE_QUERIES
CUresult cuDeviceGet(CUdevice *device, int ordinal) {
    if (ordinal < 0 || ordinal >= devices()) return 101; /* CUDA_ERROR_INVALID_DEVICE */
    *device = ordinal;
    return 0;
}

CUresult cuDeviceGetName(char *name, int length, CUdevice device) {
    snprintf(name, (size_t)length, "Stub GPU %d", device);
    return 0;
}

CUresult cuDeviceTotalMem_v2(size_t *bytes, CUdevice device) {
    *bytes = ((size_t)80 << 30) + (size_t)device;
    return 0;
}

CUresult cuDeviceGetAttribute(int *value, int attribute, CUdevice device) {
    (void)device;
    /* CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MAJOR = 75, _MINOR = 76 */
    *value = attribute == 75 ? 9 : 0;
    return 0;
}
#endif
