// Opens libcuda, NVRTC and cuBLASLt with dlopen and fills CudaApi. Nothing here needs CUDA at
// build time; a machine without a GPU gets a LoadReport whose errors say what to install.
#include <dlfcn.h>

#include <mutex>

#include "api.h"

namespace kestrel::cuda {

namespace {

CudaApi g_api;
LoadReport g_report;
std::mutex g_mutex;

// Resolves `name` into `fn`; returns false (and notes it) when a required symbol is missing.
template <class F>
bool bind(void* lib, const char* name, F& fn, std::string* missing) {
  fn = reinterpret_cast<F>(dlsym(lib, name));
  if (!fn && missing) {
    if (!missing->empty()) *missing += ", ";
    *missing += name;
  }
  return fn != nullptr;
}

void* open_first(const std::vector<std::string>& candidates, LibraryStatus& st) {
  std::string tried;
  for (const std::string& c : candidates) {
    void* h = dlopen(c.c_str(), RTLD_NOW | RTLD_LOCAL);
    if (h) {
      st.path = c;
      char origin[4096] = {0};
      if (dlinfo(h, RTLD_DI_ORIGIN, origin) == 0 && c.find('/') == std::string::npos) st.path = std::string(origin) + "/" + c;
      return h;
    }
    const char* e = dlerror();
    if (tried.size() < 600) tried += std::string(tried.empty() ? "" : "; ") + (e ? e : c.c_str());
  }
  st.error = candidates.empty() ? "no candidates" : tried;
  return nullptr;
}

void load_driver(const std::vector<std::string>& cands) {
  LibraryStatus& st = g_report.driver;
  st.name = "libcuda";
  void* h = open_first(cands, st);
  if (!h) {
    st.error = "libcuda.so.1 not found (install the NVIDIA driver): " + st.error;
    return;
  }
  CudaApi& a = g_api;
  std::string missing;
  bind(h, "cuInit", a.cuInit, &missing);
  bind(h, "cuDriverGetVersion", a.cuDriverGetVersion, &missing);
  bind(h, "cuGetErrorName", a.cuGetErrorName, &missing);
  bind(h, "cuGetErrorString", a.cuGetErrorString, &missing);
  bind(h, "cuDeviceGetCount", a.cuDeviceGetCount, &missing);
  bind(h, "cuDeviceGet", a.cuDeviceGet, &missing);
  bind(h, "cuDeviceGetName", a.cuDeviceGetName, &missing);
  bind(h, "cuDeviceGetAttribute", a.cuDeviceGetAttribute, &missing);
  bind(h, "cuDeviceTotalMem_v2", a.cuDeviceTotalMem, &missing);
  bind(h, "cuDevicePrimaryCtxRetain", a.cuDevicePrimaryCtxRetain, &missing);
  bind(h, "cuCtxSetCurrent", a.cuCtxSetCurrent, &missing);
  bind(h, "cuMemGetInfo_v2", a.cuMemGetInfo, &missing);
  bind(h, "cuMemAlloc_v2", a.cuMemAlloc, &missing);
  bind(h, "cuMemFree_v2", a.cuMemFree, &missing);
  bind(h, "cuMemHostAlloc", a.cuMemHostAlloc, &missing);
  bind(h, "cuMemFreeHost", a.cuMemFreeHost, &missing);
  bind(h, "cuMemcpyHtoDAsync_v2", a.cuMemcpyHtoDAsync, &missing);
  bind(h, "cuMemcpyDtoHAsync_v2", a.cuMemcpyDtoHAsync, &missing);
  bind(h, "cuMemcpyDtoDAsync_v2", a.cuMemcpyDtoDAsync, &missing);
  bind(h, "cuMemsetD8Async", a.cuMemsetD8Async, &missing);
  bind(h, "cuModuleLoadData", a.cuModuleLoadData, &missing);
  bind(h, "cuModuleGetFunction", a.cuModuleGetFunction, &missing);
  bind(h, "cuFuncSetAttribute", a.cuFuncSetAttribute, &missing);
  bind(h, "cuFuncGetParamInfo", a.cuFuncGetParamInfo, nullptr);  // optional (CUDA >= 12.4)
  bind(h, "cuLaunchKernel", a.cuLaunchKernel, &missing);
  bind(h, "cuStreamCreate", a.cuStreamCreate, &missing);
  bind(h, "cuStreamSynchronize", a.cuStreamSynchronize, &missing);
  bind(h, "cuEventCreate", a.cuEventCreate, &missing);
  bind(h, "cuEventRecord", a.cuEventRecord, &missing);
  bind(h, "cuEventSynchronize", a.cuEventSynchronize, &missing);
  bind(h, "cuEventElapsedTime", a.cuEventElapsedTime, &missing);
  bind(h, "cuEventDestroy_v2", a.cuEventDestroy, &missing);
  bind(h, "cuStreamBeginCapture_v2", a.cuStreamBeginCapture, &missing);
  bind(h, "cuStreamEndCapture", a.cuStreamEndCapture, &missing);
  bind(h, "cuGraphInstantiateWithFlags", a.cuGraphInstantiateWithFlags, &missing);
  bind(h, "cuGraphLaunch", a.cuGraphLaunch, &missing);
  bind(h, "cuGraphExecDestroy", a.cuGraphExecDestroy, &missing);
  bind(h, "cuGraphDestroy", a.cuGraphDestroy, &missing);
  if (!missing.empty()) {
    st.error = st.path + " lacks " + missing + " (the driver is too old: install an NVIDIA driver for CUDA 12 or 13)";
    return;
  }
  int v = 0;
  if (a.cuDriverGetVersion(&v) == CUDA_SUCCESS) st.version = std::to_string(v / 1000) + "." + std::to_string(v % 1000 / 10);
  st.found = true;
}

void load_nvrtc(const std::vector<std::string>& cands) {
  LibraryStatus& st = g_report.nvrtc;
  st.name = "libnvrtc";
  void* h = open_first(cands, st);
  if (!h) {
    st.error = "libnvrtc.so.13 or .12 not found (install cuda-nvrtc from the CUDA toolkit, or `pip install nvidia-cuda-nvrtc`; "
               "or set CUDA_HOME): " + st.error;
    return;
  }
  CudaApi& a = g_api;
  std::string missing;
  bind(h, "nvrtcGetErrorString", a.nvrtcGetErrorString, &missing);
  bind(h, "nvrtcVersion", a.nvrtcVersion, &missing);
  bind(h, "nvrtcCreateProgram", a.nvrtcCreateProgram, &missing);
  bind(h, "nvrtcCompileProgram", a.nvrtcCompileProgram, &missing);
  bind(h, "nvrtcGetProgramLogSize", a.nvrtcGetProgramLogSize, &missing);
  bind(h, "nvrtcGetProgramLog", a.nvrtcGetProgramLog, &missing);
  bind(h, "nvrtcGetCUBINSize", a.nvrtcGetCUBINSize, &missing);
  bind(h, "nvrtcGetCUBIN", a.nvrtcGetCUBIN, &missing);
  bind(h, "nvrtcDestroyProgram", a.nvrtcDestroyProgram, &missing);
  if (!missing.empty()) {
    st.error = st.path + " lacks " + missing + " (NVRTC 11.x is too old: install NVRTC 12 or 13)";
    a.nvrtcCompileProgram = nullptr;
    return;
  }
  int major = 0, minor = 0;
  a.nvrtcVersion(&major, &minor);
  st.version = std::to_string(major) + "." + std::to_string(minor);
  st.found = true;
}

void load_cublaslt(const std::vector<std::string>& cands) {
  LibraryStatus& st = g_report.cublaslt;
  st.name = "libcublasLt";
  void* h = open_first(cands, st);
  if (!h) {
    st.error = "libcublasLt.so.13 or .12 not found (install libcublas from the CUDA toolkit, or `pip install nvidia-cublas`; "
               "or set CUDA_HOME): " + st.error;
    return;
  }
  CudaApi& a = g_api;
  std::string missing;
  bind(h, "cublasLtGetVersion", a.cublasLtGetVersion, &missing);
  bind(h, "cublasLtCreate", a.cublasLtCreate, &missing);
  bind(h, "cublasLtMatmulDescCreate", a.cublasLtMatmulDescCreate, &missing);
  bind(h, "cublasLtMatmulDescDestroy", a.cublasLtMatmulDescDestroy, &missing);
  bind(h, "cublasLtMatmulDescSetAttribute", a.cublasLtMatmulDescSetAttribute, &missing);
  bind(h, "cublasLtMatrixLayoutCreate", a.cublasLtMatrixLayoutCreate, &missing);
  bind(h, "cublasLtMatrixLayoutDestroy", a.cublasLtMatrixLayoutDestroy, &missing);
  bind(h, "cublasLtMatrixLayoutSetAttribute", a.cublasLtMatrixLayoutSetAttribute, &missing);
  bind(h, "cublasLtMatmulPreferenceCreate", a.cublasLtMatmulPreferenceCreate, &missing);
  bind(h, "cublasLtMatmulPreferenceDestroy", a.cublasLtMatmulPreferenceDestroy, &missing);
  bind(h, "cublasLtMatmulPreferenceSetAttribute", a.cublasLtMatmulPreferenceSetAttribute, &missing);
  bind(h, "cublasLtMatmulAlgoGetHeuristic", a.cublasLtMatmulAlgoGetHeuristic, &missing);
  bind(h, "cublasLtMatmul", a.cublasLtMatmul, &missing);
  if (!missing.empty()) {
    st.error = st.path + " lacks " + missing;
    a.cublasLtMatmul = nullptr;
    return;
  }
  size_t v = a.cublasLtGetVersion();  // major * 10000 + minor * 100 + patch
  st.version = std::to_string(v / 10000) + "." + std::to_string(v / 100 % 100) + "." + std::to_string(v % 100);
  st.found = true;
}

}  // namespace

const LoadReport& load_libraries(const std::vector<std::string>& driver, const std::vector<std::string>& nvrtc,
                                 const std::vector<std::string>& cublaslt) {
  std::lock_guard<std::mutex> lock(g_mutex);
  if (!g_report.driver.found) load_driver(driver);
  if (!g_report.nvrtc.found) load_nvrtc(nvrtc);
  if (!g_report.cublaslt.found) load_cublaslt(cublaslt);
  return g_report;
}

const CudaApi& api() { return g_api; }
const LoadReport& load_report() { return g_report; }

void check(CUresult r, const char* what) {
  if (r == CUDA_SUCCESS) return;
  const char* name = nullptr;
  const char* text = nullptr;
  if (g_api.cuGetErrorName) g_api.cuGetErrorName(r, &name);
  if (g_api.cuGetErrorString) g_api.cuGetErrorString(r, &text);
  throw CudaError(std::string(what) + " failed: " + (name ? name : "CUDA error " + std::to_string(r)) + (text ? std::string(" (") + text + ")" : ""));
}

}  // namespace kestrel::cuda
